"""The one error tree of heylook.

Every error a client can see is a :class:`HeylookError`; its class fixes the HTTP status and the OpenAI error
``type``, and its attributes carry the context (``param``, ``code``, the model id). Routes never build error
bodies themselves: they raise, and one exception handler renders ``{"error": {...}}``.

::

    HeylookError                        500 server_error
    +-- BadRequestError                 400 invalid_request_error
    |   +-- UnsupportedError            400 invalid_request_error (capability or parameter a model lacks)
    +-- AuthenticationError             401 authentication_error
    +-- PermissionDeniedError           403 permission_error
    +-- NotFoundError                   404 invalid_request_error
    |   +-- ModelNotFoundError          404 invalid_request_error, code model_not_found
    +-- PayloadTooLargeError            413 invalid_request_error
    +-- UnsupportedMediaTypeError       415 invalid_request_error
    +-- RateLimitError                  429 rate_limit_error
    +-- ServiceUnavailableError         503 server_error (queue full, model loading) with Retry-After
    |   +-- ModelLoadError              503 server_error, code model_load_failed
    +-- ProviderError                   502 server_error (a backend failed while serving a request)
    +-- PluginError                     500 server_error (a plugin raised; names the plugin)

Configuration problems found before the server starts are :class:`ConfigError` (not an HTTP error).
"""

from __future__ import annotations

from typing import Any


class HeylookError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-style body."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        """The JSON body clients parse: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class BadRequestError(HeylookError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedError(BadRequestError):
    """A request asks a model for a capability or parameter it does not have."""

    default_code = "unsupported"

    def __init__(self, model_id: str, what: str, *, param: str | None = None, hint: str = "") -> None:
        message = f"model '{model_id}' does not support {what}"
        if hint:
            message += f"; {hint}"
        super().__init__(message, param=param)
        self.model_id = model_id


class AuthenticationError(HeylookError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(HeylookError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(HeylookError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"

    def __init__(self, model_id: str, available: list[str]) -> None:
        listed = ", ".join(available) if available else "none"
        shown = model_id if len(model_id) <= 64 else model_id[:64] + "..."  # never echo a long name back whole
        super().__init__(f"model '{shown}' not found; available models: {listed}", param="model")
        self.model_id = model_id
        self.available = available


class PayloadTooLargeError(HeylookError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaTypeError(HeylookError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimitError(HeylookError):
    status_code = 429
    error_type = "rate_limit_error"


class ServiceUnavailableError(HeylookError):
    status_code = 503
    error_type = "server_error"
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ModelLoadError(ServiceUnavailableError):
    default_code = "model_load_failed"

    def __init__(self, model_id: str, reason: str, *, kind: str | None = None) -> None:
        """``reason`` is the detail for the log; with ``kind`` (a short reason class without paths or exception
        text), the client sees only the kind. The router raises it that way; providers may raise it with a reason."""
        if kind is None:
            message = f"model '{model_id}' failed to load: {reason}"
        else:
            message = f"model '{model_id}' failed to load: {kind}; the server log has the details"
        super().__init__(message, retry_after=5)
        self.model_id = model_id
        self.reason = reason
        self.kind = kind


class ProviderError(HeylookError):
    """The backend failed while serving a request (a crashed process, an engine error)."""

    status_code = 502
    error_type = "server_error"
    default_code = "backend_error"


class PluginError(HeylookError):
    """A plugin raised while handling a request; the request fails and the plugin is named."""

    default_code = "plugin_error"

    def __init__(self, plugin: str, error: BaseException, *, model_id: str | None = None) -> None:
        model = f" while serving model '{model_id}'" if model_id else ""
        super().__init__(f"plugin '{plugin}' failed{model} ({type(error).__name__}); the server log has the details")
        self.plugin = plugin
        self.model_id = model_id


class ConfigError(Exception):
    """models.toml or the settings are invalid; raised before the server starts."""


class PluginLoadError(Exception):
    """A plugin could not be loaded or registered (fatal in strict mode and for provider name clashes)."""
