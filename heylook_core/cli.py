"""The ``heylookllm`` command. Without a subcommand it serves (``heylookllm serve``).

Subcommands are registered through the ``register_commands`` hook, the core's own ones included
(:mod:`heylook_core.commands`); each sets ``handler=fn`` and ``fn(args)`` returns the exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from heylook_core.errors import ConfigError, PluginLoadError

if TYPE_CHECKING:
    from heylook_core.plugins import PluginHost

logger = logging.getLogger("heylook_core")


def build_parser() -> tuple[argparse.ArgumentParser, PluginHost]:
    from heylook_core import __version__
    from heylook_core.plugins import PluginHost

    parser = argparse.ArgumentParser(
        prog="heylookllm",
        description="A local LLM server that speaks the OpenAI HTTP API. Without a command, serves.",
    )
    parser.add_argument("--version", action="version", version=f"heylookllm {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    host = PluginHost(defer_fatal=True).load()  # `plugins` and `doctor` show what stops `serve`
    host.register_commands(commands)
    return parser, host


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, host = build_parser()
    except PluginLoadError as error:
        configure_logging("error")
        logger.error("%s", error)
        return 2
    names = {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    }
    # global options come first; the next word is the command, and without one we serve
    index = 0
    while index < len(args_list) and (args_list[index] == "--log-level" or args_list[index].startswith("--log-level=")):
        index += 1 if "=" in args_list[index] else 2
    at_help = index < len(args_list) and args_list[index] in ("-h", "--help", "--version")
    if not at_help and (index >= len(args_list) or args_list[index] not in names):
        args_list.insert(index, "serve")  # ``heylookllm --port 8081`` means ``heylookllm serve --port 8081``
    args = parser.parse_args(args_list)
    configure_logging(getattr(args, "log_level", "info"))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    args.plugin_host = host
    try:
        if args.command not in ("plugins", "doctor"):
            host.check_fatal()
        return int(handler(args) or 0)
    except (ConfigError, PluginLoadError) as error:
        logger.error("%s", error)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
