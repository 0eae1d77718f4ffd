"""Prompt cache reuse across the turns of a conversation: only new tokens are processed, nothing leaks."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.slow


def chat(client: openai.OpenAI, model: str, messages: list, max_tokens: int = 12):
    return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)


def test_second_turn_reuses_the_first(client: openai.OpenAI) -> None:
    first_turn = [{"role": "user", "content": "Tell me about the weather in Paris in the spring."}]
    first = chat(client, "tiny", first_turn)
    # (earlier requests to this model, batch ones included, may have left the chat template's opening in the cache)
    assert first.usage.prompt_tokens_details.cached_tokens < 8
    second_turn = first_turn + [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And in Berlin?"},
    ]
    second = chat(client, "tiny", second_turn)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # everything of turn one's prompt is reused; only the reply's re-tokenisation and the new message are processed
    assert cached >= first.usage.prompt_tokens
    assert cached < second.usage.prompt_tokens
    # the cached run gives what a cold run gives
    cold = chat(client, "tiny-nocache", second_turn)
    assert second.choices[0].message.content == cold.choices[0].message.content
    assert cold.usage.prompt_tokens == second.usage.prompt_tokens


def test_no_request_sees_another_requests_tokens(client: openai.OpenAI) -> None:
    base = [{"role": "user", "content": "Count: one two three four five."}]
    first = chat(client, "tiny", base, max_tokens=20)
    other = [{"role": "user", "content": "Count: one two three four six."}]
    reused = chat(client, "tiny", other)
    cold = chat(client, "tiny-nocache", other)
    assert 0 < reused.usage.prompt_tokens_details.cached_tokens < reused.usage.prompt_tokens
    assert reused.choices[0].message.content == cold.choices[0].message.content
    # the first conversation again: its snapshot was not changed by the second
    again = chat(client, "tiny", base, max_tokens=20)
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1


def test_cache_off_reports_no_cached_tokens(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    chat(client, "tiny-nocache", messages)
    result = chat(client, "tiny-nocache", messages)
    assert result.usage.prompt_tokens_details is None
