"""One log line per request, as an operator tails it: method, path, status, time, and what a generation made."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import openai

from heylook_core.testing import ServerProcess, serve

CONFIG = """\
[server]
api_keys = [{{name = "alice", key = "sk-alice"}}]
{extra}
[[models]]
id = "echo"
provider = "echo"
"""
ENV = {"HEYLOOK_LOAD_PLUGINS": "echo"}


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "models.toml"
    path.write_text(CONFIG.format(extra=extra))
    return path


def wait_for(server: ServerProcess, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = re.search(pattern, server.log(), re.MULTILINE)
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in:\n{server.log()}")


def test_each_request_is_one_line_with_status_time_and_tokens(tmp_path: Path) -> None:
    with serve(write(tmp_path), env=ENV) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-alice")
        try:
            result = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "one two three"}]
            )
            stream = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "four five"}], stream=True, max_tokens=1
            )
            list(stream)
        finally:
            client.close()
        assert result.usage is not None
        line = wait_for(server, r"POST /v1/chat/completions 200 \d+\.\d{3}s model=echo tokens=(\d+)\+(\d+) finish=stop")
        assert (int(line[1]), int(line[2])) == (result.usage.prompt_tokens, result.usage.completion_tokens)
        assert "key=alice client=127.0.0.1" in line.string[line.start() : line.string.index("\n", line.start())]
        # the streamed one is logged when it has ended, with its own finish
        wait_for(server, r"POST /v1/chat/completions 200 \d+\.\d{3}s model=echo tokens=\d+\+1 finish=length key=alice")
        # a refused request is logged with its status, and no key it did not prove
        assert httpx.get(server.base_url + "/models").status_code == 401
        wait_for(server, r"GET /v1/models 401 \d+\.\d{3}s client=127\.0\.0\.1$")
        # probes stay out of the log at the default level
        assert httpx.get(server.url + "/health").status_code == 200
        assert " /health " not in server.log()


def test_access_log_off(tmp_path: Path) -> None:
    with serve(write(tmp_path, "access_log = false"), env=ENV) as server:
        assert httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer sk-alice"}).status_code == 200
        time.sleep(0.3)
        assert "GET /v1/models" not in server.log()
