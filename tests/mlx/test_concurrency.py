"""Continuous batching (``concurrency = 4``): concurrent requests decoded together, each with its own parameters.

``tiny-c4`` batches up to 4 requests; ``tiny-nocache`` runs them one at a time, the reference. On mlx's CPU backend
(float32) batched greedy decoding gives the same tokens as one at a time, so texts are compared whole.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess

pytestmark = pytest.mark.slow

BATCHED = "tiny-c4"
ALONE = "tiny-nocache"
PROMPTS = ["Hello there", "What is the capital of France?", "one two three", "A cat sat on the mat and then"]


def chat(server: ServerProcess, model: str, request: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.base_url + "/chat/completions", json={"model": model, **request}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def summary(answer: dict[str, Any]) -> tuple[str, str, int]:
    choice = answer["choices"][0]
    return choice["message"]["content"], choice["finish_reason"], answer["usage"]["completion_tokens"]


class Stream(threading.Thread):
    """A streamed chat request read in a thread: its text, usage and when its chunks came."""

    def __init__(self, server: ServerProcess, request: dict[str, Any], stop_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.request = request | {"stream": True, "stream_options": {"include_usage": True}}
        self.stop_after = stop_after  # close the connection after this many content chunks
        self.text: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.started = threading.Event()
        self.ended_at = 0.0

    def run(self) -> None:
        with httpx.stream("POST", self.server.base_url + "/chat/completions", json=self.request, timeout=120) as answer:
            for line in answer.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        self.text.append(choice["delta"]["content"])
                        self.started.set()
                    self.finish = choice.get("finish_reason") or self.finish
                if self.stop_after is not None and len(self.text) >= self.stop_after:
                    break  # leaving the block closes the connection: the client is gone
        self.ended_at = time.monotonic()
        self.started.set()


def long_request(eos_id: int, prompt: str, tokens: int) -> dict[str, Any]:
    return {
        "model": BATCHED,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {str(eos_id): -100},
    }


def test_concurrent_requests_each_keep_their_parameters(server: ServerProcess, eos_id: int) -> None:
    def messages(index: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": PROMPTS[index]}]

    full = summary(chat(server, ALONE, {"messages": messages(2), "max_tokens": 24, "temperature": 0}))[0]
    stop = full[5:8]
    requests = [
        {"messages": messages(0), "max_tokens": 3, "temperature": 0},
        {"messages": messages(1), "max_tokens": 11, "temperature": 0, "logit_bias": {str(eos_id): -100}},
        {"messages": messages(2), "max_tokens": 24, "temperature": 0, "stop": [stop]},
        {"messages": messages(3), "max_tokens": 16, "temperature": 1.5, "seed": 1},
        {"messages": messages(3), "max_tokens": 16, "temperature": 1.5, "seed": 2},
        {"messages": messages(0), "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 2},
        {"messages": messages(1), "max_tokens": 20, "temperature": 0, "frequency_penalty": 2.0},
        {"messages": messages(3), "max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "top_k": 20, "seed": 5},
    ]
    alone = [chat(server, ALONE, request) for request in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda request: chat(server, BATCHED, request), requests))
    for index, (one, batched) in enumerate(zip(alone, together, strict=True)):
        if index == 2:  # how many tokens the engine made before it heard of the stop sequence depends on timing
            assert summary(batched)[:2] == summary(one)[:2]
        else:
            assert summary(batched) == summary(one)
    texts = [summary(answer)[0] for answer in together]
    assert summary(together[0])[1:] == ("length", 3)
    assert summary(together[1])[1:] == ("length", 11)
    assert summary(together[2])[:2] == (full[: full.index(stop)], "stop")
    assert texts[3] != texts[4]  # different seeds
    assert texts[6] != summary(chat(server, ALONE, requests[6] | {"frequency_penalty": 0}))[0]
    entries = together[5]["choices"][0]["logprobs"]["content"]
    assert [entry["logprob"] for entry in entries] == pytest.approx(
        [entry["logprob"] for entry in alone[5]["choices"][0]["logprobs"]["content"]], abs=1e-5
    )
    assert all(len(entry["top_logprobs"]) == 2 for entry in entries)
    assert together[0]["choices"][0]["logprobs"] is None


def test_a_request_that_joins_a_running_batch_is_served(server: ServerProcess, eos_id: int) -> None:
    first = Stream(server, long_request(eos_id, PROMPTS[3], 600))
    first.start()
    assert first.started.wait(60)
    joining = {"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 8, "temperature": 0}
    joined = chat(server, BATCHED, joining)
    joined_at = time.monotonic()
    first.join(120)
    assert joined_at < first.ended_at  # served while the first was still decoding, not after it
    assert summary(joined) == summary(chat(server, ALONE, joining))
    assert first.usage is not None and first.usage["completion_tokens"] == 600
    request = long_request(eos_id, PROMPTS[3], 600) | {"model": ALONE}
    assert "".join(first.text) == summary(chat(server, ALONE, request))[0]


def test_the_models_other_calls_run_between_batch_steps(server: ServerProcess, eos_id: int) -> None:
    running = Stream(server, long_request(eos_id, PROMPTS[3], 600))
    running.start()
    assert running.started.wait(60)
    hidden = httpx.post(server.base_url + "/hidden_states", json={"model": BATCHED, "input": "hello"}, timeout=60)
    hidden_at = time.monotonic()
    requests = [{"messages": [{"role": "user", "content": p}], "max_tokens": 4, "temperature": 0} for p in PROMPTS[:2]]
    answer = httpx.post(
        server.base_url + "/batch/chat/completions", json={"model": BATCHED, "requests": requests}, timeout=60
    )
    running.join(120)
    assert hidden.status_code == 200 and answer.status_code == 200, (hidden.text, answer.text)
    assert hidden_at < running.ended_at  # not queued behind the whole stream
    assert [summary(item) for item in answer.json()["data"]] == [summary(chat(server, ALONE, r)) for r in requests]
    assert running.usage is not None and running.usage["completion_tokens"] == 600


def test_a_client_that_disconnects_leaves_the_others_running(server: ServerProcess, eos_id: int) -> None:
    staying = Stream(server, long_request(eos_id, PROMPTS[0], 300))
    leaving = Stream(server, long_request(eos_id, PROMPTS[2], 1000), stop_after=3)
    staying.start()
    leaving.start()
    leaving.join(60)
    staying.join(120)
    assert len(leaving.text) == 3 and leaving.finish is None
    assert staying.finish == "length" and staying.usage is not None and staying.usage["completion_tokens"] == 300
    request = long_request(eos_id, PROMPTS[0], 300) | {"model": ALONE}
    assert "".join(staying.text) == summary(chat(server, ALONE, request))[0]
    deadline = time.monotonic() + 30
    while "model 'tiny-c4': request cancelled after" not in server.log():
        assert time.monotonic() < deadline, "the server never noticed the client leave"
        time.sleep(0.1)
    line = next(line for line in server.log().splitlines() if "model 'tiny-c4': request cancelled after" in line)
    assert int(line.split("after ")[1].split()[0]) < 1000


def test_a_stream_keeps_token_by_token_chunks_and_a_stop_ends_it(server: ServerProcess, client: openai.OpenAI) -> None:
    request = {"messages": [{"role": "user", "content": PROMPTS[2]}], "max_tokens": 24, "temperature": 0}
    full = summary(chat(server, ALONE, request))[0]
    stop = full[6:9]
    chunks = list(client.chat.completions.create(model=BATCHED, stream=True, **request))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == full
    assert len(pieces) > 10  # one chunk per token (or so), not one at the end
    stopped = client.chat.completions.create(model=BATCHED, stream=True, stop=[stop], **request)
    ends = [c for c in stopped if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in ends) == full[: full.index(stop)]
    assert ends[-1].choices[0].finish_reason == "stop"


def test_prompt_cache_serves_the_next_turn(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": " ".join(PROMPTS * 3)}]
    first = client.chat.completions.create(model=BATCHED, messages=messages, max_tokens=6, temperature=0)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "and then?"},
    ]
    second = client.chat.completions.create(model=BATCHED, messages=messages, max_tokens=6, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    alone = client.chat.completions.create(model=ALONE, messages=messages, max_tokens=6, temperature=0)
    assert second.choices[0].message.content == alone.choices[0].message.content


def test_completions_and_refusals_through_the_batch(client: openai.OpenAI) -> None:
    prompts = ["The quick brown fox", "One two three"]
    batched = client.completions.create(model=BATCHED, prompt=prompts, max_tokens=6, temperature=0)
    alone = client.completions.create(model=ALONE, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.text for c in batched.choices] == [c.text for c in alone.choices]
    with pytest.raises(openai.BadRequestError) as echo:
        client.completions.create(model=BATCHED, prompt="hi", max_tokens=2, echo=True)
    assert echo.value.body["param"] == "echo"
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model=BATCHED, messages=[{"role": "user", "content": "hi"}], max_tokens=5000)
    assert long.value.body["param"] == "max_tokens"


def test_models_list_says_the_model_batches(client: openai.OpenAI) -> None:
    client.chat.completions.create(model=BATCHED, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    models = {model.id: model.model_extra for model in client.models.list().data}
    assert models[BATCHED].get("continuous_batching") is True
