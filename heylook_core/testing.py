"""Test helpers shipped with the core, for the core's tests and for plugin authors.

``serve(...)`` starts ``heylookllm serve`` as a subprocess on a free loopback port and waits until ``/health``
answers; use it as a context manager and point the ``openai`` SDK at ``server.base_url``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"heylookllm exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"heylookllm did not answer within {timeout} s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log_file.close()


def write_config(directory: str | os.PathLike[str], text: str, name: str = "models.toml") -> Path:
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    return path
