"""Test helpers shipped with the core, for the core's tests and for plugin authors.

``serve(...)`` starts ``heylookllm serve`` as a subprocess on a free loopback port and waits until ``/health``
answers; use it as a context manager and point the ``openai`` SDK at ``server.base_url``. ``wait_healthy`` and
``stop_process`` do its waiting and stopping for other servers a test starts (an upstream, a peer to compare with).

``installed_problems(...)`` says whether the tests import the distributions as installed (from their wheels), or
a source tree that shadows them: a test asserting it is empty makes a file missing from a wheel fail the tests.

This module is public (``heylook_core.PUBLIC_MODULES``) but imported by test code only: nothing in a running server
imports it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def heylookllm_command() -> list[str]:
    """The command that runs the installed ``heylookllm`` with this interpreter."""
    return [sys.executable, "-m", "heylook_core.cli"]


@contextlib.contextmanager
def serve(
    config: str | os.PathLike[str] | None = None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[ServerProcess]:
    """Run ``heylookllm serve`` on a free port for the duration of the ``with`` block."""
    port = free_port()
    command = [*heylookllm_command(), "serve", "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    command += list(args)
    environment = dict(os.environ)
    environment.update(env or {})
    log_file = tempfile.NamedTemporaryFile(prefix="heylook-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, env=environment, cwd=cwd, start_new_session=True
    )
    server = ServerProcess(process, port, Path(log_file.name))
    try:
        wait_healthy(process, server.url + "/health", timeout, "heylookllm", server.log)
        yield server
    finally:
        stop_process(process)
        log_file.close()


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, timeout: float, name: str, log: Callable[[], str] = str
) -> None:
    """Poll ``url`` until it answers 200; raise ``RuntimeError`` (with ``log()``) if ``process`` exits first or
    ``timeout`` seconds pass. For a server a test or benchmark started itself (``serve`` uses it)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer within {timeout} s:\n{log()}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it; kill it after 15 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def write_config(directory: str | os.PathLike[str], text: str, name: str = "models.toml") -> Path:
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    return path


def installed_problems(*distributions: str, cwd: str | os.PathLike[str] | None = None) -> list[str]:
    """Why the named distributions are not what this interpreter imports; empty when they are.

    For each distribution, every top-level package its wheel installed must be imported from the installed files
    (not a source tree earlier on ``sys.path``, not an editable install), and a package's ``__version__``, where it
    has one, must be the distribution's version. With ``cwd``, a subprocess started there (as the tests start
    ``heylookllm``) must import the same files: ``python -m`` and ``-c`` put their working directory first on
    ``sys.path``, unless ``PYTHONSAFEPATH`` is set (Python 3.11+).
    """
    problems: list[str] = []
    expected: dict[str, Path] = {}
    for name in distributions:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        packages = sorted(
            {Path(str(file)).parts[0] for file in dist.files or () if Path(str(file)).name == "__init__.py"} - {".."}
        )
        if not packages:
            problems.append(f"{name} installed no package files (an editable install?); install its wheel")
        for package in packages:
            if len(Path(package).parts) != 1 or not package.isidentifier():
                continue
            wanted = Path(str(dist.locate_file(f"{package}/__init__.py"))).resolve()
            expected[package] = wanted
            module = importlib.import_module(package)
            imported = Path(str(module.__file__)).resolve()
            if imported != wanted:
                problems.append(f"{package} is imported from {imported}, not from the installed {name} ({wanted})")
            version = getattr(module, "__version__", None)
            if version is not None and version != dist.version:
                problems.append(f"{package}.__version__ is {version}, the installed {name} is {dist.version}")
    if cwd is not None and expected:
        code = "import sys, importlib\nfor name in sys.argv[1:]:\n    print(importlib.import_module(name).__file__)"
        result = subprocess.run(
            [sys.executable, "-c", code, *expected], capture_output=True, text=True, cwd=cwd, check=False
        )
        if result.returncode != 0:
            problems.append(f"a subprocess in {cwd} could not import {', '.join(expected)}: {result.stderr.strip()}")
        else:
            for (package, wanted), line in zip(expected.items(), result.stdout.splitlines(), strict=False):
                if Path(line).resolve() != wanted:
                    problems.append(f"a subprocess in {cwd} imports {package} from {line}, not {wanted}")
    return problems
