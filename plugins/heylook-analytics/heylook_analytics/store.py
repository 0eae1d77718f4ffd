"""The DuckDB side of the analytics plugin: the table, a batching writer thread and the summary queries.

This module imports ``duckdb`` at the top, so the plugin module imports it only in ``startup`` (and the CLI command
only when it runs). All database work happens off the event loop: ``Recorder.record`` only appends to a list under
a lock; a background thread writes the batch every second, and the HTTP routes call the query methods through
``asyncio.to_thread``. One connection is used, and every use of it is serialised by ``Recorder._db_lock``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0

# One row per generation. No prompt, reply or header is stored: only what is needed to count and time requests.
COLUMNS = (
    "ts",  # when the generation ended, UTC (TIMESTAMP without time zone)
    "request_id",
    "model_id",
    "provider",
    "endpoint",  # "chat" or "completion"
    "stream",
    "prompt_tokens",  # NULL when the generation ended without usage (error, cancelled)
    "completion_tokens",
    "cached_tokens",
    "finish_reason",
    "ttft_ms",  # time to the first delta; NULL when none came
    "duration_ms",
    "tokens_per_s",  # completion_tokens over duration_ms (end to end); NULL without usage
    "status",  # "ok", "error" or "cancelled"
    "error_type",
    "error_message",
    "api_key",  # the name of the request's API key ([server] api_keys); NULL without keys
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts TIMESTAMP NOT NULL,
    request_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    stream BOOLEAN NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    finish_reason VARCHAR,
    ttft_ms DOUBLE,
    duration_ms DOUBLE NOT NULL,
    tokens_per_s DOUBLE,
    status VARCHAR NOT NULL,
    error_type VARCHAR,
    error_message VARCHAR,
    api_key VARCHAR
)
"""

SUMMARY = """
SELECT
    model_id,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'ok') AS ok,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(completion_tokens), 0) AS completion_tokens,
    coalesce(sum(prompt_tokens), 0) + coalesce(sum(completion_tokens), 0) AS total_tokens,
    median(ttft_ms) AS ttft_ms_median,
    quantile_cont(ttft_ms, 0.95) AS ttft_ms_p95,
    median(tokens_per_s) AS tokens_per_s_median,
    quantile_cont(tokens_per_s, 0.95) AS tokens_per_s_p95
FROM requests
WHERE ts >= ?
GROUP BY model_id
ORDER BY model_id
"""


def utcnow() -> datetime:
    """The current UTC time as a naive datetime, the way the ``ts`` column stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def summary(connection: duckdb.DuckDBPyConnection, hours: float) -> dict[str, Any]:
    """Per-model counts, tokens and latency figures over the last ``hours`` hours."""
    since = utcnow() - timedelta(hours=hours)
    rows = connection.execute(SUMMARY, [since]).fetchall()
    models = []
    for row in rows:
        (model, requests, ok, errors, cancelled, prompt, completion, total, ttft_med, ttft_p95, tps_med, tps_p95) = row
        models.append(
            {
                "model": model,
                "requests": requests,
                "ok": ok,
                "errors": errors,
                "cancelled": cancelled,
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "total_tokens": int(total),
                "ttft_ms": {"median": _round(ttft_med), "p95": _round(ttft_p95)},
                "tokens_per_s": {"median": _round(tps_med), "p95": _round(tps_p95)},
            }
        )
    return {"hours": hours, "since": since.isoformat() + "Z", "models": models}


def recent(connection: duckdb.DuckDBPyConnection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most recent rows, newest first."""
    cursor = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM requests ORDER BY ts DESC LIMIT ?", [limit])
    result = []
    for row in cursor.fetchall():
        item = dict(zip(COLUMNS, row, strict=True))
        item["ts"] = item["ts"].isoformat() + "Z"
        result.append(item)
    return result


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


class Recorder:
    """Owns the one read-write connection; batches rows in memory and writes them on a background thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = duckdb.connect(str(path))
        self._connection.execute(SCHEMA)
        self._connection.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS api_key VARCHAR")  # older files
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()  # held for an append or a swap only: safe on the event loop
        self._db_lock = threading.Lock()  # serialises every use of the connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heylook-analytics", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (a dict keyed by ``COLUMNS``); never touches the disk."""
        values = tuple(row.get(column) for column in COLUMNS)
        with self._pending_lock:
            self._pending.append(values)

    def flush(self) -> int:
        """Write the queued rows; returns how many. Errors are logged and the rows dropped."""
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        placeholders = ", ".join("?" for _ in COLUMNS)
        try:
            with self._db_lock:
                self._connection.executemany(
                    f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
                )
        except Exception:
            logger.exception("analytics: could not write %d row(s) to %s", len(rows), self.path)
            return 0
        return len(rows)

    def summary(self, hours: float) -> dict[str, Any]:
        self.flush()
        with self._db_lock:
            return summary(self._connection, hours)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        self.flush()
        with self._db_lock:
            return recent(self._connection, limit)

    def close(self) -> None:
        """Stop the writer thread, write what is left and close the database."""
        self._stop.set()
        self._thread.join()
        self.flush()
        with self._db_lock:
            self._connection.close()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self.flush()
