"""The echo plugin's entry point module.

This is the file a third party copies first. It stays light: it imports the core's contract and pydantic, never
the engine. The engine (here :mod:`heylook_echo.provider`) is imported by ``factory`` when a model first loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from heylook_core import SAMPLING_PARAMETERS, Capability, ModelEntry, ProviderConfig, ProviderSpec, hookimpl

if TYPE_CHECKING:
    from heylook_core import Provider


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
    tool_text: bool = Field(
        default=False,
        description="with tools, echo the user's text as written (tool-call tags and all) instead of calling the first "
        "tool, so that the core's tool-call parser (tool_parser) reads it",
    )


def _factory() -> type[Provider]:
    from heylook_echo.provider import EchoProvider

    return EchoProvider


SPEC = ProviderSpec(
    name="echo",
    factory=_factory,
    config_schema=EchoConfig,
    capabilities=frozenset(Capability),
    parameters=SAMPLING_PARAMETERS,
    max_concurrency=lambda config: config.concurrency,
    description="deterministic replies derived from the request (tests, benchmarks, template)",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(SPEC)


@hookimpl
def register_models(register: Callable[[ModelEntry], None]) -> None:
    register(ModelEntry(id="echo", provider="echo", description="deterministic echo model"))
