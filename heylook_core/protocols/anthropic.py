"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) on the generation service.

A Messages request (``system``, ``messages`` of content blocks, ``tools``, ``tool_choice``, ``thinking``, ...) becomes
one internal chat request; the service's events become content blocks (``thinking``, ``text``, ``tool_use``) and, when
streamed, Anthropic's event sequence (``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta``, ``message_stop``, ``ping``, ``error``) that the ``anthropic`` SDK accumulates. Non-streamed and
streamed answers are built by the same :class:`MessageBuilder`, so both give the same final message.

Fields that do not change the output (``metadata``, ``cache_control``, ``service_tier``, the ``anthropic-version`` and
``anthropic-beta`` headers) are accepted; those that change it are honoured or refused with a 400 that names them;
unknown top-level fields are a 400. Errors on these routes, authentication and validation errors included, have
Anthropic's shape ``{"type": "error", "error": {"type", "message"}}`` and Anthropic's statuses (a full queue is a 529
``overloaded_error``, as Anthropic's API and its clients use it). docs/api.md has the whole mapping.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heylook_core.errors import (
    BadRequestError,
    HeylookError,
    ModelLoadError,
    ModelNotFoundError,
    ServiceUnavailableError,
    UnsupportedError,
)
from heylook_core.parameters import Parameter, ParameterGroup
from heylook_core.protocols.openai import STREAM_HEADERS, request_id_of, service_of, stream_error
from heylook_core.providers import Capability
from heylook_core.runner import CancelToken
from heylook_core.security import require_api_key
from heylook_core.streaming import EventStreamResponse, is_ping
from heylook_core.types import MAX_MODEL_NAME, ChatRequest, Delta, Usage

if TYPE_CHECKING:
    from heylook_core.router import ModelSlot
    from heylook_core.server import Server

logger = logging.getLogger(__name__)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# The ``signature`` of a thinking block: Anthropic's is an encrypted digest of the thinking; heylook's is an opaque
# marker that only says where the block came from. Signatures sent back in a conversation's history are ignored.
THINKING_SIGNATURE = "heylook"
# What a tool result with ``is_error: true`` starts with in the tool message the model reads.
TOOL_ERROR_PREFIX = "Error: "
# The sampling fields of a Messages request (Anthropic's and heylook's extensions: min_p, the penalties, seed) that
# go on to the internal request as they are, checked against the model like any parameter.
SAMPLING = tuple(sorted(parameter.value for parameter in ParameterGroup.SAMPLING - {Parameter.LOGIT_BIAS}))
# Anthropic error types by HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
OVERLOADED = 529


# -- errors -----------------------------------------------------------------------------------------------------------


def anthropic_status(error: HeylookError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type for a heylook error."""
    if isinstance(error, ServiceUnavailableError):
        if isinstance(error, ModelLoadError) or error.code == "model_unavailable":
            return 500, "api_error"
        return OVERLOADED, "overloaded_error"  # a full queue: what Anthropic's clients back off and retry on
    status = error.status_code
    if status in ERROR_TYPES:
        return status, ERROR_TYPES[status]
    if 400 <= status < 500:
        return status, "invalid_request_error"
    return 500, "api_error"


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_response(error: HeylookError, request_id: str | None = None) -> JSONResponse:
    status, kind = anthropic_status(error)
    headers = dict(error.headers)
    if request_id:
        headers["request-id"] = request_id
    return JSONResponse(error_body(kind, error.message), status_code=status, headers=headers)


def _validation_error(error: ValidationError | RequestValidationError, prefix: str = "") -> BadRequestError:
    errors = error.errors()
    if not errors:
        return BadRequestError("invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return BadRequestError(f"request body is not valid JSON: {first.get('msg', '')}")
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    loc = [part for part in loc if not any(mark in part for mark in ("[", "function-", "literal["))]
    where = prefix + ".".join(loc)
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        message = "Field required"
    elif first.get("type") == "extra_forbidden":
        message = "Extra inputs are not permitted (not a field of this request)"
    return BadRequestError(f"{where}: {message}" if where else message, param=where or None)


class AnthropicRoute(APIRoute):
    """A route whose every error (authentication and validation included) answers in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except HeylookError as error:
                return error_response(error, request_id_of(request))
            except RequestValidationError as error:
                return error_response(_validation_error(error), request_id_of(request))
            except Exception as error:
                logger.exception("unexpected error on %s", request.url.path)
                failure = HeylookError(f"internal error: {type(error).__name__}")
                return error_response(failure, request_id_of(request))

        return route


router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], route_class=AnthropicRoute)


# -- the request ------------------------------------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class ThinkingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)
    display: Literal["summarized", "omitted"] | None = None


class CountTokensRequest(BaseModel):
    """``POST /v1/messages/count_tokens``: a Messages request without what only generation uses."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: ThinkingConfig | None = None
    cache_control: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    speed: Literal["standard", "fast"] | None = None
    mcp_servers: list[Any] | None = None
    context_management: Any = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    diagnostics: Any = None
    container: Any = None
    # heylook's extensions (not in Anthropic's API)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None


def _refuse(what: str, param: str, hint: str = "") -> BadRequestError:
    message = f"{what} is not supported by heylook's Messages API"
    return BadRequestError(message + (f"; {hint}" if hint else ""), param=param, code="unsupported")


def _text_of(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequestError(f"{where}.text: a text block needs 'text' (a string)", param=f"{where}.text")
    return text


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequestError(f"{where}.source: an image block needs a 'source'", param=f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise BadRequestError(
                f"{where}.source: a base64 source needs 'media_type' and 'data'", param=f"{where}.source"
            )
        return f"data:{media};base64,{data}"
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str):
            raise BadRequestError(f"{where}.source.url: a url source needs 'url'", param=f"{where}.source.url")
        return url  # the core's image policy decides whether a remote URL is fetched
    raise _refuse(f"the image source type '{kind}'", f"{where}.source.type", "send a base64 or url source")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequestError(f"{where}: a string or a list of content blocks", param=where)
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequestError(f"{where}[{index}]: a content block needs a 'type'", param=f"{where}[{index}].type")
    return content


def _tool_result_text(block: dict[str, Any], where: str) -> str:
    content = block.get("content", "")
    if content is None:
        content = ""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        pieces = []
        for index, part in enumerate(content):
            at = f"{where}.content[{index}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                pieces.append(_text_of(part, at))
            else:
                raise _refuse(f"a '{kind}' block in a tool_result", f"{at}.type", "tool results hold text blocks")
        text = "\n".join(pieces)
    else:
        raise BadRequestError(f"{where}.content: a string or a list of text blocks", param=f"{where}.content")
    if block.get("is_error"):
        text = TOOL_ERROR_PREFIX + text
    return text


def _messages(body: CountTokensRequest) -> list[dict[str, Any]]:
    """The request's system prompt and messages as chat-completions messages."""
    messages: list[dict[str, Any]] = []
    if body.system is not None:
        if isinstance(body.system, str):
            system = body.system
        else:
            parts = []
            for index, block in enumerate(body.system):
                at = f"system[{index}]"
                if block.get("type") != "text":
                    raise _refuse(f"a '{block.get('type')}' block in system", f"{at}.type", "system takes text blocks")
                parts.append(_text_of(block, at))
            system = "\n\n".join(parts)
        if system:
            messages.append({"role": "system", "content": system})
    for position, message in enumerate(body.messages):
        where = f"messages[{position}]"
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise BadRequestError(f"{where}.role: 'user' or 'assistant'", param=f"{where}.role")
        unknown = set(message) - {"role", "content"}
        if unknown:
            name = sorted(unknown)[0]
            raise BadRequestError(f"{where}.{name}: Extra inputs are not permitted", param=f"{where}.{name}")
        if "content" not in message:
            raise BadRequestError(f"{where}.content: Field required", param=f"{where}.content")
        blocks = _blocks(message["content"], f"{where}.content")
        if role == "user":
            messages += _user_turn(blocks, f"{where}.content")
        else:
            messages.append(_assistant_turn(blocks, f"{where}.content"))
    if not any(m["role"] != "system" for m in messages):
        raise BadRequestError("messages: at least one message is required", param="messages")
    return messages


def _user_turn(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results become tool messages (first), its text and images one user message."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}[{index}]"
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequestError(f"{at}.tool_use_id: a tool_result needs 'tool_use_id'", param=f"{at}.tool_use_id")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block, at)})
        elif kind in ("thinking", "redacted_thinking", "tool_use"):
            raise BadRequestError(f"{at}.type: a '{kind}' block belongs in an assistant message", param=f"{at}.type")
        else:
            raise _refuse(f"the content block type '{kind}'", f"{at}.type", "send text, image or tool_result blocks")
    if parts:
        if all(part["type"] == "text" for part in parts):
            out.append({"role": "user", "content": "".join(part["text"] for part in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}[{index}]"
        kind = block["type"]
        if kind == "text":
            text.append(_text_of(block, at))
        elif kind == "thinking":
            thinking = block.get("thinking")
            if not isinstance(thinking, str):
                raise BadRequestError(f"{at}.thinking: a thinking block needs 'thinking'", param=f"{at}.thinking")
            reasoning.append(thinking)
        elif kind == "redacted_thinking":
            pass  # encrypted by another server; nothing a local model can read
        elif kind == "tool_use":
            for key in ("id", "name"):
                if not isinstance(block.get(key), str) or not block[key]:
                    raise BadRequestError(f"{at}.{key}: a tool_use block needs '{key}'", param=f"{at}.{key}")
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise BadRequestError(f"{at}.input: an object", param=f"{at}.input")
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": _dumps(arguments)},
                }
            )
        elif kind == "image":
            raise BadRequestError(f"{at}.type: only user messages may hold images", param=f"{at}.type")
        else:
            raise _refuse(f"the content block type '{kind}'", f"{at}.type")
    if text:
        message["content"] = "".join(text)
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(body: CountTokensRequest) -> tuple[list[dict[str, Any]] | None, Any, bool | None]:
    """Custom tools, ``tool_choice`` and ``parallel_tool_calls`` in chat-completions form."""
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(body.tools or []):
        at = f"tools[{index}]"
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _refuse(f"the server tool '{kind}'", f"{at}.type", "heylook serves custom tools (name, input_schema)")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequestError(f"{at}.name: a tool needs a name", param=f"{at}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise BadRequestError(f"{at}.input_schema: a tool needs an input_schema object", param=f"{at}.input_schema")
        for key in ("input_examples", "allowed_callers"):
            if tool.get(key):
                raise _refuse(f"the tool field '{key}'", f"{at}.{key}")
        if tool.get("defer_loading"):
            raise _refuse("the tool field 'defer_loading'", f"{at}.defer_loading")
        known = {"type", "name", "description", "input_schema", "cache_control", "strict", "eager_input_streaming"}
        known |= {"input_examples", "allowed_callers", "defer_loading"}
        unknown = sorted(set(tool) - known)
        if unknown:
            raise BadRequestError(f"{at}.{unknown[0]}: Extra inputs are not permitted", param=f"{at}.{unknown[0]}")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        tools.append({"type": "function", "function": function})
    choice: Any = None
    parallel: bool | None = None
    spec = body.tool_choice
    if spec is not None:
        kind = spec.get("type")
        unknown = sorted(set(spec) - {"type", "name", "disable_parallel_tool_use"})
        if unknown:
            raise BadRequestError(f"tool_choice.{unknown[0]}: Extra inputs are not permitted", param="tool_choice")
        if kind == "auto":
            choice = "auto"
        elif kind == "any":
            choice = "required"
        elif kind == "none":
            choice = "none"
        elif kind == "tool":
            name = spec.get("name")
            if name not in {t["function"]["name"] for t in tools}:
                raise BadRequestError(
                    f"tool_choice.name: '{str(name)[:64]}' is not one of the tools", param="tool_choice.name"
                )
            choice = {"type": "function", "function": {"name": name}}
        else:
            raise BadRequestError("tool_choice.type: 'auto', 'any', 'tool' or 'none'", param="tool_choice.type")
        if spec.get("disable_parallel_tool_use"):
            parallel = False
        if not tools:
            if choice in ("auto", "none"):
                choice, parallel = None, None
            else:
                raise BadRequestError("tool_choice needs tools", param="tool_choice")
    return (tools or None), choice, parallel


def _check_unsupported(body: CountTokensRequest) -> None:
    if body.mcp_servers:
        raise _refuse("mcp_servers", "mcp_servers", "give the tools as custom tools")
    if body.context_management is not None:
        raise _refuse("context_management", "context_management")
    if isinstance(body, MessagesRequest) and body.container is not None:
        raise _refuse("container", "container")
    config = body.output_config or {}
    unknown = sorted(set(config) - {"effort", "format"})
    if unknown:
        raise BadRequestError(f"output_config.{unknown[0]}: Extra inputs are not permitted", param="output_config")
    if config.get("effort") is not None:
        raise _refuse("output_config.effort", "output_config.effort", "use thinking to turn reasoning on or off")


def _response_format(body: CountTokensRequest) -> dict[str, Any] | None:
    spec = (body.output_config or {}).get("format")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
        raise BadRequestError(
            "output_config.format: {'type': 'json_schema', 'schema': {...}}", param="output_config.format"
        )
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": spec["schema"]}}


def to_chat_request(body: CountTokensRequest, model: str) -> ChatRequest:
    """The internal chat request for a Messages request; ``model`` is the configured model it runs on."""
    _check_unsupported(body)
    messages = _messages(body)
    if messages[-1]["role"] == "assistant":
        raise _refuse(
            "a final assistant message (prefill)",
            f"messages[{len(body.messages) - 1}]",
            "end the conversation with a user message",
        )
    data: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body, MessagesRequest):
        data["stream"] = body.stream
        data["max_tokens"] = body.max_tokens
        for name in SAMPLING:
            if getattr(body, name) is not None:
                data[name] = getattr(body, name)
        if body.stop_sequences:
            data["stop"] = body.stop_sequences
    tools, choice, parallel = _tools(body)
    if tools:
        data["tools"] = tools
    if choice is not None:
        data["tool_choice"] = choice
    if parallel is not None:
        data["parallel_tool_calls"] = parallel
    response_format = _response_format(body)
    if response_format is not None:
        data["response_format"] = response_format
    thinking = body.thinking
    if thinking is not None:
        if thinking.type == "enabled":
            if thinking.budget_tokens is None:
                raise BadRequestError("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
            if isinstance(body, MessagesRequest) and thinking.budget_tokens >= body.max_tokens:
                raise BadRequestError(
                    "thinking.budget_tokens must be less than max_tokens", param="thinking.budget_tokens"
                )
            data["enable_thinking"] = True
        elif thinking.type == "disabled":
            data["enable_thinking"] = False
        # "adaptive": the model decides; heylook leaves the model's own default in place
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error) from None


# -- the answer -----------------------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class MessageBuilder:
    """Builds the message from the service's events, and, when streaming, Anthropic's event frames on the way."""

    def __init__(self, model: str, *, stream: bool, show_thinking: bool = True) -> None:
        self.stream = stream
        self.show_thinking = show_thinking
        self.message: dict[str, Any] = {
            "id": _new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        self.content: list[dict[str, Any]] = self.message["content"]
        self.current: dict[str, Any] | None = None
        self.arguments: dict[int, str] = {}  # a tool_use block's arguments JSON, by block index
        self.calls: dict[int, int] = {}  # tool-call fragment index -> block index
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self._pieces: list[str] = []  # the open text or thinking block's text, joined when it closes
        self._prefix = b""  # that block's delta frame up to its text (streaming only)

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        if not self.stream:
            return b""
        return f"event: {kind}\ndata: {_dumps({'type': kind, **data})}\n\n".encode()

    def start(self) -> bytes:
        return self._event("message_start", {"message": json.loads(_dumps(self.message))})

    @staticmethod
    def ping() -> bytes:
        return b'event: ping\ndata: {"type":"ping"}\n\n'

    def _close(self) -> bytes:
        block, self.current = self.current, None
        if block is None:
            return b""
        index = self.content.index(block)
        out = b""
        if block["type"] in ("text", "thinking"):
            block[block["type"]] = "".join(self._pieces)
            self._pieces = []
        if block["type"] == "thinking":
            block["signature"] = THINKING_SIGNATURE
            out += self._event(
                "content_block_delta",
                {"index": index, "delta": {"type": "signature_delta", "signature": THINKING_SIGNATURE}},
            )
        elif block["type"] == "tool_use":
            block["input"] = _tool_input(block["name"], self.arguments.get(index, ""))
        return out + self._event("content_block_stop", {"index": index})

    def _open(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.content.append(block)
        self.current = block
        index = len(self.content) - 1
        kind = block["type"]
        if self.stream and kind in ("text", "thinking"):
            head = {"type": "content_block_delta", "index": index, "delta": {"type": f"{kind}_delta", kind: ""}}
            self._prefix = ("event: content_block_delta\ndata: " + _dumps(head)[: -len('""}}')]).encode()
        return out + self._event("content_block_start", {"index": index, "content_block": dict(block)})

    def _piece(self, text: str) -> bytes:
        self._pieces.append(text)
        return self._prefix + _dumps(text).encode() + b"}}\n\n" if self.stream else b""

    def feed(self, delta: Delta) -> bytes:
        current = self.current
        if (
            delta.text
            and current is not None
            and current["type"] == "text"
            and not (delta.reasoning or delta.tool_calls or delta.finish_reason or delta.usage)
        ):  # the per-token path: one text piece, its frame from a prebuilt prefix
            return self._piece(delta.text)
        out = b""
        if delta.reasoning:
            if self.current is None or self.current["type"] != "thinking":
                out += self._open({"type": "thinking", "thinking": "", "signature": ""})
            if self.show_thinking:
                out += self._piece(delta.reasoning)
        if delta.text:
            if self.current is None or self.current["type"] != "text":
                out += self._open({"type": "text", "text": ""})
            out += self._piece(delta.text)
        for fragment in delta.tool_calls or []:
            out += self._tool_fragment(fragment)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.stop_sequence = delta.stop_sequence
        if delta.usage is not None:
            self.usage = delta.usage
        return out

    def _tool_fragment(self, fragment: dict[str, Any]) -> bytes:
        out = b""
        position = int(fragment.get("index", 0))
        function = fragment.get("function") or {}
        index = self.calls.get(position)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": _new_id("toolu"),
                "name": function.get("name") or "",
                "input": {},
            }
            out += self._open(block)
            index = len(self.content) - 1
            self.calls[position] = index
            self.arguments[index] = ""
        elif self.content[index] is not self.current:
            raise HeylookError("the model interleaved two tool calls; heylook streams one call at a time")
        elif function.get("name"):
            self.content[index]["name"] += function["name"]
        pieces = function.get("arguments") or ""
        if pieces:
            self.arguments[index] += pieces
            out += self._event(
                "content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": pieces}}
            )
        return out

    def finish(self) -> bytes:
        out = self._close()
        reason = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        stop_sequence = None
        if self.calls:
            reason = "tool_use"
        elif self.finish_reason == "stop" and self.stop_sequence:
            reason, stop_sequence = "stop_sequence", self.stop_sequence
        usage = self.usage or Usage()
        cached = usage.cached_tokens or 0
        self.message["stop_reason"] = reason
        self.message["stop_sequence"] = stop_sequence
        self.message["usage"] = {
            "input_tokens": max(0, usage.prompt_tokens - cached),
            "output_tokens": usage.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        }
        out += self._event(
            "message_delta",
            {"delta": {"stop_reason": reason, "stop_sequence": stop_sequence}, "usage": dict(self.message["usage"])},
        )
        return out + self._event("message_stop", {})

    def fail(self, error: HeylookError) -> bytes:
        _, kind = anthropic_status(error)
        return f"event: error\ndata: {_dumps(error_body(kind, error.message))}\n\n".encode()


def _tool_input(name: str, arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the ``input`` object; arguments that are not a JSON object fail the request."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise HeylookError(
            f"the model's arguments for the tool '{name[:64]}' are not a JSON object: {arguments[:200]!r}",
            code="invalid_tool_arguments",
        )
    return value


# -- routes -----------------------------------------------------------------------------------------------------------


async def _body(http: Request, kind: type[CountTokensRequest]) -> Any:
    raw = await http.body()
    try:
        return kind.model_validate_json(raw or b"{}")
    except ValidationError as error:
        raise _validation_error(error) from None


def resolve_model(server: Server, name: str) -> ModelSlot:
    """The model a Messages request names; an unknown name goes to ``[server] anthropic_default_model`` if set."""
    try:
        return server.router.resolve(name)
    except ModelNotFoundError:
        fallback = getattr(server.settings.server, "anthropic_default_model", None)
        if not fallback:
            raise
        try:
            return server.router.resolve(fallback)
        except ModelNotFoundError:
            raise ModelNotFoundError(fallback, list(server.router.slots)) from None


@router.post("/messages")
async def create_message(http: Request) -> Response:
    server: Server = http.app.state.heylook
    body: MessagesRequest = await _body(http, MessagesRequest)
    slot = resolve_model(server, body.model)
    request = to_chat_request(body, slot.id)
    service = service_of(http)
    prepared = await service.prepare(request, protocol="anthropic", route=http.url.path, slot=slot)
    show = body.thinking is None or body.thinking.display != "omitted"
    builder = MessageBuilder(body.model, stream=body.stream, show_thinking=show)
    request_id = request_id_of(http)
    headers = {"request-id": request_id}
    if not body.stream:
        cancel = CancelToken()
        try:
            async for delta in service.generate(prepared, cancel, request_id=request_id, headers=http.headers):
                builder.feed(delta)
        finally:
            cancel.cancel()
        builder.finish()
        return JSONResponse(builder.message, headers=headers)

    cancel = CancelToken()
    stream = await service.primed(service.generate(prepared, cancel, request_id=request_id, headers=http.headers))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield builder.start()
            async for item in stream:
                yield builder.ping() if is_ping(item) else builder.feed(item)
            yield builder.finish()
        except Exception as error:
            yield builder.fail(stream_error(error))
        finally:
            cancel.cancel()
            await stream.close()

    return EventStreamResponse(events(), media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})


def render_prompt(request: ChatRequest) -> str:
    """The conversation as plain text, for counting: each message as ``role: text``, tools and calls as JSON."""
    lines: list[str] = []
    for tool in request.tools or []:
        lines.append("tool: " + _dumps(tool.function.model_dump(exclude_none=True)))
    for message in request.messages:
        if message.reasoning_content:
            lines.append(f"{message.role} (thinking): {message.reasoning_content}")
        text = message.text()
        if text or not message.tool_calls:
            lines.append(f"{message.role}: {text}")
        for call in message.tool_calls or []:
            lines.append(f"{message.role} (tool call): {call.function.name} {call.function.arguments}")
    return "\n".join(lines)


@router.post("/messages/count_tokens")
async def count_tokens(http: Request) -> Response:
    server: Server = http.app.state.heylook
    body: CountTokensRequest = await _body(http, CountTokensRequest)
    slot = resolve_model(server, body.model)
    request = to_chat_request(body, slot.id)
    if Capability.TOKENIZE not in slot.model.capabilities:
        raise UnsupportedError(slot.id, "counting tokens (it has no tokenizer heylook can reach)", param="model")
    async with server.router.acquire(slot) as provider:
        tokens = await provider.tokenize(render_prompt(request), True)
    return JSONResponse({"input_tokens": len(tokens)}, headers={"request-id": request_id_of(http)})
