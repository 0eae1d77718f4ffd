"""Errors as HTTP responses: the error shape of the protocol a path belongs to, and validation messages.

Used by the app's exception handlers, the security middleware (which answers before any route) and the protocol
adapters that validate a body themselves.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from heylook_core.errors import HeylookError
from heylook_core.types import ParamError


def error_response(error: HeylookError, path: str = "") -> JSONResponse:
    """``error`` in the error shape of the protocol that ``path`` belongs to (OpenAI's unless another's)."""
    if path == "/" or path.startswith("/api/"):
        from heylook_core.protocols.ollama import ollama_error

        return ollama_error(error)
    if path.startswith("/v1/messages"):
        from heylook_core.protocols.anthropic import error_response

        return error_response(error)
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers)


def validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    errors = error.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    cause = first.get("ctx", {}).get("error")
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    # Union members show up in the location (``str``, ``list[...]``); keep the field names only.
    loc = [part for part in loc if not any(mark in part for mark in ("[", "function-", "literal["))]
    param = ".".join(loc) or None
    if isinstance(cause, ParamError):  # names its parameter; no "Value error, " prefix
        if cause.param is not None:
            return cause.message, cause.param
        param = ".".join(part for part in (param, cause.sub) if part) or None
        return (f"{param}: {cause.message}" if param else cause.message), param
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    elif first.get("type") == "extra_forbidden":
        message = "unknown field"
    return (f"{param}: {message}" if param else message), param
