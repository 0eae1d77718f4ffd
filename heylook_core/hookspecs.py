"""The hooks a heylook plugin can implement. ``docs/plugins.md`` documents each one with this exact signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    from fastapi import APIRouter, FastAPI

    from heylook_core.config import ModelEntry, Settings
    from heylook_core.middleware import GenerationContext, GenerationRequest, Wrapper
    from heylook_core.providers import ProviderSpec

PROJECT = "heylook"

# The version of the plugin contract: everything a plugin uses from ``heylook_core`` (the names in its ``__all__``,
# these hooks, the provider methods and the request and result types). Semver: a minor version only adds, a major
# one may remove or change (docs/plugins.md, "Contract version and compatibility"). A plugin declares the range it
# supports with ``HEYLOOK_CONTRACT = ">=1,<2"`` in its entry point module.
CONTRACT_VERSION = "1.1.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    """Register provider specs by calling ``register(spec)`` once for each."""


@hookspec
def register_models(register: Callable[[ModelEntry], None]) -> None:
    """Offer ready-to-serve models by calling ``register(entry)``; served when no models.toml exists."""


@hookspec
def wrap_generation(request: GenerationRequest, context: GenerationContext) -> Wrapper | None:
    """Return an async wrapper ``(request, call_next)`` to run around this generation, or ``None``."""


@hookspec
def startup(app: FastAPI, settings: Settings) -> Awaitable[None] | None:
    """Run when the server starts (may be a coroutine function)."""


@hookspec
def shutdown(app: FastAPI) -> Awaitable[None] | None:
    """Run when the server stops, in reverse order of startup (may be a coroutine function)."""


@hookspec
def register_routes(router: APIRouter) -> None:
    """Add HTTP routes to the server."""


@hookspec
def register_commands(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``heylookllm`` subcommands: ``cli.add_parser(name)``, then ``set_defaults(handler=fn)``."""
