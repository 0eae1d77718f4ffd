"""The plugin host: isolation, strict mode, selection, name clashes, and every hook documented and exercised."""

from __future__ import annotations

import argparse
import inspect
import logging
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from heylook_core import CONTRACT_VERSION, Delta, ModelEntry, hookimpl, hookspecs
from heylook_core.app import create_app
from heylook_core.errors import PluginLoadError
from heylook_core.plugins import PluginHost
from heylook_core.server import build_server

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
    assert out == "heylook_echo,heylook_echo.config,heylook_echo.plugin"  # the engine (heylook_echo.provider) is not


# -- hooks go through pluggy: isolation, hook wrappers, firstresult, tracing ------------------------------------------


class CountsRoutes:
    def __init__(self, path: str) -> None:
        self.path = path
        self.calls = 0

    @hookimpl
    def register_routes(self, router: APIRouter) -> None:
        self.calls += 1
        router.add_api_route(self.path, lambda: {"path": self.path})


class RaisesInRoutes:
    def __init__(self) -> None:
        self.generations = 0

    @hookimpl
    def register_routes(self, router: APIRouter) -> None:
        raise RuntimeError("my template directory is missing")

    @hookimpl
    def wrap_generation(self, request: Any, context: Any) -> None:
        self.generations += 1


def test_a_plugin_raising_in_a_hook_is_named_and_blocked_and_the_others_go_on() -> None:
    before, after = CountsRoutes("/-/before"), CountsRoutes("/-/after")
    raiser = RaisesInRoutes()
    # pluggy calls the most recently registered first: "after", then the raiser, then "before"
    server = build_server(extra_plugins=[("before", before), ("raiser", raiser), ("after", after)])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        assert client.get("/-/before").json() == {"path": "/-/before"}
        assert client.get("/-/after").json() == {"path": "/-/after"}
        reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert reply.status_code == 200
        record = next(p for p in client.get("/-/plugins").json()["plugins"] if p["name"] == "raiser")
    assert (before.calls, after.calls) == (1, 1)  # each ran once: the one that ran before the failure is not re-run
    assert record["status"] == "failed"
    assert record["error"] == "register_routes: RuntimeError: my template directory is missing"
    assert server.host.pm.is_blocked("raiser") and raiser.generations == 0  # none of its hooks runs any more


def test_strict_mode_stops_on_a_plugin_raising_in_a_hook() -> None:
    host = PluginHost(extra_plugins=[("raiser", RaisesInRoutes())], strict=True).load()
    with pytest.raises(PluginLoadError, match="raiser.*register_routes.*HEYLOOK_STRICT_PLUGINS"):
        host.register_routes(APIRouter())


class RaisesInCommands:
    @hookimpl(trylast=True)  # after the core's commands
    def register_commands(self, cli: argparse._SubParsersAction) -> None:
        cli.add_parser("serve")  # taken by the core: argparse refuses it


def test_a_plugin_raising_in_register_commands_leaves_the_others_commands() -> None:
    host = PluginHost(extra_plugins=[("clash", RaisesInCommands()), ("commands-test", Commands())]).load()
    parser = argparse.ArgumentParser()
    host.register_commands(parser.add_subparsers())
    assert {"serve", "plugins", "hello"} <= set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert host.records["clash"].status == "failed" and "register_commands" in (host.records["clash"].error or "")


class OptionalHook:
    @hookimpl(optionalhook=True)
    def register_widgets(self, register: Any) -> None:  # a hook of a later contract: optional here
        pass


def test_an_unknown_hook_marked_optional_loads() -> None:
    host = PluginHost(extra_plugins=[("optional", OptionalHook()), ("misspelt", Misspelt())]).load()
    assert host.records["optional"].status == "loaded"
    assert host.records["optional"].hooks == ["register_widgets"]
    assert host.records["misspelt"].status == "failed"
    assert "optionalhook=True" in (host.records["misspelt"].error or "")  # the message says how to mark one


class ListsRoutes:
    """A pluggy hook wrapper: runs around every plugin's register_routes, whichever registered first."""

    @hookimpl(wrapper=True)
    def register_routes(self, router: APIRouter) -> Any:
        before = len(router.routes)
        result = yield
        added = sorted(route.path for route in router.routes[before:])  # type: ignore[attr-defined]
        router.add_api_route("/-/plugin-routes", lambda: added)
        return result


def test_a_hook_wrapper_runs_around_every_plugins_implementation() -> None:
    plugins = [("lists", ListsRoutes()), ("hello", Routes()), ("later", CountsRoutes("/-/later"))]
    server = build_server(extra_plugins=plugins)
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        assert client.get("/-/plugin-routes").json() == ["/-/hello", "/-/later"]


class Outermost:
    """A hook wrapper on wrap_generation: sees every plugin's wrapper and puts its own outside them all."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl(wrapper=True)
    def wrap_generation(self, request: Any, context: Any) -> Any:
        wrappers = yield

        async def outer(request: Any, call_next: Any) -> Any:
            if self.fail:
                raise ValueError("outer wrapper broke")
            yield Delta(text=f"[{len(wrappers)}]")
            async for delta in call_next(request):
                yield delta

        return [outer, *wrappers]


class Tag:
    def __init__(self, label: str, fail: bool = False) -> None:
        self.label = label
        self.fail = fail

    @hookimpl(tryfirst=True)
    def wrap_generation(self, request: Any, context: Any) -> Any:
        async def wrapper(request: Any, call_next: Any) -> Any:
            if self.fail:
                raise KeyError(f"{self.label} broke")
            yield Delta(text=f"<{self.label}>")
            async for delta in call_next(request):
                yield delta

        return wrapper


class NoWrapper:
    @hookimpl
    def wrap_generation(self, request: Any, context: Any) -> None:
        return None  # pluggy's list then has fewer results than implementations


def chat_text(client: TestClient) -> Any:
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})


def test_a_hook_wrapper_on_wrap_generation_sees_and_reshapes_the_chain() -> None:
    plugins = [("outermost", Outermost()), ("a", Tag("a")), ("b", Tag("b"))]
    with TestClient(create_app(build_server(extra_plugins=plugins)), base_url="http://127.0.0.1") as client:
        # tryfirst would make a tag outermost; the hook wrapper still goes outside them all
        assert chat_text(client).json()["choices"][0]["message"]["content"] == "[2]<b><a>x"


@pytest.mark.parametrize(
    ("plugins", "named"),
    [
        ([("calm", Tag("calm")), ("angry", Tag("angry", fail=True))], "angry"),  # one class, two objects
        ([("angry", Tag("angry", fail=True)), ("calm", Tag("calm"))], "angry"),
        ([("outermost", Outermost(fail=True)), ("calm", Tag("calm"))], "outermost"),  # made by a hook wrapper
        ([("calm", Tag("calm")), ("off", NoWrapper()), ("angry", Tag("angry", fail=True))], "angry"),
    ],
)
def test_a_failing_wrapper_is_named_by_the_plugin_it_came_from(
    plugins: list[tuple[str, object]], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(build_server(extra_plugins=plugins)), base_url="http://127.0.0.1") as client:
        reply = chat_text(client)
    assert reply.status_code == 500
    assert f"plugin '{named}' failed" in reply.json()["error"]["message"]
    assert any(f"plugin '{named}': generation wrapper raised" in r.getMessage() for r in caplog.records)


class PickSpecs:
    @hookspecs.hookspec(firstresult=True)
    def pick_greeting(self, name: str) -> str | None:  # type: ignore[empty-body]
        """The first greeting a plugin offers for ``name``."""


class Greets:
    def __init__(self, greeting: str | None) -> None:
        self.greeting = greeting
        self.calls = 0

    @hookimpl
    def pick_greeting(self, name: str) -> str | None:
        self.calls += 1
        return None if self.greeting is None else f"{self.greeting} {name}"


class GreetsBadly:
    @hookimpl(tryfirst=True)
    def pick_greeting(self, name: str) -> str:
        raise LookupError("no greetings left")


def test_a_firstresult_hook_stops_at_the_first_result_and_skips_a_failing_plugin() -> None:
    polite, silent, casual = Greets("good day"), Greets(None), Greets("hi")
    plugins = [("polite", polite), ("casual", casual), ("silent", silent), ("bad", GreetsBadly())]
    host = PluginHost(extra_plugins=plugins)
    host.pm.add_hookspecs(PickSpecs)
    host.load()
    # call order: "bad" (tryfirst, raises: turned off), then "silent" (None), "casual" (a result: the last call)
    assert host.call("pick_greeting", name="you") == "hi you"
    assert (silent.calls, casual.calls, polite.calls) == (1, 1, 0)
    assert host.records["bad"].status == "failed" and "pick_greeting: LookupError" in (host.records["bad"].error or "")
    assert host.call("pick_greeting", name="again") == "hi again"


def test_trace_plugins_logs_every_hook_call(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="heylook_core.plugins")
    monkeypatch.setenv("HEYLOOK_TRACE_PLUGINS", "1")
    events: list[str] = []
    plugins = [("lifecycle", Lifecycle("x", events)), ("routes", Routes()), ("tag", Tag("t"))]
    with TestClient(create_app(build_server(extra_plugins=plugins)), base_url="http://127.0.0.1") as client:
        assert chat_text(client).status_code == 200
    traced = "\n".join(r.getMessage() for r in caplog.records if r.name == "heylook_core.plugins")
    for hook in ("register_providers", "register_models", "register_routes", "startup", "wrap_generation", "shutdown"):
        assert f"{hook} [hook]" in traced, f"HEYLOOK_TRACE_PLUGINS did not trace {hook}"
    assert "finish wrap_generation -->" in traced  # with the result pluggy returned


# -- the contract version -----------------------------------------------------------------------------------------


def test_the_contract_version_is_exported_semver() -> None:
    import heylook_core

    assert "CONTRACT_VERSION" in heylook_core.__all__
    assert re.fullmatch(r"\d+\.\d+\.\d+", heylook_core.CONTRACT_VERSION)
    assert PluginHost().load().report()["contract"] == heylook_core.CONTRACT_VERSION


def first_party_entry_points() -> list[tuple[str, Path]]:
    """Every first-party plugin's entry point module as a source file (each distribution's pyproject.toml names
    them), and the core's built-in plugin."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    found = [("commands", ROOT / "heylook_core" / "commands.py")]
    for pyproject in sorted([*ROOT.glob("heylook-*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")]):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        for name, value in project.get("entry-points", {}).get("heylook", {}).items():
            module = value.split(":", 1)[0]
            found.append((name, pyproject.parent / (module.replace(".", "/") + ".py")))
    return found


def test_every_first_party_plugin_declares_a_contract_range_this_core_meets() -> None:
    import ast

    from packaging.specifiers import SpecifierSet

    plugins = first_party_entry_points()
    assert len(plugins) >= 9, plugins  # the core's commands, echo, analytics, webui and the five backends
    for name, path in plugins:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "HEYLOOK_CONTRACT" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ]
        assert len(declared) == 1, f"{path} (plugin '{name}') declares no HEYLOOK_CONTRACT"
        assert SpecifierSet(declared[0]).contains(CONTRACT_VERSION), f"plugin '{name}': {declared[0]}"
    record = PluginHost().load().records["echo"]
    assert record.contract == ">=1,<2" and record.warnings == []


class FromTheFuture:
    HEYLOOK_CONTRACT = ">=2,<3"

    def __init__(self) -> None:
        self.started = False

    @hookimpl
    def register_providers(self, register: Any) -> None:
        from heylook_echo.plugin import SPEC

        register(replace(SPEC, name="future"))

    @hookimpl
    def startup(self, app: Any) -> None:
        self.started = True


def test_a_plugin_for_another_contract_fails_before_any_hook_is_registered() -> None:
    future = FromTheFuture()
    server = build_server(extra_plugins=[("future", future)])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        report = client.get("/-/plugins").json()
    record = next(p for p in report["plugins"] if p["name"] == "future")
    assert record["status"] == "failed" and record["hooks"] == [] and record["contract"] == ">=2,<3"
    assert "needs heylook plugin contract '>=2,<3'" in record["error"]
    assert f"offers contract {CONTRACT_VERSION}" in record["error"]
    assert "future" not in report["providers"] and not future.started
    assert server.host.pm.get_plugin("future") is None and server.host.pm.is_blocked("future")
    with pytest.raises(PluginLoadError, match="needs heylook plugin contract"):
        PluginHost(extra_plugins=[("future", FromTheFuture())], strict=True).load()


@pytest.mark.parametrize(("declared", "says"), [("version one", "is not a version range"), (1, "must be a version")])
def test_a_contract_range_that_is_not_one_fails_that_plugin(declared: object, says: str) -> None:
    plugin = type("Odd", (), {"HEYLOOK_CONTRACT": declared, "register_routes": Routes.register_routes})()
    host = PluginHost(extra_plugins=[("odd", plugin)]).load()
    assert host.records["odd"].status == "failed" and says in (host.records["odd"].error or "")
    assert host.records["echo"].status == "loaded"


UNDECLARED = Routes()  # an installed plugin (below, an entry point) that declares no contract range


def test_an_installed_plugin_that_declares_no_range_is_taken_for_contract_1(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from importlib import metadata

    import heylook_core.plugins as plugins_module

    entry_point = metadata.EntryPoint("undeclared", f"{__name__}:UNDECLARED", "heylook")
    monkeypatch.setattr(plugins_module.metadata, "entry_points", lambda group: [entry_point])
    record = PluginHost(load={"undeclared"}).load().records["undeclared"]
    assert record.status == "loaded" and record.contract is None
    assert "declares no HEYLOOK_CONTRACT" in record.warnings[0] and "'>=1,<2'" in record.warnings[0]
    assert any("declares no HEYLOOK_CONTRACT" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    monkeypatch.setattr(plugins_module, "CONTRACT_VERSION", "2.0.0")  # a core of the next major version
    record = PluginHost(load={"undeclared"}).load().records["undeclared"]
    assert record.status == "failed" and "'>=1,<2' (it declares no range)" in (record.error or "")
