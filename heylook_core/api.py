"""The OpenAI-compatible routes and the generation path they share.

Every generation goes the same way: validate the body (pydantic), resolve the model, check its capabilities and
parameters, apply defaults, then run the plugins' ``wrap_generation`` wrappers around the innermost call, which
admits the request to the model (router), calls the provider and splits reasoning out of the text. Streams are
primed with their first delta before the response starts, so an error before the first token gets a real HTTP
status; an error after it is sent as an SSE ``error`` event.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from heylook_core.errors import BadRequestError, HeylookError, UnsupportedError
from heylook_core.generation import apply_defaults, check_request, collect, split_reasoning
from heylook_core.images import attach_uploads, resolve_images
from heylook_core.middleware import GenerationContext, compose
from heylook_core.providers import Capability
from heylook_core.runner import CancelToken
from heylook_core.security import require_api_key
from heylook_core.streaming import (
    DONE,
    PING,
    ChatChunks,
    PrimedStream,
    chat_completion,
    completion_chunk,
    completion_logprobs,
    error_event,
    is_ping,
    sse,
)
from heylook_core.types import (
    BatchChatRequest,
    ChatRequest,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    HiddenStatesRequest,
    SamplingParams,
    TokenizeRequest,
)

if TYPE_CHECKING:
    from heylook_core.app import Server
    from heylook_core.router import ModelSlot

logger = logging.getLogger(__name__)

FIRST_DELTA_WAIT_S = 10.0
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def server_of(request: Request) -> Server:
    return request.app.state.heylook


def _prepare(server: Server, body: SamplingParams, capability: Capability) -> ModelSlot:
    slot = server.router.resolve(body.model)
    check_request(slot.model, body, capability)
    apply_defaults(body, slot.model.entry.defaults, server.settings.defaults)
    return slot


def generate(
    server: Server,
    slot: ModelSlot,
    body: ChatRequest | CompletionRequest,
    http: Request,
    cancel: CancelToken,
    prompt: str | list[int] | None = None,
) -> AsyncIterator[Delta]:
    """The wrapped delta stream for one chat or completion (one prompt of it)."""
    endpoint = "chat" if isinstance(body, ChatRequest) else "completion"
    capability = Capability.CHAT if endpoint == "chat" else Capability.COMPLETION
    tags = slot.model.entry.think_tags

    async def innermost(request: ChatRequest | CompletionRequest) -> AsyncIterator[Delta]:
        if request is not body:  # a wrapper rewrote it: validate again, the way a client's request is
            data = {**request.__dict__, **(request.model_extra or {})}
            request = type(body).model_validate(data)
            check_request(slot.model, request, capability)
        async with server.router.acquire(slot) as provider:
            if isinstance(request, ChatRequest):
                stream = provider.chat(request, cancel)
            else:
                stream = provider.complete(request, prompt if prompt is not None else request.prompts()[0], cancel)
            async for delta in split_reasoning(stream, tags if endpoint == "chat" else []):
                yield delta

    if not server.host.has_wrappers():
        return innermost(body)
    context = GenerationContext(
        model_id=slot.id,
        provider=slot.model.entry.provider,
        endpoint=endpoint,
        request_id=getattr(http.state, "request_id", uuid.uuid4().hex),
        stream=body.stream,
        headers=dict(http.headers),
    )
    return compose(server.host.wrappers(body, context), innermost)(body)


async def _primed(deltas: AsyncIterator[Delta]) -> PrimedStream:
    """Wait (a while) for the first delta so that an early error gets a real HTTP status."""
    stream = PrimedStream(deltas)
    try:
        await stream.wait_first(FIRST_DELTA_WAIT_S)
    except BaseException:
        await stream.close()
        raise
    return stream


def _stream_error(error: BaseException) -> bytes:
    if isinstance(error, HeylookError):
        return error_event(error)
    logger.exception("stream failed", exc_info=error)
    return error_event(HeylookError(f"internal error: {type(error).__name__}: {error}"))


@v1.post("/chat/completions")
async def chat_completions(body: ChatRequest, http: Request) -> Response:
    return await _chat(body, http)


@v1.post("/chat/completions/multipart")
async def chat_completions_multipart(
    http: Request,
    request: str = Form(..., description="the chat request as JSON, as for /v1/chat/completions"),
    images: list[UploadFile] = File(default_factory=list, description="image files"),
) -> Response:
    """A chat request with images as raw file parts.

    An image part whose URL is ``upload:N`` (or ``upload:NAME``) takes the N-th uploaded file (or the one named
    NAME); uploaded files no part refers to are added, in order, to the last user message.
    """
    try:
        body = ChatRequest.model_validate_json(request)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        raise BadRequestError(f"request.{where}: {first['msg']}", param=f"request.{where}") from None
    await attach_uploads(body, images)
    return await _chat(body, http)


async def _chat(body: ChatRequest, http: Request) -> Response:
    server = server_of(http)
    slot = _prepare(server, body, Capability.CHAT)
    if body.has_images():
        await resolve_images(body, server.settings.server.allow_remote_images)
    model_name = body.model or slot.id
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    cancel = CancelToken()
    deltas = generate(server, slot, body, http, cancel)
    if not body.stream:
        try:
            result = await collect(deltas)
        finally:
            cancel.cancel()
        return JSONResponse(chat_completion(completion_id, model_name, created, result))

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = ChatChunks(completion_id, model_name, created, include_usage)
    stream = await _primed(deltas)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunks.role()
            async for item in stream:
                yield PING if is_ping(item) else chunks.delta(item)
            yield chunks.end()
        except Exception as error:
            yield _stream_error(error)
        finally:
            cancel.cancel()
            await stream.close()

    return StreamingResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)


@v1.post("/completions")
async def completions(body: CompletionRequest, http: Request) -> Response:
    server = server_of(http)
    slot = _prepare(server, body, Capability.COMPLETION)
    if body.max_tokens is None:
        body.max_tokens = 16  # the OpenAI default for this endpoint
    model_name = body.model or slot.id
    completion_id = "cmpl-" + uuid.uuid4().hex
    created = int(time.time())
    prompts = body.prompts()
    if not body.stream:
        choices = []
        prompt_tokens = completion_tokens = 0
        for index, prompt in enumerate(prompts):
            cancel = CancelToken()
            try:
                result = await collect(generate(server, slot, body, http, cancel, prompt))
            finally:
                cancel.cancel()
            prompt_tokens += result.usage.prompt_tokens
            completion_tokens += result.usage.completion_tokens
            choices.append(
                {
                    "text": result.text,
                    "index": index,
                    "logprobs": completion_logprobs(result.logprobs),
                    "finish_reason": result.finish_reason,
                }
            )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return JSONResponse(
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model_name,
                "choices": choices,
                "usage": usage,
            }
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    cancel = CancelToken()
    stream = await _primed(generate(server, slot, body, http, cancel, prompts[0]))

    async def events() -> AsyncIterator[bytes]:
        nonlocal stream, cancel
        totals = [0, 0]
        try:
            for index in range(len(prompts)):
                if index:
                    cancel = CancelToken()
                    stream = await _primed(generate(server, slot, body, http, cancel, prompts[index]))
                async for item in stream:
                    yield PING if is_ping(item) else _completion_delta(item, index, totals)
                await stream.close()
            if include_usage:
                usage = {"prompt_tokens": totals[0], "completion_tokens": totals[1], "total_tokens": sum(totals)}
                yield sse(
                    {
                        "id": completion_id,
                        "object": "text_completion",
                        "created": created,
                        "model": model_name,
                        "choices": [],
                        "usage": usage,
                    }
                )
            yield DONE
        except Exception as error:
            yield _stream_error(error)
        finally:
            cancel.cancel()
            await stream.close()

    def _completion_delta(delta: Delta, index: int, totals: list[int]) -> bytes:
        if delta.usage is not None:
            totals[0] += delta.usage.prompt_tokens
            totals[1] += delta.usage.completion_tokens
        return completion_chunk(completion_id, model_name, created, index, delta, include_usage)

    return StreamingResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)


@v1.post("/embeddings")
async def embeddings(body: EmbeddingRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    model = slot.model
    if Capability.EMBEDDINGS not in model.capabilities:
        raise UnsupportedError(
            model.id,
            "embeddings",
            param="model",
            hint=f"its capabilities: {', '.join(sorted(c.value for c in model.capabilities))}",
        )
    if body.dimensions is not None and "dimensions" not in model.parameters:
        raise UnsupportedError(model.id, "the parameter 'dimensions'", param="dimensions")
    inputs = body.inputs()
    async with server.router.acquire(slot) as provider:
        result = await provider.embed(body, inputs)
    data = []
    for index, vector in enumerate(result.vectors):
        if body.encoding_format == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        else:
            encoded = [float(v) for v in vector]
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model or slot.id,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )


@v1.post("/hidden_states")
async def hidden_states(body: HiddenStatesRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    if Capability.HIDDEN_STATES not in slot.model.capabilities:
        raise UnsupportedError(slot.id, "hidden states", param="model")
    async with server.router.acquire(slot) as provider:
        results = await provider.hidden_states(body)
    states: list[Any] = []
    for item in results:
        if body.encoding_format == "base64":
            states.append(base64.b64encode(item.data).decode("ascii"))
        else:
            rows, width = item.shape
            flat = struct.unpack(f"<{rows * width}f", item.data)
            states.append([list(flat[i * width : (i + 1) * width]) for i in range(rows)])
    return JSONResponse(
        {
            "object": "list",
            "model": body.model or slot.id,
            "layer": results[0].layer if results else body.layer,
            "dtype": results[0].dtype if results else "float32",
            "encoding_format": body.encoding_format,
            "shape": [list(item.shape) for item in results],
            "hidden_states": states,
        }
    )


@v1.post("/batch/chat/completions")
async def batch_chat(body: BatchChatRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model or body.requests[0].model)
    for index, item in enumerate(body.requests):
        if item.model is not None and server.router.resolve(item.model) is not slot:
            raise BadRequestError(
                f"requests[{index}].model '{item.model}' differs from the batch's model '{slot.id}'",
                param=f"requests[{index}].model",
            )
        if item.stream:
            raise BadRequestError("batch requests cannot stream", param=f"requests[{index}].stream")
        capability = Capability.BATCH_CHAT if Capability.BATCH_CHAT in slot.model.capabilities else Capability.CHAT
        check_request(slot.model, item, capability)
        apply_defaults(item, slot.model.entry.defaults, server.settings.defaults)
    created = int(time.time())
    cancel = CancelToken()
    try:
        if Capability.BATCH_CHAT in slot.model.capabilities:
            async with server.router.acquire(slot) as provider:
                results = await provider.batch_chat(body, cancel)
        else:  # a chat model without batching: run the requests one after another
            results = [await collect(generate(server, slot, item, http, cancel)) for item in body.requests]
    finally:
        cancel.cancel()
    name = body.model or slot.id
    data = [chat_completion("chatcmpl-" + uuid.uuid4().hex, name, created, result) for result in results]
    return JSONResponse({"object": "list", "model": name, "data": data})


@v1.post("/tokenize")
async def tokenize(body: TokenizeRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    if Capability.TOKENIZE not in slot.model.capabilities:
        raise UnsupportedError(slot.id, "tokenize", param="model")
    async with server.router.acquire(slot) as provider:
        tokens = await provider.tokenize(body.input, body.add_special_tokens)
    return JSONResponse({"object": "tokens", "model": body.model or slot.id, "tokens": tokens, "count": len(tokens)})


def model_card(server: Server, slot: ModelSlot) -> dict[str, Any]:
    entry = slot.model.entry
    card: dict[str, Any] = {
        "id": slot.id,
        "object": "model",
        "created": server.started,
        "owned_by": entry.owned_by,
        "provider": entry.provider,
        "aliases": entry.aliases,
        "capabilities": sorted(c.value for c in slot.model.capabilities),
        "parameters": sorted(slot.model.parameters),
        "loaded": slot.state == "loaded",
        "state": slot.state,
        "description": entry.description,
    }
    if slot.model.unavailable:
        card["unavailable"] = slot.model.unavailable
    if slot.provider is not None:
        card.update(slot.provider.info())
    return card


@v1.get("/models")
async def list_models(http: Request) -> dict[str, Any]:
    server = server_of(http)
    return {"object": "list", "data": [model_card(server, slot) for slot in server.router.slots.values()]}


@v1.get("/models/{model_id:path}")
async def get_model(model_id: str, http: Request) -> dict[str, Any]:
    server = server_of(http)
    return model_card(server, server.router.resolve(model_id))
