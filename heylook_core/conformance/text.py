"""Checks of text generation: framing, ``max_tokens``, ``stop``, ``seed``, concurrency and cancellation."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from heylook_core.conformance.session import BASELINE_TOKENS, Result, Subject, counts, metric

ENDPOINTS = ("chat", "completion")


def _usage_ok(usage: dict[str, Any] | None, where: str) -> None:
    assert usage is not None, f"{where}: no usage"
    assert usage["prompt_tokens"] > 0, f"{where}: prompt_tokens is {usage['prompt_tokens']}"
    assert usage["completion_tokens"] >= 0, f"{where}: completion_tokens is {usage['completion_tokens']}"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], f"{where}: {usage}"


class TextChecks:
    """Chat Completions and Completions, as the model's capabilities declare them."""

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_whole_response(self, heylook: Subject, endpoint: str) -> None:
        """A non-streamed generation has one choice, a finish reason and consistent usage."""
        heylook.require(endpoint)
        response = heylook.create(endpoint, {**heylook.greedy, "max_tokens": 8})
        assert response.model == heylook.id
        assert len(response.choices) == 1 and response.choices[0].index == 0
        choice = response.choices[0]
        if endpoint == "chat":
            assert response.object == "chat.completion"
            assert choice.message.role == "assistant"
            assert isinstance(choice.message.content, str)
        else:
            assert response.object == "text_completion"
            assert isinstance(choice.text, str)
        assert choice.finish_reason in ("stop", "length"), choice.finish_reason
        usage = response.usage.model_dump()
        _usage_ok(usage, "the response")
        assert usage["completion_tokens"] <= 8, f"max_tokens 8, usage {usage}"

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_stream_framing(self, heylook: Subject, endpoint: str) -> None:
        """Role chunk first (chat), text deltas, exactly one finish, then the usage chunk; same text and usage as
        the non-streamed response."""
        heylook.require(endpoint)
        params = {**heylook.greedy, "max_tokens": BASELINE_TOKENS}
        streamed = heylook.generate(endpoint, params, stream=True)
        chunks = streamed.chunks
        assert chunks, "the stream had no chunks"
        if endpoint == "chat":
            first = chunks[0]
            assert first.choices and first.choices[0].delta.role == "assistant", f"the first chunk: {first}"
            assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert len({c.id for c in chunks}) == 1, "the chunks of one stream carry different ids"
        finishes = [i for i, c in enumerate(chunks) for choice in c.choices if choice.finish_reason is not None]
        assert len(finishes) == 1, f"{len(finishes)} chunks carry a finish_reason (one must)"
        after = chunks[finishes[0] + 1 :]
        assert len(after) == 1 and after[0].choices == [] and after[0].usage is not None, (
            "after the finish comes exactly one chunk, with the usage and no choices"
        )
        assert all(c.usage is None for c in chunks[:-1]), "usage before the last chunk"
        _usage_ok(streamed.usage, "the stream")
        assert streamed.finish_reason in ("stop", "length")
        whole = heylook.baseline(endpoint) if heylook.greedy else heylook.generate(endpoint, params)
        assert counts(streamed.usage) == counts(whole.usage), (
            f"usage differs between the stream ({streamed.usage}) and the whole response ({whole.usage})"
        )
        if heylook.greedy:
            assert streamed.text == whole.text, "the greedy stream and the whole response differ"
            assert streamed.finish_reason == whole.finish_reason

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_stream_wire_format(self, heylook: Subject, endpoint: str) -> None:
        """Server-sent events: ``data:`` lines of JSON, ending with ``data: [DONE]``."""
        heylook.require(endpoint)
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        body = heylook.body(endpoint, {**heylook.greedy, "max_tokens": 4, "stream": True})
        with heylook.served.http.stream("POST", path, json=body) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in response.iter_lines() if line]
        events = [line for line in lines if not line.startswith(":")]
        assert events and all(line.startswith("data: ") for line in events), events[:5]
        assert events[-1] == "data: [DONE]", f"the stream ended with {events[-1]!r}"
        for line in events[:-1]:
            json.loads(line[len("data: ") :])

    @pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_max_tokens(self, heylook: Subject, endpoint: str, stream: bool) -> None:
        """``max_tokens`` ends the generation after that many tokens, with ``finish_reason: "length"``."""
        heylook.require(endpoint)
        result = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": 3}, stream=stream)
        assert result.usage is not None
        assert result.finish_reason == "length", (
            f"finish_reason {result.finish_reason!r} after {result.usage['completion_tokens']} tokens with "
            f"max_tokens 3: {result.text!r}"
        )
        assert result.usage["completion_tokens"] == 3, result.usage

    @pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_stop(self, heylook: Subject, endpoint: str, stream: bool) -> None:
        """A stop sequence ends the text just before it; the sequence itself is never sent."""
        heylook.require(endpoint)
        heylook.require_parameters("stop")
        heylook.require_greedy()
        base = heylook.baseline(endpoint)
        stop = _stop_in(base.text)
        if stop is None:
            pytest.fail(f"the greedy output {base.text!r} has no text to pick a stop sequence from")
        params = {**heylook.greedy, "max_tokens": BASELINE_TOKENS, "stop": [stop]}
        result = heylook.generate(endpoint, params, stream=stream)
        expected = base.text[: base.text.find(stop)]
        assert stop not in result.text, f"the stop sequence {stop!r} was sent: {result.text!r}"
        assert result.text == expected, f"with stop {stop!r}: {result.text!r}, expected {expected!r}"
        assert result.finish_reason == "stop", result.finish_reason

    def test_seed(self, heylook: Subject) -> None:
        """The same seed gives the same sampled text (at temperature 1), streamed or not."""
        heylook.require_parameters("seed", "temperature")
        endpoint = heylook.text_endpoint()
        params = {"temperature": 1.0, "seed": 1234, "max_tokens": BASELINE_TOKENS}
        first = heylook.generate(endpoint, params)
        again = heylook.generate(endpoint, params)
        streamed = heylook.generate(endpoint, params, stream=True)
        assert first.text == again.text, f"seed 1234 gave {first.text!r}, then {again.text!r}"
        assert first.text == streamed.text, f"seed 1234 gave {first.text!r}, streamed {streamed.text!r}"

    def test_concurrent_requests(self, heylook: Subject) -> None:
        """Requests up to the declared concurrency, sent at once, give what each gives alone (greedy)."""
        heylook.require_greedy()
        endpoint = heylook.text_endpoint()
        count = max(2, min(heylook.concurrency, 4))
        prompts: list[Any]
        if endpoint == "chat":
            prompts = [[{"role": "user", "content": f"Count from {n} to 500: {n}, {n + 1},"}] for n in range(count)]
        else:
            prompts = [f"{n}, {n + 1}, {n + 2}," for n in range(count)]
        params = {**heylook.greedy, "max_tokens": 8}
        alone = [heylook.generate(endpoint, params, prompt).text for prompt in prompts]
        with ThreadPoolExecutor(count) as pool:
            together = list(pool.map(lambda prompt: heylook.generate(endpoint, params, prompt).text, prompts))
        assert together == alone, f"at once ({count}): {together}; one at a time: {alone}"

    def test_cancellation(self, heylook: Subject) -> None:
        """A client that disconnects mid-stream stops the engine: the core counts the generation as cancelled and
        a request sent right after is served as fast as before (it does not wait for the abandoned one)."""
        heylook.require_greedy()
        endpoint = heylook.text_endpoint()
        room = _room(heylook)
        short = {**heylook.greedy, "max_tokens": 2}
        heylook.generate(endpoint, short)  # warm
        timed = _timed(heylook, endpoint, {**heylook.greedy, "max_tokens": 9})
        per_token = max((timed[0] - timed[1]) / 8, 1e-4)  # after the first token
        quick = min(_timed(heylook, endpoint, short)[0] for _ in range(2))
        allowed = 3 * quick + 1.0 + 16 * per_token  # the follow-up may take this long
        long_tokens = min(room, 4 + int(10 * allowed / per_token))
        if (long_tokens - 4) * per_token < 3 * allowed:
            pytest.skip(
                f"model '{heylook.id}': {room} tokens of room take too little time ({per_token * 1000:.1f} ms per "
                "token) to tell a stopped engine from one that runs on"
            )
        before = heylook.served.metrics()
        _disconnect_after(heylook, endpoint, {**heylook.greedy, "max_tokens": long_tokens}, chunks=3)
        outcome = _wait_for_outcome(heylook, before)
        assert outcome is not None, (
            f"model '{heylook.id}': the abandoned generation was not counted within 10 s of the disconnect "
            '(heylook_generations_total{outcome="cancelled"})'
        )
        assert outcome == "cancelled", f"the generation ended with {outcome!r} before the client disconnected"
        with ThreadPoolExecutor(heylook.concurrency) as pool:
            waits = list(pool.map(lambda _: _timed(heylook, endpoint, short)[0], range(heylook.concurrency)))
        assert max(waits) < allowed, (
            f"after the disconnect a 2-token request took {max(waits):.2f} s (alone: {quick:.2f} s, allowed "
            f"{allowed:.2f} s): the abandoned generation of up to {long_tokens} tokens "
            f"(~{long_tokens * per_token:.1f} s) kept the engine busy"
        )


def _stop_in(text: str) -> str | None:
    """A short piece of ``text`` after its start, to use as a stop sequence."""
    for start in range(max(1, len(text) // 3), len(text) - 1):
        piece = text[start : start + 2]
        if piece.strip() and text.find(piece) > 0:
            return piece
    return None


def _room(heylook: Subject) -> int:
    """Tokens the model may generate after the standard prompt: its context less a margin, at most 4096."""
    context = heylook.card.get("context_length")
    return min(4096, int(context) - 128) if isinstance(context, int) and context > 256 else 1024


def _timed(heylook: Subject, endpoint: str, params: dict[str, Any]) -> tuple[float, float]:
    """Seconds to the end of a streamed generation, and to its first text."""
    started = time.perf_counter()
    first: float | None = None
    stream = heylook.create(endpoint, params, stream=True)
    try:
        for chunk in stream:
            for choice in chunk.choices:
                piece = choice.delta.content if endpoint == "chat" else choice.text
                if piece and first is None:
                    first = time.perf_counter() - started
    finally:
        stream.close()
    total = time.perf_counter() - started
    return total, first if first is not None else total


def _disconnect_after(heylook: Subject, endpoint: str, params: dict[str, Any], *, chunks: int) -> None:
    """Stream a generation, read ``chunks`` text chunks, then drop the connection (as a client that goes away)."""
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    body = json.dumps(heylook.body(endpoint, {**params, "stream": True})).encode()
    process = heylook.served.process
    with socket.create_connection(("127.0.0.1", process.port), timeout=60) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{process.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {heylook.served.api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        seen = b""
        while seen.count(b"data: ") < chunks + 1:  # the role chunk, then text
            data = sock.recv(4096)
            if not data:
                raise AssertionError(f"the server closed the stream early: {seen[-300:]!r}")
            seen += data
        assert b" 200 " in seen.split(b"\r\n", 1)[0], seen[:300]
        assert b"[DONE]" not in seen, "the generation ended before the client could disconnect"


def _wait_for_outcome(heylook: Subject, before: dict[Any, float]) -> str | None:
    """How the abandoned generation was counted (``cancelled``, ``stop``, ...), polled for up to 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = heylook.served.metrics()
        for outcome in ("cancelled", "stop", "length", "error"):
            name, labels = "heylook_generations_total", {"model": heylook.id, "outcome": outcome}
            if metric(now, name, **labels) > metric(before, name, **labels):
                return outcome
        time.sleep(0.05)
    return None


__all__ = ["Result", "TextChecks"]
