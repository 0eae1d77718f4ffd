"""/docs and /redoc work without internet: their scripts come from the server, and a headless Chromium that can
reach nothing but the server renders the operations. Chromium is Debian's (``make test-deps`` installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest

from heylook_core.testing import serve

CHROMIUM = os.environ.get("HEYLOOK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def test_the_doc_pages_name_no_cdn(client) -> None:  # noqa: ANN001 - the conftest fixture
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        assert "cdn.jsdelivr.net" not in page.text and "fonts.googleapis.com" not in page.text
        for asset in [part.split('"')[0] for part in page.text.split('src="')[1:]]:
            assert asset.startswith("/-/docs-assets/"), asset
            assert client.get(asset).status_code == 200, asset


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran, in a Chromium that resolves no host but the server's."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9",  # any request that is not to the server fails
            "--proxy-bypass-list=127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (make test-deps installs it)")
def test_docs_and_redoc_render_offline_in_chromium() -> None:
    with serve() as server:
        assert httpx.get(server.url + "/docs").status_code == 200
        swagger = rendered(server.url + "/docs")
        assert "opblock" in swagger  # Swagger UI drew its operation blocks
        assert "/v1/chat/completions" in swagger and "/v1/embeddings" in swagger
        redoc = rendered(server.url + "/redoc")
        assert "/v1/chat/completions" in redoc
