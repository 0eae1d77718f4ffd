"""The generation service: the one path from a protocol's request to typed events, under every wire protocol.

A wire protocol (OpenAI Chat Completions, Completions, the Responses API, or one a plugin adds through
``register_routes``) is a thin adapter: it translates its request into the core's internal request (a
:class:`~heylook_core.types.ChatRequest` or :class:`~heylook_core.types.CompletionRequest`), asks the service to
:meth:`~GenerationService.prepare` it, reads the :class:`~heylook_core.types.Delta` events that
:meth:`~GenerationService.generate` yields, and writes them in its own frames.

``prepare`` does everything that decides whether and how a request runs, once and in one place: resolve the model,
check its capability, check every parameter the client set against what the model honours, apply the image
policy, then fill the parameters the client left unset from the model's and the server's defaults (only those the
model honours). ``generate`` runs the plugins' ``wrap_generation`` chain around the innermost call, which admits the
request to the model (router queue), calls the provider and splits reasoning out of the text. A request that a
wrapper rewrote goes through the same ``prepare`` again.

Events are :class:`~heylook_core.types.Delta`: text, reasoning, tool-call fragments and logprobs as they are
produced, then one last event with ``finish_reason`` and ``usage``. A provider that ends without that last event is
a provider bug: the service logs it and ends the stream with ``finish_reason = "stop"`` and the usage it has.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from heylook_core.config import CORE_DEFAULTS
from heylook_core.errors import HeylookError, ServiceUnavailableError
from heylook_core.faults import internal_error, origin_of
from heylook_core.generation import StopMatcher, ThinkSplitter, check_refused, check_request, collect
from heylook_core.images import resolve_images
from heylook_core.keys import current_key_name
from heylook_core.middleware import GenerationContext, compose
from heylook_core.providers import Capability
from heylook_core.runner import CancelToken
from heylook_core.streaming import PrimedStream
from heylook_core.toolcalls import Parsed, ToolCallParser
from heylook_core.types import ChatRequest, ChatResult, CompletionRequest, Delta, SamplingParams, Usage

if TYPE_CHECKING:
    from heylook_core.config import ConfiguredModel
    from heylook_core.metrics import GenerationMeter
    from heylook_core.router import ModelSlot
    from heylook_core.server import Server

logger = logging.getLogger(__name__)

FIRST_DELTA_WAIT_S = 10.0
GenerationRequest = ChatRequest | CompletionRequest


@dataclass
class Prepared:
    """A request that passed :meth:`GenerationService.prepare`: its model and where it came from."""

    slot: ModelSlot
    request: GenerationRequest
    capability: Capability
    protocol: str
    route: str

    @property
    def model_id(self) -> str:
        return self.slot.id

    @property
    def model(self) -> ConfiguredModel:
        return self.slot.model


def apply_model_defaults(
    request: SamplingParams, model: ConfiguredModel, server_defaults: Mapping[str, object]
) -> None:
    """Fill what the request left unset: the model's defaults first, then the server's, where the model honours them.

    A model's own default that it cannot honour is refused when the configuration loads; a server-wide default
    applies to the models that honour it.
    """
    fields = type(request).model_fields
    for defaults in (model.entry.defaults.values(), server_defaults):
        for name, value in defaults.items():
            if name not in fields or getattr(request, name, None) is not None:
                continue
            if name in CORE_DEFAULTS or name in model.parameters:
                setattr(request, name, value)


class GenerationService:
    """Prepares requests and runs generations for every protocol adapter; one per server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def prepare(
        self, request: GenerationRequest, *, protocol: str = "openai", route: str = "", slot: ModelSlot | None = None
    ) -> Prepared:
        """Resolve, check and complete ``request``; raises a :class:`~heylook_core.errors.HeylookError` (a 4xx)."""
        server = self.server
        if slot is None:
            slot = server.router.resolve(request.model)
        capability = Capability.CHAT if isinstance(request, ChatRequest) else Capability.COMPLETION
        check_request(slot.model, request, capability)
        if isinstance(request, ChatRequest) and request.has_images():
            settings = server.settings.server
            await resolve_images(request, settings.allow_remote_images, max_pixels=settings.max_image_pixels)
        apply_model_defaults(request, slot.model, server.settings.defaults.values())
        return Prepared(slot, request, capability, protocol, route)

    def generate(
        self,
        prepared: Prepared,
        cancel: CancelToken,
        *,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        prompt: str | list[int] | None = None,
    ) -> AsyncIterator[Delta]:
        """The event stream of one generation (for a completion, of one of its prompts)."""
        server = self.server
        body = prepared.request
        slot = prepared.slot
        chat = isinstance(body, ChatRequest)

        async def innermost(request: GenerationRequest) -> AsyncIterator[Delta]:
            started = time.perf_counter()  # for the metrics: queue and load are part of the time to first token
            target = slot
            if request is not body:  # a wrapper rewrote it: validated and prepared again, as a client's request is
                request = type(body).model_validate(_fields_of(request))
                again = await self.prepare(request, protocol=prepared.protocol, route=prepared.route)
                request, target = again.request, again.slot
            think_tags = target.model.entry.think_tags if chat else []
            async with server.router.acquire(target) as provider:
                check_refused(target.model, request)  # what the model refuses is known once it has loaded
                if isinstance(request, ChatRequest):
                    stream = provider.chat(request, cancel)
                else:
                    text = prompt if prompt is not None else request.prompts()[0]
                    stream = provider.complete(request, text, cancel)
                tools = _tool_parser(request, target, provider)
                stops = request.stop_list()
                matcher = StopMatcher(stops) if stops else None
                meter = server.metrics.generation(target.id, started)
                async for delta in _events(stream, think_tags, target, server, meter, tools, matcher, cancel):
                    yield delta

        if not server.host.has_wrappers():
            return innermost(body)
        context = GenerationContext(
            model_id=slot.id,
            provider=slot.model.entry.provider,
            endpoint="chat" if chat else "completion",
            request_id=request_id or uuid.uuid4().hex,
            stream=body.stream,
            headers=dict(headers or {}),
            protocol=prepared.protocol,
            route=prepared.route,
            api_key=current_key_name(),
        )
        return compose(server.host.wrappers(body, context), innermost, context)(body)

    async def complete(
        self,
        prepared: Prepared,
        *,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        prompt: str | list[int] | None = None,
    ) -> ChatResult:
        """Run one generation to its end and join its events."""
        cancel = CancelToken()
        try:
            return await collect(self.generate(prepared, cancel, request_id=request_id, headers=headers, prompt=prompt))
        finally:
            cancel.cancel()

    @staticmethod
    async def primed(deltas: AsyncIterator[Delta], wait: float = FIRST_DELTA_WAIT_S) -> PrimedStream:
        """Wait (a while) for the first event, so that an error before it keeps its HTTP status."""
        stream = PrimedStream(deltas)
        try:
            await stream.wait_first(wait)
        except BaseException:
            await stream.close()
            raise
        return stream


def _fields_of(request: object) -> dict[str, object]:
    data = dict(getattr(request, "__dict__", {}))
    data.update(getattr(request, "model_extra", None) or {})
    return data


def _tool_parser(request: GenerationRequest, slot: ModelSlot, provider: object) -> ToolCallParser | None:
    """The tool-call parser for a request that offers tools, where the model's output needs one.

    The model's ``tool_parser`` (models.toml) wins; otherwise the provider's ``tool_parser`` attribute (a format it
    detected from the model's chat template). A provider whose engine parses calls itself sets neither.
    """
    if not isinstance(request, ChatRequest) or not request.tools or request.tool_choice == "none":
        return None
    name = slot.model.entry.tool_parser or getattr(provider, "tool_parser", None)
    if not name or name == "none":
        return None
    try:
        return ToolCallParser(name, parallel=request.parallel_tool_calls is not False)
    except ValueError as error:  # a provider naming a format the core lacks: its output passes as text
        logger.warning("model '%s': %s; tool calls are not read out of its output", slot.id, error)
        return None


async def _events(
    deltas: AsyncIterator[Delta],
    tags: list[str],
    slot: ModelSlot,
    server: Server,
    meter: GenerationMeter,
    tools: ToolCallParser | None = None,
    stops: StopMatcher | None = None,
    cancel: CancelToken | None = None,
) -> AsyncIterator[Delta]:
    """A provider's deltas as the service's events, in one pass, metered (time to first token, usage, outcome).

    Splits reasoning out of the text between the model's think tags; cuts the answer at the request's first stop
    sequence (the stop text is never sent; the provider is told to stop through ``cancel.stop()`` and its last
    delta, with the usage, ends the stream with ``finish_reason = "stop"`` and ``stop_sequence``: this is the one
    place stop sequences are handled, for every backend); reads tool calls out of the rest with
    ``tools`` (see :mod:`heylook_core.toolcalls`; ``finish_reason`` becomes ``"tool_calls"`` when it found one);
    ends a stream that lacks its last event the documented way (``finish_reason = "stop"``, logged as a provider
    bug); turns an unexpected exception, or an item that is not a :class:`Delta`, into one attributed log line and a
    sanitised 500.
    """
    host = server.host
    splitter = ThinkSplitter(tags[0], tags[1]) if tags else None
    shaped = splitter is not None or tools is not None or stops is not None
    finished = False
    stopped = False  # a stop sequence was reached: only the provider's last delta is still wanted
    waiting_first = True  # for the meter: no event with output yet
    usage: Usage | None = None
    try:
        async for delta in deltas:
            if server.stopping:
                raise ServiceUnavailableError("the server is shutting down; retry shortly", code="shutting_down")
            if type(delta) is not Delta and not isinstance(delta, Delta):
                raise TypeError(f"the provider yielded a {type(delta).__name__}, not a heylook_core.Delta")
            if shaped:
                if stopped:
                    if delta.finish_reason is None:
                        continue
                    delta.text, delta.reasoning, delta.tool_calls, delta.logprobs = "", "", None, None
                if splitter is not None and not stopped:  # (what a splitter still holds came after the stop)
                    if delta.text:
                        content, reasoning = splitter.feed(delta.text)
                        delta.text = content
                        delta.reasoning += reasoning
                    if delta.finish_reason is not None:
                        content, reasoning = splitter.flush()
                        delta.text += content
                        delta.reasoning += reasoning
                if stops is not None and not stopped:
                    if delta.text:
                        delta.text, stopped = stops.feed(delta.text)
                    if stopped:
                        if cancel is not None:
                            cancel.stop()  # the engine stops at its next token and sends its last delta
                        if delta.finish_reason is None:  # send what came before the stop now; the usage follows
                            delta = Delta(text=delta.text, reasoning=delta.reasoning, logprobs=delta.logprobs)
                    elif delta.finish_reason is not None:
                        delta.text += stops.flush()
                if stopped and delta.finish_reason is not None:
                    delta.finish_reason = "stop"
                    delta.stop_sequence = stops.matched if stops is not None else None
                if tools is not None:
                    _read_tool_calls(tools, delta)
                if not (delta.text or delta.reasoning or delta.tool_calls or delta.finish_reason or delta.logprobs):
                    continue
            if waiting_first and (delta.text or delta.reasoning or delta.tool_calls):
                waiting_first = False
                meter.first_token()
            if delta.finish_reason is not None:
                finished = True
                meter.finish(delta)
            if delta.usage is not None:
                usage = delta.usage
            yield delta
        if not finished:  # (a consumer that went away closed this generator at its last yield: no false alarm)
            logger.warning(
                "%s: the provider ended without its last event (finish_reason and usage); "
                "ending the stream with finish_reason 'stop' (a provider bug)",
                origin_of(host, slot),
            )
            tail = splitter.flush() if splitter is not None else ("", "")
            last = Delta(text=tail[0], reasoning=tail[1], finish_reason="stop", usage=usage or Usage())
            if tools is not None:
                _read_tool_calls(tools, last)
            if waiting_first and (last.text or last.reasoning or last.tool_calls):
                meter.first_token()
            meter.finish(last)
            yield last
    except HeylookError as error:
        meter.close(error)
        raise
    except Exception as error:
        meter.close(error)
        raise internal_error(host, slot, error, "generation failed") from error
    except BaseException as error:  # the consumer went away (GeneratorExit) or the task was cancelled
        meter.close(error)
        raise
    else:
        meter.close()


def cut_at_stop(result: ChatResult, stops: list[str]) -> None:
    """End a whole result at its first stop sequence (for engines that generate a batch at once)."""
    if not stops or not result.text:
        return
    matcher = StopMatcher(stops)
    text, stopped = matcher.feed(result.text)
    if stopped:
        result.text, result.finish_reason = text, "stop"


def _read_tool_calls(tools: ToolCallParser, delta: Delta) -> None:
    """Move the tool calls in ``delta.text`` to ``delta.tool_calls`` (and the last delta's held text back)."""
    parsed = tools.feed(delta.text) if delta.text else Parsed()
    if delta.finish_reason is not None:
        tail = tools.finish()
        parsed.text += tail.text
        parsed.reasoning += tail.reasoning
        parsed.tool_calls += tail.tool_calls
        if tools.calls and delta.finish_reason == "stop":
            delta.finish_reason = "tool_calls"
    delta.text = parsed.text
    if parsed.reasoning:
        delta.reasoning += parsed.reasoning
    if parsed.tool_calls:
        delta.tool_calls = (delta.tool_calls or []) + parsed.tool_calls


__all__ = ["FIRST_DELTA_WAIT_S", "GenerationService", "Prepared", "apply_model_defaults", "cut_at_stop"]
