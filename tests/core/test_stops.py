"""Stop sequences are handled once, in the generation service, for every backend and protocol."""

from __future__ import annotations

import json
from typing import Any

from tests.core.conftest import EXAMPLE, user


def test_the_core_cuts_at_the_stop_and_tells_the_engine_to_stop(make_client: Any) -> None:
    # an engine that takes 5 ms a token, as real ones do (a zero-delay one runs ahead into the worker's buffer)
    client = make_client(EXAMPLE.replace("token_delay_ms = 0", "token_delay_ms = 5"))
    body = {"messages": user("one two three four five"), "max_tokens": 200, "stop": [" thr"]}
    reply = client.post("/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"] == "one two"
    assert reply["choices"][0]["finish_reason"] == "stop"
    # the engine stopped at its next token instead of running on to max_tokens
    assert reply["usage"]["completion_tokens"] <= 4


def test_a_stop_split_across_tokens_never_leaks_streamed(make_client: Any) -> None:
    client = make_client(EXAMPLE)
    body = {"messages": user("alpha beta gamma delta"), "max_tokens": 50, "stop": ["a gam"], "stream": True}
    text = client.post("/v1/chat/completions", json=body).text
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "alpha bet"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_the_responses_api_and_completions_get_the_same_stops(make_client: Any) -> None:
    client = make_client(EXAMPLE)
    completion = client.post("/v1/completions", json={"prompt": "x y z w", "max_tokens": 30, "stop": " z"}).json()
    assert completion["choices"][0]["text"] == "x y" and completion["choices"][0]["finish_reason"] == "stop"
    response = client.post("/v1/responses", json={"input": "p q r s", "stop": [" r"], "store": False}).json()
    assert response["output"][0]["content"][0]["text"] == "p q"
    assert response["status"] == "completed"


def test_batch_results_end_at_their_stops(make_client: Any) -> None:
    client = make_client(EXAMPLE)
    body = {"requests": [{"messages": user("a b c d"), "stop": [" c"]}, {"messages": user("a b c d")}]}
    data = client.post("/v1/batch/chat/completions", json=body).json()["data"]
    assert data[0]["choices"][0]["message"]["content"] == "a b"
    assert data[0]["choices"][0]["finish_reason"] == "stop"
    assert data[1]["choices"][0]["message"]["content"] == "a b c d"
