"""Stored responses of the Responses API: what ``previous_response_id`` continues and ``GET /v1/responses/{id}`` reads.

One SQLite database (``responses.sqlite3`` under the user data dir, or ``[server] responses_path``), so a chain of
responses survives a restart; with ``[server] responses_persist = false`` it lives in memory. The store is bounded by
``responses_max_count`` and ``responses_max_bytes``: the oldest responses go first. Each row keeps the response
object, the input items of its own request, and the whole conversation up to and including its output (the
``context`` a continuation starts from), so a continuation never depends on an older row that was evicted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL,
    context TEXT NOT NULL
)
"""


@dataclass
class StoredResponse:
    id: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    context: list[dict[str, Any]]


def default_path() -> Path:
    from platformdirs import user_data_path

    return user_data_path("heylook") / "responses.sqlite3"


class ResponseStore:
    """A bounded, optionally persistent store of responses; safe to use from the event loop (calls are short)."""

    def __init__(self, path: str | Path | None, *, max_count: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path) if path is not None else None
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is None:
                target = ":memory:"
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = str(self.path)
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL" if self.path is not None else "PRAGMA journal_mode=MEMORY")
            db.execute(SCHEMA)
            self._db = db
            logger.debug("response store at %s", target)
        return self._db

    def put(self, record: StoredResponse) -> None:
        response = json.dumps(record.response, ensure_ascii=False, separators=(",", ":"))
        items = json.dumps(record.input_items, ensure_ascii=False, separators=(",", ":"))
        context = json.dumps(record.context, ensure_ascii=False, separators=(",", ":"))
        size = len(response) + len(items) + len(context)
        with self._lock:
            db = self._connect()
            db.execute("BEGIN")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO responses (id, size, response, input_items, context)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.id, size, response, items, context),
                )
                self._evict(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _evict(self, db: sqlite3.Connection) -> None:
        count, total = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM responses").fetchone()
        while count > 1 and (count > self.max_count or total > self.max_bytes):
            seq, size = db.execute("SELECT seq, size FROM responses ORDER BY seq LIMIT 1").fetchone()
            db.execute("DELETE FROM responses WHERE seq = ?", (seq,))
            count -= 1
            total -= size

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT response, input_items, context FROM responses WHERE id = ?", (response_id,))
                .fetchone()
            )
        if row is None:
            return None
        return StoredResponse(response_id, json.loads(row[0]), json.loads(row[1]), json.loads(row[2]))

    def delete(self, response_id: str) -> bool:
        with self._lock:
            cursor = self._connect().execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def count(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
