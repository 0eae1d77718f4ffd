"""Embeddings and per-token hidden states from the Gemma GGUF run in llama.cpp's embedding mode."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess

from .conftest import tokens_of

pytestmark = pytest.mark.slow

WIDTH = 640  # gemma-3-270m's embedding length


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


def test_embeddings_shape_normalisation_determinism_and_usage(client: openai.OpenAI, server: ServerProcess) -> None:
    texts = ["a red apple", "a green pear", "the stock market fell"]
    first = client.embeddings.create(model="gemma-embed", input=texts, encoding_format="float")
    again = client.embeddings.create(model="gemma-embed", input=texts[0], encoding_format="float")
    assert [item.index for item in first.data] == [0, 1, 2]
    for item in first.data:
        assert len(item.embedding) == WIDTH
        assert norm(item.embedding) == pytest.approx(1.0, abs=1e-4)
    assert again.data[0].embedding == pytest.approx(first.data[0].embedding, abs=1e-5)
    assert first.usage.prompt_tokens == sum(len(tokens_of(server, "gemma-embed", text)) for text in texts)
    assert first.usage.total_tokens == first.usage.prompt_tokens


def test_embeddings_base64_equals_float(server: ServerProcess) -> None:
    body = {"model": "gemma-embed", "input": "a red apple"}
    floats = httpx.post(server.base_url + "/embeddings", json={**body, "encoding_format": "float"}, timeout=120)
    packed = httpx.post(server.base_url + "/embeddings", json={**body, "encoding_format": "base64"}, timeout=120)
    vector = floats.json()["data"][0]["embedding"]
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert decoded == pytest.approx(vector, abs=1e-6)


def test_sdk_default_encoding_decodes(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="gemma-embed", input=["one", "two"])  # the SDK asks for base64
    assert [len(item.embedding) for item in reply.data] == [WIDTH, WIDTH]


def test_similar_texts_are_closer(client: openai.OpenAI) -> None:
    data = client.embeddings.create(
        model="gemma-embed", input=["I like apples", "I like pears", "Quantum field theory"], encoding_format="float"
    ).data
    cosine = [sum(a * b for a, b in zip(data[0].embedding, other.embedding, strict=False)) for other in data[1:]]
    assert cosine[0] > cosine[1]


def test_chat_model_has_no_embeddings(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="gemma", input="hello")
    assert "gemma" in str(caught.value)
    assert "embeddings" in str(caught.value)


def test_embedding_model_has_no_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma-embed", messages=[{"role": "user", "content": "hi"}])
    assert "gemma-embed" in str(caught.value)


def test_hidden_states_last_layer(server: ServerProcess) -> None:
    text = "The quick brown fox"
    response = httpx.post(
        server.base_url + "/hidden_states",
        json={"model": "gemma-states", "input": [text, text + " jumps"], "layer": -1},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    n_tokens = len(tokens_of(server, "gemma-states", text))
    assert body["layer"] == -1
    assert body["shape"][0] == [n_tokens, WIDTH]
    assert body["shape"][1][0] > n_tokens
    rows = body["hidden_states"][0]
    assert len(rows) == n_tokens and len(rows[0]) == WIDTH
    # the states of a shared prefix do not depend on what follows (causal attention)
    assert body["hidden_states"][1][1] == pytest.approx(rows[1], rel=1e-3, abs=1e-3)


def test_hidden_states_other_layers_answer_400_naming_the_layers(server: ServerProcess) -> None:
    response = httpx.post(
        server.base_url + "/hidden_states", json={"model": "gemma-states", "input": "hello", "layer": 3}, timeout=120
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "gemma-states" in message
    assert "-1" in message
