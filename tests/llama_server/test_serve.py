"""A supervised llama-server serving gemma through heylook: chat, streams, completions, embeddings, parallel slots."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess, serve

from .conftest import chat_model, config_text, gemma_path, model_card

pytestmark = pytest.mark.slow

EMBED = """
[[models]]
id = "gemma-embed"
provider = "llama_server"
[models.config]
model_path = "{gemma}"
embedding = true
n_ctx = 1024
n_threads = 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gemma = gemma_path()
    path = tmp_path_factory.mktemp("serve") / "models.toml"
    path.write_text(config_text(chat_model("gemma", gemma, parallel=4), EMBED.format(gemma=gemma)), encoding="utf-8")
    with serve(path, env={"HEYLOOK_LOAD_PLUGINS": "llama_server"}, args=["--model-id", "gemma"], timeout=180) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_model_card_names_the_process(server: ServerProcess) -> None:
    card = model_card(server.base_url, "gemma")
    assert card["loaded"] is True
    assert card["capabilities"] == ["chat", "completion", "tokenize"]
    assert card["parallel"] == 4
    assert card["server"]["pid"] > 0
    assert httpx.get(card["server"]["url"] + "/health", timeout=5).status_code == 200


def test_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma", messages=ask("Name one colour."), max_tokens=16, temperature=0
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 5


def test_stream_matches_whole_reply(client: openai.OpenAI) -> None:
    messages = ask("Write one sentence about the sea.")
    whole = client.chat.completions.create(model="gemma", messages=messages, max_tokens=24, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="gemma",
            messages=messages,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # token by token, not one blob


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma", messages=ask("Count to one hundred."), max_tokens=5, extra_body={"ignore_eos": True}
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_completions_stream_and_whole(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    whole = client.completions.create(model="gemma", prompt=prompt, max_tokens=8, temperature=0)
    assert whole.choices[0].text
    assert whole.usage.completion_tokens <= 8
    streamed = list(client.completions.create(model="gemma", prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text


def test_grammar_constrains_output(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma", messages=ask("Is water wet?"), max_tokens=8, extra_body={"grammar": 'root ::= "yes" | "no"'}
    )
    assert reply.choices[0].message.content in ("yes", "no")


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    reply = client.chat.completions.create(
        model="gemma",
        messages=ask("Name a city in JSON."),
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    data = json.loads(reply.choices[0].message.content)
    assert isinstance(data["city"], str)


def test_sampling_parameters_reach_llama_server(server: ServerProcess, client: openai.OpenAI) -> None:
    """repetition_penalty arrives as llama-server's repeat_penalty, top_k/min_p/seed as they are (its /slots shows)."""
    params = {"top_k": 17, "min_p": 0.07, "repetition_penalty": 1.31, "cache_prompt": False}
    client.chat.completions.create(
        model="gemma", messages=ask("Say something."), max_tokens=4, temperature=0.9, seed=4242, extra_body=params
    )
    child = model_card(server.base_url, "gemma")["server"]["url"]
    used = [
        slot["params"]
        for slot in httpx.get(child + "/slots", timeout=10).json()
        if slot.get("params", {}).get("seed") == 4242
    ]
    assert len(used) == 1
    assert used[0]["top_k"] == 17
    assert used[0]["repeat_penalty"] == pytest.approx(1.31)
    assert used[0]["min_p"] == pytest.approx(0.07)
    assert used[0]["temperature"] == pytest.approx(0.9)


def test_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma", messages=ask("Hi"), max_tokens=4, logprobs=True, top_logprobs=2, temperature=0
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert all(item.logprob <= 0 and len(item.top_logprobs) == 2 for item in content)


def test_tokenize(server: ServerProcess) -> None:
    plain = httpx.post(
        server.base_url + "/tokenize",
        json={"model": "gemma", "input": "hello world", "add_special_tokens": False},
        timeout=30,
    ).json()
    special = httpx.post(
        server.base_url + "/tokenize", json={"model": "gemma", "input": "hello world"}, timeout=30
    ).json()
    assert plain["count"] == len(plain["tokens"]) >= 2
    assert special["tokens"][1:] == plain["tokens"]  # the BOS token in front


def test_context_overflow_is_a_client_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma", messages=ask("word " * 3000), max_tokens=4)
    assert "context" in str(caught.value).lower()


def test_undeclared_parameter_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma", messages=ask("Hi"), max_tokens=4, extra_body={"mirostat": 2})
    assert "mirostat" in str(caught.value)


def test_embeddings(server: ServerProcess, client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="gemma-embed", input=["a red apple", "a stock market crash"])
    first, second = (item.embedding for item in result.data)
    assert len(first) == len(second) == 640  # gemma-3-270m's width
    assert first != second
    assert result.usage.prompt_tokens > 4
    card = model_card(server.base_url, "gemma-embed")
    assert card["embedding_dimensions"] == 640  # read from llama-server, so the conformance suite checks the width
    assert card["embedding_normalized"] is True
    norm = sum(x * x for x in first) ** 0.5
    assert abs(norm - 1.0) < 1e-3, norm


def test_chat_on_embedding_model_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma-embed", messages=ask("Hi"), max_tokens=4)
    assert "chat" in str(caught.value)


def test_four_clients_are_served_in_parallel(server: ServerProcess) -> None:
    """With parallel = 4 every stream gets its first token before any of them finishes (none waits for another)."""
    firsts: list[float] = []
    ends: list[float] = []
    tokens: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        body = {
            "model": "gemma",
            "messages": ask(f"Tell me story number {index}."),
            "max_tokens": 48,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first = None
        try:
            with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=120) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    data = json.loads(line[6:])
                    if first is None and data["choices"] and data["choices"][0]["delta"].get("content"):
                        first = time.monotonic()
                    if data.get("usage"):
                        count = data["usage"]["completion_tokens"]
            with lock:
                firsts.append(first or 0.0)
                ends.append(time.monotonic())
                tokens.append(count)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert tokens == [48] * 4
    assert max(firsts) < min(ends), "a stream started only after another one had finished"
