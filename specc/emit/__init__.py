"""The emit pass: records -> shards, dataset card and manifest, written beside the target and swapped in.

A build is written into ``OUT.parent/.OUT.tmp-XXXX`` and only renamed to ``OUT`` once
complete, so a killed build never leaves ``OUT`` half written and the previous good
output stays in place until the new one is whole. A lock on the folder (``lock.py``)
keeps a second build from writing, or cleaning up, at the same time.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from specc.errors import InputError, OutputError
from specc.records import Record
from specc.spec.schema import Spec

from .card import render_card
from .dropped import write_dropped
from .lock import output_lock
from .manifest import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, build_manifest, dumps, read_manifest
from .shards import CONFIGS, FORMATS, collect, read_shard, write_shards

__all__ = ["EVAL_DIR", "MANIFEST_SCHEMA_VERSION", "emit", "iter_rows", "output_lock", "read_manifest"]

EVAL_DIR = "eval"  # where `specc eval` keeps a corpus's suite and results: kept across rebuilds, never pushed


def _tmp_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.tmp-"


def _old_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.old-"


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory; choose another output directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise InputError(
            f"{out_dir} is not empty and is not a specc output (no {MANIFEST_NAME}); "
            "refusing to replace it: choose another output directory or empty it"
        )


def _recover(out_dir: Path) -> None:
    """Restore a previous output left as a backup by a build killed mid-swap; drop stale temp dirs."""
    parent = out_dir.parent
    olds = sorted(parent.glob(_old_prefix(out_dir) + "*"), key=lambda p: p.stat().st_mtime)
    if not out_dir.exists():
        complete = [p for p in olds if (p / MANIFEST_NAME).is_file()]
        if complete:
            os.rename(complete[-1], out_dir)
            olds.remove(complete[-1])
    for old in reversed(olds):  # killed after the swap but before the eval folder moved over
        _keep_eval(old, out_dir)
    for stale in olds + list(parent.glob(_tmp_prefix(out_dir) + "*")):
        shutil.rmtree(stale, ignore_errors=True)


def _keep_eval(old: Path, new: Path) -> None:
    """Move ``eval/`` (the held-out suite and its results, written by ``specc eval``) into the new output.

    A rebuild replaces the corpus, not the measurements made against it; a suite that no longer
    fits the new corpus is compiled again by the next ``specc eval run``.
    """
    if (old / EVAL_DIR).is_dir() and new.is_dir() and not (new / EVAL_DIR).exists():
        os.rename(old / EVAL_DIR, new / EVAL_DIR)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(tmp: Path, out_dir: Path) -> None:
    """Rename the complete build into place; the old output lives on as a backup until the new one is in."""
    if out_dir.exists():
        backup = out_dir.parent / (_old_prefix(out_dir) + secrets.token_hex(4))
        os.rename(out_dir, backup)
        os.rename(tmp, out_dir)
        _keep_eval(backup, out_dir)
        _fsync_dir(out_dir.parent)
        shutil.rmtree(backup)
    else:
        os.rename(tmp, out_dir)
        _fsync_dir(out_dir.parent)


def _make_tmp(out_dir: Path) -> Path:
    while True:
        tmp = out_dir.parent / (_tmp_prefix(out_dir) + secrets.token_hex(4))
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def emit(
    records: Iterable[Record],
    spec: Spec,
    out_dir: Path,
    *,
    build_info: dict,
    extra_writers: Sequence[Callable[[Path], None]] = (),
    fmt: str | None = None,
    shard_bytes: int | None = None,
    dropped: Iterable[tuple[Record, str]] = (),
) -> dict:
    """Write the corpus to ``out_dir`` atomically and return its manifest."""
    out_dir = Path(out_dir).absolute()
    fmt = fmt or spec.output.format
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    shard_bytes = shard_bytes or spec.output.shard_bytes
    if shard_bytes <= 0:
        raise InputError(f"shard_bytes must be > 0 (got {shard_bytes})")
    try:
        _check_target(out_dir)
        with output_lock(out_dir):  # _recover deletes temp folders: only the lock holder may
            return _emit_locked(records, spec, out_dir, build_info, extra_writers, fmt, shard_bytes, dropped)
    except OSError as e:
        where = e.filename or out_dir
        raise OutputError(f"cannot write the corpus to {where}: {e.strerror or e}") from e


def _emit_locked(records, spec: Spec, out_dir: Path, build_info: dict, extra_writers, fmt: str,
                 shard_bytes: int, dropped: Iterable[tuple[Record, str]]) -> dict:
    with staged(out_dir) as tmp:
        rows = collect(records, spec.corpus.seed)
        shards = []
        for config in CONFIGS:
            shards += write_shards(tmp, config, rows[config], fmt, shard_bytes)
        manifest = build_manifest(spec, build_info, rows, shards, fmt)
        manifest["dropped_rows"] = write_dropped(tmp, dropped, fmt, shard_bytes)
        (tmp / "README.md").write_text(render_card(spec, manifest), encoding="utf-8")
        (tmp / MANIFEST_NAME).write_text(dumps(manifest), encoding="utf-8")
        for writer in extra_writers:
            writer(tmp)
    return manifest


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A new folder beside ``out_dir`` to write a whole output into: synced to disk and swapped into place
    when the block ends, removed when it raises. The caller holds ``out_dir``'s lock."""
    _recover(out_dir)
    tmp = _make_tmp(out_dir)
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def iter_rows(out_dir: Path, config: str) -> Iterator[dict]:
    """Rows of ``documents`` or ``demonstrations`` from the shards, in shard order."""
    if config not in CONFIGS:
        raise InputError(f"unknown config {config!r}: use one of {', '.join(CONFIGS)}")
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    for shard in manifest["shards"]:
        if shard["config"] != config:
            continue
        path = out_dir / shard["path"]
        if not path.is_file():
            raise InputError(f"{path} is listed in the manifest but missing; rebuild with `specc build`")
        yield from read_shard(path)
