"""The analytics plugin against a real ``heylookllm serve`` with the echo provider, driven by the openai SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from heylook_core.testing import ServerProcess, heylookllm_command, serve, write_config

CONFIG = """
[[models]]
id = "echo"
provider = "echo"

[[models]]
id = "slow"
provider = "echo"
[models.config]
token_delay_ms = 50
"""

SECRET = "zebra-private-words"  # appears in prompts; must never reach the database


def env_for(db: Path, **extra: str) -> dict[str, str]:
    return {"HEYLOOK_ANALYTICS_DB": str(db), "HEYLOOK_LOAD_PLUGINS": "echo,analytics", **extra}


def run_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env_for(db)}
    return subprocess.run(
        [*heylookllm_command(), "analytics", *args], capture_output=True, text=True, env=environment, timeout=60
    )


def recent(server: ServerProcess, limit: int = 50) -> list[dict[str, Any]]:
    response = httpx.get(server.url + "/-/analytics/recent", params={"limit": limit}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True
    return body["data"]


def summary(server: ServerProcess, **params: Any) -> dict[str, Any]:
    response = httpx.get(server.url + "/-/analytics", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def by_model(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {model["model"]: model for model in result["models"]}


class Session:
    """One server run with a known set of requests; the tests below check what the plugin made of them."""

    def __init__(self, server: ServerProcess, db: Path) -> None:
        self.server = server
        self.db = db
        self.client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)
        self.usage: dict[str, Any] = {}
        self.first_chunk_at = self.last_chunk_at = 0.0

    def drive(self) -> None:
        client = self.client
        chat = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": f"hello there {SECRET}"}]
        )
        self.usage["chat"] = chat.usage

        stream = client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": f"one two three {SECRET}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        self.usage["stream"] = chunks[-1].usage
        self.stream_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        completion = client.completions.create(model="echo", prompt=f"a b c {SECRET}", max_tokens=7)
        self.usage["completion"] = completion.usage

        with pytest.raises(openai.APIStatusError) as failure:
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"!error {SECRET}"}])
        self.error_status = failure.value.status_code

        # Unbuffered: 8 tokens 50 ms apart; note when the first and the last content chunk reach the client.
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
        )
        arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
        self.content_chunks = len(arrivals)
        self.first_chunk_at, self.last_chunk_at = arrivals[0], arrivals[-1]

        # The client goes away after two chunks of a reply that would take 10 s.
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": SECRET}], max_tokens=200, stream=True
        )
        for index, _ in enumerate(stream):
            if index == 2:
                break
        stream.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    directory = tmp_path_factory.mktemp("analytics")
    db = directory / "data" / "analytics.duckdb"  # the parent folder does not exist yet
    config = write_config(directory, CONFIG)
    with serve(config, env=env_for(db)) as server:
        state = Session(server, db)
        state.drive()
        # the cancelled request is recorded once the server notices the disconnect
        deadline = time.monotonic() + 20
        while not any(row["status"] == "cancelled" for row in recent(server)):
            assert time.monotonic() < deadline, f"no cancelled row recorded:\n{server.log()}"
            time.sleep(0.2)
        state.rows = recent(server)
        state.summary = summary(server)
    return state  # the server has stopped: the CLI test reads the file it left


def test_plugin_module_does_not_import_duckdb() -> None:
    code = "import sys, heylook_analytics.plugin; print('duckdb' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_streams_pass_through_unchanged_and_unbuffered(session: Session) -> None:
    assert session.stream_text == f"one two three {SECRET}"
    assert session.content_chunks == 8
    # 8 tokens 50 ms apart: a buffered stream would deliver the first chunk together with the last
    assert session.last_chunk_at - session.first_chunk_at > 0.2


def test_recent_rows_match_the_requests(session: Session) -> None:
    rows = session.rows
    assert len(rows) == 6
    assert len({row["request_id"] for row in rows}) == 6
    timestamps = [row["ts"] for row in rows]
    assert timestamps == sorted(timestamps, reverse=True)  # newest first
    cancelled, unbuffered, error, completion, stream, chat = rows

    def check(row: dict[str, Any], usage: Any, endpoint: str, is_stream: bool, finish: str) -> None:
        assert (row["status"], row["endpoint"], row["stream"], row["finish_reason"]) == (
            "ok",
            endpoint,
            is_stream,
            finish,
        )
        assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
        assert row["model_id"] == "echo" and row["provider"] == "echo"
        assert 0 <= row["ttft_ms"] <= row["duration_ms"]
        assert row["tokens_per_s"] > 0
        assert row["error_type"] is None

    check(chat, session.usage["chat"], "chat", False, "stop")
    check(stream, session.usage["stream"], "chat", True, "stop")
    check(completion, session.usage["completion"], "completion", False, "length")
    assert session.usage["completion"].completion_tokens == 7

    assert session.error_status == 502
    assert error["status"] == "error" and error["error_type"] == "ProviderError"
    assert "scripted failure" in error["error_message"]
    assert error["prompt_tokens"] is None and error["ttft_ms"] is None

    assert unbuffered["model_id"] == "slow" and unbuffered["status"] == "ok" and unbuffered["completion_tokens"] == 8
    assert unbuffered["duration_ms"] >= 8 * 50

    assert cancelled["model_id"] == "slow" and cancelled["stream"] is True
    assert cancelled["status"] == "cancelled" and cancelled["completion_tokens"] is None
    assert cancelled["finish_reason"] is None and cancelled["ttft_ms"] is not None
    assert cancelled["duration_ms"] < 200 * 50  # it stopped when the client left, not after the whole reply


def test_no_content_is_stored(session: Session) -> None:
    assert SECRET not in json.dumps(session.rows)


def test_summary_per_model(session: Session) -> None:
    assert session.summary["enabled"] is True and session.summary["hours"] == 24
    models = by_model(session.summary)
    assert set(models) == {"echo", "slow"}
    echo, slow = models["echo"], models["slow"]
    usages = [session.usage[name] for name in ("chat", "stream", "completion")]
    assert (echo["requests"], echo["ok"], echo["errors"], echo["cancelled"]) == (4, 3, 1, 0)
    assert echo["prompt_tokens"] == sum(u.prompt_tokens for u in usages)
    assert echo["completion_tokens"] == sum(u.completion_tokens for u in usages)
    assert echo["total_tokens"] == sum(u.total_tokens for u in usages)
    assert (slow["requests"], slow["ok"], slow["errors"], slow["cancelled"]) == (2, 1, 0, 1)
    assert slow["completion_tokens"] == 8
    ttfts = sorted(row["ttft_ms"] for row in session.rows if row["model_id"] == "echo" and row["ttft_ms"] is not None)
    assert echo["ttft_ms"]["median"] == pytest.approx(ttfts[1], abs=1e-3)  # three values: the middle one
    assert echo["ttft_ms"]["median"] <= echo["ttft_ms"]["p95"] <= ttfts[-1] + 1e-3
    assert echo["tokens_per_s"]["median"] <= echo["tokens_per_s"]["p95"]


def test_query_parameters_are_validated(tmp_path: Path) -> None:
    with serve(write_config(tmp_path, CONFIG), env=env_for(tmp_path / "analytics.duckdb")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        for word in ("one", "two", "three"):
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": word}])
        for params in ({"hours": 0}, {"hours": -1}, {"hours": "soon"}, {"hours": 24 * 367}):
            response = httpx.get(server.url + "/-/analytics", params=params, timeout=10)
            assert response.status_code == 400, (params, response.text)
            assert response.json()["error"]["param"] == "hours"
        for params in ({"limit": 0}, {"limit": 100_000}, {"limit": "x"}):
            response = httpx.get(server.url + "/-/analytics/recent", params=params, timeout=10)
            assert response.status_code == 400, (params, response.text)
            assert response.json()["error"]["param"] == "limit"
        assert len(recent(server, limit=2)) == 2
        assert by_model(summary(server, hours=0.5))["echo"]["requests"] == 3
        # a window that ends before these requests: nothing
        assert summary(server, hours=1e-9)["models"] == []


def test_cli_reads_the_same_numbers_after_the_server_stops(session: Session) -> None:
    result = run_cli(session.db, "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["database"] == str(session.db)
    assert printed["models"] == session.summary["models"]

    table = run_cli(session.db, "--hours", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    echo_line = next(line for line in lines if line.startswith("echo "))
    assert echo_line.split()[1:4] == ["4", "1", "0"]

    bad = run_cli(session.db, "--hours", "0")
    assert bad.returncode != 0 and "--hours" in bad.stderr


def test_rows_queued_at_shutdown_are_written(tmp_path: Path) -> None:
    db = tmp_path / "analytics.duckdb"
    with serve(write_config(tmp_path, CONFIG), env=env_for(db)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "last words"}])
    # stopped right after the request: the shutdown hook wrote the queued row
    result = run_cli(db, "--json")
    assert result.returncode == 0, result.stderr
    assert [(m["model"], m["requests"], m["ok"]) for m in json.loads(result.stdout)["models"]] == [("echo", 1, 1)]


def test_cli_without_a_database(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "missing.duckdb", "--json")
    assert result.returncode == 1
    assert "no analytics database" in result.stderr


def test_turned_off_records_nothing(tmp_path: Path) -> None:
    db = tmp_path / "off" / "analytics.duckdb"
    with serve(write_config(tmp_path, CONFIG), env=env_for(db, HEYLOOK_ANALYTICS="0")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "not counted"}])
        assert reply.choices[0].message.content == "not counted"
        off = "turned off (HEYLOOK_ANALYTICS=0)"
        assert summary(server) == {"enabled": False, "reason": off, "hours": 24.0, "models": []}
        recent_rows = httpx.get(server.url + "/-/analytics/recent", timeout=10).json()
        assert recent_rows == {"enabled": False, "reason": off, "data": []}
    assert not db.exists() and not db.parent.exists()


def test_routes_need_a_key_when_keys_are_required(tmp_path: Path) -> None:
    env = env_for(tmp_path / "analytics.duckdb", HEYLOOK_API_KEY="k1")
    with serve(write_config(tmp_path, CONFIG), env=env) as server:
        for path in ("/-/analytics", "/-/analytics/recent"):
            assert httpx.get(server.url + path, timeout=10).status_code == 401
            wrong = httpx.get(server.url + path, headers={"Authorization": "Bearer nope"}, timeout=10)
            assert wrong.status_code == 401
            keyed = httpx.get(server.url + path, headers={"Authorization": "Bearer k1"}, timeout=10)
            assert keyed.status_code == 200 and keyed.json()["enabled"] is True


def test_a_second_server_on_the_same_database_says_so(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    config = write_config(tmp_path, CONFIG)
    with serve(config, env=env_for(db)) as first, serve(config, env=env_for(db)) as second:
        assert f"analytics: {db} is in use by another process" in second.log()
        assert summary(second)["enabled"] is False
        assert summary(second)["reason"] == "the database is in use by another process"
        client = openai.OpenAI(base_url=second.base_url, api_key="unused", max_retries=0)
        assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}]).choices
        assert summary(first)["enabled"] is True  # the first one keeps recording


def test_rows_carry_the_key_name_never_the_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '[server]\napi_keys = ["sk-plain-secret", {name = "alice", key = "sk-alice-secret"}]\n' + CONFIG
    )
    with serve(config, env=env_for(tmp_path / "analytics.duckdb")) as server:
        for key in ("sk-alice-secret", "sk-plain-secret"):
            client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
        response = httpx.get(
            server.url + "/-/analytics/recent", headers={"Authorization": "Bearer sk-plain-secret"}, timeout=10
        )
        rows = response.json()["data"]
    assert sorted(row["api_key"] for row in rows) == ["alice", "key-1"]
    assert "secret" not in json.dumps(rows)
