"""Ollama's native API (``/api/*``) on the generation service.

Ollama's clients (the ``ollama`` Python and JavaScript libraries, desktop apps, editor plugins, web UIs) probe
``GET /``, list models with ``/api/tags``, and generate with ``/api/chat`` and ``/api/generate``, streamed by default
as NDJSON: one JSON object a line, the last one with ``done: true``, the token counts and the durations in
nanoseconds. Their requests become the core's internal chat or completion requests, so every backend serves them and
middleware sees them (``protocol = "ollama"``).

``options`` that change the output are mapped (``num_predict`` onto ``max_tokens``, ``repeat_penalty`` onto
``repetition_penalty``, ...) or refused with a 400; those that only tune the engine's resources (``num_thread``,
``num_gpu``, ``use_mmap``, ...) are accepted. ``keep_alive`` sets the model's idle TTL on the router (``0`` unloads
it after the request, a negative value keeps it loaded). Models are configured in models.toml: ``pull``, ``push``,
``create``, ``copy`` and ``delete`` answer a 400 that says so. Errors have Ollama's shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from heylook_core.errors import BadRequestError, HeylookError, ModelNotFoundError, UnsupportedError
from heylook_core.parameters import Parameter
from heylook_core.protocols.openai import STREAM_HEADERS, request_id_of, service_of, stream_error
from heylook_core.providers import Capability
from heylook_core.runner import CancelToken
from heylook_core.security import require_api_key
from heylook_core.streaming import EventStreamResponse, is_ping
from heylook_core.types import ChatRequest, CompletionRequest, Delta, EmbeddingRequest, TokenLogprob, Usage

if TYPE_CHECKING:
    from heylook_core.router import ModelSlot
    from heylook_core.server import Server
    from heylook_core.service import Prepared

logger = logging.getLogger(__name__)

# The Ollama API level these routes follow (clients compare it against the features they need: tools, structured
# outputs, thinking); heylook's own version is sent beside it.
OLLAMA_VERSION = "0.12.0"
NDJSON = "application/x-ndjson"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# options -> the internal request's parameter
OPTION_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "num_predict": "max_tokens",
    "stop": "stop",
    "seed": "seed",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
# options that tune where and how fast the engine runs, not what it writes: accepted, not applied
RESOURCE_OPTIONS = frozenset(
    {
        "numa",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "embedding_only",
        "num_thread",
    }
)
# options that change the output, accepted only at the value that switches them off
NEUTRAL_OPTIONS = {"mirostat": 0, "tfs_z": 1.0, "typical_p": 1.0}
# options that change the output and that heylook does not apply
REFUSED_OPTIONS = frozenset(
    {"num_keep", "repeat_last_n", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "tfs_z", "typical_p"}
)
# the internal parameter names in the core's messages, as an Ollama client wrote them
PARAM_NAMES = {
    **{internal: f"options.{option}" for option, internal in OPTION_PARAMS.items()},
    "response_format": "format",
    "enable_thinking": "think",
    "tools": "tools",
    "logprobs": "logprobs",
    "top_logprobs": "top_logprobs",
    "suffix": "suffix",
}
DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}
FOREVER = dt.timedelta(days=290 * 365)  # what Ollama shows for a model kept loaded (keep_alive < 0)


# -- errors ------------------------------------------------------------------------------------------------------


def ollama_error(error: HeylookError) -> JSONResponse:
    message = error.message
    if error.param in PARAM_NAMES:
        message = message.replace(f"'{error.param}'", f"'{PARAM_NAMES[error.param]}'")
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


def _validation_message(errors: list[Any]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "invalid JSON in the request body"
    where = ""
    for part in first.get("loc", ()):
        if isinstance(part, int):
            where += f"[{part}]"
        elif part != "body" and not any(mark in str(part) for mark in ("[", "function-", "literal[")):
            where += f".{part}" if where else str(part)
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        message = "field required"
    elif first.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}" if where else message


class OllamaRoute(APIRoute):
    """Routes that answer every error in Ollama's shape, ``{"error": "..."}``, with the fitting status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except HeylookError as error:
                return ollama_error(error)
            except RequestValidationError as error:
                return JSONResponse({"error": _validation_message(list(error.errors()))}, status_code=400)
            except StarletteHTTPException as error:
                return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)
            except Exception as error:
                logger.exception("unexpected error on %s", request.url.path)
                return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)

        return route


router = APIRouter(route_class=OllamaRoute)
_auth = Depends(require_api_key)


async def _body(http: Request, model: type[BaseModel]) -> Any:
    raw = await http.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequestError(f"invalid JSON in the request body: {error}") from None
    if not isinstance(data, dict):
        raise BadRequestError("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise BadRequestError(_validation_message(list(error.errors()))) from None


# -- requests ----------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OllamaToolFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    function: OllamaToolFunction


class OllamaMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


Keepalive = float | str | None
Format = Literal["", "json"] | dict[str, Any] | None
Think = bool | Literal["low", "medium", "high"] | None


class _Generating(_Strict):
    model: str = Field(min_length=1, max_length=256)
    stream: bool = True
    format: Format = None
    options: dict[str, Any] | None = None
    keep_alive: Keepalive = None
    think: Think = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class OllamaChatRequest(_Generating):
    messages: list[OllamaMessage] | None = None
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(_Generating):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None


class OllamaEmbedRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = ""
    truncate: bool | None = None
    options: dict[str, Any] | None = None
    keep_alive: Keepalive = None
    dimensions: int | None = Field(default=None, ge=1)


class OllamaEmbeddingsRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    prompt: str | None = None
    options: dict[str, Any] | None = None
    keep_alive: Keepalive = None


class OllamaShowRequest(_Strict):
    model: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)  # the older spelling
    verbose: bool | None = None


# -- names and models --------------------------------------------------------------------------------------------


def resolve(server: Server, name: str) -> ModelSlot:
    """``name`` as an id or alias; ``name:latest`` is ``name``. Other tags resolve only as configured aliases."""
    router = server.router
    try:
        return router.resolve(name)
    except ModelNotFoundError:
        if name.endswith(":latest") and len(name) > len(":latest"):
            try:
                return router.resolve(name[: -len(":latest")])
            except ModelNotFoundError:
                pass
        shown = name if len(name) <= 64 else name[:64] + "..."
        error = ModelNotFoundError(name, [tagged(model_id) for model_id in router.slots])
        error.message = f"model '{shown}' not found; available models: {', '.join(error.available) or 'none'}"
        raise error from None


def _known_name(server: Server, name: str, slot: ModelSlot) -> str:
    """The client's name where the router knows it (an id or alias), else the model's id."""
    return name if name in server.router.names else slot.id


def tagged(model_id: str) -> str:
    """The name an Ollama client shows: ``id:latest``, or the id itself when it already has a tag."""
    return model_id if ":" in model_id.rsplit("/", 1)[-1] else model_id + ":latest"


def _facts(slot: ModelSlot) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if slot.provider is not None:
        try:
            facts = dict(slot.provider.info())
        except Exception:  # a provider's report must not fail a listing
            logger.exception("model '%s': info() raised", slot.id)
    return facts


def _model_file(slot: ModelSlot, facts: dict[str, Any]) -> Path | None:
    path = facts.get("model_path") or getattr(slot.model.config, "model_path", None)
    if not path:
        return None
    try:
        file = Path(str(path)).expanduser()
        return file if file.is_file() else None
    except (OSError, ValueError):
        return None


def context_length(slot: ModelSlot, facts: dict[str, Any] | None = None) -> int | None:
    """The model's context in tokens where the backend (or the model's config) says it."""
    facts = _facts(slot) if facts is None else facts
    for value in (
        facts.get("context_length"),
        getattr(slot.model.config, "context_length", None),
        getattr(slot.model.config, "n_ctx", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _details(slot: ModelSlot, facts: dict[str, Any], file: Path | None) -> dict[str, Any]:
    def fact(key: str) -> str:
        value = facts.get(key)
        return str(value) if value else ""

    fmt = fact("format") or ("gguf" if file is not None and file.suffix.lower() == ".gguf" else "")
    family = fact("family") or fact("architecture")
    return {
        "parent_model": "",
        "format": fmt,
        "family": family,
        "families": [family] if family else None,
        "parameter_size": fact("parameter_size"),
        "quantization_level": fact("quantization_level"),
    }


def _timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _timestamp(time.time())


def model_entry(server: Server, slot: ModelSlot) -> dict[str, Any]:
    """One model as ``/api/tags`` and ``/api/ps`` list it."""
    facts = _facts(slot)
    file = _model_file(slot, facts)
    size = 0
    modified = float(server.started)
    if file is not None:
        try:
            stat = file.stat()
            size, modified = stat.st_size, stat.st_mtime
        except OSError:
            pass
    entry = slot.model.entry
    identity = json.dumps([entry.id, entry.provider, entry.config], sort_keys=True, default=str)
    name = tagged(slot.id)
    return {
        "name": name,
        "model": name,
        "modified_at": _timestamp(modified),
        "size": size,
        "digest": hashlib.sha256(identity.encode("utf-8")).hexdigest(),  # of the model's configuration
        "details": _details(slot, facts, file),
    }


def capabilities(slot: ModelSlot) -> list[str]:
    model = slot.model
    found: list[str] = []
    if Capability.CHAT in model.capabilities or Capability.COMPLETION in model.capabilities:
        found.append("completion")
    if Capability.CHAT in model.capabilities and Parameter.TOOLS in model.parameters:
        found.append("tools")
    if Capability.COMPLETION in model.capabilities and Parameter.SUFFIX in model.parameters:
        found.append("insert")
    if Capability.VISION in model.capabilities:
        found.append("vision")
    if Parameter.ENABLE_THINKING in model.parameters:
        found.append("thinking")
    if Capability.EMBEDDINGS in model.capabilities:
        found.append("embedding")
    return found


# -- keep_alive --------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: Keepalive) -> float | None:
    """``keep_alive`` in seconds (Go durations such as ``"5m"``, ``"1h30m"``, or a number); negative: forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequestError("keep_alive: a duration such as '5m' or a number of seconds")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise BadRequestError(f"keep_alive: '{value[:40]}' is not a duration such as '5m', '1h' or '30s'")
    return sign * sum(float(number) * _UNITS[unit] for number, unit in parts)


def _apply_keep_alive(server: Server, slot: ModelSlot, seconds: float | None) -> None:
    """A duration becomes the model's idle TTL (negative: never unload); 0 is handled after the request."""
    if seconds is None or seconds == 0:
        return
    server.router.set_ttl(slot, math.inf if seconds < 0 else seconds)


async def _after_request(server: Server, slot: ModelSlot, seconds: float | None) -> bool:
    """With ``keep_alive`` 0, unload the model once nothing else runs on it; whether it was unloaded."""
    if seconds != 0:
        return False
    return await server.router.unload_idle(slot)


# -- options and the internal request ----------------------------------------------------------------------------


def _options(options: dict[str, Any] | None, *, generating: bool = True) -> dict[str, Any]:
    """The internal parameters that ``options`` set; options that change the output and are not applied: 400."""
    params: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if value is None or key in RESOURCE_OPTIONS:
            continue
        if key in NEUTRAL_OPTIONS and value == NEUTRAL_OPTIONS[key]:
            continue
        if key == "num_ctx":
            continue  # checked against the model's context in _check_num_ctx
        if generating and key in OPTION_PARAMS:
            if key == "num_predict" and isinstance(value, int) and value < 0:
                continue  # -1 (and -2): generate until the model stops or the context is full, the default here
            params[OPTION_PARAMS[key]] = value
            continue
        if key in OPTION_PARAMS or key in REFUSED_OPTIONS:
            raise BadRequestError(
                f"options.{key} is not supported by heylook on this route; remove it from the request",
                param=f"options.{key}",
                code="unsupported",
            )
        raise BadRequestError(f"options.{key}: unknown option", param=f"options.{key}")
    return params


async def _check_num_ctx(server: Server, slot: ModelSlot, options: dict[str, Any] | None) -> None:
    """``num_ctx`` is honoured as "at least this many tokens of context": up to the model's own context."""
    wanted = (options or {}).get("num_ctx")
    if wanted is None:
        return
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
        raise BadRequestError("options.num_ctx: a positive number of tokens", param="options.num_ctx")
    known = context_length(slot)
    if known is None:
        await server.router.ensure_loaded(slot.id)
        known = context_length(slot)
    if known is None or wanted > known:
        have = f"its context is {known} tokens" if known else "its context size is not known"
        raise BadRequestError(
            f"options.num_ctx = {wanted}: model '{slot.id}' cannot serve that; {have} (set it in models.toml)",
            param="options.num_ctx",
            code="unsupported",
        )


def _format(value: Format) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": value}}
    raise BadRequestError("format: 'json' or a JSON schema", param="format")


_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)


def _data_url(image: str, where: str) -> str:
    """An Ollama image (base64, without a header) as a data URL; the core's image policy checks it after."""
    if image.startswith("data:"):
        return image
    try:
        head = base64.b64decode(image[:24] + "=" * (-len(image[:24]) % 4))
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{where}: not base64 image data", param=where) from None
    kind = next((mime for magic, mime in _MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "image/webp"
    if kind is None:
        raise BadRequestError(f"{where}: not a PNG, JPEG, GIF, WebP or BMP image", param=where)
    return f"data:{kind};base64,{image}"


def _user_content(text: str, images: list[str] | None, where: str) -> str | list[dict[str, Any]]:
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for index, image in enumerate(images):
        parts.append({"type": "image_url", "image_url": {"url": _data_url(image, f"{where}.images[{index}]")}})
    return parts


def _arguments(value: dict[str, Any] | str) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _messages(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (call id, function name) of calls not answered yet
    counter = 0
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        text = message.content or ""
        if message.images and message.role != "user":
            raise BadRequestError(f"{where}.images: only user messages may hold images", param=f"{where}.images")
        item: dict[str, Any] = {"role": message.role}
        if message.role == "assistant":
            item["content"] = text
            if message.thinking:
                item["reasoning_content"] = message.thinking
            if message.tool_calls:
                calls = []
                for call in message.tool_calls:
                    counter += 1
                    call_id = call.id or f"call_{counter}"
                    pending.append((call_id, call.function.name))
                    calls.append(
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": _arguments(call.function.arguments)},
                        }
                    )
                item["tool_calls"] = calls
        elif message.role == "tool":
            if message.tool_call_id is not None:
                call_id = message.tool_call_id
            else:
                match = next((p for p in pending if message.tool_name and p[1] == message.tool_name), None)
                match = match or (pending[0] if pending else None)
                call_id = match[0] if match else f"call_{index}"
            pending = [p for p in pending if p[0] != call_id]
            item["content"] = text
            item["tool_call_id"] = call_id
            if message.tool_name:
                item["name"] = message.tool_name
        else:
            item["content"] = _user_content(text, message.images, where) if message.role == "user" else text
        out.append(item)
    return out


def _think(value: Think) -> bool | None:
    if value is None:
        return None
    return value if isinstance(value, bool) else True  # a level ("low" ... "high") turns thinking on


def _common(body: _Generating, model: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"model": model or body.model, "stream": body.stream, **_options(body.options)}
    fmt = _format(body.format)
    if fmt is not None:
        data["response_format"] = fmt
    return data


_Request = TypeVar("_Request", ChatRequest, CompletionRequest)


def _validated(kind: type[_Request], data: dict[str, Any]) -> _Request:
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(part) for part in first.get("loc", ())]
        param = PARAM_NAMES.get(".".join(loc), ".".join(loc))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise BadRequestError(f"{param}: {message}" if param else message, param=param or None) from None


def chat_request(body: OllamaChatRequest, model: str | None = None) -> ChatRequest:
    """``model``: the name the router knows (``body.model`` without ``:latest``), so a request that a middleware
    rewrites resolves again."""
    data = _common(body, model)
    data["messages"] = _messages(body.messages or [])
    if body.tools:
        data["tools"] = [{"type": "function", **tool} if "type" not in tool else tool for tool in body.tools]
    think = _think(body.think)
    if think is not None:
        data["enable_thinking"] = think
    if body.logprobs:
        data["logprobs"] = True
        if body.top_logprobs:
            data["top_logprobs"] = body.top_logprobs
    elif body.top_logprobs:
        raise BadRequestError("top_logprobs needs logprobs = true", param="top_logprobs")
    return _validated(ChatRequest, data)


def generate_request(
    body: OllamaGenerateRequest, model: str | None = None, *, plain: bool = False
) -> ChatRequest | CompletionRequest:
    """``plain``: the model serves completion but not chat, so the prompt is continued as it is (as with raw)."""
    for field in ("width", "height", "steps"):
        if getattr(body, field) is not None:
            raise BadRequestError(f"{field}: image generation is not served by heylook", param=field)
    if body.template:
        raise BadRequestError(
            "template: heylook renders prompts with the model's own chat template; send raw = true with a prompt "
            "you formatted yourself",
            param="template",
        )
    if body.context:
        raise BadRequestError(
            "context: heylook does not return or take token contexts; send the conversation to /api/chat",
            param="context",
        )
    data = _common(body, model)
    prompt = body.prompt or ""
    if body.raw or body.suffix is not None or plain:  # the plain prompt, continued by a completion model
        why = "with raw or suffix" if body.raw or body.suffix is not None else "by this model (completion, not chat)"
        for field in ("images", "system", "think"):
            if getattr(body, field):
                raise BadRequestError(
                    f"{field} needs a chat-templated prompt, which is not used {why}", param=field, code="unsupported"
                )
        data["prompt"] = prompt
        if body.suffix is not None:
            data["suffix"] = body.suffix
        if body.logprobs:
            data["logprobs"] = body.top_logprobs or 0
        return _validated(CompletionRequest, data)
    messages: list[dict[str, Any]] = []
    if body.system:
        messages.append({"role": "system", "content": body.system})
    messages.append({"role": "user", "content": _user_content(prompt, body.images, "request")})
    data["messages"] = messages
    think = _think(body.think)
    if think is not None:
        data["enable_thinking"] = think
    if body.logprobs:
        data["logprobs"] = True
        if body.top_logprobs:
            data["top_logprobs"] = body.top_logprobs
    return _validated(ChatRequest, data)


# -- answers -----------------------------------------------------------------------------------------------------


def _logprobs(items: list[TokenLogprob] | None) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        entry: dict[str, Any] = {"token": item.token, "logprob": item.logprob}
        if item.bytes is not None:
            entry["bytes"] = item.bytes
        if item.top_logprobs:
            entry["top_logprobs"] = [{"token": top.token, "logprob": top.logprob} for top in item.top_logprobs]
        out.append(entry)
    return out


def _tool_calls(calls: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Joined tool-call fragments in Ollama's shape (arguments as an object); a call whose arguments are not a JSON
    object comes back as text."""
    out: list[dict[str, Any]] = []
    text = ""
    for index in sorted(calls):
        call = calls[index]
        raw = call["arguments"]
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            text += raw
            continue
        entry: dict[str, Any] = {"function": {"index": len(out), "name": call["name"], "arguments": arguments}}
        if call.get("id"):
            entry["id"] = call["id"]
        out.append(entry)
    return out, text


class Answer:
    """Turns the service's events into Ollama's objects, for ``/api/chat`` (chat) or ``/api/generate``; keeps the
    timings (nanoseconds) of the final object."""

    def __init__(self, model: str, *, chat: bool, started: float, load_ns: int) -> None:
        self.model = model
        self.chat = chat
        self.started = started
        self.load_ns = load_ns
        self.generation_start = time.perf_counter()
        self.first_at: float | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.finish = "stop"
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        # the per-token line, prebuilt around the timestamp and the JSON-escaped text
        self._head = ('{"model":' + _dumps(model) + ',"created_at":"').encode("utf-8")
        self._middle = '","message":{"role":"assistant","content":' if chat else '","response":'
        self._tail = '},"done":false}\n' if chat else ',"done":false}\n'
        self._stamp_at = 0.0
        self._stamp = ""

    def _now(self) -> str:
        """The time for ``created_at``, formatted at most once a millisecond."""
        now = time.time()
        if now - self._stamp_at >= 0.001:
            self._stamp_at, self._stamp = now, _timestamp(now)
        return self._stamp

    def line(self, delta: Delta) -> bytes | None:
        """The streamed line for one event (a text-only event is formatted without building a dict)."""
        if (
            delta.reasoning
            or delta.tool_calls
            or delta.logprobs
            or delta.finish_reason
            or delta.usage
            or not delta.text
        ):
            frame = self.feed(delta)
            return None if frame is None else _line(frame)
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.text.append(delta.text)
        return self._head + (self._now() + self._middle + _dumps(delta.text) + self._tail).encode("utf-8")

    def _frame(self, text: str, reasoning: str, logprobs: list[TokenLogprob] | None, done: bool) -> dict[str, Any]:
        frame: dict[str, Any] = {"model": self.model, "created_at": self._now()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if reasoning:
                message["thinking"] = reasoning
            frame["message"] = message
        else:
            frame["response"] = text
            if reasoning:
                frame["thinking"] = reasoning
        if logprobs:
            frame["logprobs"] = _logprobs(logprobs)
        frame["done"] = done
        return frame

    def feed(self, delta: Delta) -> dict[str, Any] | None:
        """The streamed object for one event, or ``None`` when it carries nothing to send yet."""
        if self.first_at is None and (delta.text or delta.reasoning or delta.tool_calls):
            self.first_at = time.perf_counter()
        for fragment in delta.tool_calls or []:
            call = self.calls.setdefault(fragment.get("index", 0), {"id": None, "name": "", "arguments": ""})
            call["id"] = fragment.get("id") or call["id"]
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
        if delta.finish_reason is not None:
            self.finish = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        if delta.text:
            self.text.append(delta.text)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        if not (delta.text or delta.reasoning or delta.logprobs):
            return None
        return self._frame(delta.text, delta.reasoning, delta.logprobs, False)

    def _final_fields(self) -> dict[str, Any]:
        end = time.perf_counter()
        first = self.first_at if self.first_at is not None else end
        return {
            "done_reason": DONE_REASONS.get(self.finish, self.finish),
            "total_duration": int((end - self.started) * 1e9),
            "load_duration": self.load_ns,
            "prompt_eval_count": self.usage.prompt_tokens,
            "prompt_eval_duration": int((first - self.generation_start) * 1e9),
            "eval_count": self.usage.completion_tokens,
            "eval_duration": int((end - first) * 1e9),
        }

    def tool_frame(self) -> dict[str, Any] | None:
        """The tool calls, whole, as one streamed object before the last (Ollama never streams their pieces)."""
        if not self.calls:
            return None
        calls, text = _tool_calls(self.calls)
        frame = self._frame(text, "", None, False)
        if calls and self.chat:
            frame["message"]["tool_calls"] = calls
        elif calls:
            frame["response"] += "".join(json.dumps(call["function"]) for call in calls)
        return frame

    def last(self) -> dict[str, Any]:
        """The streamed answer's last object: no text, ``done: true``, the counts and the durations."""
        frame = self._frame("", "", None, True)
        frame.update(self._final_fields())
        return frame

    def whole(self) -> dict[str, Any]:
        """The non-streamed answer: everything joined, with the final fields."""
        text = "".join(self.text)
        calls, call_text = _tool_calls(self.calls)
        frame = self._frame(text + call_text, "".join(self.reasoning), self.logprobs or None, True)
        if calls:
            if self.chat:
                frame["message"]["tool_calls"] = calls
            else:
                frame["response"] += "".join(json.dumps(call["function"]) for call in calls)
        frame.update(self._final_fields())
        return frame


def _line(frame: dict[str, Any]) -> bytes:
    return _dumps(frame).encode("utf-8") + b"\n"


# -- generation --------------------------------------------------------------------------------------------------


async def _load(server: Server, slot: ModelSlot) -> int:
    """Load the model now when it is not (so that ``load_duration`` is measured); nanoseconds spent."""
    if slot.state == "loaded":
        return 0
    started = time.perf_counter()
    await server.router.ensure_loaded(slot.id)
    return int((time.perf_counter() - started) * 1e9)


async def _only_load(server: Server, slot: ModelSlot, name: str, keep: float | None, *, chat: bool) -> Response:
    """An empty prompt: load the model (Ollama's way to warm it), or with ``keep_alive`` 0 unload it."""
    if keep == 0:
        await server.router.unload_idle(slot)
        reason = "unload"
    else:
        await _load(server, slot)
        _apply_keep_alive(server, slot, keep)
        reason = "load"
    frame: dict[str, Any] = {"model": name, "created_at": _now()}
    if chat:
        frame["message"] = {"role": "assistant", "content": ""}
    else:
        frame["response"] = ""
    frame.update({"done": True, "done_reason": reason})
    return JSONResponse(frame)


async def _generate(
    http: Request,
    server: Server,
    slot: ModelSlot,
    request: ChatRequest | CompletionRequest,
    body: _Generating,
    started: float,
    *,
    chat: bool,
) -> Response:
    service = service_of(http)
    keep = keep_alive_seconds(body.keep_alive)
    await _check_num_ctx(server, slot, body.options)
    prepared: Prepared = await service.prepare(request, protocol="ollama", route=http.url.path, slot=slot)
    load_ns = await _load(server, slot)
    _apply_keep_alive(server, slot, keep)
    answer = Answer(body.model, chat=chat, started=started, load_ns=load_ns)
    request_id = request_id_of(http)
    cancel = CancelToken()
    if not body.stream:
        try:
            async for delta in service.generate(prepared, cancel, request_id=request_id, headers=http.headers):
                answer.feed(delta)
        finally:
            cancel.cancel()
            await _after_request(server, slot, keep)
        return JSONResponse(answer.whole())

    try:
        stream = await service.primed(service.generate(prepared, cancel, request_id=request_id, headers=http.headers))
    except BaseException:
        cancel.cancel()
        await _after_request(server, slot, keep)
        raise

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for item in stream:
                if is_ping(item):
                    continue
                line = answer.line(item)
                if line is not None:
                    yield line
            tools = answer.tool_frame()
            if tools is not None:
                yield _line(tools)
            yield _line(answer.last())
        except Exception as error:
            yield _line({"error": stream_error(error).message})
        finally:
            cancel.cancel()
            await stream.close()
            await _after_request(server, slot, keep)

    return EventStreamResponse(lines(), media_type=NDJSON, headers=STREAM_HEADERS)


# -- routes ------------------------------------------------------------------------------------------------------


def _prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header ranks text/html above text/plain (a browser, not a client probing)."""
    weights: dict[str, float] = {}
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if kind:
            weights[kind.lower()] = max(q, weights.get(kind.lower(), 0.0))

    def weight(kind: str) -> float:
        major = kind.split("/")[0]
        for key in (kind, f"{major}/*", "*/*"):
            if key in weights:
                return weights[key]
        return 0.0

    return weight("text/html") > weight("text/plain")


def has_route(app: Any, path: str) -> bool:
    """Whether some route of ``app`` answers ``GET path``, one of an included router too (FastAPI may keep those
    nested, so ``app.routes`` does not list their paths): a plugin's ``register_routes`` page counts."""
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(http: Request) -> Response:
    """Ollama's liveness answer, which clients probe; a browser is sent to the web page when one is installed."""
    if _prefers_html(http.headers.get("accept", "")) and has_route(http.app, "/ui"):
        return RedirectResponse("/ui", status_code=307)
    return PlainTextResponse("Ollama is running")


@router.get("/api/version")
async def version() -> dict[str, str]:
    from heylook_core import __version__

    return {"version": OLLAMA_VERSION, "heylook": __version__}


@router.get("/api/tags", dependencies=[_auth])
async def tags(http: Request) -> dict[str, Any]:
    server: Server = http.app.state.heylook
    return {"models": [model_entry(server, slot) for slot in server.router.slots.values()]}


@router.get("/api/ps", dependencies=[_auth])
async def ps(http: Request) -> dict[str, Any]:
    server: Server = http.app.state.heylook
    router_ = server.router
    now_wall, now = time.time(), router_.clock()
    models = []
    for slot in router_.slots.values():
        if slot.state != "loaded":
            continue
        item = model_entry(server, slot)
        ttl = slot.ttl
        if ttl is None or math.isinf(ttl) or slot.model.entry.pinned:
            expires = now_wall + FOREVER.total_seconds()
        else:
            idle_since = now_wall if slot.in_flight else now_wall - (now - slot.last_used)
            expires = idle_since + ttl
        item["expires_at"] = _timestamp(expires)
        item["size_vram"] = 0
        length = context_length(slot)
        if length is not None:
            item["context_length"] = length
        models.append(item)
    return {"models": models}


@router.post("/api/show", dependencies=[_auth])
async def show(http: Request) -> dict[str, Any]:
    body: OllamaShowRequest = await _body(http, OllamaShowRequest)
    name = body.model or body.name
    if not name:
        raise BadRequestError("model: field required", param="model")
    server: Server = http.app.state.heylook
    slot = resolve(server, name)
    facts = _facts(slot)
    entry = model_entry(server, slot)
    family = entry["details"]["family"]
    info: dict[str, Any] = {"general.architecture": family or "heylook"}
    length = context_length(slot, facts)
    if length is not None:
        info[f"{family or 'heylook'}.context_length"] = length
    template = facts.get("chat_template") or facts.get("template") or ""
    defaults = slot.model.entry.defaults.values()
    parameters = "\n".join(f"{key} {value}" for key, value in defaults.items())
    return {
        "license": "",
        "modelfile": "",
        "parameters": parameters,
        "template": str(template),
        "details": entry["details"],
        "model_info": info,
        "capabilities": capabilities(slot),
        "modified_at": entry["modified_at"],
    }


@router.post("/api/chat", dependencies=[_auth])
async def chat(http: Request) -> Response:
    started = time.perf_counter()
    body: OllamaChatRequest = await _body(http, OllamaChatRequest)
    server: Server = http.app.state.heylook
    slot = resolve(server, body.model)
    if not body.messages:
        _options(body.options)  # refuse what would be refused with messages too
        return await _only_load(server, slot, body.model, keep_alive_seconds(body.keep_alive), chat=True)
    request = chat_request(body, _known_name(server, body.model, slot))
    return await _generate(http, server, slot, request, body, started, chat=True)


@router.post("/api/generate", dependencies=[_auth])
async def generate(http: Request) -> Response:
    started = time.perf_counter()
    body: OllamaGenerateRequest = await _body(http, OllamaGenerateRequest)
    server: Server = http.app.state.heylook
    slot = resolve(server, body.model)
    if not body.prompt and not body.images and body.suffix is None:
        generate_request(body.model_copy(update={"prompt": "-"}))  # refuse what would be refused with a prompt
        return await _only_load(server, slot, body.model, keep_alive_seconds(body.keep_alive), chat=False)
    capabilities = slot.model.capabilities
    plain = Capability.CHAT not in capabilities and Capability.COMPLETION in capabilities
    request = generate_request(body, _known_name(server, body.model, slot), plain=plain)
    return await _generate(http, server, slot, request, body, started, chat=False)


async def _embed(
    server: Server, slot: ModelSlot, inputs: list[str], dimensions: int | None, options: dict[str, Any] | None
) -> tuple[list[list[float]], int]:
    model = slot.model
    if Capability.EMBEDDINGS not in model.capabilities:
        raise UnsupportedError(
            model.id,
            "embeddings",
            param="model",
            hint=f"its capabilities: {', '.join(sorted(c.value for c in model.capabilities))}",
        )
    _options(options, generating=False)
    if dimensions is not None and Parameter.DIMENSIONS not in model.parameters:
        raise UnsupportedError(model.id, "the parameter 'dimensions'", param="dimensions")
    if not inputs:
        return [], 0
    request = EmbeddingRequest(model=slot.id, input=inputs, dimensions=dimensions)
    async with server.router.acquire(slot) as provider:
        result = await provider.embed(request, inputs)
    return [[float(v) for v in vector] for vector in result.vectors], result.prompt_tokens


@router.post("/api/embed", dependencies=[_auth])
async def embed(http: Request) -> Response:
    started = time.perf_counter()
    body: OllamaEmbedRequest = await _body(http, OllamaEmbedRequest)
    server: Server = http.app.state.heylook
    slot = resolve(server, body.model)
    keep = keep_alive_seconds(body.keep_alive)
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    if all(not text for text in inputs):
        inputs = []  # nothing to embed: Ollama's way to load the model
    elif any(not text for text in inputs):
        raise BadRequestError("input: empty strings cannot be embedded", param="input")
    load_ns = await _load(server, slot)
    _apply_keep_alive(server, slot, keep)
    try:
        vectors, tokens = await _embed(server, slot, inputs, body.dimensions, body.options)
    finally:
        await _after_request(server, slot, keep)
    return JSONResponse(
        {
            "model": body.model,
            "embeddings": vectors,
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": load_ns,
            "prompt_eval_count": tokens,
        }
    )


@router.post("/api/embeddings", dependencies=[_auth])
async def embeddings(http: Request) -> Response:
    body: OllamaEmbeddingsRequest = await _body(http, OllamaEmbeddingsRequest)
    server: Server = http.app.state.heylook
    slot = resolve(server, body.model)
    keep = keep_alive_seconds(body.keep_alive)
    await _load(server, slot)
    _apply_keep_alive(server, slot, keep)
    try:
        vectors, _ = await _embed(server, slot, [body.prompt] if body.prompt else [], None, body.options)
    finally:
        await _after_request(server, slot, keep)
    return JSONResponse({"embedding": vectors[0] if vectors else []})


_MANAGED = (
    "heylook serves the models configured in models.toml (or offered by its plugins); it does not {what} models. "
    "Add a [[models]] entry to models.toml and reload (POST /v1/admin/reload) or restart; 'heylookllm models' lists "
    "what is configured."
)


def _managed(what: str) -> Callable[[], Awaitable[Response]]:
    async def refuse() -> Response:
        return JSONResponse({"error": _MANAGED.format(what=what)}, status_code=400)

    return refuse


for _path, _methods, _what in (
    ("/api/pull", ["POST"], "pull"),
    ("/api/push", ["POST"], "push"),
    ("/api/create", ["POST"], "create"),
    ("/api/copy", ["POST"], "copy"),
    ("/api/delete", ["DELETE", "POST"], "delete"),
    ("/api/blobs/{digest}", ["HEAD", "POST"], "upload blobs for"),
):
    router.add_api_route(_path, _managed(_what), methods=_methods, include_in_schema=False)


# HEAD as well as GET, as Ollama answers them (kept out of the schema: one operation per route there)
router.add_api_route("/api/version", version, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/api/tags", tags, methods=["HEAD"], dependencies=[_auth], include_in_schema=False)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _not_allowed(allowed: list[str]) -> Callable[[], Awaitable[Response]]:
    async def refuse() -> Response:
        return JSONResponse({"error": "405 method not allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)})

    return refuse


def _answer_other_methods() -> None:
    """Other methods on these paths get 405 in Ollama's shape (the app's own 405 has OpenAI's)."""
    served: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute):
            served.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in served.items():
        others = [method for method in _METHODS if method not in methods]
        router.add_api_route(path, _not_allowed(sorted(methods)), methods=others, include_in_schema=False)


_answer_other_methods()


__all__ = ["OLLAMA_VERSION", "capabilities", "keep_alive_seconds", "resolve", "router", "tagged"]
