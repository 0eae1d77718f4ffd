"""``/v1/batch/chat/completions`` with mlx-lm's batch generation: order, per-request limits, greedy parity."""

from __future__ import annotations

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess

pytestmark = pytest.mark.slow

PROMPTS = ["Hello there", "What is the capital of France?", "one two three", "A cat sat on the mat and then"]


def batch(server: ServerProcess, requests: list[dict], model: str = "tiny") -> dict:
    response = httpx.post(
        server.base_url + "/batch/chat/completions", json={"model": model, "requests": requests}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_batch_greedy_equals_single_greedy(server: ServerProcess, client: openai.OpenAI) -> None:
    limits = [12, 5, 9, 1]
    requests = [
        {"messages": [{"role": "user", "content": p}], "max_tokens": n, "temperature": 0}
        for p, n in zip(PROMPTS, limits, strict=True)
    ]
    data = batch(server, requests)["data"]
    assert len(data) == len(PROMPTS)
    for item, request, limit in zip(data, requests, limits, strict=True):
        single = client.chat.completions.create(model="tiny-nocache", **request)
        assert item["choices"][0]["message"]["content"] == single.choices[0].message.content
        assert item["choices"][0]["finish_reason"] == "length"
        assert item["usage"]["completion_tokens"] == limit
        assert item["usage"]["prompt_tokens"] == single.usage.prompt_tokens


def test_batch_honours_each_requests_parameters(server: ServerProcess, client: openai.OpenAI, eos_id: int) -> None:
    base = {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 16, "temperature": 0}
    reference = client.chat.completions.create(model="tiny-nocache", **base).choices[0].message.content
    stop = reference[4:7]
    requests = [
        base,
        base | {"logit_bias": {str(eos_id): 100}},
        base | {"stop": [stop]},
        base | {"frequency_penalty": 2.0},
        base | {"logprobs": True, "top_logprobs": 2, "max_tokens": 4},
    ]
    data = batch(server, requests)["data"]
    texts = [item["choices"][0]["message"]["content"] for item in data]
    finishes = [item["choices"][0]["finish_reason"] for item in data]
    assert texts[0] == reference
    assert (texts[1], finishes[1], data[1]["usage"]["completion_tokens"]) == ("", "stop", 0)
    assert (texts[2], finishes[2]) == (reference[: reference.index(stop)], "stop")
    assert texts[3] != reference
    assert data[0]["choices"][0]["logprobs"] is None
    content = data[4]["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    assert all(len(entry["top_logprobs"]) == 2 for entry in content)


def test_batch_seeds_reproduce(server: ServerProcess) -> None:
    requests = [
        {"messages": [{"role": "user", "content": p}], "max_tokens": 10, "temperature": 1.5, "seed": 7}
        for p in PROMPTS[:2]
    ]
    first = [item["choices"][0]["message"]["content"] for item in batch(server, requests)["data"]]
    second = [item["choices"][0]["message"]["content"] for item in batch(server, requests)["data"]]
    assert first == second


def test_batch_rejects_streaming_and_unsupported_parameters(server: ServerProcess) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for bad in ({"stream": True}, {"response_format": {"type": "json_object"}}):
        response = httpx.post(
            server.base_url + "/batch/chat/completions",
            json={"model": "tiny", "requests": [request, request | bad]},
            timeout=60,
        )
        assert response.status_code == 400, bad


SYSTEM = {"role": "system", "content": "You are a careful assistant who answers in one short sentence. " * 3}


def test_batched_and_sequential_strategies_give_the_same_results(server: ServerProcess, eos_id: int) -> None:
    requests = [
        {"messages": [SYSTEM, {"role": "user", "content": p}], "max_tokens": n, "temperature": 0}
        for p, n in zip(PROMPTS, [14, 6, 20, 9], strict=True)
    ]
    requests[1]["logit_bias"] = {str(eos_id): -100}
    requests += [
        {"messages": [SYSTEM, {"role": "user", "content": PROMPTS[0]}], "max_tokens": 12, "temperature": 1.5, "seed": s}
        for s in (7, 8)
    ]
    batched = batch(server, requests, model="tiny-batched")
    sequential = batch(server, requests, model="tiny-sequential")
    assert batched["batching"] == {"mode": "batched", "reason": "batch_strategy = 'batched'"}
    assert sequential["batching"] == {"mode": "sequential", "reason": "batch_strategy = 'sequential'"}

    def outcome(answer: dict) -> list[tuple[str, str, int, int]]:
        return [
            (
                item["choices"][0]["message"]["content"],
                item["choices"][0]["finish_reason"],
                item["usage"]["prompt_tokens"],
                item["usage"]["completion_tokens"],
            )
            for item in answer["data"]
        ]

    assert outcome(batched) == outcome(sequential)
    # the system prompt all of them share was processed once, for the batch
    assert all(item["usage"]["prompt_tokens_details"]["cached_tokens"] > 20 for item in batched["data"])
    texts = [text for text, *_ in outcome(batched)]
    assert texts[4] != texts[5]  # each request its own seed, each as a request alone with that seed gives it
    url = server.base_url + "/chat/completions"
    alone = [httpx.post(url, json={"model": "tiny-nocache", **item}, timeout=60).json() for item in requests]
    assert texts == [answer["choices"][0]["message"]["content"] for answer in alone]


def test_auto_strategy_says_what_it_chose(server: ServerProcess) -> None:
    request = {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 2, "temperature": 0}
    many = batch(server, [request] * 3)["batching"]
    assert many["mode"] in ("batched", "sequential")
    assert "batched decoding of 3 sequences measured" in many["reason"]
    assert batch(server, [request])["batching"] == {"mode": "sequential", "reason": "a single request"}
