"""The core's own subcommands, registered through the same hook as plugin commands: serve, plugins, models, doctor."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from heylook_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from heylook_core.plugins import PluginHost

HEYLOOK_CONTRACT = ">=1,<2"  # the plugin contract versions this built-in plugin supports

logger = logging.getLogger("heylook_core")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


@hookimpl
def register_commands(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = cli.add_parser("serve", help="start the server (the default command)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--config", default=None, help="models.toml to use")
    serve.add_argument("--model-id", action="append", default=[], help="load this model before serving")
    serve.add_argument("--api-key", default=None, help="require this bearer key on /v1 (or set HEYLOOK_API_KEY)")
    serve.add_argument("--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=serve_command)

    plugins = cli.add_parser("plugins", help="list plugins with status, version, hooks, load time and error")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--verbose", "-v", action="store_true", help="show the traceback of each failed plugin")
    plugins.set_defaults(handler=plugins_command)

    models = cli.add_parser("models", help="list configured and offered models")
    models.add_argument("--config", default=None)
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(handler=models_command)

    doctor = cli.add_parser("doctor", help="check each provider's availability and say how to fix it")
    doctor.add_argument("--config", default=None)
    doctor.set_defaults(handler=doctor_command)

    from heylook_core import importer

    importer.register(cli)

    from heylook_core import service_unit

    service_unit.register(cli)


def serve_command(args: argparse.Namespace) -> int:
    from heylook_core.app import create_app
    from heylook_core.config import parse_keys
    from heylook_core.errors import ConfigError
    from heylook_core.server import build_server
    from heylook_core.serving import bind, serve, url_of

    server = build_server(args.config, preload=args.model_id, host=args.plugin_host)
    settings = server.settings.server
    if args.api_key is not None:
        keys = parse_keys(args.api_key, "--api-key")
        if settings.api_keys:
            logger.warning("--api-key replaces the %d configured API key(s)", len(settings.api_keys))
        settings.api_keys = [*keys]
    settings.host = args.host or settings.host  # the Host check accepts the bind address
    host = settings.host
    port = settings.port if args.port is None else args.port
    if settings.ollama_port is not None and settings.ollama_port == port:
        raise ConfigError(
            f"[server] ollama_port = {settings.ollama_port} is the main port; choose another (Ollama's is 11434)"
        )
    app = create_app(server)
    sockets = [(bind(host, port), True)]
    if settings.ollama_port is not None:
        try:
            sockets.append((bind(host, settings.ollama_port, "the Ollama listener ([server] ollama_port)"), False))
        except ConfigError:
            sockets[0][0].close()
            raise
    if settings.api_keys:
        logger.info("API keys required on /v1/*, /metrics and /-/plugins (%d key(s))", len(settings.api_keys))
    else:
        from heylook_core.security import is_loopback_host

        log = logger.info if is_loopback_host(host) else logger.warning
        log("no API key required: any client that can reach %s:%d may use it (set HEYLOOK_API_KEY)", host, port)
    logger.info("heylook listening on %s/v1", url_of(sockets[0][0]))
    from heylook_core.protocols.ollama import has_route

    if has_route(app, "/ui"):  # a web page plugin (heylook-webui) is installed: a browser opening / lands on it
        logger.info("web page on %s/ (open it in a browser)", url_of(sockets[0][0]))
    if len(sockets) > 1:
        logger.info("Ollama API listening on %s (ollama_port)", url_of(sockets[1][0]))
    status = serve(app, server, sockets, args.log_level)
    if server.restart_requested:
        restart_in_place(sockets)
    return status


def restart_in_place(sockets: list[tuple[socket.socket, bool]]) -> None:
    """Re-execute this process with its own interpreter and arguments (POST /v1/admin/restart, after the drain)."""
    for sock, _ in sockets:
        sock.close()  # the new process binds the same ports again
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    logger.info("restarting: %s", " ".join(argv))
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


def plugins_command(args: argparse.Namespace) -> int:
    host: PluginHost = args.plugin_host
    verbose = getattr(args, "verbose", False)
    report = host.report(verbose=verbose)
    if args.json:
        _out(json.dumps(report, indent=2))
        return 0
    python = report["python"]
    _out(f"Python {python['version']} at {python['executable']}")
    for record in report["plugins"]:
        dist = f"{record['distribution']} {record['version']}" if record["distribution"] else record["module"]
        hooks = ",".join(record["hooks"]) or ("(no hooks)" if record["status"] == "loaded" else "")
        _out(f"{record['name']:<16} {record['status']:<9} {dist:<32} {record['load_ms']:>8.1f} ms  {hooks}")
        if record["error"]:
            _out(f"{'':<16} error: {record['error']}")
        for warning in record["warnings"]:
            _out(f"{'':<16} warning: {warning}")
        for failure in record["failed_models"]:
            _out(f"{'':<16} model {failure['model']} refused: {failure['error']}")
        if verbose and record.get("traceback"):
            _out("\n".join(f"{'':<16} {line}" for line in record["traceback"].rstrip().splitlines()))
    for message in report["fatal"]:
        _out(f"the server will not start: {message}")
    return 0


def models_command(args: argparse.Namespace) -> int:
    from heylook_core.config import configure_model, load_settings

    host: PluginHost = args.plugin_host
    failed = [f"{r.name} ({r.error})" for r in host.failed()]
    settings = load_settings(host.providers, host.offered_models, config_path=args.config, failed_plugins=failed)
    rows = []
    for model in settings.models:
        rows.append((model, "configured" if settings.source != "plugins" else "offered"))
    if settings.source != "plugins":
        configured = set(settings.model_ids())
        for entry in host.offered_models:
            if entry.id not in configured:
                rows.append((configure_model(entry, host.providers, "plugins", failed), "offered (not served)"))
    data: list[dict[str, Any]] = [
        {
            "id": model.id,
            "provider": model.entry.provider,
            "source": source,
            "status": "unavailable" if model.unavailable else "available",
            "capabilities": sorted(c.value for c in model.capabilities),
            "aliases": model.entry.aliases,
            "default": model.id == settings.default_model,
        }
        for model, source in rows
    ]
    if args.json:
        _out(json.dumps({"source": settings.source, "models": data}, indent=2))
        return 0
    _out(f"models from {settings.source}:")
    for item in data:
        star = "*" if item["default"] else " "
        _out(
            f"{star} {item['id']:<24} {item['provider']:<14} {item['status']:<12} {item['source']:<22} "
            f"{','.join(item['capabilities'])}"
        )
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    host: PluginHost = args.plugin_host
    problems = 0
    python = host.report()["python"]
    _out(f"Python {python['version']} at {python['executable']}")
    for record in host.failed():
        problems += 1
        _out(f"[fail] plugin {record.name}: {record.error}")
        where = record.distribution or record.module
        _out(f"       fix: reinstall {where}, or set HEYLOOK_DISABLE_PLUGINS={record.name}")
    for failure in host.failed_models():
        problems += 1
        _out(f"[fail] plugin {failure['plugin']} ({failure['distribution']}) offers model {failure['model']}:")
        _out("       " + failure["error"].replace("\n", "\n       "))
    for record in host.records.values():
        for warning in record.warnings:
            _out(f"[warn] plugin {record.name}: {warning}")
    if not host.providers:
        problems += 1
        _out("[fail] no providers installed; install a backend: pip install heylook-llamacpp")
    for name, spec in sorted(host.providers.items()):
        try:
            result = spec.check()
        except Exception as error:  # a broken check is itself a finding
            from heylook_core.providers import Availability

            result = Availability(False, f"availability check raised {type(error).__name__}: {error}")
        mark = "ok" if result.ok else "fail"
        problems += 0 if result.ok else 1
        _out(f"[{mark:>4}] provider {name} (plugin {spec.plugin}){': ' + result.detail if result.detail else ''}")
        if not result.ok and result.fix:
            _out(f"       fix: {result.fix}")
    from heylook_core.config import load_settings
    from heylook_core.errors import ConfigError

    try:
        settings = load_settings(host.providers, host.offered_models, config_path=args.config)
        _out(f"[  ok] configuration: {settings.source}, {len(settings.models)} model(s)")
    except ConfigError as error:
        problems += 1
        _out(f"[fail] configuration: {error}")
    return 1 if problems else 0
