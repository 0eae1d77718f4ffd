"""Fixtures for the web page tests: a real ``heylookllm serve`` with the echo model and headless Chromium.

Chromium is Debian's ``chromium`` package (``scripts/webui-test-deps.sh`` installs it), driven through Playwright
pointed at that executable; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from heylook_core.testing import ServerProcess, serve, write_config

CHROMIUM = os.environ.get("HEYLOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "admin-test-key"
API_KEY = "page-test-key"

CONFIG = """
default_model = "echo"

[server]
admin_key = "{admin}"
{keys}

[[models]]
id = "echo"
provider = "echo"
description = "answers at once"

[[models]]
id = "slow"
provider = "echo"
[models.config]
token_delay_ms = {delay}
"""

ARTIFACTS = Path(os.environ.get("HEYLOOK_ARTIFACTS") or Path(__file__).parent / "artifacts")


def config_text(*, keys: bool = False, delay: int = 60) -> str:
    return CONFIG.format(admin=ADMIN_KEY, keys=f'api_keys = ["{API_KEY}"]' if keys else "", delay=delay)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("webui")
    config = write_config(directory, config_text())
    env = {"HEYLOOK_LOAD_PLUGINS": "echo,webui,analytics", "HEYLOOK_ANALYTICS_DB": str(directory / "a.duckdb")}
    with serve(config, env=env) as process:
        yield process


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("webui-keys")
    config = write_config(directory, config_text(keys=True))
    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "echo,webui"}) as process:
        yield process


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/webui-test-deps.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Offline:
    """Routes every request of a browser context: loopback goes through, anything else is aborted and noted."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def __call__(self, route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        host = urlsplit(url).hostname or ""
        scheme = urlsplit(url).scheme
        if scheme in ("data", "blob") or host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.blocked.append(url)
            route.abort()  # type: ignore[attr-defined]


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def context(browser: object, offline: Offline, request: pytest.FixtureRequest) -> Iterator[object]:
    options = getattr(request, "param", None) or {}
    context = browser.new_context(viewport={"width": 1200, "height": 800}, **options)  # type: ignore[attr-defined]
    context.route("**/*", offline)
    context.set_default_timeout(15000)
    yield context
    context.close()
    assert offline.blocked == [], f"the page tried to reach the network: {offline.blocked}"


@pytest.fixture
def page(context: object) -> Iterator[object]:
    page = context.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))  # an uncaught exception in the page's code
    page.errors = errors
    yield page
    assert errors == [], f"the page's code raised: {errors}"


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path
