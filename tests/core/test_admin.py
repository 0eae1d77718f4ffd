"""Admin routes against a real ``heylookllm serve``: pin and unpin, and a restart that drains, then re-executes the
process in place with the same arguments."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from heylook_core.testing import serve

ADMIN = {"Authorization": "Bearer root"}
CONFIG = """\
max_loaded_models = 1
[server]
admin_key = "root"
[[models]]
id = "a"
provider = "echo"
[models.config]
token_delay_ms = 100
[[models]]
id = "b"
provider = "echo"
"""


def _chat(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_pin_and_unpin(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(CONFIG)
    with serve(config) as server:
        assert httpx.post(server.url + "/v1/admin/models/a/pin").status_code == 401
        reply = httpx.post(server.url + "/v1/admin/models/a/pin", headers=ADMIN)
        assert reply.json() == {"id": "a", "state": "loaded", "pinned": True}
        # max_loaded_models = 1 and "a" is pinned: "b" cannot make room
        assert _chat(server.url, "b").status_code == 503
        reply = httpx.post(server.url + "/v1/admin/models/a/unpin", headers=ADMIN)
        assert reply.json() == {"id": "a", "state": "loaded", "pinned": False}
        assert _chat(server.url, "b").status_code == 200
        assert httpx.get(server.url + "/health").json()["loaded"] == ["b"]
        assert httpx.post(server.url + "/v1/admin/models/nope/pin", headers=ADMIN).status_code == 404


def test_restart_drains_then_comes_back_in_place(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(CONFIG)
    with serve(config) as server:
        assert _chat(server.url, "b").status_code == 200
        assert httpx.get(server.url + "/health").json()["loaded"] == ["b"]
        slow: dict[str, httpx.Response] = {}
        thread = threading.Thread(target=lambda: slow.update(r=_chat(server.url, "a", max_tokens=20)))
        thread.start()
        time.sleep(0.8)  # the slow request is generating (20 tokens, 100 ms each)
        reply = httpx.post(server.url + "/v1/admin/restart", headers=ADMIN)
        assert reply.status_code == 202
        assert reply.json()["pid"] == server.process.pid
        thread.join(60)
        assert slow["r"].status_code == 200  # drained: it finished before the restart
        assert slow["r"].json()["usage"]["completion_tokens"] == 20
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(server.url + "/health", timeout=1)
                health = answer.json() if answer.status_code == 200 else None  # 503 while it drains
                if health is not None and health["loaded"] == []:  # a fresh process: nothing loaded yet
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert health is not None and health["loaded"] == [], server.log()
        assert server.process.poll() is None  # the same process (exec in place)
        assert _chat(server.url, "b").status_code == 200
        assert "restarting:" in server.log()
