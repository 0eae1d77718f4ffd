"""Fuzz the OpenAPI schema with schemathesis against the echo provider: no input gives a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from heylook_core.app import build_server, create_app
from tests.core.conftest import EXAMPLE

_config = Path(tempfile.mkdtemp()) / "models.toml"
_config.write_text(EXAMPLE + '\n[server]\nallowed_hosts = ["testserver"]\n')  # schemathesis sends Host: testserver
app = create_app(build_server(_config))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        if case.path == "/" or case.path.startswith("/api/"):  # Ollama's shape
            assert isinstance(body["error"], str) and body["error"]
        elif case.path.startswith("/v1/messages"):  # Anthropic's shape
            assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
        else:  # OpenAI's shape
            assert {"message", "type", "param", "code"} <= set(body["error"])
