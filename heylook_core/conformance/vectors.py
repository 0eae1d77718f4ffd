"""Checks of embeddings (shape, declared dimension and norm, encodings, batches) and of ``/v1/tokenize``."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from heylook_core import Parameter
from heylook_core.conformance.session import COMPLETION_PROMPT, Subject, error_of

TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "Ein kleiner Hund bellt."]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / ((math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))) or 1.0)


class VectorChecks:
    """Embeddings and tokenization, as the model declares them."""

    def _embed(self, heylook: Subject, texts: list[str] | str) -> list[list[float]]:
        """The vectors through the SDK, as floats."""
        response = heylook.served.openai.embeddings.create(model=heylook.id, input=texts, encoding_format="float")
        assert response.object == "list"
        assert [item.index for item in response.data] == list(range(len(response.data)))
        assert response.usage.prompt_tokens > 0, response.usage
        return [list(item.embedding) for item in response.data]

    def test_embeddings(self, heylook: Subject) -> None:
        """One vector per input, in order, each the same as when embedded alone; finite and not all zero."""
        heylook.require("embeddings")
        vectors = self._embed(heylook, TEXTS)
        assert len(vectors) == len(TEXTS)
        widths = {len(vector) for vector in vectors}
        assert len(widths) == 1 and widths.pop() > 0, f"vector lengths {[len(v) for v in vectors]}"
        for vector in vectors:
            assert all(math.isfinite(x) for x in vector), "a vector holds NaN or infinity"
            assert any(x != 0 for x in vector), "a vector is all zeros"
        for text, vector in zip(TEXTS, vectors, strict=True):
            alone = self._embed(heylook, text)[0]
            assert _cosine(alone, vector) > 0.999, f"{text!r} alone and in a batch differ (cosine below 0.999)"
        assert _cosine(vectors[0], vectors[1]) < 0.9999, "different texts got the same vector"

    def test_embeddings_base64(self, heylook: Subject) -> None:
        """``encoding_format: "base64"`` carries the same float32 values, little-endian."""
        heylook.require("embeddings")
        floats = self._embed(heylook, TEXTS[0])[0]
        response = heylook.post("/v1/embeddings", {"model": heylook.id, "input": TEXTS[0], "encoding_format": "base64"})
        assert response.status_code == 200, response.text
        raw = base64.b64decode(response.json()["data"][0]["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(decoded) == len(floats)
        assert all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(decoded, floats, strict=True))

    def test_embedding_dimension(self, heylook: Subject) -> None:
        """Vectors have the length the model declares (``embedding_dimensions`` on its card)."""
        heylook.require("embeddings")
        declared = heylook.card.get("embedding_dimensions")
        if not isinstance(declared, int):
            pytest.skip(f"model '{heylook.id}' declares no embedding_dimensions on its card")
        vectors = self._embed(heylook, TEXTS[:2])
        assert [len(v) for v in vectors] == [declared, declared]

    def test_embedding_norm(self, heylook: Subject) -> None:
        """Vectors have unit length where the model declares them normalised (``embedding_normalized``)."""
        heylook.require("embeddings")
        if heylook.card.get("embedding_normalized") is not True:
            pytest.skip(f"model '{heylook.id}' does not declare embedding_normalized = true on its card")
        for vector in self._embed(heylook, TEXTS):
            norm = math.sqrt(sum(x * x for x in vector))
            assert abs(norm - 1.0) < 1e-3, f"norm {norm}"

    def test_embedding_dimensions_parameter(self, heylook: Subject) -> None:
        """``dimensions`` shortens vectors where declared, and is a 400 naming it where not."""
        heylook.require("embeddings")
        full = len(self._embed(heylook, TEXTS[0])[0])
        body = {"model": heylook.id, "input": TEXTS[0], "dimensions": max(1, full // 2)}
        response = heylook.post("/v1/embeddings", body)
        if Parameter.DIMENSIONS in heylook.parameters:
            assert response.status_code == 200, response.text
            assert len(response.json()["data"][0]["embedding"]) == max(1, full // 2)
        else:
            assert response.status_code == 400, response.text
            assert error_of(response)["param"] == "dimensions"

    def test_tokenize(self, heylook: Subject) -> None:
        """Token ids are integers, ``count`` is their number, and special tokens only add to the plain ids."""
        heylook.require("tokenize")
        plain = self._tokenize(heylook, COMPLETION_PROMPT, add_special_tokens=False)
        special = self._tokenize(heylook, COMPLETION_PROMPT, add_special_tokens=True)
        assert plain and all(isinstance(t, int) and t >= 0 for t in plain), plain
        assert len(special) >= len(plain)
        assert any(special[i : i + len(plain)] == plain for i in range(len(special) - len(plain) + 1)), (
            f"the ids with special tokens {special} do not contain the plain ids {plain}"
        )
        assert self._tokenize(heylook, COMPLETION_PROMPT, add_special_tokens=False) == plain, "tokenize is not stable"

    def test_tokenize_round_trip(self, heylook: Subject) -> None:
        """A completion of the tokenized prompt equals the completion of its text, with as many prompt tokens."""
        heylook.require("tokenize", "completion")
        heylook.require_greedy()
        ids = self._tokenize(heylook, COMPLETION_PROMPT, add_special_tokens=True)
        from_text = heylook.generate("completion", {**heylook.greedy, "max_tokens": 8})
        from_ids = heylook.generate("completion", {**heylook.greedy, "max_tokens": 8}, prompt=ids)
        assert from_text.usage is not None and from_ids.usage is not None
        assert from_ids.usage["prompt_tokens"] == len(ids), f"{len(ids)} ids, usage {from_ids.usage}"
        assert from_text.usage["prompt_tokens"] == len(ids), (
            f"the text prompt counts {from_text.usage['prompt_tokens']} tokens, /v1/tokenize {len(ids)}"
        )
        assert from_ids.text == from_text.text, f"from ids {from_ids.text!r}, from text {from_text.text!r}"

    @staticmethod
    def _tokenize(heylook: Subject, text: str, *, add_special_tokens: bool) -> list[int]:
        body = {"model": heylook.id, "input": text, "add_special_tokens": add_special_tokens}
        response = heylook.post("/v1/tokenize", body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["count"] == len(data["tokens"]), data
        return list(data["tokens"])


__all__ = ["VectorChecks"]
