"""Generation middleware: the ``wrap_generation`` hook.

A plugin's ``wrap_generation(request, context)`` returns ``None`` or a wrapper::

    async def wrapper(request, call_next):
        async for delta in call_next(request):   # call_next may get a rewritten request, or not be called at all
            yield delta                            # deltas may be observed, changed, dropped or added

A wrapper may rewrite the request, reject it by raising a :class:`~heylook_core.errors.HeylookError`, short-circuit
by yielding its own deltas, transform streamed deltas one at a time (streams are never buffered), and observe
``usage`` and ``finish_reason`` on the last delta. Any other exception fails that request (closed) with a
:class:`~heylook_core.errors.PluginError` naming the plugin.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from heylook_core.errors import HeylookError, PluginError
from heylook_core.types import ChatRequest, CompletionRequest, Delta

logger = logging.getLogger(__name__)

GenerationRequest = ChatRequest | CompletionRequest  # what a wrapper receives and passes on (context.endpoint)
CallNext = Callable[[GenerationRequest], AsyncIterator[Delta]]
Wrapper = Callable[[GenerationRequest, CallNext], AsyncIterator[Delta]]


@dataclass
class GenerationContext:
    """What a wrapper knows about the generation besides the request."""

    model_id: str
    provider: str
    endpoint: str  # the kind of generation: "chat" or "completion"
    request_id: str
    stream: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # free for wrappers to share data within one request
    protocol: str = "openai"  # the wire protocol: "openai", "openai-responses", "anthropic", "ollama", a plugin's own
    route: str = ""  # the HTTP route it came in on, such as "/v1/chat/completions" or "/v1/responses"
    api_key: str | None = None  # the name of the request's API key ([server] api_keys), never the key


def compose(
    wrappers: list[tuple[str, Wrapper]], innermost: CallNext, context: GenerationContext | None = None
) -> CallNext:
    """Stack ``wrappers`` around ``innermost``; built in reverse so the first wrapper is the outermost."""
    call = innermost
    for plugin, wrapper in reversed(wrappers):
        call = _guard(plugin, wrapper, call, context)
    return call


def _guard(plugin: str, wrapper: Wrapper, call_next: CallNext, context: GenerationContext | None) -> CallNext:
    async def guarded(request: GenerationRequest) -> AsyncIterator[Delta]:
        downstream: list[BaseException] = []

        async def marked_next(next_request: GenerationRequest) -> AsyncIterator[Delta]:
            try:
                async for delta in call_next(next_request):
                    yield delta
            except BaseException as error:
                downstream.append(error)
                raise

        try:
            async for delta in wrapper(request, marked_next):
                yield delta
        except HeylookError:
            raise
        except Exception as error:
            if any(error is seen for seen in downstream):
                raise
            model = f" serving model '{context.model_id}'" if context is not None else ""
            logger.error(
                "plugin '%s': generation wrapper raised%s: %s: %s",
                plugin,
                model,
                type(error).__name__,
                error,
                exc_info=error,
            )
            raise PluginError(plugin, error, model_id=context.model_id if context else None) from error

    return guarded
