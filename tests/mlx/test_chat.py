"""Text chat through ``heylookllm serve`` with the ``openai`` SDK: determinism, sampling, endings, logprobs."""

from __future__ import annotations

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Hello there, how are you today?"}]


def ask(client: openai.OpenAI, model: str = "tiny-nocache", messages: list | None = None, **kwargs):
    kwargs.setdefault("max_tokens", 16)
    return client.chat.completions.create(model=model, messages=messages or MESSAGES, **kwargs)


def test_greedy_is_deterministic(client: openai.OpenAI) -> None:
    first = ask(client, temperature=0)
    second = ask(client, temperature=0)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content
    assert first.choices[0].finish_reason == "length"
    assert first.usage.completion_tokens == 16
    assert first.usage.total_tokens == first.usage.prompt_tokens + 16


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    runs = [ask(client, temperature=1.5, seed=seed, max_tokens=24).choices[0].message.content for seed in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_eos_bias_stops_and_max_tokens_gives_length(client: openai.OpenAI, eos_id: int) -> None:
    stopped = ask(client, temperature=0, logit_bias={str(eos_id): 100}, max_tokens=16)
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens == 0
    assert stopped.choices[0].message.content == ""
    cut = ask(client, temperature=0, logit_bias={str(eos_id): -100}, max_tokens=5)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 5


def test_stop_sequence_cuts_the_text(client: openai.OpenAI) -> None:
    full = ask(client, temperature=0, max_tokens=24).choices[0].message.content
    assert len(full) > 6
    stop = full[3:6]
    result = ask(client, temperature=0, max_tokens=24, stop=[stop])
    assert result.choices[0].finish_reason == "stop"
    assert result.choices[0].message.content == full[: full.index(stop)]


def test_penalties_change_the_tokens(client: openai.OpenAI) -> None:
    plain = ask(client, temperature=0, max_tokens=32).choices[0].message.content
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"extra_body": {"repetition_penalty": 3.0}}):
        assert ask(client, temperature=0, max_tokens=32, **penalty).choices[0].message.content != plain, penalty


def test_logprobs_are_read_only_when_asked(client: openai.OpenAI) -> None:
    plain = ask(client, temperature=0, max_tokens=6)
    assert plain.choices[0].logprobs is None
    result = ask(client, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    content = result.choices[0].logprobs.content
    assert len(content) == 6
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
    assert "".join(entry.token for entry in content) == plain.choices[0].message.content


def test_stream_matches_the_whole_reply(client: openai.OpenAI) -> None:
    whole = ask(client, temperature=0, max_tokens=12)
    chunks = list(ask(client, temperature=0, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage.completion_tokens == 12


def test_enable_thinking_reaches_the_template(client: openai.OpenAI) -> None:
    thinking = ask(client, temperature=0, max_tokens=1, extra_body={"enable_thinking": True})
    plain = ask(client, temperature=0, max_tokens=1, extra_body={"enable_thinking": False})
    # the template adds an empty <think></think> block when thinking is off
    assert plain.usage.prompt_tokens > thinking.usage.prompt_tokens
    default_off = ask(client, model="tiny-think", temperature=0, max_tokens=1)
    assert default_off.usage.prompt_tokens == plain.usage.prompt_tokens


def test_think_tags_become_reasoning(client: openai.OpenAI, special_ids: dict[str, int]) -> None:
    # the bias makes the model open a think block and never close it: everything it writes is reasoning
    think = str(special_ids["<think>"])
    result = ask(client, temperature=0, max_tokens=4, logit_bias={think: 100})
    message = result.choices[0].message
    assert not message.content
    assert message.model_extra["reasoning_content"] == "<think>" * 3
    plain = ask(client, temperature=0, max_tokens=4)
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})


def test_unsupported_parameters_are_rejected(server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 4}
    for extra in (
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"grammar": "root ::= 'a'"},
    ):
        response = httpx.post(server.base_url + "/chat/completions", json=body | extra, timeout=60)
        assert response.status_code == 400, extra
        assert response.json()["error"]["param"] in extra


def test_bad_logit_bias_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="outside the vocabulary"):
        ask(client, logit_bias={"999999": 5})


def test_completions_and_tokenize(server: ServerProcess, client: openai.OpenAI) -> None:
    result = client.completions.create(
        model="tiny-nocache", prompt="The quick brown", max_tokens=5, temperature=0, logprobs=2
    )
    choice = result.choices[0]
    assert choice.finish_reason == "length"
    assert result.usage.completion_tokens == 5
    assert len(choice.logprobs.tokens) == 5
    tokens = httpx.post(server.base_url + "/tokenize", json={"model": "tiny", "input": "The quick brown"}).json()
    assert tokens["count"] == len(tokens["tokens"]) == result.usage.prompt_tokens
    by_ids = client.completions.create(model="tiny-nocache", prompt=tokens["tokens"], max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == choice.text


def test_client_disconnect_stops_generation(server: ServerProcess, eos_id: int) -> None:
    import re
    import time

    body = {
        "model": "tiny-nocache",
        "messages": MESSAGES,
        "max_tokens": 1500,
        "temperature": 0,
        "logit_bias": {str(eos_id): -100},
        "stream": True,
    }
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        chunks = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: ") for line in chunks)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (found := re.search(r"cancelled after (\d+) tokens", server.log())):
        time.sleep(0.1)
    assert found, server.log()[-2000:]
    assert int(found.group(1)) < 1500
