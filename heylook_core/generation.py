"""Text-stream helpers shared by the core and providers: stop sequences, think tags, request checks, results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from heylook_core.config import ConfiguredModel, SamplingDefaults
from heylook_core.errors import UnsupportedError
from heylook_core.parameters import NO_OUTPUT_CHANGE, ParameterGroup
from heylook_core.providers import Capability
from heylook_core.types import ChatRequest, ChatResult, Delta, SamplingParams


class StopMatcher:
    """Finds stop sequences in streamed text, holding back only what could be the start of one.

    ``feed(text)`` returns ``(emit, stopped)``: the text that is safe to send and whether a stop sequence was
    reached (the sequence and everything after it are dropped); ``matched`` is then that sequence (a provider puts it
    in its last delta's ``stop_sequence``). ``flush()`` returns what was held back.
    """

    __slots__ = ("stops", "matched", "_held", "_longest")

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = [s for s in stops if s]
        self.matched: str | None = None
        self._held = ""
        self._longest = max((len(s) for s in self.stops), default=0)

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        buffer = self._held + text
        cut = -1
        for stop in self.stops:
            index = buffer.find(stop)
            if index != -1 and (cut == -1 or index < cut):
                cut = index
                self.matched = stop
        if cut != -1:
            self._held = ""
            return buffer[:cut], True
        keep = 0
        for size in range(min(self._longest - 1, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                keep = size
                break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class ThinkSplitter:
    """Splits streamed text into answer text and reasoning between an opening and a closing tag."""

    __slots__ = ("open", "close", "inside", "_held")

    def __init__(self, open_tag: str, close_tag: str) -> None:
        self.open = open_tag
        self.close = close_tag
        self.inside = False
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Return ``(content, reasoning)`` that can be sent now."""
        if not self._held and (self.close if self.inside else self.open)[0] not in text:
            return ("", text) if self.inside else (text, "")  # the per-token path: no tag can start in this text
        buffer = self._held + text
        self._held = ""
        content: list[str] = []
        reasoning: list[str] = []
        while buffer:
            tag = self.close if self.inside else self.open
            index = buffer.find(tag)
            target = reasoning if self.inside else content
            if index != -1:
                target.append(buffer[:index])
                buffer = buffer[index + len(tag) :]
                self.inside = not self.inside
                continue
            keep = 0
            for size in range(min(len(tag) - 1, len(buffer)), 0, -1):
                if tag.startswith(buffer[-size:]):
                    keep = size
                    break
            target.append(buffer[: len(buffer) - keep])
            self._held = buffer[len(buffer) - keep :]
            buffer = ""
        return "".join(content), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        return ("", held) if self.inside else (held, "")


async def split_reasoning(deltas: AsyncIterator[Delta], tags: list[str]) -> AsyncIterator[Delta]:
    """Move text between think tags from ``delta.text`` to ``delta.reasoning``."""
    if not tags:
        async for delta in deltas:
            yield delta
        return
    splitter = ThinkSplitter(tags[0], tags[1])
    async for delta in deltas:
        if delta.text:
            content, reasoning = splitter.feed(delta.text)
            delta.text = content
            delta.reasoning = delta.reasoning + reasoning
        if delta.finish_reason is not None:
            content, reasoning = splitter.flush()
            delta.text += content
            delta.reasoning += reasoning
        if delta.text or delta.reasoning or delta.tool_calls or delta.finish_reason or delta.logprobs:
            yield delta


# what used_parameters looks for, as plain strings (the request's field names)
_CHECKED = tuple(sorted(parameter.value for parameter in ParameterGroup.GENERATION - NO_OUTPUT_CHANGE))


def used_parameters(request: SamplingParams) -> list[str]:
    """The optional parameters a request sets (the ones a provider must honour)."""
    fields = request.model_fields_set
    used = []
    for name in _CHECKED:
        if name in fields and getattr(request, name, None) not in (None, False):
            used.append(name)
    if isinstance(request, ChatRequest) and request.response_format is not None:
        if request.response_format.type == "text":
            used = [name for name in used if name != "response_format"]
    used.extend(request.extra_params())
    return sorted(used)


def check_request(model: ConfiguredModel, request: SamplingParams, capability: Capability) -> None:
    """Raise a 400 naming the model when it lacks the capability or a parameter the request sets."""
    if capability not in model.capabilities:
        raise UnsupportedError(
            model.id,
            f"'{capability.value}' (its capabilities: {', '.join(sorted(c.value for c in model.capabilities))})",
            param="model",
        )
    if isinstance(request, ChatRequest) and request.has_images() and Capability.VISION not in model.capabilities:
        raise UnsupportedError(model.id, "image inputs", param="messages", hint="use a vision model")
    for name in used_parameters(request):
        if name not in model.parameters:
            if name in model.refused:
                raise _refused(model, name)
            known = name in ParameterGroup.GENERATION
            what = f"the parameter '{name}'" if known else f"the unknown parameter '{name}'"
            if name == "enable_thinking" and getattr(request, "reasoning_effort", None) is not None:
                raise UnsupportedError(
                    model.id, "thinking (reasoning_effort)", param="reasoning_effort", hint="remove it from the request"
                )
            raise UnsupportedError(model.id, what, param=name, hint="remove it from the request")


def check_refused(model: ConfiguredModel, request: SamplingParams) -> None:
    """After the model has loaded: a 400 for a parameter it refuses (``Provider.refused_parameters``), which
    :func:`check_request` could not know of before the load."""
    if model.refused:
        for name in used_parameters(request):
            if name in model.refused:
                raise _refused(model, name)


def _refused(model: ConfiguredModel, name: str) -> UnsupportedError:
    what = f"the parameter '{name}' ({model.refused[name]})"
    return UnsupportedError(model.id, what, param=name, hint="remove it from the request")


def apply_defaults(request: SamplingParams, model: SamplingDefaults, server: SamplingDefaults) -> None:
    """Fill parameters the request left unset: the model's defaults first, then the server's."""
    for defaults in (model.values(), server.values()):
        for name, value in defaults.items():
            if getattr(request, name, None) is None and name in type(request).model_fields:
                setattr(request, name, value)


async def collect(deltas: AsyncIterator[Delta]) -> ChatResult:
    """Join a delta stream into one result."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    logprobs = None
    result = ChatResult()
    async for delta in deltas:
        if delta.text:
            text.append(delta.text)
        if delta.reasoning:
            reasoning.append(delta.reasoning)
        if delta.logprobs is not None:
            logprobs = (logprobs or []) + list(delta.logprobs)
        for fragment in delta.tool_calls or []:
            call = calls.setdefault(
                fragment.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = fragment.get("id") or call["id"]
            function = fragment.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
        if delta.finish_reason is not None:
            result.finish_reason = delta.finish_reason
        if delta.usage is not None:
            result.usage = delta.usage
    result.text = "".join(text)
    result.reasoning = "".join(reasoning)
    result.tool_calls = [calls[index] for index in sorted(calls)]
    result.logprobs = logprobs
    return result


__all__ = [
    "StopMatcher",
    "ThinkSplitter",
    "apply_defaults",
    "check_request",
    "collect",
    "split_reasoning",
    "used_parameters",
]
