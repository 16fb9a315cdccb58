"""Outputs a cache has built, by inputs fingerprint: a rebuild into a new folder copies an up-to-date one.

A build's output is a function of its inputs (``fingerprint.inputs_fingerprint``) and the cache
entries it used. When a build into ``OUT2`` finds that an earlier output ``OUT`` was built from
the same inputs and the cache still holds the same entries for every key ``OUT`` used
(``fingerprint.up_to_date``), running the build would write the same bytes: its shards, card,
dropped rows and task list are functions of those alone. So ``OUT`` is copied instead, with its
manifest (whose ``llm`` section and timestamps are those of the build that wrote it, as for an
up-to-date output), and each shard is checked against the manifest's sha256 after the copy.

The outputs are recorded in the cache database (table ``built_outputs``), beside the results
they were built from; a row is only a hint, checked in full before it is used.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from specc.errors import OutputBusyError

TABLE = """CREATE TABLE IF NOT EXISTS built_outputs (
    inputs TEXT NOT NULL,
    path TEXT NOT NULL,
    built_at REAL NOT NULL,
    PRIMARY KEY (inputs, path)
)"""
# Candidates checked before building: each costs a manifest read and one cache query.
MAX_CANDIDATES = 3


def remember_output(cache, inputs: str, out_dir: Path) -> None:
    """Record that ``out_dir`` holds a complete output of a build with these ``inputs``."""
    try:
        with cache.transaction() as db:
            db.execute(TABLE)
            db.execute("INSERT OR REPLACE INTO built_outputs VALUES (?, ?, ?)",
                       (inputs, str(Path(out_dir).absolute()), time.time()))
    except sqlite3.Error:  # a hint only: a read-only or busy cache must not fail a finished build
        pass


def forget_output(cache, inputs: str, out_dir: Path) -> None:
    try:
        with cache.transaction() as db:
            db.execute(TABLE)
            db.execute("DELETE FROM built_outputs WHERE inputs = ? AND path = ?", (inputs, str(out_dir)))
    except sqlite3.Error:
        pass


def known_outputs(cache, inputs: str, exclude: Path) -> list[Path]:
    """The folders recorded for ``inputs``, most recent first, but ``exclude`` and any folder inside it or holding it."""
    try:
        with cache.reading() as db:
            db.execute(TABLE)
            rows = db.execute("SELECT path FROM built_outputs WHERE inputs = ? ORDER BY built_at DESC",
                              (inputs,)).fetchall()
    except sqlite3.Error:
        return []
    exclude = Path(exclude).absolute()
    # Never one folder inside the other: the copy is written beside its target.
    return [Path(p) for (p,) in rows
            if not (exclude.is_relative_to(p) or Path(p).is_relative_to(exclude))][:MAX_CANDIDATES]


def copy_up_to_date(cache, inputs: str, out_dir: Path) -> tuple[Path, dict] | None:
    """Copy an up-to-date output built from ``inputs`` into ``out_dir`` (whose lock the caller holds):
    (the folder copied, the manifest) or None when there is none to copy."""
    from specc.emit.fingerprint import up_to_date

    for source in known_outputs(cache, inputs, out_dir):
        manifest = up_to_date(source, inputs, cache, check_shards=False)  # _copy checks the copied shards
        if manifest is None:
            forget_output(cache, inputs, source)
            continue
        copied = _copy(source, out_dir, manifest)
        if copied is not None:
            remember_output(cache, inputs, out_dir)
            return source, copied
    return None


def _copy(source: Path, out_dir: Path, manifest: dict) -> dict | None:
    """Copy the output in ``source`` into ``out_dir`` atomically, as ``emit`` writes, its manifest
    saying where from: that manifest, or None when the source is busy or changed, or a copied shard
    does not match its manifest."""
    from specc.emit import _check_target, output_lock, staged
    from specc.emit.manifest import MANIFEST_NAME, dumps, listed_shards
    from specc.emit.shards import file_sha256

    listed = {s["path"]: s.get("sha256") for s in listed_shards(manifest)}
    if any(Path(p).is_absolute() or ".." in Path(p).parts for p in listed):
        return None  # not a manifest emit wrote
    try:
        with output_lock(source):  # never blocks: a source being rebuilt is built from scratch instead
            if _read(source) != manifest:  # rewritten since it was checked
                return None
            _check_target(out_dir)
            with staged(out_dir) as tmp:
                # What emit writes: the files at the top (card, manifest, report, task keys) and the shards
                # the manifest lists; not eval/ (no file of a build) nor anything else left in the folder.
                top = [p.name for p in source.iterdir() if p.is_file() and not p.name.startswith(".")]
                for name in top + list(listed):
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source / name, tmp / name)
                if any(digest and file_sha256(tmp / path) != digest for path, digest in listed.items()):
                    raise _Spoiled
                # Its "llm" and timestamps stay those of the build that wrote the corpus (like an up-to-date
                # output's); this says the folder is a copy, and when it was made.
                copied = {**manifest, "copied_from": {
                    "path": str(source), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
                (tmp / MANIFEST_NAME).write_text(dumps(copied), encoding="utf-8")
            return copied
    except (OutputBusyError, OSError, _Spoiled):
        return None


class _Spoiled(Exception):
    """A copied shard does not match its manifest: the copy is dropped, the build runs."""


def _read(source: Path) -> dict | None:
    from specc.emit.manifest import read_manifest
    from specc.errors import SpeccError

    try:
        return read_manifest(source)
    except SpeccError:
        return None
