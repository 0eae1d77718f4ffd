"""``[models.config]`` of ``provider = "mlx"``.

Imported by the light entry point (:mod:`heylook_mlx.plugin`) and by the engine modules; it imports pydantic and the
core's contract only, never MLX.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from heylook_core import ProviderConfig


class MLXConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "mlx"``; unknown keys are rejected, every key is used."""

    model_path: str = Field(min_length=1, description="local model folder (or a Hugging Face id already cached)")
    vision: bool = Field(default=False, description="load with mlx-vlm and accept image parts")
    embedding: bool = Field(default=False, description="serve /v1/embeddings with mlx-embeddings (encoder models)")
    adapter_path: str | None = Field(default=None, description="LoRA adapter folder applied at load (mlx-lm)")
    max_kv_size: int | None = Field(default=None, ge=16, description="rotating KV cache of this many tokens")
    kv_bits: int | None = Field(default=None, ge=2, le=8, description="quantize the KV cache to this many bits")
    kv_group_size: Literal[32, 64, 128] = Field(default=64, description="group size of the KV cache quantization")
    quantized_kv_start: int = Field(default=5000, ge=0, description="quantize the KV cache from this many tokens")
    draft_model: str | None = Field(default=None, description="folder of a draft model for speculative decoding")
    num_draft_tokens: int = Field(default=3, ge=1, le=64)
    enable_thinking: bool = Field(default=True, description="passed to the chat template when a request omits it")
    hidden_layer_default: int = Field(default=-2, description="layer for /v1/hidden_states when a request omits it")
    max_tokens_default: int = Field(default=512, ge=1, description="generation limit when a request sets none")
    prompt_cache_size: int = Field(default=4, ge=0, description="prompt cache snapshots kept (0 turns reuse off)")
    max_image_size: int = Field(default=1024, ge=28, description="longest image side in pixels; larger are resized")
    prefill_step_size: int = Field(default=2048, ge=16, description="prompt tokens processed per forward pass")
    batch_size: int = Field(default=32, ge=1, description="sequences decoded together by the batch endpoint")
    batch_strategy: Literal["auto", "batched", "sequential"] = Field(
        default="auto",
        description="the batch endpoint: batched where measured faster than one at a time (auto), or always one way",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=256,
        description="requests decoded together (continuous batching with mlx-lm's BatchGenerator); 1: one at a time",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> MLXConfig:
        if self.vision and self.embedding:
            raise ValueError("'vision' and 'embedding' cannot both be true")
        if (self.vision or self.embedding) and (self.draft_model or self.adapter_path):
            raise ValueError("'draft_model' and 'adapter_path' apply to text models (mlx-lm) only")
        if self.draft_model and self.kv_bits is not None:
            raise ValueError("'kv_bits' cannot be combined with 'draft_model' (mlx-lm speculative decoding)")
        if self.concurrency > 1:
            if self.vision or self.embedding:
                raise ValueError("'concurrency' above 1 applies to text models (mlx-lm) only")
            if self.draft_model or self.kv_bits is not None:
                raise ValueError(
                    "'concurrency' above 1 cannot be combined with 'draft_model' or 'kv_bits': mlx-lm's batched "
                    "generation has no speculative decoding and does not quantize the KV cache"
                )
        return self
