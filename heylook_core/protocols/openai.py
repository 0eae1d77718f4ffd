"""OpenAI Chat Completions and Completions (and heylook's batch and multipart variants) on the generation service.

Streams are primed with their first event before the response starts, so an error before the first token gets a
real HTTP status; an error after it is sent as an SSE ``error`` event, followed by ``data: [DONE]``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from heylook_core.error_shapes import validation_message
from heylook_core.errors import BadRequestError, HeylookError
from heylook_core.generation import check_request
from heylook_core.images import attach_uploads
from heylook_core.providers import Capability
from heylook_core.runner import CancelToken
from heylook_core.security import require_api_key
from heylook_core.service import GenerationService, Prepared, apply_model_defaults, cut_at_stop
from heylook_core.streaming import (
    DONE,
    PING,
    ChatChunks,
    EventStreamResponse,
    chat_completion,
    completion_chunk,
    completion_logprobs,
    error_event,
    is_ping,
    sse,
)
from heylook_core.types import BatchChatRequest, BatchChatResult, ChatRequest, CompletionRequest, Delta

if TYPE_CHECKING:
    from heylook_core.server import Server

logger = logging.getLogger(__name__)

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def service_of(request: Request) -> GenerationService:
    server: Server = request.app.state.heylook
    return server.generation


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def stream_error(error: BaseException) -> HeylookError:
    """The error a stream reports after its first event; unexpected ones are logged here, once."""
    if isinstance(error, HeylookError):
        return error
    logger.error("stream failed: %s: %s", type(error).__name__, error, exc_info=error)
    return HeylookError(f"internal error: {type(error).__name__}: {error}")


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, http: Request) -> Response:
    return await _chat(body, http)


@router.post("/chat/completions/multipart")
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
        message, param = validation_message(RequestValidationError(error.errors()))
        where = f"request.{param}" if param else "request"
        raise BadRequestError(f"request.{message}" if param else f"request: {message}", param=where) from None
    await attach_uploads(body, images)
    return await _chat(body, http)


async def _chat(body: ChatRequest, http: Request) -> Response:
    service = service_of(http)
    prepared = await service.prepare(body, protocol="openai", route=http.url.path)
    model_name = body.model or prepared.model_id
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    request_id = request_id_of(http)
    if not body.stream:
        result = await service.complete(prepared, request_id=request_id, headers=http.headers)
        return JSONResponse(chat_completion(completion_id, model_name, created, result))

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = ChatChunks(completion_id, model_name, created, include_usage)
    cancel = CancelToken()
    stream = await service.primed(service.generate(prepared, cancel, request_id=request_id, headers=http.headers))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunks.role()
            async for item in stream:
                yield PING if is_ping(item) else chunks.delta(item)
            yield chunks.end()
        except Exception as error:
            yield error_event(stream_error(error)) + DONE  # clients that wait for [DONE] end
        finally:
            cancel.cancel()
            await stream.close()

    return EventStreamResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)


@router.post("/completions")
async def completions(body: CompletionRequest, http: Request) -> Response:
    service = service_of(http)
    prepared = await service.prepare(body, protocol="openai", route=http.url.path)
    if body.max_tokens is None:
        body.max_tokens = 16  # the OpenAI default for this endpoint
    model_name = body.model or prepared.model_id
    completion_id = "cmpl-" + uuid.uuid4().hex
    created = int(time.time())
    prompts = body.prompts()
    request_id = request_id_of(http)
    if not body.stream:
        choices = []
        prompt_tokens = completion_tokens = 0
        for index, prompt in enumerate(prompts):
            result = await service.complete(prepared, request_id=request_id, headers=http.headers, prompt=prompt)
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

    def start(index: int, token: CancelToken) -> AsyncIterator[Delta]:
        return service.generate(prepared, token, request_id=request_id, headers=http.headers, prompt=prompts[index])

    stream = await service.primed(start(0, cancel))

    async def events() -> AsyncIterator[bytes]:
        nonlocal stream, cancel
        totals = [0, 0]
        try:
            for index in range(len(prompts)):
                if index:
                    cancel = CancelToken()
                    stream = await service.primed(start(index, cancel))
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
            yield error_event(stream_error(error)) + DONE  # clients that wait for [DONE] end
        finally:
            cancel.cancel()
            await stream.close()

    def _completion_delta(delta: Delta, index: int, totals: list[int]) -> bytes:
        if delta.usage is not None:
            totals[0] += delta.usage.prompt_tokens
            totals[1] += delta.usage.completion_tokens
        return completion_chunk(completion_id, model_name, created, index, delta, include_usage)

    return EventStreamResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)


@router.post("/batch/chat/completions")
async def batch_chat(body: BatchChatRequest, http: Request) -> Response:
    server: Server = http.app.state.heylook
    service = service_of(http)
    slot = server.router.resolve(body.model or body.requests[0].model)
    native = Capability.BATCH_CHAT in slot.model.capabilities
    prepared: list[Prepared] = []
    for index, item in enumerate(body.requests):
        if item.model is not None and server.router.resolve(item.model) is not slot:
            raise BadRequestError(
                f"requests[{index}].model '{item.model}' differs from the batch's model '{slot.id}'",
                param=f"requests[{index}].model",
            )
        if item.stream:
            raise BadRequestError("batch requests cannot stream", param=f"requests[{index}].stream")
        if native:
            check_request(slot.model, item, Capability.BATCH_CHAT)
            apply_model_defaults(item, slot.model, server.settings.defaults.values())
        else:
            prepared.append(await service.prepare(item, protocol="openai", route=http.url.path, slot=slot))
    created = int(time.time())
    cancel = CancelToken()
    request_id = request_id_of(http)
    batching: dict[str, str] | None = None
    try:
        if native:
            async with server.router.acquire(slot) as provider:
                answer = await provider.batch_chat(body, cancel)
            if isinstance(answer, BatchChatResult):
                results = answer.results
                batching = {"mode": answer.mode, "reason": answer.reason}
            else:
                results = answer
            for item, result in zip(body.requests, results, strict=True):
                cut_at_stop(result, item.stop_list())  # the engine batch's own stops, made sure of
        else:  # a chat model without batching: run the requests one after another
            results = [await service.complete(item, request_id=request_id, headers=http.headers) for item in prepared]
            batching = {"mode": "sequential", "reason": f"model '{slot.id}' does not batch; one after another"}
    finally:
        cancel.cancel()
    name = body.model or slot.id
    data = [chat_completion("chatcmpl-" + uuid.uuid4().hex, name, created, result) for result in results]
    answer_body: dict[str, object] = {"object": "list", "model": name, "data": data}
    if batching is not None:
        answer_body["batching"] = batching
    return JSONResponse(answer_body)
