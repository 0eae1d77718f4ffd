"""The OpenAI Responses API (``/v1/responses``) on the generation service.

A request's ``input`` (a string or a list of items), ``instructions`` and, with ``previous_response_id``, the stored
conversation before it become one internal chat request; the service's events become output items (``reasoning``,
``message`` with ``output_text`` parts, ``function_call``) and, when streamed, the typed event sequence with
``sequence_number`` that the ``openai`` SDK accumulates. Non-streamed and streamed answers are built by the same
:class:`ResponseBuilder`, so both give the same final object.

Parameters that do not change the output (``metadata``, ``user``, ``store``, ``service_tier``, ...) are accepted;
those that change it are honoured or refused with a 400 that names them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heylook_core.errors import BadRequestError, HeylookError, NotFoundError
from heylook_core.protocols.openai import STREAM_HEADERS, request_id_of, service_of, stream_error
from heylook_core.protocols.response_store import ResponseStore, StoredResponse, default_path
from heylook_core.runner import CancelToken
from heylook_core.security import require_api_key
from heylook_core.streaming import PING, EventStreamResponse, is_ping
from heylook_core.types import ChatRequest, Delta, TokenLogprob, Usage

if TYPE_CHECKING:
    from heylook_core.server import Server

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# ``reasoning.effort`` onto the model's thinking switch (``enable_thinking``).
THINKING_EFFORTS = {"low", "medium", "high", "xhigh"}
NO_THINKING_EFFORTS = {"none", "minimal"}
# ``include`` values: what each adds to the answer.
INCLUDES = {"message.output_text.logprobs", "reasoning.encrypted_content"}


# -- the request -------------------------------------------------------------------------------------------------


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``. Unknown top-level fields are checked against the model as backend parameters."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str | None = None
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    background: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    conversation: Any = None
    prompt: Any = None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _refuse(what: str, param: str, hint: str = "") -> BadRequestError:
    message = f"{what} is not supported by heylook's Responses API"
    return BadRequestError(message + (f"; {hint}" if hint else ""), param=param, code="unsupported")


def _input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's own input as a list of items, each with an id (as ``input_items`` lists them)."""
    raw = [{"type": "message", "role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    items = []
    for item in raw:
        item = dict(item)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind is None:
            raise BadRequestError("input items need a 'type' (or a 'role' for a message)", param="input")
        item["type"] = kind
        if kind == "message" and not item.get("id"):
            item["id"] = _new_id("msg")
        items.append(item)
    return items


def _part_text(part: dict[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise BadRequestError(f"{where}.text: a text part needs 'text'", param=f"{where}.text")
    return text


def _content_parts(content: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    """A message's content as chat-completions content (a string, or text and image parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequestError(f"{where}.content: a string or a list of parts", param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": _part_text(part, at)})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _refuse("an input_image without image_url (file ids)", f"{at}.image_url", "send a data URL")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("auto", "low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _refuse(f"the content part type '{kind}'", f"{at}.type", "send input_text or input_image parts")
    if role != "user" and any(p["type"] != "text" for p in parts):
        raise BadRequestError(f"{where}: only user messages may hold images", param=f"{where}.content")
    return parts


def _output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
    return json.dumps(value)


def _messages(items: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Responses items as chat messages: consecutive assistant-side items join one assistant message."""
    messages: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None

    def open_assistant() -> dict[str, Any]:
        nonlocal assistant
        if assistant is None:
            assistant = {"role": "assistant", "content": None}
            messages.append(assistant)
        return assistant

    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise BadRequestError(f"{at}.role: 'user', 'system', 'developer' or 'assistant'", param=f"{at}.role")
            content = _content_parts(item.get("content", ""), role, at)
            if role == "assistant":
                message = open_assistant()
                text = content if isinstance(content, str) else "".join(p["text"] for p in content)
                message["content"] = (message["content"] or "") + text
            else:
                assistant = None
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            for key in ("call_id", "name"):
                if not isinstance(item.get(key), str):
                    raise BadRequestError(f"{at}.{key}: a function_call item needs '{key}'", param=f"{at}.{key}")
            message = open_assistant()
            call = {"id": item["call_id"], "type": "function", "function": {"name": item["name"]}}
            call["function"]["arguments"] = str(item.get("arguments", ""))
            message.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise BadRequestError(f"{at}.call_id: a function_call_output needs 'call_id'", param=f"{at}.call_id")
            assistant = None
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item.get("output"))}
            )
        elif kind == "reasoning":
            message = open_assistant()
            text = _output_text(item.get("content") or []) or _output_text(item.get("summary") or [])
            if text:
                message["reasoning_content"] = (message.get("reasoning_content") or "") + text
        else:
            raise _refuse(f"the input item type '{kind}'", f"{at}.type")
    return messages


def _tools(body: ResponsesRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """Function tools and ``tool_choice`` in chat-completions form."""
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(body.tools or []):
        kind = tool.get("type")
        if kind != "function":
            raise _refuse(f"the tool type '{kind}'", f"tools[{index}].type", "heylook serves 'function' tools")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequestError(f"tools[{index}].name: a function tool needs a name", param=f"tools[{index}].name")
        function = {
            key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None
        }
        tools.append({"type": "function", "function": function})
    choice = body.tool_choice
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _refuse(f"tool_choice of type '{choice.get('type')}'", "tool_choice")
        name = choice.get("name")
        if name not in {t["function"]["name"] for t in tools}:
            raise BadRequestError(f"tool_choice names '{name}', which is not in tools", param="tool_choice.name")
        choice = {"type": "function", "function": {"name": name}}
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise BadRequestError("tool_choice: 'none', 'auto', 'required' or a function", param="tool_choice")
    if choice is not None and not tools:
        if choice in ("none", "auto"):
            choice = None
        else:
            raise BadRequestError("tool_choice needs tools", param="tool_choice")
    return (tools or None), choice


def to_chat_request(body: ResponsesRequest, context: list[dict[str, Any]], own: list[dict[str, Any]]) -> ChatRequest:
    """The internal chat request for a Responses request (after ``previous_response_id`` was resolved)."""
    if body.background:
        raise _refuse("background", "background")
    if body.conversation is not None:
        raise _refuse("conversation", "conversation", "use previous_response_id")
    if body.prompt is not None:
        raise _refuse("prompt templates", "prompt")
    if body.truncation == "auto":
        raise _refuse("truncation 'auto'", "truncation", "heylook answers a prompt that is too long with a 400")
    if body.max_tool_calls is not None:
        raise _refuse("max_tool_calls", "max_tool_calls")
    if body.text is not None and body.text.verbosity is not None:
        raise _refuse("text.verbosity", "text.verbosity")
    for index, name in enumerate(body.include or []):
        if name not in INCLUDES:
            raise _refuse(f"include '{name}'", f"include[{index}]")
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages += _messages(context, "previous_response_id")
    messages += _messages(own, "input")
    if not any(m["role"] != "system" for m in messages):
        raise BadRequestError("input must not be empty", param="input")
    data: dict[str, Any] = {"model": body.model, "messages": messages, "stream": body.stream}
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(body, name) is not None:
            data[name] = getattr(body, name)
    if body.max_output_tokens is not None:
        data["max_tokens"] = body.max_output_tokens
    if body.top_logprobs or "message.output_text.logprobs" in (body.include or []):
        data["logprobs"] = True
        if body.top_logprobs:
            data["top_logprobs"] = body.top_logprobs
    tools, choice = _tools(body)
    if tools:
        data["tools"] = tools
    if choice is not None:
        data["tool_choice"] = choice
    text_format = body.text.format if body.text is not None else None
    if text_format is not None and text_format.type != "text":
        if text_format.type == "json_object":
            data["response_format"] = {"type": "json_object"}
        else:
            if text_format.schema_ is None:
                raise BadRequestError("text.format of type 'json_schema' needs a schema", param="text.format.schema")
            schema: dict[str, Any] = {"name": text_format.name or "response", "schema": text_format.schema_}
            if text_format.strict is not None:
                schema["strict"] = text_format.strict
            if text_format.description:
                schema["description"] = text_format.description
            data["response_format"] = {"type": "json_schema", "json_schema": schema}
    effort = body.reasoning.effort if body.reasoning is not None else None
    if effort in THINKING_EFFORTS:
        data["enable_thinking"] = True
    elif effort in NO_THINKING_EFFORTS:
        data["enable_thinking"] = False
    data.update(body.model_extra or {})  # heylook's extensions and backend parameters, checked like any other
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if not str(part).startswith(("function-", "list[")))
        raise BadRequestError(
            f"{where or 'request'}: {first.get('msg', 'invalid value')}", param=where or None
        ) from None
    return request


# -- the answer -----------------------------------------------------------------------------------------------------


def _logprobs(items: list[TokenLogprob] | None) -> list[dict[str, Any]]:
    return [
        {
            "token": item.token,
            "logprob": item.logprob,
            "bytes": item.bytes or list(item.token.encode("utf-8")),
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": t.bytes or list(t.token.encode("utf-8"))}
                for t in item.top_logprobs
            ],
        }
        for item in items or []
    ]


class ResponseBuilder:
    """Builds the response object from the service's events, and, when streaming, the event frames on the way."""

    def __init__(self, response: dict[str, Any], *, stream: bool) -> None:
        self.response = response
        self.stream = stream
        self.sequence = 0
        self.output: list[dict[str, Any]] = response["output"]
        self.current: dict[str, Any] | None = None  # the open item: a message, a reasoning item or a function call
        self.calls: dict[int, dict[str, Any]] = {}
        self.reasoning_pieces = 0
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._pieces: list[str] = []  # the open message's text, joined when it closes
        self._text_prefix: bytes | None = None  # its output_text.delta frame up to the sequence number

    def _event(self, kind: str, **fields: Any) -> bytes:
        if not self.stream:
            return b""
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {_dumps(data)}\n\n".encode()

    def _snapshot(self) -> dict[str, Any]:
        return json.loads(_dumps(self.response)) if self.stream else {}

    def start(self) -> bytes:
        return self._event("response.created", response=self._snapshot()) + self._event(
            "response.in_progress", response=self._snapshot()
        )

    def _index(self, item: dict[str, Any]) -> int:
        return self.output.index(item)

    def _close(self, status: str = "completed") -> bytes:
        item, self.current = self.current, None
        if item is None:
            return b""
        index = self._index(item)
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            part["text"] = "".join(self._pieces)
            self._pieces = []
            self._text_prefix = None
            out += self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=part["logprobs"],
            )
            out += self._event(
                "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
            )
        elif item["type"] == "reasoning":
            part = item["content"][0]
            out += self._event(
                "response.reasoning_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
            )
            out += self._event(
                "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
            )
        else:
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        item["status"] = status
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _open(self, item: dict[str, Any], part: dict[str, Any] | None) -> bytes:
        out = self._close()
        self.output.append(item)
        self.current = item
        index = len(self.output) - 1
        if self.stream:
            shown = dict(item, content=[]) if part is not None else item
            out += self._event("response.output_item.added", output_index=index, item=json.loads(_dumps(shown)))
        if self.stream and item["type"] == "message":
            self._text_prefix = (
                "event: response.output_text.delta\ndata: "
                + _dumps({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index})[:-1]
                + ',"content_index":0,"logprobs":[],"sequence_number":'
            ).encode()
        if part is not None:
            item["content"].append(part)
            out += self._event(
                "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=dict(part)
            )
        return out

    def feed(self, delta: Delta) -> bytes:
        current = self.current
        if (
            self._text_prefix is not None
            and current is not None
            and current["type"] == "message"
            and not (delta.reasoning or delta.tool_calls or delta.logprobs or delta.finish_reason or delta.usage)
        ):  # the per-token path: one text piece, formatted from a prebuilt prefix
            self._pieces.append(delta.text)
            sequence = self.sequence
            self.sequence += 1
            return self._text_prefix + (str(sequence) + ',"delta":' + _dumps(delta.text) + "}\n\n").encode()
        out = b""
        if delta.reasoning:
            if self.current is None or self.current["type"] != "reasoning":
                opened: dict[str, Any] = {
                    "id": _new_id("rs"),
                    "type": "reasoning",
                    "summary": [],
                    "content": [],
                    "status": "in_progress",
                }
                out += self._open(opened, {"type": "reasoning_text", "text": ""})
            item = self.current
            assert item is not None
            item["content"][0]["text"] += delta.reasoning
            self.reasoning_pieces += 1
            out += self._event(
                "response.reasoning_text.delta",
                item_id=item["id"],
                output_index=self._index(item),
                content_index=0,
                delta=delta.reasoning,
            )
        if delta.text or delta.logprobs:
            if self.current is None or self.current["type"] != "message":
                opened = {
                    "id": _new_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
                out += self._open(opened, {"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            item = self.current
            assert item is not None
            part = item["content"][0]
            self._pieces.append(delta.text)
            logprobs = _logprobs(delta.logprobs)
            part["logprobs"].extend(logprobs)
            out += self._event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=self._index(item),
                content_index=0,
                delta=delta.text,
                logprobs=logprobs,
            )
        for fragment in delta.tool_calls or []:
            out += self._tool_fragment(fragment)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        return out

    def _tool_fragment(self, fragment: dict[str, Any]) -> bytes:
        out = b""
        position = int(fragment.get("index", 0))
        function = fragment.get("function") or {}
        item = self.calls.get(position)
        if item is None:
            item = {
                "id": _new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": fragment.get("id") or _new_id("call"),
                "name": function.get("name") or "",
                "arguments": "",
            }
            self.calls[position] = item
            out += self._open(item, None)
        elif item is not self.current:
            raise HeylookError("the model interleaved two tool calls; heylook streams one call at a time")
        elif function.get("name"):
            item["name"] += function["name"]
        pieces = function.get("arguments") or ""
        if pieces:
            item["arguments"] += pieces
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self._index(item),
                delta=pieces,
            )
        return out

    def finish(self) -> bytes:
        incomplete = self.finish_reason == "length"
        out = self._close("incomplete" if incomplete else "completed")
        usage = self.usage or Usage()
        self.response["usage"] = {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": min(self.reasoning_pieces, usage.completion_tokens)},
            "total_tokens": usage.total_tokens,
        }
        self.response["completed_at"] = int(time.time())
        if incomplete:
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            return out + self._event("response.incomplete", response=self._snapshot())
        self.response["status"] = "completed"
        return out + self._event("response.completed", response=self._snapshot())

    def fail(self, error: HeylookError) -> bytes:
        self.current = None
        self.response["status"] = "failed"
        self.response["error"] = {"code": error.code or "server_error", "message": error.message}
        out = self._event("error", code=error.code, message=error.message, param=error.param)
        return out + self._event("response.failed", response=self._snapshot())


def _skeleton(body: ResponsesRequest, request: ChatRequest, model_name: str) -> dict[str, Any]:
    tools = [dict(t) for t in body.tools or []]
    text_format: dict[str, Any] = {"type": "text"}
    if body.text is not None and body.text.format is not None:
        text_format = body.text.format.model_dump(by_alias=True, exclude_none=True)
    return {
        "id": _new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "model": model_name,
        "output": [],
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None, "summary": None},
        "service_tier": "default",
        "store": body.store,
        "temperature": request.temperature,
        "text": {"format": text_format},
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": tools,
        "top_logprobs": body.top_logprobs or 0,
        "top_p": request.top_p,
        "truncation": body.truncation or "disabled",
        "usage": None,
        "user": body.user,
        "metadata": body.metadata or {},
    }


# -- routes -----------------------------------------------------------------------------------------------------------


def store_of(server: Server) -> ResponseStore:
    store = server.response_store
    if store is None:
        settings = server.settings.server
        path = None
        if settings.responses_persist:
            path = settings.responses_path or default_path()
        store = ResponseStore(path, max_count=settings.responses_max_count, max_bytes=settings.responses_max_bytes)
        server.response_store = store
    return store


def _stored(store: ResponseStore, response_id: str, param: str | None = None) -> StoredResponse:
    record = store.get(response_id)
    if record is None:
        raise NotFoundError(f"response '{response_id[:80]}' not found", param=param)
    return record


def _keep(
    store: ResponseStore, builder: ResponseBuilder, context: list[dict[str, Any]], own: list[dict[str, Any]]
) -> None:
    response = builder.response
    try:
        store.put(StoredResponse(response["id"], response, own, context + own + response["output"]))
    except Exception as error:  # a full disk must not fail an answer that was generated
        logger.error("could not store response %s: %s", response["id"], error)


@router.post("/responses")
async def create_response(body: ResponsesRequest, http: Request) -> Response:
    server: Server = http.app.state.heylook
    service = service_of(http)
    store = store_of(server)
    context: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        context = _stored(store, body.previous_response_id, "previous_response_id").context
    own = _input_items(body)
    request = to_chat_request(body, context, own)
    prepared = await service.prepare(request, protocol="openai-responses", route=http.url.path)
    builder = ResponseBuilder(_skeleton(body, request, body.model or prepared.model_id), stream=body.stream)
    request_id = request_id_of(http)
    if not body.stream:
        cancel = CancelToken()
        try:
            async for delta in service.generate(prepared, cancel, request_id=request_id, headers=http.headers):
                builder.feed(delta)
        finally:
            cancel.cancel()
        builder.finish()
        if body.store:
            _keep(store, builder, context, own)
        return JSONResponse(builder.response)

    cancel = CancelToken()
    stream = await service.primed(service.generate(prepared, cancel, request_id=request_id, headers=http.headers))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield builder.start()
            async for item in stream:
                yield PING if is_ping(item) else builder.feed(item)
            yield builder.finish()
            if body.store:
                _keep(store, builder, context, own)
        except Exception as error:
            yield builder.fail(stream_error(error))
        finally:
            cancel.cancel()
            await stream.close()

    return EventStreamResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)


@router.get("/responses/{response_id}")
async def get_response(response_id: str, http: Request, stream: bool = False) -> Response:
    if stream:
        raise _refuse("replaying a stored response as a stream", "stream")
    return JSONResponse(_stored(store_of(http.app.state.heylook), response_id).response)


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    http: Request,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
) -> Response:
    items = list(_stored(store_of(http.app.state.heylook), response_id).input_items)
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    if after is not None:
        items = items[ids.index(after) + 1 :] if after in ids else []
    if before is not None:
        ids = [item.get("id") for item in items]
        items = items[: ids.index(before)] if before in ids else items
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit,
        }
    )


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, http: Request) -> Response:
    if not store_of(http.app.state.heylook).delete(response_id):
        raise NotFoundError(f"response '{response_id[:80]}' not found")
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})
