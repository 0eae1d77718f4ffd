"""Entry point module of heylook-mlx: the ``mlx`` provider spec and its ``[models.config]`` schema.

Light on purpose: nothing here imports MLX. The engine (:mod:`heylook_mlx.provider`) is imported by the factory
when a model first loads, and the availability check imports ``mlx.core`` only when ``heylookllm doctor`` calls it.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from heylook_core import Availability, Capability, ProviderConfig, ProviderSpec, hookimpl

if TYPE_CHECKING:
    from heylook_core import Provider

INSTALL_FIX_LINUX = (
    "on Linux install MLX's native library through an extra: pip install 'heylook-mlx[cpu]' (CPU) or "
    "pip install 'heylook-mlx[cuda]' (NVIDIA GPUs)"
)


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

    @model_validator(mode="after")
    def _one_kind(self) -> MLXConfig:
        if self.vision and self.embedding:
            raise ValueError("'vision' and 'embedding' cannot both be true")
        if (self.vision or self.embedding) and (self.draft_model or self.adapter_path):
            raise ValueError("'draft_model' and 'adapter_path' apply to text models (mlx-lm) only")
        if self.draft_model and self.kv_bits is not None:
            raise ValueError("'kv_bits' cannot be combined with 'draft_model' (mlx-lm speculative decoding)")
        return self


TEXT_PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "stop",
        "logprobs",
        "top_logprobs",
        "enable_thinking",
        # rendered by the model's chat template (one without tools answers them with a 400); "required" and a named
        # tool_choice are refused (no constrained decoding on MLX here)
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)
# mlx-vlm's stream gives no per-token log-probabilities; tools are rendered for text models only so far.
VISION_PARAMETERS = TEXT_PARAMETERS - {"logprobs", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls"}


def capabilities(config: MLXConfig) -> frozenset[Capability]:
    if config.embedding:
        return frozenset({Capability.EMBEDDINGS})
    if config.vision:
        return frozenset({Capability.CHAT, Capability.VISION})
    return frozenset(
        {Capability.CHAT, Capability.COMPLETION, Capability.BATCH_CHAT, Capability.HIDDEN_STATES, Capability.TOKENIZE}
    )


def parameters(config: MLXConfig) -> frozenset[str]:
    if config.embedding:
        return frozenset()
    return VISION_PARAMETERS if config.vision else TEXT_PARAMETERS


def check() -> Availability:
    """Whether ``mlx.core`` imports (its native library is a separate package on Linux)."""
    if importlib.util.find_spec("mlx") is None:
        fix = INSTALL_FIX_LINUX if platform.system() == "Linux" else "pip install heylook-mlx"
        return Availability(False, "the 'mlx' package is not installed", fix)
    try:
        import mlx.core as mx
    except Exception as error:  # ImportError, or an OSError from a missing native library
        fix = INSTALL_FIX_LINUX if platform.system() == "Linux" else "reinstall mlx: pip install -U --force mlx"
        return Availability(False, f"mlx cannot be imported: {type(error).__name__}: {error}", fix)
    missing = [name for name in ("mlx_lm", "mlx_vlm") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"missing {', '.join(missing)}", "pip install heylook-mlx")
    return Availability(True, f"mlx {getattr(mx, '__version__', '?')} on {mx.default_device()}")


def _factory() -> type[Provider]:
    from heylook_mlx.provider import MLXProvider

    return MLXProvider


SPEC = ProviderSpec(
    name="mlx",
    factory=_factory,
    config_schema=MLXConfig,
    capabilities=capabilities,
    parameters=parameters,
    check=check,
    description="MLX: mlx-lm text models, mlx-vlm vision models, mlx-embeddings encoders",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(SPEC)
