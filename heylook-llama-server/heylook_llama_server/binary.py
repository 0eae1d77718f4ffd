"""Finding the llama-server binary, and where heylook builds its own.

The lookup order: the model's ``binary``, ``$HEYLOOK_LLAMA_SERVER``, ``llama-server`` on ``PATH``, then the binary
``heylookllm llama-server install`` built in the user cache dir
(``$HEYLOOK_CACHE``, else ``platformdirs.user_cache_dir("heylook")``, under ``llama-server/<version>/bin``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module stays importable without the core: scripts/build-llama-server.sh runs the installer
    from heylook_core import Availability

# The pinned source: llama-cpp-python's sdist carries a vendored llama.cpp tree that builds llama-server.
SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ENV_BINARY = "HEYLOOK_LLAMA_SERVER"
INSTALL_HINT = "run 'heylookllm llama-server install' (builds it once, about 10 minutes on 2 cores)"


def cache_root() -> Path:
    """heylook's cache dir: ``$HEYLOOK_CACHE``, else the platform's user cache dir for heylook."""
    explicit = os.environ.get("HEYLOOK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    try:
        import platformdirs
    except ImportError:  # the build script may run before any environment exists; this is platformdirs' answer
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heylook"
    return Path(platformdirs.user_cache_dir("heylook"))


def build_root(version: str = SOURCE_VERSION) -> Path:
    return cache_root() / "llama-server" / version


def built_binary(version: str = SOURCE_VERSION) -> Path:
    return build_root(version) / "bin" / ("llama-server.exe" if sys.platform == "win32" else "llama-server")


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


def describe() -> Availability:
    """``heylookllm doctor``'s line: which binary is used, its version, and how to get one."""
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
    note = f" (built by heylook from {SOURCE_PACKAGE} {SOURCE_VERSION})" if found.source == "heylook build" else ""
    return Availability(True, f"{found.path} from {found.source}{note}: {version}")


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
