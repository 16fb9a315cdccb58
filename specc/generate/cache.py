"""The content-addressed generation cache: SQLite in WAL mode, one row per task key."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from specc.errors import InputError
from specc.generate.base import Generation
from specc.records import Task

# 2: task keys name the model (provider, model name, namespace), not the endpoint URL; the embedded
# model's id carries its GGUF hash and llama.cpp version. No version-1 key can match a version-2 task.
SCHEMA_VERSION = 2
_OLDER = {
    1: "its task keys include the endpoint's URL, so no entry in it can be reused by this version",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    principle_id TEXT NOT NULL,
    llm TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    extra TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def _row(key: str, stage: str, principle_id: str, llm: str, gen: Generation) -> tuple:
    return (
        key,
        stage,
        principle_id,
        llm,
        gen.model,
        gen.text,
        gen.finish_reason,
        int(gen.input_tokens),
        int(gen.output_tokens),
        float(gen.latency_s),
        json.dumps(gen.extra, sort_keys=True, default=str),
        time.time(),
    )


def default_cache_path(spec_path: Path | None) -> Path:
    """``$SPECC_CACHE``, else ``.specc/cache.sqlite`` beside the spec (or in the working directory)."""
    env = os.environ.get("SPECC_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(spec_path).resolve().parent if spec_path else Path.cwd()
    return base / ".specc" / "cache.sqlite"


class Cache:
    """Generations by task key. Every ``put`` is committed before it returns, so a crash loses nothing.

    Safe for concurrent writers: threads share one connection under a lock; processes
    are serialised by SQLite's own locking (WAL, with a generous busy timeout).
    ``any_version`` opens a cache of another schema version, for ``clear`` alone.
    """

    def __init__(self, path: Path, *, any_version: bool = False):
        self.path = Path(path)
        self._any_version = any_version
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash in WAL mode; only an OS crash may lose the tail.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as e:
            raise InputError(
                f"cannot open the cache {self.path}: {e}; delete it or point --cache / SPECC_CACHE elsewhere"
            ) from None
        except OSError as e:
            raise InputError(f"cannot create the cache {self.path}: {e}") from None

    def _check_version(self) -> None:
        self._db.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        (v,) = self._db.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
        if int(v) != SCHEMA_VERSION and not self._any_version:
            why = _OLDER.get(int(v), "it was written by another version of specc")
            raise InputError(
                f"the cache {self.path} has schema version {v}, this specc reads version {SCHEMA_VERSION}: {why}. "
                f"Run `specc cache clear --cache {self.path}` (the next build calls the model again) "
                "or point --cache / SPECC_CACHE elsewhere"
            )

    def get(self, key: str) -> Generation | None:
        """The stored generation for ``key`` (marked ``cached=True``), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, input_tokens, output_tokens, model, latency_s, extra "
                "FROM generations WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        text, finish, tin, tout, model, latency, extra = row
        return Generation(
            text=text,
            finish_reason=finish,
            input_tokens=tin,
            output_tokens=tout,
            model=model,
            latency_s=latency,
            cached=True,
            extra=json.loads(extra),
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        """The stored generations of ``keys`` (those present), in one query: a warm rebuild reads its
        results in batches, not one round trip per task."""
        rows = self._rows("key, text, finish_reason, input_tokens, output_tokens, model, latency_s, extra", keys)
        return {
            key: Generation(text=text, finish_reason=finish, input_tokens=tin, output_tokens=tout, model=model,
                            latency_s=latency, cached=True, extra=json.loads(extra) if extra != "{}" else {})
            for key, text, finish, tin, tout, model, latency, extra in rows
        }

    def usage(self, keys: Iterable[str]) -> dict[str, tuple[str, str, int, int, float]]:
        """{key: (stage, principle_id, input_tokens, output_tokens, created_at)} for the ``keys`` present, in one
        query and without reading any text. A row is written once and never updated, so ``created_at``
        identifies the result a key holds: a cleared and regenerated entry gets a new one."""
        rows = self._rows("key, stage, principle_id, input_tokens, output_tokens, created_at", keys)
        return {r[0]: r[1:] for r in rows}

    def _rows(self, columns: str, keys: Iterable[str]) -> list[tuple]:
        """``columns`` of the generations stored under ``keys``, in one query (the keys travel as one JSON array)."""
        keys = list(keys)
        if not keys:
            return []
        with self._lock:
            return self._db.execute(
                f"SELECT {columns} FROM generations WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(keys),)
            ).fetchall()

    def put(self, key: str, task: Task, gen: Generation) -> None:
        """Store ``gen`` under ``key``; the first result stored for a key is kept."""
        row = _row(key, task.stage, task.principle_id, task.model, gen)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def put_many(self, items: Iterable[tuple[str, str, str, str, Generation]]) -> None:
        """Store (key, stage, principle_id, llm id, generation) rows in one transaction: all of them or none."""
        rows = [_row(*item) for item in items]
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The database in one write transaction, committed when the block ends and rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The database for reads (other tables live beside the generations, e.g. batch records)."""
        with self._lock:
            yield self._db

    def has(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM generations WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        with self._lock:
            return {k for (k,) in self._db.execute("SELECT key FROM generations")}

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def stats(self) -> dict:
        """Entries and tokens, in total and by stage, principle and model."""
        with self._lock:
            total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM generations"
            ).fetchone()
            groups = {}
            for col, name in (("stage", "by_stage"), ("principle_id", "by_principle"), ("llm", "by_model")):
                rows = self._db.execute(
                    f"SELECT {col}, COUNT(*), SUM(input_tokens), SUM(output_tokens) FROM generations "
                    f"GROUP BY {col} ORDER BY {col}"
                ).fetchall()
                groups[name] = {r[0]: {"entries": r[1], "input_tokens": r[2], "output_tokens": r[3]} for r in rows}
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path),
            "entries": total[0],
            "input_tokens": total[1],
            "output_tokens": total[2],
            "bytes": size,
            **groups,
        }

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        with self._lock:
            n = self._db.execute("DELETE FROM generations").rowcount
            # Empty, it is a cache of this version, whatever version wrote it.
            self._db.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", (str(SCHEMA_VERSION),))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
