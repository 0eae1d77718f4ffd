"""``heylookllm service``: run the server in the background, as a systemd unit (Linux) or a launchd agent (macOS).

``install`` writes the unit from the templates shipped in the package (``heylook_core/templates``). The unit runs
the interpreter and the config file that ``install`` was run with (both as absolute paths), restarts on failure and
logs to the journal (Linux) or ``~/Library/Logs/heylook/heylook.log`` (macOS). A host that is not loopback needs an
API key (``[server] api_keys`` or ``HEYLOOK_API_KEY``), else ``install`` refuses unless ``--force``.

Not to be confused with :mod:`heylook_core.service`, the generation service.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

from heylook_core.errors import ConfigError

logger = logging.getLogger(__name__)

UNIT_NAME = "heylook.service"
LAUNCHD_LABEL = "com.heylook.server"
STOP_TIMEOUT_S = 45  # the server's drain (shutdown_grace_s, 30 s by default) plus margin


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def platform_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def template(name: str) -> Template:
    return Template(resources.files("heylook_core").joinpath("templates").joinpath(name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- paths


@dataclass
class Target:
    kind: str  # systemd or launchd
    system_wide: bool
    path: Path  # the unit or plist
    log_path: Path | None = None  # launchd only


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def target_for(kind: str, system_wide: bool) -> Target:
    if kind == "systemd":
        if system_wide:
            return Target(kind, True, Path("/etc/systemd/system") / UNIT_NAME)
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
        return Target(kind, False, config_home / "systemd" / "user" / UNIT_NAME)
    if system_wide:
        return Target(
            kind, True, Path("/Library/LaunchDaemons") / f"{LAUNCHD_LABEL}.plist", Path("/Library/Logs/heylook.log")
        )
    return Target(
        kind,
        False,
        _home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist",
        _home() / "Library" / "Logs" / "heylook" / "heylook.log",
    )


# ---------------------------------------------------------------- rendering


def serve_arguments(host: str, port: int, config: Path | None) -> list[str]:
    arguments = [sys.executable, "-m", "heylook_core.cli", "serve", "--host", host, "--port", str(port)]
    if config is not None:
        arguments += ["--config", str(config)]
    return arguments


def systemd_quote(word: str) -> str:
    """One ExecStart word: specifiers and variables escaped, quoted when it holds spaces or quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd(arguments: list[str], system_wide: bool, user: str | None = None) -> str:
    return template("heylook.service").substitute(
        exec_start=" ".join(systemd_quote(word) for word in arguments),
        working_directory=systemd_quote(str(_home()) if not system_wide else "/"),
        user_line=f"User={user}\n" if system_wide and user else "",
        stop_timeout=STOP_TIMEOUT_S,
        wanted_by="multi-user.target" if system_wide else "default.target",
    )


def render_launchd(arguments: list[str], log_path: Path) -> str:
    return template("heylook.plist").substitute(
        label=LAUNCHD_LABEL,
        program_arguments="\n".join(f"    <string>{escape(word)}</string>" for word in arguments),
        working_directory=escape(str(_home())),
        stop_timeout=STOP_TIMEOUT_S,
        log_path=escape(str(log_path)),
    )


# ---------------------------------------------------------------- the service manager


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 here (not so in most containers)."""
    return Path("/run/systemd/system").is_dir()


def launchd_running() -> bool:
    return sys.platform == "darwin" and shutil.which("launchctl") is not None


class NoServiceManager(ConfigError):
    """No running systemd or launchd to talk to."""


def _manager_missing(target: Target) -> NoServiceManager:
    if target.kind == "systemd":
        where = f"the unit is at {target.path}" if target.path.exists() else "no unit is installed"
        return NoServiceManager(
            "systemd is not running on this machine (no /run/systemd/system; a container usually has none), so "
            f"the service cannot be started, stopped or queried; {where}. Run the server in the foreground with "
            "'heylookllm serve' instead"
        )
    return NoServiceManager("launchd is not available here (launchctl not found); run 'heylookllm serve' instead")


def _systemctl(target: Target, *words: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["systemctl", *([] if target.system_wide else ["--user"]), *words]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ConfigError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _launchctl(*words: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["launchctl", *words], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ConfigError(f"launchctl {' '.join(words)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _domain(target: Target) -> str:
    return "system" if target.system_wide else f"gui/{os.getuid()}"


def _require_manager(target: Target) -> None:
    running = systemd_running() if target.kind == "systemd" else launchd_running()
    if not running:
        raise _manager_missing(target)


# ---------------------------------------------------------------- commands


def register(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = cli.add_parser("service", help="run the server in the background (systemd user unit, launchd agent)")
    actions = parser.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="write the unit (and enable and start it where the manager runs)")
    install.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    install.add_argument("--port", type=int, default=None, help="port (default: the config's, else 8080)")
    install.add_argument("--config", default=None, help="models.toml to serve (default: the one serve would find)")
    install.add_argument(
        "--force", action="store_true", help="replace an installed unit; allow a public host without a key"
    )
    install.add_argument("--no-start", action="store_true", help="write the unit only")
    for name, text in (
        ("uninstall", "stop and remove the unit"),
        ("start", "start the service"),
        ("stop", "stop the service"),
        ("restart", "restart the service"),
        ("status", "show the service's state"),
        ("logs", "show the service's log"),
    ):
        action = actions.add_parser(name, help=text)
        if name == "logs":
            action.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
            action.add_argument("--lines", "-n", type=int, default=100, help="lines to show (default 100)")
    for action in actions.choices.values():
        action.add_argument("--system-wide", action="store_true", help="a system unit (needs root)")
        action.set_defaults(handler=service_command)


def service_command(args: argparse.Namespace) -> int:
    kind = platform_kind()
    target = target_for(kind, args.system_wide)
    if args.system_wide and os.geteuid() != 0:
        raise ConfigError(
            f"--system-wide writes {target.path} and needs root: run it with sudo (or drop --system-wide)"
        )
    action = args.service_action
    if action == "install":
        return install(args, target)
    if action == "uninstall":
        return uninstall(target)
    if not target.path.exists():
        raise ConfigError(
            f"heylook is not installed as a service ({target.path} is missing): 'heylookllm service install'"
        )
    _require_manager(target)
    if kind == "systemd":
        if action == "logs":
            command = [
                "journalctl",
                *([] if target.system_wide else ["--user"]),
                "-u",
                UNIT_NAME,
                "-n",
                str(args.lines),
            ]
            return subprocess.call([*command, *(["-f"] if args.follow else ["--no-pager"])])
        if action == "status":
            return subprocess.call(
                ["systemctl", *([] if target.system_wide else ["--user"]), "status", "--no-pager", UNIT_NAME]
            )
        _systemctl(target, action, UNIT_NAME)
        _out(f"{action}: {UNIT_NAME}")
        return 0
    service = f"{_domain(target)}/{LAUNCHD_LABEL}"
    if action == "logs":
        assert target.log_path is not None
        return subprocess.call(["tail", "-n", str(args.lines), *(["-f"] if args.follow else []), str(target.log_path)])
    if action == "status":
        return _launchctl("print", service, check=False).returncode
    if action == "start":
        _launchctl("bootstrap", _domain(target), str(target.path), check=False)
        _launchctl("kickstart", service)
    elif action == "stop":
        _launchctl("bootout", service)
    else:
        _launchctl("kickstart", "-k", service)
    _out(f"{action}: {LAUNCHD_LABEL}")
    return 0


def _settings_for(config: Path | None) -> tuple[Path | None, int, bool]:
    """The config file (absolute), its port and whether it (or the environment) sets an API key."""
    from heylook_core.config import find_config, read_config_file

    path = find_config(config)
    keys = bool(os.environ.get("HEYLOOK_API_KEY", "").strip())
    port = 8080
    if path is not None:
        server = read_config_file(path).server
        keys = keys or bool(server.api_keys)
        port = server.port
        path = path.resolve()
    return path, port, keys


def install(args: argparse.Namespace, target: Target) -> int:
    from heylook_core.security import is_loopback_host

    config, config_port, has_key = _settings_for(args.config)
    port = args.port if args.port is not None else config_port
    if not is_loopback_host(args.host) and not has_key and not args.force:
        raise ConfigError(
            f"refusing to install a service on --host {args.host} without an API key: anyone who can reach "
            f"{args.host}:{port} could use the models. Set [server] api_keys in "
            f"{config or 'a models.toml given with --config'}, keep --host 127.0.0.1, or pass --force"
        )
    if target.path.exists() and not args.force:
        raise ConfigError(f"{target.path} exists; 'heylookllm service uninstall' first, or --force to replace it")
    arguments = serve_arguments(args.host, port, config)
    if target.kind == "systemd":
        user = os.environ.get("SUDO_USER") if target.system_wide else None
        text = render_systemd(arguments, target.system_wide, user)
    else:
        assert target.log_path is not None
        target.log_path.parent.mkdir(parents=True, exist_ok=True)
        text = render_launchd(arguments, target.log_path)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.path.with_name(target.path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target.path)
    _out(f"wrote {target.path}")
    _out(f"  runs: {' '.join(arguments)}")
    if args.no_start:
        return 0
    if target.kind == "systemd":
        if not systemd_running():
            _out(f"  not enabled: {_manager_missing(target)}")
            return 0
        _systemctl(target, "daemon-reload")
        _systemctl(target, "enable", "--now", UNIT_NAME)
        _out(f"  enabled and started {UNIT_NAME}; logs: heylookllm service logs")
        if not target.system_wide:
            _out("  to keep it running after logout: loginctl enable-linger")
    else:
        if not launchd_running():
            _out(f"  not loaded: {_manager_missing(target)}")
            return 0
        _launchctl("bootstrap", _domain(target), str(target.path))
        _out(f"  loaded {LAUNCHD_LABEL}; logs: {target.log_path}")
    return 0


def uninstall(target: Target) -> int:
    if not target.path.exists():
        _out(f"nothing to remove: {target.path} does not exist")
        return 0
    if target.kind == "systemd" and systemd_running():
        _systemctl(target, "disable", "--now", UNIT_NAME, check=False)
    elif target.kind == "launchd" and launchd_running():
        _launchctl("bootout", f"{_domain(target)}/{LAUNCHD_LABEL}", check=False)
    target.path.unlink()
    if target.kind == "systemd" and systemd_running():
        _systemctl(target, "daemon-reload", check=False)
    _out(f"removed {target.path}")
    if target.log_path is not None and target.log_path.exists():
        _out(f"  the log is kept: {target.log_path}")
    return 0
