"""The Responses API on the real engine: the same text as Chat Completions, and a chain that reuses the prompt cache."""

from __future__ import annotations

import openai

QUESTION = "Name three colors of the rainbow."


def _other_prompt(client: openai.OpenAI) -> None:
    """Evaluate an unrelated prompt, so that the next request processes its whole prompt (no cached prefix, whose
    batch-dependent rounding could tip a sampled token)."""
    client.completions.create(model="gemma", prompt="Unrelated text in between", max_tokens=2, temperature=0)


def test_responses_and_chat_completions_give_the_same_text(client: openai.OpenAI) -> None:
    sampling = {"temperature": 0.8, "top_p": 0.95}
    _other_prompt(client)
    chat = client.chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": QUESTION}], max_tokens=24, seed=11, **sampling
    )
    _other_prompt(client)
    response = client.responses.create(
        model="gemma", input=QUESTION, max_output_tokens=24, extra_body={"seed": 11}, **sampling
    )
    _other_prompt(client)
    with client.responses.stream(
        model="gemma", input=QUESTION, max_output_tokens=24, extra_body={"seed": 11}, **sampling
    ) as stream:
        events = list(stream)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    # the last event carries the whole response: response.completed, or response.incomplete at the token limit
    assert events[-1].type in ("response.completed", "response.incomplete")
    streamed = events[-1].response
    text = chat.choices[0].message.content
    assert text
    assert response.output_text == text
    assert streamed.output_text == text == "".join(deltas)
    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    finish = chat.choices[0].finish_reason
    assert response.status == ("incomplete" if finish == "length" else "completed")


def test_a_continued_chain_reuses_the_prompt_cache(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gemma", input=QUESTION, max_output_tokens=12, temperature=0)
    second = client.responses.create(
        model="gemma", previous_response_id=first.id, input="And one more?", max_output_tokens=8, temperature=0
    )
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the stored conversation was sent again
    # the engine reused the cached prefix: at least the first turn's prompt
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1
