"""The mlx-embeddings engine: contextual sentence embeddings (a full encoder pass, mean pooling, L2 norm).

Runs on the model's worker thread.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx_embeddings import load as load_embeddings

from heylook_core import BadRequestError, EmbeddingRequest, EmbeddingResult
from heylook_mlx.config import MLXConfig
from heylook_mlx.text import read_config, resolve_model_path


class EmbeddingEngine:
    def __init__(self, model_id: str, config: MLXConfig) -> None:
        from pathlib import Path

        self.model_id = model_id
        path = resolve_model_path(config.model_path)
        if Path(path).is_dir():
            model_type = read_config(Path(path)).get("model_type")
            if model_type is None:
                raise ValueError(f"config.json in '{path}' names no model_type")
        try:
            self.model, self.tokenizer = load_embeddings(path)
        except ValueError as error:
            raise ValueError(f"mlx-embeddings cannot load '{config.model_path}': {error}") from error
        model_config = getattr(self.model, "config", None)
        self.context_length = int(getattr(model_config, "max_position_embeddings", 512))
        self.dimensions: int | None = getattr(model_config, "hidden_size", None)  # the width of a pooled vector

    def close(self) -> None:
        self.model = None
        mx.clear_cache()

    def _encode(self, item: str | list[int]) -> list[int]:
        if isinstance(item, str):
            tokens = list(self.tokenizer.encode(item, add_special_tokens=True))
        else:
            tokens = list(item)
        if len(tokens) > self.context_length:
            raise BadRequestError(
                f"an input has {len(tokens)} tokens, more than model '{self.model_id}''s limit of "
                f"{self.context_length}",
                param="input",
            )
        return tokens

    def embed(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        encoded = [self._encode(item) for item in inputs]
        width = max(len(tokens) for tokens in encoded)
        pad = getattr(self.tokenizer, "pad_token_id", None) or 0
        ids = mx.array([tokens + [pad] * (width - len(tokens)) for tokens in encoded])
        mask = mx.array([[1] * len(tokens) + [0] * (width - len(tokens)) for tokens in encoded])
        output: Any = self.model(ids, attention_mask=mask)
        vectors = output.text_embeds.astype(mx.float32).tolist()
        return EmbeddingResult(vectors=vectors, prompt_tokens=sum(len(tokens) for tokens in encoded))
