"""The OpenAPI document as the server answers: typed responses, heylook's error bodies, no FastAPI 422.

Request validation errors are 400s with the error body of the path's protocol (OpenAI's ``{"error": {...}}``,
Anthropic's on ``/v1/messages*``, Ollama's ``{"error": "..."}`` on ``/api/*`` and ``/``), so FastAPI's
``422 HTTPValidationError`` is taken out of every operation and a ``400`` plus a ``default`` error response in the
right shape is put in. The generating and listing routes get typed 200 bodies (the models below; extra fields
allowed, since heylook adds some), and their streamed variants their media type.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors ---------------------------------------------------------------------------------------------------------


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(_Open):
    """OpenAI's error body, on every route outside the Anthropic and Ollama APIs."""

    error: ErrorDetail


class AnthropicErrorDetail(_Open):
    type: str
    message: str


class AnthropicErrorBody(_Open):
    type: Literal["error"]
    error: AnthropicErrorDetail


class OllamaErrorBody(_Open):
    error: str


# -- typed 200s -----------------------------------------------------------------------------------------------------


class UsageBody(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageBody(_Open):
    role: Literal["assistant"]
    content: str | None


class ChatChoice(_Open):
    index: int
    message: ChatMessageBody
    logprobs: dict[str, Any] | None
    finish_reason: str


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageBody


class CompletionChoice(_Open):
    text: str
    index: int
    logprobs: dict[str, Any] | None
    finish_reason: str


class Completion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageBody


class Embedding(_Open):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(_Open):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Open):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


class ResponseObject(_Open):
    """A Responses API response (``output`` items as OpenAI documents them)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]


# A stream's schema describes each server-sent event (its ``data`` is a JSON text of the protocol's chunk).
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
        }
    }
}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
NDJSON = {"application/x-ndjson": {"schema": {"type": "string"}}}

# (path, method): (the 200 body's model, other media types the 200 may have)
TYPED: dict[tuple[str, str], tuple[type[BaseModel], dict[str, Any]]] = {
    ("/v1/chat/completions", "post"): (ChatCompletion, SSE),
    ("/v1/chat/completions/multipart", "post"): (ChatCompletion, SSE),
    ("/v1/completions", "post"): (Completion, SSE),
    ("/v1/embeddings", "post"): (EmbeddingList, {}),
    ("/v1/models", "get"): (ModelList, {}),
    ("/v1/models/{model_id}", "get"): (ModelCard, {}),
    ("/v1/responses", "post"): (ResponseObject, SSE),
    ("/v1/responses/{response_id}", "get"): (ResponseObject, SSE),
}
MEDIA: dict[tuple[str, str], dict[str, Any]] = {  # 200s that are not (only) JSON
    ("/v1/audio/transcriptions", "post"): TEXT,
    ("/v1/audio/translations", "post"): TEXT,
    ("/v1/messages", "post"): SSE,
    ("/api/chat", "post"): NDJSON,
    ("/api/generate", "post"): NDJSON,
    ("/api/pull", "post"): NDJSON,
    ("/api/push", "post"): NDJSON,
    ("/api/create", "post"): NDJSON,
}


def _error_model(path: str) -> type[BaseModel]:
    if path == "/" or path.startswith("/api/"):
        return OllamaErrorBody
    if path.startswith("/v1/messages"):
        return AnthropicErrorBody
    return ErrorBody


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _add_models(schema: dict[str, Any], models: list[type[BaseModel]]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = body


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with heylook's statuses, error bodies and typed responses."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    models: list[type[BaseModel]] = [ErrorBody, AnthropicErrorBody, OllamaErrorBody]
    for path, operations in schema.get("paths", {}).items():
        error_ref = f"#/components/schemas/{_error_model(path).__name__}"
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            ok = responses.get("200") or responses.get("202")
            typed = TYPED.get((path, method))
            if typed is not None and ok is not None:
                model, extra = typed
                models.append(model)
                ok["content"] = {**_json(f"#/components/schemas/{model.__name__}"), **extra}
            elif ok is not None and (path, method) in MEDIA:
                ok["content"] = {**ok.get("content", {}), **MEDIA[(path, method)]}
            if method in ("post", "put", "patch"):
                responses.setdefault(
                    "400",
                    {
                        "description": "an invalid request (the message names the parameter)",
                        "content": _json(error_ref),
                    },
                )
            responses.setdefault("default", {"description": "an error", "content": _json(error_ref)})
    _add_models(schema, models)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`build_openapi`'s document at ``/openapi.json`` (and to ``/docs``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


DOCS_ASSETS = "/-/docs-assets"


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the assets of the installed ``fastapi-offline`` package, so both
    work without internet (FastAPI's own pages load their scripts from a CDN)."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=static), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
