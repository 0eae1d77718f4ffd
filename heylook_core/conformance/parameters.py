"""Checks of request parameters: each one the model declares is accepted (and, where it should, changes nothing of
a greedy generation); each one it does not declare is a 400 naming it, in OpenAI's error shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from heylook_core import Parameter, ParameterGroup
from heylook_core.conformance.session import BASELINE_TOKENS, Subject, counts, error_of

NEVER = "@@heylook-never@@"  # a stop sequence no model writes
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass(frozen=True)
class Probe:
    """How the suite sends one parameter.

    ``neutral``: a value that must leave a greedy generation unchanged (``None``: there is none); ``used``: a value
    the parameter really takes (sent to check it is accepted when declared, refused when not); ``endpoints``: where
    it belongs; ``also``: other fields the request needs; ``refused_as``: parameters a 400 may name instead.
    """

    used: dict[str, Any]
    neutral: dict[str, Any] | None = None
    endpoints: tuple[str, ...] = ("chat", "completion")
    refused_as: tuple[str, ...] = ()


PROBES: dict[str, Probe] = {
    "temperature": Probe(used={"temperature": 0.7}),
    "top_p": Probe(used={"top_p": 0.5}, neutral={"top_p": 0.5}),  # greedy keeps the top token under any top_p
    "top_k": Probe(used={"top_k": 3}, neutral={"top_k": 3}),
    "min_p": Probe(used={"min_p": 0.2}, neutral={"min_p": 0.2}),
    "repetition_penalty": Probe(used={"repetition_penalty": 1.2}, neutral={"repetition_penalty": 1.0}),
    "presence_penalty": Probe(used={"presence_penalty": 0.5}, neutral={"presence_penalty": 0.0}),
    "frequency_penalty": Probe(used={"frequency_penalty": 0.5}, neutral={"frequency_penalty": 0.0}),
    "seed": Probe(used={"seed": 7}, neutral={"seed": 7}),
    "stop": Probe(used={"stop": [NEVER]}, neutral={"stop": [NEVER]}),
    "logit_bias": Probe(used={"logit_bias": {"1": 0.5}}, neutral={"logit_bias": {}}),
    "logprobs": Probe(used={"logprobs": True}, neutral={"logprobs": True}, endpoints=("chat",)),
    "top_logprobs": Probe(
        used={"logprobs": True, "top_logprobs": 2},
        neutral={"logprobs": True, "top_logprobs": 2},
        endpoints=("chat",),
        refused_as=("logprobs",),
    ),
    "response_format": Probe(
        used={"response_format": {"type": "json_object"}},
        neutral={"response_format": {"type": "text"}},
        endpoints=("chat",),
    ),
    "tools": Probe(used={"tools": [WEATHER_TOOL]}, endpoints=("chat",)),
    "tool_choice": Probe(
        used={"tools": [WEATHER_TOOL], "tool_choice": "auto"}, endpoints=("chat",), refused_as=("tools",)
    ),
    "parallel_tool_calls": Probe(used={"parallel_tool_calls": False}, endpoints=("chat",)),
    "enable_thinking": Probe(used={"enable_thinking": True}, endpoints=("chat",)),
    "echo": Probe(used={"echo": True}, endpoints=("completion",)),
    "suffix": Probe(used={"suffix": " and so on."}, endpoints=("completion",)),
}
# Accepted by every model: it changes no output where tools run one at a time (docs/api.md, "Parameters").
ALWAYS_ACCEPTED = frozenset({"parallel_tool_calls"})


def _endpoint(heylook: Subject, probe: Probe, name: str) -> str:
    for endpoint in probe.endpoints:
        if heylook.has(endpoint):
            return endpoint
    heylook.require(*probe.endpoints[:1])
    raise AssertionError(f"no endpoint for {name}")


class ParameterChecks:
    """Every parameter of the core's set, on the endpoint it belongs to, and the model's own parameters."""

    @pytest.mark.parametrize("name", sorted(parameter.value for parameter in ParameterGroup.GENERATION))
    def test_parameter(self, heylook: Subject, name: str) -> None:
        """Declared: accepted, and a neutral value leaves a greedy generation unchanged. Undeclared: a 400."""
        probe = PROBES.get(name)
        if probe is None:
            pytest.fail(f"the conformance suite has no probe for the core parameter '{name}' (a suite bug)")
        endpoint = _endpoint(heylook, probe, name)
        if name in heylook.parameters or name in ALWAYS_ACCEPTED:
            self._accepted(heylook, endpoint, name, probe)
        else:
            self._refused(heylook, endpoint, name, probe)

    def _accepted(self, heylook: Subject, endpoint: str, name: str, probe: Probe) -> None:
        if probe.neutral != probe.used or not heylook.greedy:  # (else the neutral request below shows it)
            used = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": 6, **probe.used})
            assert used.finish_reason in ("stop", "length", "tool_calls"), used.finish_reason
            if name == "response_format" and used.finish_reason == "stop":
                json.loads(used.text)  # a JSON object, when the model ended it
            if name in ("tools", "tool_choice") and used.finish_reason == "tool_calls":
                for call in used.tool_calls:
                    assert call.function.name == "get_weather", call
                    json.loads(call.function.arguments)
        if not heylook.greedy:
            return
        base = heylook.baseline(endpoint)
        if name == "echo":
            echoed = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": BASELINE_TOKENS, "echo": True})
            prompt = heylook.body(endpoint, {})["prompt"]
            assert echoed.text.startswith(prompt), f"echo: the text does not start with the prompt: {echoed.text!r}"
            assert echoed.text[len(prompt) :] == base.text, f"echo changed the completion: {echoed.text!r}"
        if probe.neutral is None:
            return
        result = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": BASELINE_TOKENS, **probe.neutral})
        assert result.text == base.text, f"{probe.neutral} changed the greedy text: {result.text!r}, not {base.text!r}"
        assert counts(result.usage) == counts(base.usage), f"{probe.neutral} changed the usage: {result.usage}"
        if name in ("logprobs", "top_logprobs"):
            _check_logprobs(result.logprobs, top=probe.neutral.get("top_logprobs", 0))

    def _refused(self, heylook: Subject, endpoint: str, name: str, probe: Probe) -> None:
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        for stream in (False, True):
            body = heylook.body(endpoint, {"max_tokens": 4, **probe.used, "stream": stream})
            response = heylook.post(path, body)
            assert response.status_code == 400, (
                f"model '{heylook.id}' does not declare '{name}', yet {probe.used} (stream {stream}) was answered "
                f"{response.status_code}: {response.text[:300]}"
            )
            error = error_of(response)
            assert error["type"] == "invalid_request_error", error
            assert error["param"] in (name, *probe.refused_as), f"the 400 names param {error['param']!r}: {error}"

    def test_unknown_parameter(self, heylook: Subject) -> None:
        """A parameter nobody declares is a 400 naming it, streamed or not."""
        endpoint = heylook.text_endpoint()
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        for stream in (False, True):
            body = heylook.body(endpoint, {"max_tokens": 4, "heylook_no_such_parameter": 1, "stream": stream})
            response = heylook.post(path, body)
            assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
            error = error_of(response)
            assert error["param"] == "heylook_no_such_parameter", error

    def test_backend_parameters(self, heylook: Subject) -> None:
        """Each parameter of the model's own (outside the core's set) is accepted with the value the target gives."""
        own = sorted(heylook.parameters - set(Parameter))
        if not own:
            pytest.skip(f"model '{heylook.id}' declares no parameters of its own")
        endpoint = heylook.text_endpoint()
        values = heylook.target.params
        for name in own:
            if name not in values:
                continue
            result = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": 6, name: values[name]})
            assert result.finish_reason in ("stop", "length", "tool_calls"), (name, result)
        untested = [name for name in own if name not in values]
        if untested:
            pytest.skip(
                f"model '{heylook.id}' declares {', '.join(untested)}, which the suite has no value for "
                "(give one with --heylook-param NAME=JSON or Target.params)"
            )


def _check_logprobs(items: Any, *, top: int) -> None:
    assert items, "logprobs were asked for and none came back"
    content = items.content if hasattr(items, "content") else items
    assert content, "logprobs were asked for and none came back"
    for item in content:
        assert isinstance(item.token, str)
        assert item.logprob <= 1e-6, item
        if top:
            assert len(item.top_logprobs) == top, f"top_logprobs {top}, got {len(item.top_logprobs)}: {item}"
            best = max(entry.logprob for entry in item.top_logprobs)
            assert abs(item.logprob - best) < 1e-3, f"greedy chose {item.token!r}, not the most likely token: {item}"


__all__ = ["ALWAYS_ACCEPTED", "PROBES", "ParameterChecks", "Probe"]
