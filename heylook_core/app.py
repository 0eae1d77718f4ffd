"""The FastAPI application around a built :class:`~heylook_core.server.Server`: its routes, handlers and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from heylook_core.config import load_settings
from heylook_core.error_shapes import error_response, validation_message
from heylook_core.errors import BadRequestError, ConfigError, HeylookError
from heylook_core.faults import UnexpectedErrors
from heylook_core.keys import keyring_of, reload_keys
from heylook_core.security import BodyLimit, RequestGuard, require_admin_key, require_api_key
from heylook_core.server import Server
from heylook_core.serving import Drain

logger = logging.getLogger(__name__)


SERVED_APIS = (
    "OpenAI's API under /v1 (/v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings, /v1/models, "
    "/v1/audio/transcriptions), Anthropic's /v1/messages, Ollama's /api/*, /health, /metrics, and the API "
    "reference at /docs (/openapi.json)"
)


def _no_route(request: Request) -> str:
    path = request.url.path
    shown = path if len(path) <= 128 else path[:128] + "..."
    return f"no route {request.method} {shown}; this server serves {SERVED_APIS}"


class HeadAsGet:
    """``HEAD`` on a ``GET`` route answers as ``GET`` would, without the body (FastAPI routes list GET only)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Any) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)


def create_app(server: Server) -> FastAPI:
    from heylook_core.api import v1

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.host.startup(app, server.settings)
        server.router.start()
        warmups = [m.id for m in server.settings.models if m.entry.pinned] + server.preload
        for name in dict.fromkeys(warmups):
            try:
                await server.router.ensure_loaded(name)
            except HeylookError as error:
                logger.error("%s", error.message)
        logger.info(
            "serving %d model(s) from %s: %s",
            len(server.settings.models),
            server.settings.source,
            ", ".join(server.settings.model_ids()) or "none",
        )
        try:
            yield
        finally:
            if server.retiring is not None:
                server.retiring.cancel()
            await server.router.close()
            await server.host.shutdown(app)

    app = FastAPI(
        title="heylook",
        version=_version(),
        description="A local LLM server that speaks the OpenAI HTTP API.",
        lifespan=lifespan,
        docs_url=None,  # served from installed assets instead of a CDN (heylook_core.openapi.install_docs)
        redoc_url=None,
    )
    app.state.heylook = server

    @app.exception_handler(HeylookError)
    async def heylook_error(request: Request, error: HeylookError) -> JSONResponse:
        return error_response(error, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = validation_message(error)
        code = "invalid_json" if "not valid JSON" in message else "invalid_value"
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = _no_route(request) if error.status_code == 404 else str(error.detail)
        shaped = BadRequestError(message) if error.status_code < 500 else HeylookError(message)
        shaped.status_code = error.status_code
        shaped.headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 404:
            shaped.code = None
        return error_response(shaped, request.url.path)

    app.include_router(v1)
    from heylook_core.protocols import anthropic, openai, responses

    app.include_router(openai.router)
    app.include_router(responses.router)
    from heylook_core.protocols import ollama

    app.include_router(ollama.router)
    app.include_router(anthropic.router)
    from heylook_core.audio_api import audio_router

    app.include_router(audio_router)
    app.include_router(_ops_routes())
    plugin_routes = APIRouter()
    server.host.register_routes(plugin_routes)
    app.include_router(plugin_routes)

    if server.settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.settings.server.cors_origins,
            allow_credentials="*" not in server.settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestGuard,
        allowed_hosts=server.settings.server.allowed_hosts,
        cors_origins=server.settings.server.cors_origins,
        bind_host=server.settings.server.host,
    )
    app.add_middleware(BodyLimit, limit=server.settings.server.max_body_bytes)
    app.add_middleware(server.metrics.middleware, access_log=server.settings.server.access_log)
    app.add_middleware(HeadAsGet)
    app.add_middleware(UnexpectedErrors)  # an escaped exception is a 500, never a reset connection
    app.add_middleware(Drain, server=server)  # outermost: counts requests in flight, refuses new ones while draining
    keyring_of(server)  # a broken api_key_file stops the server before it serves
    from heylook_core.openapi import install, install_docs

    install(app)  # the document as the server answers: heylook's error bodies and statuses, typed responses
    install_docs(app)
    return app


def _version() -> str:
    from heylook_core import __version__

    return __version__


def _ops_routes() -> APIRouter:
    ops = APIRouter()

    @ops.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        server: Server = request.app.state.heylook
        if server.settings.server.keys_required():
            return {"status": "ok"}  # with keys required, what is served is for key holders (/v1/models)
        return {
            "status": "ok",
            "models": server.settings.model_ids(),
            "loaded": server.router.loaded(),
            "failed_plugins": [r.name for r in server.host.failed()],
            "failed_models": server.host.failed_models(),  # offers a plugin made that its provider refused
            # models whose worker died or wedged, or whose load stalled: reloaded on their next request
            "failed": server.router.failed(),
        }

    @ops.get("/-/plugins", dependencies=[Depends(require_api_key)])
    async def plugins(request: Request) -> dict[str, Any]:
        server: Server = request.app.state.heylook
        return server.host.report()

    @ops.get("/metrics", response_class=Response, dependencies=[Depends(require_api_key)])
    async def metrics(request: Request) -> Response:
        from heylook_core.metrics import CONTENT_TYPE

        server: Server = request.app.state.heylook
        return Response(server.metrics.render(server.router, server.host), media_type=CONTENT_TYPE)

    admin = APIRouter(prefix="/v1/admin", dependencies=[Depends(require_admin_key)])

    @admin.post("/models/{model_id:path}/load")
    async def load(model_id: str, request: Request) -> dict[str, Any]:
        server: Server = request.app.state.heylook
        slot = server.router.resolve(model_id)
        await server.router.ensure_loaded(slot.id)
        return {"id": slot.id, "state": slot.state}

    @admin.post("/models/{model_id:path}/unload")
    async def unload(model_id: str, request: Request) -> dict[str, Any]:
        server: Server = request.app.state.heylook
        slot = server.router.resolve(model_id)
        while slot.in_flight:
            await asyncio.sleep(0.05)
        await server.router.unload(slot)
        return {"id": slot.id, "state": slot.state}

    @admin.post("/models/{model_id:path}/pin")
    async def pin(model_id: str, request: Request) -> dict[str, Any]:
        """Keep a model loaded (loading it now) until unpinned or the config is reloaded."""
        server: Server = request.app.state.heylook
        slot = server.router.resolve(model_id)
        slot.model.entry.pinned = True
        await server.router.ensure_loaded(slot.id)
        return {"id": slot.id, "state": slot.state, "pinned": True}

    @admin.post("/models/{model_id:path}/unpin")
    async def unpin(model_id: str, request: Request) -> dict[str, Any]:
        """Let a model be unloaded again for room or its TTL; it stays loaded for now."""
        server: Server = request.app.state.heylook
        slot = server.router.resolve(model_id)
        slot.model.entry.pinned = False
        return {"id": slot.id, "state": slot.state, "pinned": False}

    @admin.post("/restart", status_code=202)
    async def restart(request: Request) -> dict[str, Any]:
        """Drain requests in flight (as SIGTERM does), then re-execute the process with the same arguments."""
        import signal

        server: Server = request.app.state.heylook
        if not server.serving:
            raise BadRequestError("restart needs a server started by 'heylookllm serve'", code="not_supported")
        server.restart_requested = True
        # after this response has gone out, the drain of a SIGTERM; serve_command then re-executes the process
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
        return {"status": "restarting", "pid": os.getpid(), "requests_in_flight": server.requests_in_flight - 1}

    @admin.post("/reload")
    async def reload(request: Request) -> dict[str, Any]:
        """Re-read models.toml; requests in flight finish on the models they started on."""
        server: Server = request.app.state.heylook
        try:
            settings = load_settings(
                server.host.providers,
                server.host.offered_models,
                config_path=server.config_path,
                failed_plugins=[f"{r.name} ({r.error})" for r in server.host.failed()],
            )
        except ConfigError as error:
            raise BadRequestError(f"configuration not reloaded: {error}", code="invalid_config") from None
        settings.server = server.settings.server  # the listening address, keys and limits stay as started
        try:
            reload_keys(server)  # except the names and keys of api_key_file, read again
        except ConfigError as error:
            raise BadRequestError(f"configuration not reloaded: {error}", code="invalid_config") from None
        old = server.router
        router, dropped = old.successor(settings)
        await old.stop_timers()
        server.settings, server.router = settings, router
        router.start()
        server.retiring = asyncio.create_task(old.retire(dropped))
        return {"models": settings.model_ids(), "dropped": [slot.id for slot in dropped]}

    ops.include_router(admin)
    return ops
