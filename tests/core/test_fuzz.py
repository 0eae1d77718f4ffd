"""Fuzz the OpenAPI schema with schemathesis against the echo provider: no input gives a 5xx, and every response
conforms to the document (its status, media type and body), in the error shape of its path's protocol."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from heylook_core.app import create_app
from heylook_core.server import build_server
from tests.core.conftest import EXAMPLE

_config = Path(tempfile.mkdtemp()) / "models.toml"
_config.write_text(EXAMPLE + '\n[server]\nallowed_hosts = ["testserver"]\n')  # schemathesis sends Host: testserver
app = create_app(build_server(_config))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_document_has_heylooks_statuses_and_typed_responses() -> None:
    document = app.openapi()
    assert "HTTPValidationError" not in str(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert "default" in responses, (method, path)
            if method == "post":
                assert "400" in responses, (method, path)
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert chat["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert "text/event-stream" in chat
    for path, name in [("/v1/completions", "Completion"), ("/v1/embeddings", "EmbeddingList")]:
        content = document["paths"][path]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
    errors = {
        "/v1/chat/completions": "ErrorBody",
        "/v1/messages": "AnthropicErrorBody",
        "/api/chat": "OllamaErrorBody",
    }
    for path, name in errors.items():
        bad = document["paths"][path]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
        assert bad == {"$ref": f"#/components/schemas/{name}"}


try:  # with the core alone (no [audio] extra), the audio routes answer 501 naming the extra: by design, not a fault
    import av  # noqa: F401

    AUDIO_DECODER = True
except ImportError:
    AUDIO_DECODER = False


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_conform(case: schemathesis.Case) -> None:
    if not AUDIO_DECODER and case.path.startswith("/v1/audio/"):
        response = case.call_and_validate(checks=[c for c in CHECKS if c is not not_a_server_error])
        if response.status_code >= 500:
            assert response.status_code == 501, response.text
            assert response.json()["error"]["code"] == "audio_decoder_missing"
            assert "heylook-core[audio]" in response.json()["error"]["message"]
        return
    response = case.call_and_validate(checks=CHECKS)
    if response.status_code >= 400:
        body = response.json()
        if case.path == "/" or case.path.startswith("/api/"):  # Ollama's shape
            assert isinstance(body["error"], str) and body["error"]
        elif case.path.startswith("/v1/messages"):  # Anthropic's shape
            assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
        else:  # OpenAI's shape
            assert {"message", "type", "param", "code"} <= set(body["error"])
