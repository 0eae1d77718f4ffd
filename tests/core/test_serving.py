"""`heylookllm serve` as users run it: ports, "listening" lines, and SIGTERM with requests in flight."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from heylook_core.testing import ServerProcess, serve

SLOW = """\
[server]
shutdown_grace_s = {grace}
[[models]]
id = "slow"
provider = "echo"
[models.config]
token_delay_ms = 50
"""
ENV = {"HEYLOOK_LOAD_PLUGINS": "echo"}


def config(tmp_path: Path, grace: float) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(SLOW.format(grace=grace))
    return path


def test_a_taken_port_is_one_clear_error_and_never_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "heylook_core.cli",
                "serve",
                "--port",
                str(port),
                "--config",
                str(config(tmp_path, 1)),
            ],
            capture_output=True,
            text=True,
            env={**ENV, "PATH": "", "HOME": str(tmp_path)},
            timeout=60,
        )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "listening" not in output


def test_listening_is_logged_once_with_the_bound_address(tmp_path: Path) -> None:
    with serve(config(tmp_path, 1), env=ENV) as server:
        log = server.log()
    assert log.count("heylook listening on") == 1
    assert f"heylook listening on http://127.0.0.1:{server.port}/v1" in log


def _stream(server: ServerProcess, tokens: int, out: list[Any]) -> None:
    body = {"model": "slow", "messages": [{"role": "user", "content": "x"}], "max_tokens": tokens, "stream": True}
    try:
        with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
    except httpx.HTTPError as error:
        out.append(error)


def _start_stream(server: ServerProcess, tokens: int) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=_stream, args=(server, tokens, out), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(out) < 3 and time.monotonic() < deadline:  # the role chunk and a couple of tokens
        time.sleep(0.02)
    assert len(out) >= 3, out
    return thread, out


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(tmp_path: Path) -> None:
    with serve(config(tmp_path, 10), env=ENV) as server:
        thread, out = _start_stream(server, tokens=30)  # 1.5 s at 50 ms a token
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": "slow", "messages": [{"role": "user", "content": "y"}]},
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "shutting_down"
        thread.join(15)
        assert out[-1] == "[DONE]"
        finishes = [json.loads(item)["choices"][0]["finish_reason"] for item in out[:-1] if json.loads(item)["choices"]]
        assert finishes[-1] == "length"  # the request in flight finished whole
        assert server.process.wait(15) == 0
        assert "shutting down: 1 request(s) in flight" in server.log()


def test_the_end_of_the_grace_ends_streams_with_an_error_event(tmp_path: Path) -> None:
    with serve(config(tmp_path, 0.5), env=ENV) as server:
        thread, out = _start_stream(server, tokens=400)  # 20 s
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        thread.join(15)
        assert time.monotonic() - started < 6
        assert out[-1] == "[DONE]"
        error = json.loads(out[-2])["error"]
        assert error["code"] == "shutting_down"
        assert server.process.wait(15) == 0


def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    with serve(config(tmp_path, 60), env=ENV) as server:
        thread, _ = _start_stream(server, tokens=400)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(15)
        assert time.monotonic() - started < 8  # not the 60 s grace
        thread.join(10)
