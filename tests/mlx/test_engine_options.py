"""The engine options of ``[models.config]`` each change what the engine does: draft model, KV cache size and
quantisation, LoRA adapter."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 3}]


def reply(client: openai.OpenAI, model: str, max_tokens: int = 24, **kwargs) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=max_tokens, temperature=0, **kwargs
    )


def test_speculative_decoding_keeps_greedy_output(client: openai.OpenAI) -> None:
    plain = reply(client, "tiny-nocache")
    drafted = reply(client, "tiny-draft")
    assert drafted.choices[0].message.content == plain.choices[0].message.content
    assert drafted.usage.completion_tokens == plain.usage.completion_tokens == 24


def test_kv_cache_options_change_the_computation(client: openai.OpenAI, eos_id: int) -> None:
    no_end = {"logit_bias": {str(eos_id): -100}}
    plain = reply(client, "tiny-nocache", max_tokens=40, **no_end).choices[0].message.content
    quantized = reply(client, "tiny-kv", max_tokens=40, **no_end)
    rotating = reply(client, "tiny-rotating", max_tokens=40, **no_end)
    assert quantized.usage.completion_tokens == rotating.usage.completion_tokens == 40
    assert quantized.choices[0].message.content != plain  # 2-bit keys and values
    assert rotating.choices[0].message.content != plain  # a 32-token window on a longer prompt
    assert rotating.usage.prompt_tokens > 32


def test_lora_adapter_is_applied(client: openai.OpenAI) -> None:
    assert (
        reply(client, "tiny-lora").choices[0].message.content
        != reply(client, "tiny-nocache").choices[0].message.content
    )


def test_rotating_cache_in_a_batch(server, client: openai.OpenAI, eos_id: int) -> None:
    import httpx

    # a short prompt: the window starts rotating while decoding
    short = [{"role": "user", "content": "The quick brown fox"}]
    request = {"messages": short, "max_tokens": 40, "temperature": 0, "logit_bias": {str(eos_id): -100}}
    single = client.chat.completions.create(model="tiny-rotating", **request)
    assert single.usage.prompt_tokens < 32 < single.usage.total_tokens

    def batch(model: str) -> list[str]:
        response = httpx.post(
            server.base_url + "/batch/chat/completions", json={"model": model, "requests": [request, request]}
        )
        assert response.status_code == 200, response.text
        return [item["choices"][0]["message"]["content"] for item in response.json()["data"]]

    rotating, unbounded = batch("tiny-rotating"), batch("tiny-nocache")
    assert rotating[0] == rotating[1]
    assert rotating[0] != unbounded[0]
    # mlx-lm's batch cache keeps no attention-sink tokens (the single path keeps 4), so they agree until it rotates
    assert rotating[0][:8] == single.choices[0].message.content[:8]
