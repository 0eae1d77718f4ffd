"""``[models.config]`` of ``provider = "echo"``.

The schema has a module of its own so that the entry point (:mod:`heylook_echo.plugin`) and the engine
(:mod:`heylook_echo.provider`) both import it and never each other: do the same in your plugin.
"""

from __future__ import annotations

from pydantic import Field

from heylook_core import ProviderConfig


class EchoConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "echo"``; unknown keys are rejected."""

    token_delay_ms: float = Field(default=0.0, ge=0, description="sleep between generated tokens")
    load_delay_ms: float = Field(default=0.0, ge=0, description="sleep while loading")
    filler: str = Field(default=" lorem", min_length=1, description="token repeated after the echo up to max_tokens")
    context_length: int = Field(default=4096, ge=16)
    embedding_dim: int = Field(default=64, ge=2, le=8192)
    hidden_size: int = Field(default=16, ge=1, le=4096)
    num_layers: int = Field(default=4, ge=1, le=128)
    fail_load: str | None = Field(default=None, description="when set, loading fails with this message")
    concurrency: int = Field(default=1, ge=1, description="requests run at once")
    refuse: dict[str, str] = Field(
        default_factory=dict,
        description="parameters the loaded model refuses, each with its reason (Provider.refused_parameters), as a "
        "model whose chat template renders no tools refuses tools",
    )
    tool_text: bool = Field(
        default=False,
        description="with tools, echo the user's text as written (tool-call tags and all) instead of calling the first "
        "tool, so that the core's tool-call parser (tool_parser) reads it",
    )
