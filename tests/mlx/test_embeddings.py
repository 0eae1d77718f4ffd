"""Embeddings from MiniLM through mlx-embeddings: a real encoder pass, mean pooled and normalised."""

from __future__ import annotations

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.slow

TEXTS = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by ten percent."]


def test_embeddings_are_normalised_and_meaningful(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="minilm", input=TEXTS)  # the SDK asks for base64
    vectors = np.array([item.embedding for item in result.data])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.5
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert result.usage.prompt_tokens > len(TEXTS)


def test_embeddings_are_contextual(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="minilm", input=TEXTS[:1], encoding_format="float")
    one = np.array(floats.data[0].embedding)
    alone = np.array(client.embeddings.create(model="minilm", input="cat").data[0].embedding)
    in_context = np.array(client.embeddings.create(model="minilm", input="cat food is expensive").data[0].embedding)
    assert not np.allclose(alone, in_context, atol=1e-3)
    batched = np.array(client.embeddings.create(model="minilm", input=TEXTS).data[0].embedding)
    np.testing.assert_allclose(one, batched, atol=1e-4)  # padding in a batch does not change a vector


def test_embedding_model_serves_only_embeddings(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="chat"):
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        client.embeddings.create(model="tiny", input="hi")
