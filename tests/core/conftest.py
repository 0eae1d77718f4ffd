from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from heylook_core.app import create_app
from heylook_core.server import build_server

os.environ.setdefault("HEYLOOK_LOAD_PLUGINS", "echo")

EXAMPLE = """\
default_model = "echo-small"
max_loaded_models = 2
[[models]]
id = "echo-small"
provider = "echo"
aliases = ["echo"]
[models.config]
token_delay_ms = 0
"""


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads a models.toml from the developer's machine."""
    monkeypatch.delenv("HEYLOOK_CONFIG", raising=False)
    monkeypatch.delenv("HEYLOOK_API_KEY", raising=False)
    monkeypatch.delenv("HEYLOOK_ADMIN_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))  # stored responses
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "models.toml") -> Path:
        path = tmp_path / "configs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_client(write_config: Callable[[str], Path]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(text: str = EXAMPLE, plugins: list[tuple[str, object]] = ()) -> TestClient:
        server = build_server(write_config(text), extra_plugins=plugins)
        client = TestClient(create_app(server), base_url="http://127.0.0.1", raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
