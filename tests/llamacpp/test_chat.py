"""Chat and completions through heylook on the real Gemma 3 270M GGUF, driven by the openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess

from .conftest import tokens_of

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Write a short list of fruits."}]


def gemma_prompt(text: str) -> str:
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


def test_chat_non_streamed_has_exact_usage_and_length_finish(client: openai.OpenAI, server: ServerProcess) -> None:
    reply = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=8, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 8
    expected_prompt = tokens_of(server, "gemma", gemma_prompt(QUESTION[0]["content"]))
    assert reply.usage.prompt_tokens == len(expected_prompt)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


def test_stream_matches_non_streamed_text(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(
        model="gemma",
        messages=QUESTION,
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finishes, usage, roles = [], [], None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert roles == ["assistant"]
    assert "".join(pieces) == whole.choices[0].message.content
    assert finishes == ["length"]
    assert usage is not None
    assert usage.completion_tokens == 10
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_stop_sequence_ends_with_stop_and_is_not_sent(client: openai.OpenAI) -> None:
    prompt = "One, two, three, four, five, six, seven,"
    free = client.completions.create(model="gemma", prompt=prompt, max_tokens=12, temperature=0)
    text = free.choices[0].text
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = client.completions.create(model="gemma", prompt=prompt, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]
    assert stop not in cut.choices[0].text
    assert cut.usage.completion_tokens < 12


def test_completions_text_and_token_prompts(client: openai.OpenAI, server: ServerProcess) -> None:
    prompt = "The capital of France is"
    by_text = client.completions.create(model="gemma", prompt=prompt, max_tokens=6, temperature=0)
    tokens = tokens_of(server, "gemma", prompt)
    by_tokens = client.completions.create(model="gemma", prompt=tokens, max_tokens=6, temperature=0)
    assert by_text.object == "text_completion"
    assert by_text.choices[0].finish_reason == "length"
    assert by_text.usage.prompt_tokens == len(tokens)
    assert by_text.usage.completion_tokens == 6
    assert by_tokens.choices[0].text == by_text.choices[0].text


def test_same_seed_gives_same_text_also_after_other_requests(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model="gemma",
            messages=QUESTION,
            max_tokens=12,
            temperature=1.0,
            top_p=1.0,
            seed=seed,
            extra_body={"top_k": 0, "min_p": 0.0},
        )
        return reply.choices[0].message.content

    first = sample(1234)
    client.completions.create(model="gemma", prompt="Unrelated text in between", max_tokens=4, temperature=0.9)
    second = sample(1234)
    other = sample(99)
    assert first == second
    assert other != first


def test_sampling_parameters_are_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma",
        messages=QUESTION,
        max_tokens=4,
        temperature=0.7,
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        extra_body={"top_k": 20, "min_p": 0.1, "repetition_penalty": 1.2},
    )
    assert reply.usage.completion_tokens == 4


def test_json_schema_output_parses_and_matches(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    assert reply.choices[0].finish_reason == "stop"
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and len(data["name"]) <= 12
    assert isinstance(data["age"], int)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "Give me a JSON object about a cat."}],
        max_tokens=80,
        temperature=0,
        response_format={"type": "json_object"},
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert reply.choices[0].message.content.lstrip().startswith("{")


def test_logprobs_are_serialisable_and_consistent(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma", messages=QUESTION, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == 5
    assert "".join(item.token for item in content) == reply.choices[0].message.content
    for item in content:
        assert item.logprob <= 0.0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
        assert item.top_logprobs[0].token == item.token  # greedy picks the most likely token
        assert bytes(item.bytes).decode("utf-8") == item.token


def test_completion_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="gemma", prompt="Hello", max_tokens=3, temperature=0, logprobs=2)
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == 3
    assert all(value <= 0.0 for value in logprobs.token_logprobs)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)


def test_model_without_logprobs_answers_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma-plain", messages=QUESTION, max_tokens=2, logprobs=True)
    assert "gemma-plain" in str(caught.value)
    assert "logprobs" in str(caught.value)


def test_tools_on_a_format_without_tool_support_answer_400(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=2, tools=tools)
    assert "gemma" in str(caught.value)
    assert "tools" in str(caught.value)


def test_forced_tool_call_with_function_calling_format(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 16}},
                    "required": ["city"],
                },
            },
        }
    ]
    reply = client.chat.completions.create(
        model="gemma-tools",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        max_tokens=40,
        temperature=0,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert calls and calls[0].function.name == "get_weather"
    arguments = json.loads(calls[0].function.arguments)
    assert isinstance(arguments["city"], str)


def test_inline_chat_template_from_config(client: openai.OpenAI, server: ServerProcess) -> None:
    reply = client.chat.completions.create(
        model="gemma-template", messages=[{"role": "user", "content": "hi"}], max_tokens=2, temperature=0
    )
    rendered = tokens_of(server, "gemma-template", "<bos>Q: hi\nA:", add_special_tokens=False)
    assert reply.usage.prompt_tokens == len(rendered)


def test_chat_template_from_the_request(client: openai.OpenAI, server: ServerProcess) -> None:
    reply = client.chat.completions.create(
        model="gemma-template",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
        temperature=0,
        extra_body={"chat_template": "{{ bos_token }}User said: {{ messages[0].content }}\nReply:"},
    )
    rendered = tokens_of(server, "gemma-template", "<bos>User said: hi\nReply:", add_special_tokens=False)
    assert reply.usage.prompt_tokens == len(rendered)


def test_second_turn_reuses_the_cached_prefix(client: openai.OpenAI) -> None:
    first_turn = [{"role": "user", "content": "Tell me about the sea and the sky and the mountains far away."}]
    first = client.chat.completions.create(model="gemma", messages=first_turn, max_tokens=6, temperature=0)
    second_turn = first_turn + [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And the rivers?"},
    ]
    second = client.chat.completions.create(model="gemma", messages=second_turn, max_tokens=3, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 1
    assert cached < second.usage.prompt_tokens


def test_tokenize(server: ServerProcess) -> None:
    with_bos = tokens_of(server, "gemma", "Hello world")
    without = tokens_of(server, "gemma", "Hello world", add_special_tokens=False)
    assert with_bos[1:] == without
    assert len(without) >= 2


def test_client_disconnect_stops_generation_and_the_next_request_runs(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    body = {"model": "gemma", "messages": QUESTION, "max_tokens": 2000, "temperature": 0.8, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen >= 4:
                break
    # 2000 tokens would take minutes here; the timeout of the client below is far shorter than that.
    quick = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    reply = quick.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3


def test_prompt_longer_than_the_context_answers_400(client: openai.OpenAI) -> None:
    long_text = "word " * 700  # gemma-plain has n_ctx = 512
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemma-plain", messages=[{"role": "user", "content": long_text}], max_tokens=2
        )
    assert "gemma-plain" in str(caught.value)
    assert "512" in str(caught.value)
    assert caught.value.code == "context_length_exceeded"
