"""``heylookllm service``: the systemd unit passes ``systemd-analyze verify``, the launchd plist parses, install and
uninstall write and remove exactly their files, a public host needs a key, and no running systemd is said clearly."""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from heylook_core import service_unit
from heylook_core.errors import ConfigError


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    service_unit.register(parser.add_subparsers())
    args = parser.parse_args(["service", *argv])
    return args.handler(args)


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setattr(service_unit, "systemd_running", lambda: False)
    monkeypatch.setattr(service_unit, "launchd_running", lambda: False)
    return home


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conf dir" / "models.toml"  # a space: the unit quotes it
    path.parent.mkdir()
    path.write_text('[server]\nport = 8099\n[[models]]\nid = "echo"\nprovider = "echo"\n')
    return path


def test_systemd_install_and_uninstall_touch_only_the_unit(
    home: Path, config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "systemd")
    assert run("install", "--config", str(config)) == 0
    unit = home / ".config" / "systemd" / "user" / "heylook.service"
    assert files_under(home) == {unit.relative_to(home)}
    text = unit.read_text()
    assert (
        f'ExecStart={sys.executable} -m heylook_core.cli serve --host 127.0.0.1 --port 8099 --config "{config}"' in text
    )
    assert "Restart=on-failure" in text and "StandardOutput=journal" in text and "WantedBy=default.target" in text
    assert "systemd is not running on this machine" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="exists"):
        run("install", "--config", str(config))
    assert run("uninstall") == 0
    assert files_under(home) == set()


def test_the_unit_passes_systemd_analyze_verify(home: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install -y systemd)")
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "systemd")
    assert run("install", "--config", str(config), "--no-start") == 0
    unit = home / ".config" / "systemd" / "user" / "heylook.service"
    # verify as a system unit file (a user manager is not needed to check the syntax and the executable)
    copy = home / "check" / "heylook.service"
    copy.parent.mkdir()
    copy.write_text(unit.read_text())
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    if result.returncode != 0 and ("Failed to" in output and "bus" in output.lower()):
        pytest.skip(f"systemd-analyze cannot run in this container: {output.strip()}")
    problems = [line for line in output.splitlines() if "heylook.service" in line]
    assert result.returncode == 0 and not problems, output


def test_launchd_plist_parses_and_is_removed(home: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "launchd")
    assert run("install", "--config", str(config), "--port", "8123") == 0
    plist = home / "Library" / "LaunchAgents" / "com.heylook.server.plist"
    data = plistlib.loads(plist.read_bytes())
    assert data["Label"] == "com.heylook.server"
    assert data["ProgramArguments"] == [
        sys.executable,
        "-m",
        "heylook_core.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--config",
        str(config),
    ]
    assert data["KeepAlive"] == {"SuccessfulExit": False} and data["RunAtLoad"] is True
    log = home / "Library" / "Logs" / "heylook" / "heylook.log"
    assert data["StandardOutPath"] == data["StandardErrorPath"] == str(log)
    assert files_under(home) == {plist.relative_to(home)}
    if sys.platform == "darwin" and shutil.which("plutil"):
        assert subprocess.run(["plutil", "-lint", str(plist)]).returncode == 0
    assert run("uninstall") == 0
    assert files_under(home) == set()


def test_a_public_host_without_a_key_is_refused(home: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "systemd")
    with pytest.raises(ConfigError, match="without an API key: anyone who can reach 0.0.0.0:8099"):
        run("install", "--config", str(config), "--host", "0.0.0.0")
    assert files_under(home) == set()
    keyed = config.with_name("keyed.toml")
    keyed.write_text(config.read_text().replace("[server]\n", '[server]\napi_keys = ["k1"]\n'))
    assert run("install", "--config", str(keyed), "--host", "0.0.0.0") == 0
    assert run("uninstall") == 0
    assert run("install", "--config", str(config), "--host", "0.0.0.0", "--force") == 0


def test_commands_that_need_systemd_say_so(home: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "systemd")
    with pytest.raises(ConfigError, match="not installed as a service"):
        run("start")
    run("install", "--config", str(config))
    for action in ("start", "stop", "restart", "status", "logs"):
        with pytest.raises(service_unit.NoServiceManager, match="systemd is not running on this machine"):
            run(action)


def test_system_wide_needs_root(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_unit, "platform_kind", lambda: "systemd")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match="needs root"):
        run("install", "--system-wide")


def test_templates_ship_in_the_package() -> None:
    for name in ("heylook.service", "heylook.plist"):
        assert "${" in service_unit.template(name).template
