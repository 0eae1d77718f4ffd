"""Finding the llama-server binary, and where heylook builds its own.

The lookup order: the model's ``binary``, ``$HEYLOOK_LLAMA_SERVER``, ``llama-server`` on ``PATH``, then the binary
``heylookllm llama-server install`` built and smoke-tested in the user cache dir (``$HEYLOOK_CACHE``, else
``platformdirs.user_cache_dir("heylook")``): ``llama-server/<version>/current`` names the chosen build's entry,
``llama-server/<version>/<key>/bin/llama-server``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from heylook_llama_server import ggml_build
from heylook_llama_server.ggml_build import Record, SmokeResult

if TYPE_CHECKING:  # this module stays importable without the core: scripts/build-llama-server.sh runs the installer
    from heylook_core import Availability

# The pinned source: llama-cpp-python's sdist carries a vendored llama.cpp tree that builds llama-server.
SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ENV_BINARY = "HEYLOOK_LLAMA_SERVER"
INSTALL_HINT = "run 'heylookllm llama-server install' (builds it once, about 15 minutes on 2 cores)"
BINARY_NAME = "llama-server.exe" if sys.platform == "win32" else "llama-server"
cache_root = ggml_build.cache_root


def build_root(version: str = SOURCE_VERSION) -> Path:
    return cache_root() / "llama-server" / version


def current_key(version: str = SOURCE_VERSION) -> str | None:
    """The cache key of the build ``install`` chose last, or ``None``."""
    try:
        return (build_root(version) / "current").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def select_build(key: str, version: str = SOURCE_VERSION) -> None:
    pointer = build_root(version) / "current"
    partial = pointer.with_name("current.partial")
    partial.write_text(key + "\n", encoding="utf-8")
    os.replace(partial, pointer)


def built_binary(version: str = SOURCE_VERSION) -> Path:
    """The chosen heylook build (``<version>/<key>/bin/llama-server``; ``<version>/bin/...`` before any build)."""
    key = current_key(version)
    return build_root(version) / key / "bin" / BINARY_NAME if key else build_root(version) / "bin" / BINARY_NAME


def build_record(path: Path) -> Record | None:
    """``build.json`` of a heylook build (the entry holding ``path``), else ``None``."""
    return Record.read(path.parent.parent)


@dataclass(frozen=True)
class Found:
    path: Path
    source: str  # "config", "$HEYLOOK_LLAMA_SERVER", "PATH" or "heylook build"


def find_binary(configured: str | None = None) -> Found | None:
    """The binary to use, or ``None``; a configured or ``$HEYLOOK_LLAMA_SERVER`` path that is missing is an error."""
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"binary '{configured}' in the model config is not an executable file")
        return Found(path, "config")
    env = os.environ.get(ENV_BINARY)
    if env:
        path = Path(env).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"${ENV_BINARY} = '{env}' is not an executable file")
        return Found(path, "$" + ENV_BINARY)
    on_path = shutil.which("llama-server")
    if on_path:
        return Found(Path(on_path), "PATH")
    built = built_binary()
    if built.is_file() and os.access(built, os.X_OK):
        return Found(built, "heylook build")
    return None


def binary_version(path: Path, timeout: float = 10.0) -> str:
    """The first line llama-server prints for ``--version`` (``version: 1 (abc123)``), or why that failed."""
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({type(error).__name__}: {error})"
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    version = next((line for line in lines if line.startswith("version")), lines[0] if lines else "no output")
    if done.returncode != 0:
        return f"{version} (exit code {done.returncode})"
    return version


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict[str, object], timeout: float) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def smoke_binary(path: Path, model: Path | None, threads: int, timeout: float = 180.0) -> SmokeResult:
    """Run ``path`` once: ``--version``, then (with ``model``) serve it on a free loopback port and ask for a short
    completion. ``crashed`` when the process was killed by a signal (the build cannot run on this CPU)."""
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return SmokeResult(False, False, f"{path} --version failed: {error}")
    if done.returncode != 0:
        return SmokeResult(
            False,
            ggml_build.died_by_signal(done.returncode),
            f"--version {ggml_build.describe_exit(done.returncode)}",
            done.stdout + done.stderr,
        )
    if model is None:
        return SmokeResult(True, False, "--version works (no model here to generate with)", done.stdout + done.stderr)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(path), "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "512"]
    command += ["--parallel", "1", "--threads", str(threads), "--threads-batch", str(threads)]
    command += ["-lv", "4"]  # verbosity 4 prints llama.cpp's system_info line: the CPU features compiled in
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        text, detail = "", ""
        try:
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
            if process.poll() is None and time.monotonic() < deadline:
                try:
                    reply = _post(url + "/completion", {"prompt": ggml_build.SMOKE_PROMPT, "n_predict": 4}, timeout)
                    text = str(reply.get("content", ""))
                except (urllib.error.URLError, OSError, ValueError) as error:
                    detail = f"the completion request failed: {error}"
            elif process.poll() is None:
                detail = f"no /health answer within {timeout:.0f} s"
        finally:
            if process.poll() is None and not detail:
                time.sleep(0.2)  # a worker that faults right after answering still shows up
            code = process.poll()
            if code is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            out.seek(0)
            output = out.read()
    info = next(
        (line.split("system_info:", 1)[1].strip() for line in output.splitlines() if "system_info:" in line), ""
    )
    if code is not None:
        crashed = ggml_build.died_by_signal(code)
        return SmokeResult(False, crashed, f"{ggml_build.describe_exit(code)} while serving", output, info)
    if detail:
        return SmokeResult(False, False, detail, output, info)
    return SmokeResult(True, False, f"generated {text!r}", output, info, text)


def describe(smoke: bool = True) -> Availability:
    """``heylookllm doctor``'s lines: which binary is used, its version and build, its smoke test, the threads."""
    from heylook_core import Availability

    try:
        found = find_binary()
    except FileNotFoundError as error:
        return Availability(False, str(error), f"fix ${ENV_BINARY}, unset it, or {INSTALL_HINT}")
    if found is None:
        return Availability(
            False,
            f"no llama-server binary (looked at ${ENV_BINARY}, PATH and {built_binary()}); "
            "remote models (url/urls) still work",
            INSTALL_HINT,
        )
    version = binary_version(found.path)
    record = build_record(found.path) if found.source == "heylook build" else None
    if record is not None:
        build = f"built by heylook from {SOURCE_PACKAGE} {SOURCE_VERSION}, flag set {record.flag_set}, key {record.key}"
    else:
        build = "not built by heylook: flags unknown"
    threads, why = ggml_build.physical_cores()
    lines = [f"{found.path} from {found.source}: {version}", f"build: {build}"]
    lines.append(f"threads: {threads} for generation and prompt processing by default ({why}); n_threads overrides")
    if not smoke:
        return Availability(True, "\n       ".join(lines))
    model = ggml_build.cache_root() / "models" / ggml_build.SMOKE_MODEL_NAME
    result = smoke_binary(found.path, model if model.is_file() else None, threads)
    lines.append(f"smoke test: {'passed' if result.ok else 'FAILED'}, {result.detail}")
    if result.system_info:
        lines.append(f"CPU features used: {ggml_build.cpu_features_used(result.system_info)}")
    detail = "\n       ".join(lines)
    if result.ok:
        return Availability(True, detail)
    if result.crashed:
        fix = (
            "this build uses instructions this CPU cannot run; rebuild it: heylookllm llama-server install --force "
            "(falls back to the portable flag set), or --flags portable"
            if found.source == "heylook build"
            else f"this binary ({found.source}) cannot run on this CPU; unset it or {INSTALL_HINT}"
        )
        return Availability(False, detail, fix)
    return Availability(False, detail, f"see the output above; {INSTALL_HINT} --force to rebuild")


def which_command(args: argparse.Namespace) -> int:
    try:
        found = find_binary()
    except FileNotFoundError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    if found is None:
        sys.stderr.write(f"no llama-server binary; {INSTALL_HINT}\n")
        return 1
    sys.stdout.write(f"{found.path}\n")
    return 0
