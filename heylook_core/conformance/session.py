"""The suite's view of a running server and of the model under test.

:class:`Served` is one ``heylookllm serve`` for a :class:`~heylook_core.conformance.Target`, with an ``openai``
client and a plain ``httpx`` client (for what the SDK hides: raw frames, error bodies, metrics). :class:`Subject` is
one model on it: its declaration as the server reports it, and the requests every check sends, normalised into
:class:`Result` for chat and completions, streamed or not.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from heylook_core.conformance import Target
from heylook_core.testing import ServerProcess, serve

# Prompts likely to make any text model write on for a while (a count), so that max_tokens, not the model, ends it.
CHAT_PROMPT = "Count from 1 to 500, separated by commas: 1, 2, 3, 4, 5,"
COMPLETION_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
REQUEST_TIMEOUT = 300.0
GREEDY_SEED = 4321
BASELINE_TOKENS = 8  # tokens of the greedy generations that checks compare


class Served:
    """A running server for one target, and clients for it."""

    def __init__(self, process: ServerProcess, api_key: str, admin_key: str) -> None:
        self.process = process
        self.api_key = api_key
        self.admin_key = admin_key
        self.http = httpx.Client(
            base_url=process.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=REQUEST_TIMEOUT
        )
        self.openai = openai.OpenAI(base_url=process.base_url, api_key=api_key, max_retries=0, timeout=REQUEST_TIMEOUT)
        self.subjects: dict[str, Subject] = {}
        self.clip: tuple[Path, str | None] | None = None  # the speech the transcription checks use (made once)

    @classmethod
    @contextlib.contextmanager
    def start(cls, target: Target) -> Iterator[Served]:
        """Serve ``target`` with fresh API and admin keys (the suite's own; the config's keys are replaced)."""
        api_key, admin_key = secrets.token_hex(16), secrets.token_hex(16)
        env = {**target.env, "HEYLOOK_API_KEY": api_key, "HEYLOOK_ADMIN_KEY": admin_key}
        with serve(
            target.config, args=target.args, env=env, timeout=target.startup_timeout, cwd=target.cwd or os.getcwd()
        ) as process:
            served = cls(process, api_key, admin_key)
            try:
                yield served
            finally:
                served.close()

    def close(self) -> None:
        self.http.close()
        self.openai.close()

    def log(self) -> str:
        return self.process.log()

    def subject(self, model_id: str, target: Target) -> Subject:
        if model_id not in self.subjects:
            self.subjects[model_id] = Subject.load(self, model_id, target)
        return self.subjects[model_id]

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """``GET /metrics`` as ``{(name, labels): value}``."""
        response = self.http.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        samples[(name, pairs)] = float(value)
    return samples


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def counts(usage: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """A usage's token counts (the cached part of the prompt may differ between identical requests)."""
    if usage is None:
        return None
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


@dataclass
class Result:
    """A generation as the client saw it (either endpoint, streamed or not)."""

    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    logprobs: Any = None
    tool_calls: list[Any] = field(default_factory=list)
    chunks: list[Any] = field(default_factory=list)


class Subject:
    """The model under test on a running server: what it declares, and requests to it."""

    def __init__(self, served: Served, model_id: str, card: dict[str, Any], target: Target) -> None:
        self.served = served
        self.id = model_id
        self.card = card
        self.target = target
        self.capabilities = frozenset(card.get("capabilities", ()))
        self.parameters = frozenset(card.get("parameters", ()))
        self.concurrency = int(card.get("concurrency", 1))
        self.baselines: dict[tuple[str, str], Result] = {}
        self.transcriptions: dict[str, Any] = {}  # clip path: its json transcription (the audio checks share it)

    @classmethod
    def load(cls, served: Served, model_id: str, target: Target) -> Subject:
        """Load the model (admin route) and read its card, which then includes its provider's facts."""
        response = served.http.post(
            f"/v1/admin/models/{model_id}/load", headers={"Authorization": f"Bearer {served.admin_key}"}
        )
        if response.status_code != 200:
            pytest.fail(f"model '{model_id}' did not load: {response.status_code} {response.text}", pytrace=False)
        card = served.http.get(f"/v1/models/{model_id}")
        card.raise_for_status()
        return cls(served, model_id, card.json(), target)

    # -- declaration -------------------------------------------------------------------------------------------

    def server_log(self) -> str:
        return self.served.log()

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, *capabilities: str) -> None:
        """Skip, naming the model and what it lacks, unless it declares every one of ``capabilities``."""
        missing = [c for c in capabilities if c not in self.capabilities]
        if missing:
            declared = ", ".join(sorted(self.capabilities)) or "none"
            pytest.skip(f"model '{self.id}' does not declare {', '.join(missing)} (it declares: {declared})")

    def require_parameters(self, *names: str) -> None:
        missing = [name for name in names if name not in self.parameters]
        if missing:
            pytest.skip(f"model '{self.id}' does not declare the parameter(s) {', '.join(missing)}")

    def text_endpoint(self) -> str:
        """``chat`` when the model chats, else ``completion``; skips a model that does neither."""
        if self.has("chat"):
            return "chat"
        if self.has("completion"):
            return "completion"
        self.require("chat")
        raise AssertionError("unreachable")

    @property
    def greedy(self) -> dict[str, Any]:
        """Parameters for a deterministic generation: temperature 0 where the model honours temperature, and a
        seed where it honours one (a seed asks for output that does not depend on earlier requests, such as what a
        prompt cache holds)."""
        params: dict[str, Any] = {"temperature": 0} if "temperature" in self.parameters else {}
        if params and "seed" in self.parameters:
            params["seed"] = GREEDY_SEED
        return params

    def require_greedy(self) -> None:
        if "temperature" not in self.parameters:
            pytest.skip(f"model '{self.id}' does not declare temperature: outputs cannot be compared greedily")

    # -- requests ----------------------------------------------------------------------------------------------

    def body(self, endpoint: str, params: dict[str, Any], prompt: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.id}
        if endpoint == "chat":
            body["messages"] = prompt if prompt is not None else [{"role": "user", "content": CHAT_PROMPT}]
        else:
            body["prompt"] = prompt if prompt is not None else COMPLETION_PROMPT
        body.update(params)
        return body

    def create(self, endpoint: str, params: dict[str, Any], prompt: Any = None, *, stream: bool = False) -> Any:
        """The SDK call for ``params``: the parameters go in ``extra_body``, which the SDK merges into the JSON body as
        it would its own keyword arguments (so no list of the SDK's names is kept here)."""
        extra = {key: value for key, value in self.body(endpoint, params, prompt).items() if key != "model"}
        if endpoint == "chat":
            messages = extra.pop("messages")
            return self.served.openai.chat.completions.create(
                model=self.id, messages=messages, stream=stream, extra_body=extra or None
            )
        prompt_value = extra.pop("prompt")
        return self.served.openai.completions.create(
            model=self.id, prompt=prompt_value, stream=stream, extra_body=extra or None
        )

    def generate(self, endpoint: str, params: dict[str, Any], prompt: Any = None, *, stream: bool = False) -> Result:
        """One generation, joined into a :class:`Result` (a stream asks for its usage chunk)."""
        if stream:
            params = {**params, "stream_options": {"include_usage": True}}
        response = self.create(endpoint, params, prompt, stream=stream)
        if not stream:
            choice = response.choices[0]
            usage = response.usage.model_dump() if response.usage is not None else None
            if endpoint == "chat":
                message = choice.message
                return Result(
                    message.content or "", choice.finish_reason, usage, choice.logprobs, list(message.tool_calls or [])
                )
            return Result(choice.text, choice.finish_reason, usage, choice.logprobs)
        chunks = list(response)
        text: list[str] = []
        finish: str | None = None
        usage = None
        logprobs: list[Any] = []
        calls: list[Any] = []
        for chunk in chunks:
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                if endpoint == "chat":
                    text.append(choice.delta.content or "")
                    calls.extend(choice.delta.tool_calls or [])
                    if choice.logprobs is not None and choice.logprobs.content:
                        logprobs.extend(choice.logprobs.content)
                else:
                    text.append(choice.text or "")
                if choice.finish_reason is not None:
                    finish = choice.finish_reason
        return Result("".join(text), finish, usage, logprobs or None, calls, chunks)

    def baseline(self, endpoint: str, max_tokens: int = BASELINE_TOKENS) -> Result:
        """The greedy generation of the standard prompt (cached): what neutral parameters must not change."""
        key = (endpoint, str(max_tokens))
        if key not in self.baselines:
            self.baselines[key] = self.generate(endpoint, {**self.greedy, "max_tokens": max_tokens})
        return self.baselines[key]

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.served.http.post(path, json=body, **kwargs)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error response, after checking it has OpenAI's shape."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"the {response.status_code} body is not JSON: {response.text[:300]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not OpenAI's error shape: {body}"
    error: dict[str, Any] = body["error"]
    missing = {"message", "type", "param", "code"} - set(error)
    assert not missing, f"the error object lacks {sorted(missing)}: {error}"
    assert isinstance(error["message"], str) and error["message"], f"the error has no message: {error}"
    assert isinstance(error["type"], str), f"the error type is not a string: {error}"
    return error


__all__ = [
    "BASELINE_TOKENS",
    "CHAT_PROMPT",
    "COMPLETION_PROMPT",
    "Result",
    "Served",
    "Subject",
    "counts",
    "error_of",
    "metric",
    "parse_metrics",
]
