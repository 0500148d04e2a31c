"""The response cache shared by all backends: SQLite, keyed by a hash of everything that decides a response.

The key covers the backend's identity (type, model and the settings that change outputs), the operation,
the full request (images by content hash) and the sampling settings. Only successful responses are stored,
so failures are retried on the next run, and a cached request is never sent again. WAL mode and a busy
timeout let many threads and processes write at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from docrerank.backends.messages import payload_hash

__all__ = ["ResponseCache", "cache_key"]


def cache_key(identity: dict[str, Any], operation: str, payload: dict[str, Any]) -> str:
    """The cache key of one request on one backend."""
    return payload_hash({"backend": identity, "operation": operation, "request": payload})


class ResponseCache:
    """A SQLite table of responses; ``hits`` and ``misses`` count lookups since it was opened."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, operation TEXT, value TEXT NOT NULL)"
        )
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached values among ``keys`` (counted as hits; the rest as misses)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk)
                found.update((key, json.loads(value)) for key, value in rows)
        self.hits += sum(1 for key in keys if key in found)
        self.misses += sum(1 for key in keys if key not in found)
        return found

    def put_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Store ``(key, operation, value)`` triples in one transaction."""
        if not items:
            return
        rows = [(key, operation, json.dumps(value, ensure_ascii=False)) for key, operation, value in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable for process pools / Ray: reopen by path
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])
