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
