"""Discovery with real installed distributions: heylook-echo beside deliberately broken plugins (heylook-broken-example)
and plugins for the contract checks (heylook-future-example)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from heylook_core.testing import serve

CLI = [sys.executable, "-m", "heylook_core.cli"]


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEYLOOK_LOAD_PLUGINS", "HEYLOOK_DISABLE_PLUGINS", "HEYLOOK_STRICT_PLUGINS", "HEYLOOK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def plugins_report(**env: str) -> dict[str, dict[str, object]]:
    result = subprocess.run(
        [*CLI, "plugins", "--json"], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_broken_plugins_are_listed_as_failed_with_distribution() -> None:
    report = plugins_report()
    assert report["echo"]["status"] == "loaded"
    for name in ("broken_import", "broken_register"):
        assert report[name]["status"] == "failed"
        assert report[name]["distribution"] == "heylook-broken-example"
        assert report[name]["version"] == "0.0.1"
    assert "heylook_engine_that_is_not_installed" in str(report["broken_import"]["error"])
    assert "refused to initialise" in str(report["broken_register"]["error"])
    assert report["broken_register"]["providers"] == []


def test_server_serves_beside_broken_plugins() -> None:
    with serve() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "still here"}])
        assert reply.choices[0].message.content == "still here"
        health = httpx.get(server.url + "/health").json()
        assert sorted(health["failed_plugins"]) == ["broken_import", "broken_register", "needs_contract_2"]
        plugins = {p["name"]: p for p in httpx.get(server.url + "/-/plugins").json()["plugins"]}
        assert plugins["broken_import"]["status"] == "failed"
        assert "failed to load" in server.log()


def test_strict_mode_refuses_to_start() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "HEYLOOK_STRICT_PLUGINS": "1"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "broken_import" in result.stderr and "HEYLOOK_STRICT_PLUGINS" in result.stderr


def test_load_and_disable_selection() -> None:
    report = plugins_report(HEYLOOK_LOAD_PLUGINS="echo")
    assert report["echo"]["status"] == "loaded"
    assert report["broken_import"]["status"] == report["broken_register"]["status"] == "disabled"
    report = plugins_report(HEYLOOK_DISABLE_PLUGINS="broken_import,broken_register,needs_contract_2")
    assert report["echo"]["status"] == "loaded" and report["broken_import"]["status"] == "disabled"
    report = plugins_report(HEYLOOK_LOAD_PLUGINS="")
    assert all(p["status"] == "disabled" for name, p in report.items() if name != "commands")
    strict_selected = subprocess.run(
        [*CLI, "plugins"],
        capture_output=True,
        text=True,
        env={**os.environ, "HEYLOOK_STRICT_PLUGINS": "1", "HEYLOOK_LOAD_PLUGINS": "echo"},
    )
    assert strict_selected.returncode == 0  # strict mode only fails on plugins that are loaded


def test_doctor_reports_broken_plugins() -> None:
    result = subprocess.run([*CLI, "doctor"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "[fail] plugin broken_import" in result.stdout
    assert "HEYLOOK_DISABLE_PLUGINS=broken_import" in result.stdout
    assert "[  ok] provider echo" in result.stdout


def test_a_plugin_for_another_contract_is_refused_whole() -> None:
    from heylook_core import CONTRACT_VERSION

    record = plugins_report()["needs_contract_2"]
    assert record["status"] == "failed" and record["distribution"] == "heylook-future-example"
    assert record["contract"] == ">=2,<3" and record["hooks"] == [] and record["providers"] == []
    error = str(record["error"])
    assert "needs heylook plugin contract '>=2,<3'" in error and f"offers contract {CONTRACT_VERSION}" in error
    assert "heylook-future-example" in error  # what to install a fitting version of
    with serve() as server:
        assert httpx.get(server.url + "/-/future").status_code == 404  # its routes were never registered
        report = httpx.get(server.url + "/-/plugins").json()
        assert "future" not in report["providers"] and report["contract"] == CONTRACT_VERSION
        assert "needs heylook plugin contract" in server.log()
    doctor = subprocess.run([*CLI, "doctor"], capture_output=True, text=True)
    assert "[fail] plugin needs_contract_2: PluginLoadError: it needs heylook plugin contract" in doctor.stdout


def test_a_plugin_that_declares_no_contract_range_loads_with_a_warning() -> None:
    record = plugins_report()["undeclared"]
    assert record["status"] == "loaded" and record["contract"] is None and record["hooks"] == ["register_routes"]
    assert any("declares no HEYLOOK_CONTRACT" in str(warning) for warning in record["warnings"])  # type: ignore[union-attr]
    with serve() as server:
        assert httpx.get(server.url + "/-/undeclared").json() == {"loaded": "with a warning"}
    listing = subprocess.run([*CLI, "plugins"], capture_output=True, text=True, check=True).stdout
    assert "warning: declares no HEYLOOK_CONTRACT" in listing


def test_every_first_party_plugin_here_declares_its_contract() -> None:
    report = plugins_report()
    assert report["echo"]["contract"] == report["commands"]["contract"] == ">=1,<2"
    assert report["echo"]["warnings"] == [] and report["commands"]["warnings"] == []
