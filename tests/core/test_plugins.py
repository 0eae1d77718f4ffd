"""The plugin host: isolation, strict mode, selection, name clashes, and every hook documented and exercised."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from heylook_core import ModelEntry, hookimpl, hookspecs
from heylook_core.app import build_server, create_app
from heylook_core.errors import PluginLoadError
from heylook_core.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "heylook_spec")]


class Misspelt:
    @hookimpl
    def register_provider(self, register: Any) -> None:  # missing the "s"
        pass


class RaisesOnRegister:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        raise RuntimeError("cannot find my engine")


class SecondEcho:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        from heylook_echo.plugin import SPEC

        register(SPEC)


class Lifecycle:
    def __init__(self, label: str, events: list[str]) -> None:
        self.label = label
        self.events = events

    @hookimpl
    async def startup(self, app: Any, settings: Any) -> None:
        self.events.append(f"start {self.label} {len(settings.models)}")

    @hookimpl
    def shutdown(self, app: Any) -> None:
        self.events.append(f"stop {self.label}")


class Routes:
    @hookimpl
    def register_routes(self, router: APIRouter) -> None:
        @router.get("/-/hello")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}


class Commands:
    @hookimpl
    def register_commands(self, cli: argparse._SubParsersAction) -> None:
        parser = cli.add_parser("hello", help="say hello")
        parser.add_argument("--name", default="world")
        parser.set_defaults(handler=lambda args: f"hello {args.name}")


class Offers:
    @hookimpl
    def register_models(self, register: Any) -> None:
        register(ModelEntry(id="offered-echo", provider="echo", config={"filler": " la"}))


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert HOOKS, "no hook specifications found"
    for name in HOOKS:
        signature = str(inspect.signature(getattr(hookspecs, name))).replace("'", "")
        assert f"def {name}{signature}" in docs, f"docs/plugins.md lacks the exact signature of hook '{name}'"


def test_every_hook_is_exercised_by_a_core_test() -> None:
    sources = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests" / "core").glob("test_*.py"))
    for name in HOOKS:
        assert re.search(rf"@hookimpl\n\s+(async )?def {name}\(", sources), f"no test implements hook '{name}'"


def test_unknown_hook_name_fails_that_plugin_by_name() -> None:
    host = PluginHost(extra_plugins=[("misspelt", Misspelt())]).load()
    record = host.records["misspelt"]
    assert record.status == "failed"
    assert "misspelt" in (record.error or "") and "register_provider" in (record.error or "")
    assert "echo" in host.providers  # the rest loaded
    assert not host.pm.is_registered(Misspelt)


def test_registration_error_is_isolated_and_strict_mode_fails() -> None:
    host = PluginHost(extra_plugins=[("raiser", RaisesOnRegister())]).load()
    assert host.records["raiser"].status == "failed"
    assert "cannot find my engine" in (host.records["raiser"].error or "")
    assert host.pm.get_plugin("raiser") is None
    with pytest.raises(PluginLoadError, match="raiser.*cannot find my engine"):
        PluginHost(extra_plugins=[("raiser", RaisesOnRegister())], strict=True).load()


def test_strict_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYLOOK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="HEYLOOK_STRICT_PLUGINS"):
        PluginHost(extra_plugins=[("raiser", RaisesOnRegister())]).load()


def test_duplicate_provider_name_names_both_plugins() -> None:
    with pytest.raises(PluginLoadError) as caught:
        PluginHost(extra_plugins=[("second-echo", SecondEcho())]).load()
    assert "'echo'" in str(caught.value) and "'second-echo'" in str(caught.value)


def test_selection_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYLOOK_LOAD_PLUGINS", "")
    host = PluginHost().load()
    assert host.records["echo"].status == "disabled" and "echo" not in host.providers
    monkeypatch.setenv("HEYLOOK_LOAD_PLUGINS", "echo")
    monkeypatch.setenv("HEYLOOK_DISABLE_PLUGINS", "echo")
    assert PluginHost().load().records["echo"].status == "disabled"
    monkeypatch.delenv("HEYLOOK_DISABLE_PLUGINS")
    host = PluginHost().load()
    assert host.records["echo"].status == "loaded"
    assert host.records["echo"].distribution == "heylook-echo" and host.records["echo"].version
    assert host.records["commands"].builtin


def test_register_models_are_served_without_config() -> None:
    server = build_server(extra_plugins=[("offers", Offers())])
    assert server.settings.source == "plugins"
    assert "offered-echo" in server.settings.model_ids()
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        body = client.post(
            "/v1/chat/completions",
            json={"model": "offered-echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        ).json()
    assert body["choices"][0]["message"]["content"] == "x la"


def test_startup_and_shutdown_order() -> None:
    events: list[str] = []
    plugins = [("first", Lifecycle("first", events)), ("second", Lifecycle("second", events))]
    server = build_server(extra_plugins=plugins)
    with TestClient(create_app(server), base_url="http://127.0.0.1"):
        # hook call order: the most recently registered plugin first
        assert events == ["start second 1", "start first 1"]
    assert events[2:] == ["stop first", "stop second"]


class FailsToStart:
    @hookimpl
    def startup(self, app: Any, settings: Any) -> None:
        raise OSError("database locked")

    @hookimpl
    def wrap_generation(self, request: Any, context: Any) -> Any:
        raise AssertionError("a plugin that failed to start must not wrap generations")


def test_failing_startup_hook_is_isolated() -> None:
    server = build_server(extra_plugins=[("fails", FailsToStart())])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 200
        record = next(p for p in client.get("/-/plugins").json()["plugins"] if p["name"] == "fails")
    assert record["status"] == "failed" and "database locked" in record["error"]


def test_register_routes() -> None:
    server = build_server(extra_plugins=[("routes", Routes())])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        assert client.get("/-/hello").json() == {"hello": "world"}


def test_register_commands() -> None:
    host = PluginHost(extra_plugins=[("commands-test", Commands())]).load()
    parser = argparse.ArgumentParser()
    host.register_commands(parser.add_subparsers())
    args = parser.parse_args(["hello", "--name", "you"])
    assert args.handler(args) == "hello you"
    assert {"serve", "plugins", "models", "doctor"} <= set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_loading_plugins_imports_no_engine() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from heylook_core.plugins import PluginHost; h = PluginHost().load(); "
        "print(','.join(sorted(m for m in sys.modules if m.startswith('heylook_echo'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "heylook_echo,heylook_echo.plugin"
