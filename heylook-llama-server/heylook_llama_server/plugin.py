"""The llama-server plugin's entry point module: the provider spec and the CLI command.

The config schema is :mod:`heylook_llama_server.config`, shared with the provider.

Light on purpose: it imports the core's contract and pydantic only. The provider (``httpx``, process supervision)
is imported by ``factory`` when a model first loads; the build code by the ``install`` command when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heylook_core import Availability, Capability, ParameterGroup, ProviderSpec, hookimpl
from heylook_llama_server.config import LlamaServerConfig

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

# Request parameters llama-server honours: the core's (``repetition_penalty`` is sent as ``repeat_penalty``), and
# llama-server's own, let through as extra request fields.
CORE_PARAMETERS: frozenset[str] = ParameterGroup.SAMPLING | ParameterGroup.OUTPUT_CONTROL | ParameterGroup.LOGPROBS
EXTRA_PARAMETERS = frozenset({"grammar", "json_schema", "cache_prompt", "ignore_eos", "n_probs", "typical_p"})


def capabilities(config: LlamaServerConfig) -> frozenset[Capability]:
    if config.embedding:
        return frozenset({Capability.EMBEDDINGS, Capability.TOKENIZE})
    return frozenset({Capability.CHAT, Capability.COMPLETION, Capability.TOKENIZE})


def parameters(config: LlamaServerConfig) -> frozenset[str]:
    return frozenset() if config.embedding else CORE_PARAMETERS | EXTRA_PARAMETERS


def concurrency(config: LlamaServerConfig) -> int:
    return config.parallel * max(1, len(config.upstream_urls()) if config.remote else 1)


def check() -> Availability:
    from heylook_llama_server.binary import describe

    return describe()


def _factory() -> type[Provider[LlamaServerConfig]]:
    from heylook_llama_server.provider import LlamaServerProvider

    return LlamaServerProvider


SPEC = ProviderSpec(
    name="llama_server",
    factory=_factory,
    config_schema=LlamaServerConfig,
    capabilities=capabilities,
    parameters=parameters,
    max_concurrency=concurrency,
    check=check,
    description="llama.cpp's llama-server: supervised local processes with parallel slots, or remote upstreams",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)


def _install_command(args: argparse.Namespace) -> int:
    from heylook_llama_server.install import install_command

    return install_command(args)


def _which_command(args: argparse.Namespace) -> int:
    from heylook_llama_server.binary import which_command

    return which_command(args)


@hookimpl
def register_commands(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = cli.add_parser("llama-server", help="manage the llama-server binary")
    sub = parser.add_subparsers(dest="llama_server_command", metavar="COMMAND")
    install = sub.add_parser("install", help="build llama-server from source into the user cache (once)")
    install.add_argument("--force", action="store_true", help="build again even when a binary exists")
    install.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: CPU count)")
    install.add_argument(
        "--flags", choices=("native-noamx", "portable", "native"), default=None, help="one flag set, no fallback"
    )
    install.set_defaults(handler=_install_command)
    which = sub.add_parser("which", help="print the llama-server binary heylook would use")
    which.set_defaults(handler=_which_command)

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=usage)
