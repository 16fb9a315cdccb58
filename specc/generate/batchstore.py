"""Batch records in the cache database: every batch (and the task keys in it) is written down before it exists.

Two tables beside ``generations``. They are created with ``CREATE TABLE IF NOT EXISTS`` and change
nothing an older reader relies on, so they need no new cache schema version: an older specc ignores
them, and this one adds them to an older cache of the same version the first time it opens it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

from specc.generate.cache import Cache

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    local_id TEXT PRIMARY KEY,      -- ours; also in the batch's metadata, so a batch we never heard back about is found
    build TEXT NOT NULL,            -- the spec's name
    endpoint TEXT NOT NULL,         -- the endpoint's URL without credentials; batches are polled where they were sent
    kind TEXT NOT NULL,             -- provider | export
    wave INTEGER NOT NULL,
    part INTEGER NOT NULL,
    state TEXT NOT NULL,            -- preparing, uploaded, then the provider's status; abandoned; exported
    batch_id TEXT,
    input_file_id TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    requests INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    est_usd REAL NOT NULL DEFAULT 0,  -- the most its requests can cost, held against the spending cap while it runs
    path TEXT,                      -- an exported wave's file
    collected_at REAL,              -- when its results were stored in the cache: nothing more to do
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_tasks (
    local_id TEXT NOT NULL,
    key TEXT NOT NULL,
    stage TEXT NOT NULL,
    principle_id TEXT NOT NULL,
    llm TEXT NOT NULL,
    PRIMARY KEY (local_id, key)
);
CREATE INDEX IF NOT EXISTS batch_tasks_key ON batch_tasks (key);
"""

# The provider's statuses after which a batch changes no more.
ENDED = ("completed", "expired", "cancelled", "failed")


@dataclass(frozen=True)
class BatchRecord:
    """One row of ``batches``."""

    local_id: str
    build: str
    endpoint: str
    kind: str
    wave: int
    part: int
    state: str
    batch_id: str | None
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    requests: int
    completed: int
    failed: int
    est_usd: float
    path: str | None
    collected_at: float | None
    created_at: float
    updated_at: float

    @property
    def outstanding(self) -> bool:
        """Sent to a provider, and its results not stored yet."""
        return self.kind == "provider" and self.state != "abandoned" and self.collected_at is None

    @property
    def name(self) -> str:
        """How a user sees it: wave and part, e.g. ``3.1``."""
        return f"{self.wave}.{self.part}"


_COLUMNS = ", ".join(f.name for f in fields(BatchRecord))
TaskRow = tuple[str, str, str, str]  # key, stage, principle_id, llm id


class BatchStore:
    """Reads and writes batch records through a Cache's connection."""

    def __init__(self, cache: Cache):
        self.cache = cache
        with cache.reading() as db:
            db.executescript(_SCHEMA)

    def record(
        self, *, build: str, endpoint: str, kind: str, wave: int, part: int, tasks: list[TaskRow],
        est_usd: float = 0.0, path: str | None = None,
    ) -> BatchRecord:
        """Write a batch and its task keys in one transaction, before anything is sent or written."""
        now = time.time()
        rec = BatchRecord(
            local_id=uuid.uuid4().hex, build=build, endpoint=endpoint, kind=kind, wave=wave, part=part,
            state="exported" if kind == "export" else "preparing", batch_id=None, input_file_id=None,
            output_file_id=None, error_file_id=None, requests=len(tasks), completed=0, failed=0, est_usd=est_usd,
            path=path, collected_at=None, created_at=now, updated_at=now,
        )
        values = tuple(getattr(rec, f.name) for f in fields(BatchRecord))
        with self.cache.transaction() as db:
            db.execute(f"INSERT INTO batches ({_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values)
            db.executemany(
                "INSERT OR IGNORE INTO batch_tasks (local_id, key, stage, principle_id, llm) VALUES (?,?,?,?,?)",
                [(rec.local_id, *t) for t in tasks],
            )
        return rec

    def update(self, rec: BatchRecord, **changes) -> BatchRecord:
        """Store ``changes`` to ``rec`` (committed before this returns) and return the updated record."""
        changes["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self.cache.transaction() as db:
            db.execute(f"UPDATE batches SET {sets} WHERE local_id = ?", (*changes.values(), rec.local_id))
        return BatchRecord(**{**rec.__dict__, **changes})

    def _select(self, where: str, args: tuple) -> list[BatchRecord]:
        with self.cache.reading() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM batches WHERE {where} ORDER BY wave, part, created_at", args)
            return [BatchRecord(*row) for row in rows.fetchall()]

    def open(self, endpoint: str) -> list[BatchRecord]:
        """Batches sent to ``endpoint`` whose results have not been collected yet, oldest first."""
        return self._select(
            "kind = 'provider' AND endpoint = ? AND state != 'abandoned' AND collected_at IS NULL", (endpoint,)
        )

    def of_build(self, build: str) -> list[BatchRecord]:
        """Every batch and exported wave of a build, oldest first."""
        return self._select("build = ?", (build,))

    def tasks(self, rec: BatchRecord) -> dict[str, tuple[str, str, str]]:
        """{key: (stage, principle_id, llm id)} of the tasks in ``rec``."""
        with self.cache.reading() as db:
            rows = db.execute("SELECT key, stage, principle_id, llm FROM batch_tasks WHERE local_id = ?", (rec.local_id,))
            return {k: (s, p, m) for k, s, p, m in rows.fetchall()}

    def lookup(self, keys: list[str]) -> dict[str, tuple[str, str, str]]:
        """{key: (stage, principle_id, llm id)} for those of ``keys`` that any batch or exported wave holds."""
        out: dict[str, tuple[str, str, str]] = {}
        with self.cache.reading() as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rows = db.execute(
                    f"SELECT key, stage, principle_id, llm FROM batch_tasks WHERE key IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                out.update({k: (s, p, m) for k, s, p, m in rows.fetchall()})
        return out

    def next_wave(self, build: str) -> int:
        """The number the build's next wave gets: waves count up across runs."""
        with self.cache.reading() as db:
            (n,) = db.execute("SELECT COALESCE(MAX(wave), 0) FROM batches WHERE build = ?", (build,)).fetchone()
        return n + 1

    def last_export_dir(self, build: str) -> str | None:
        """Where the build's most recent wave was exported to, if it ever was."""
        with self.cache.reading() as db:
            row = db.execute(
                "SELECT path FROM batches WHERE build = ? AND kind = 'export' ORDER BY created_at DESC LIMIT 1", (build,)
            ).fetchone()
        return str(Path(row[0]).parent) if row and row[0] else None
