"""The echo plugin's entry point module.

This is the file a third party copies first. It stays light: it imports the core's contract and the config schema
(:mod:`heylook_echo.config`), never the engine. The engine (here :mod:`heylook_echo.provider`) is imported by
``factory`` when a model first loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heylook_core import Capability, ModelEntry, ParameterGroup, ProviderSpec, hookimpl
from heylook_echo.config import EchoConfig

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)


def _factory() -> type[Provider[EchoConfig]]:
    from heylook_echo.provider import EchoProvider

    return EchoProvider


SPEC = ProviderSpec(
    name="echo",
    factory=_factory,
    config_schema=EchoConfig,
    capabilities=frozenset(Capability),
    parameters=ParameterGroup.GENERATION,  # every parameter a chat or completion request may set
    max_concurrency=lambda config: config.concurrency,
    description="deterministic replies derived from the request (tests, benchmarks, template)",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)


@hookimpl
def register_models(register: Callable[[ModelEntry], None]) -> None:
    register(ModelEntry(id="echo", provider="echo", description="deterministic echo model"))
