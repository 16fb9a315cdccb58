"""The build fingerprint: what an output depended on, so an unchanged rebuild is recognised in seconds.

Two parts. ``inputs`` hashes everything a build reads besides the cache: the spec as resolved
(overrides applied), the prompt templates in use (the built-in set's included), the eval and
tokenizer files, the model id and specc's version. ``results`` hashes the task keys whose
results the build used, each with the identity of its cache entry (entries are written once and
never updated, so the time one was stored identifies the result it holds). The keys themselves
are listed in ``tasks.txt.gz`` beside the manifest.

A rebuild into the same output compares ``inputs`` first (no cache access), then looks every
listed key up in one query: if the cache still holds the same results, a build would make the
same calls, read the same results and write the same files, so nothing is done.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

from specc.records import sha256_hex

TASKS_NAME = "tasks.txt.gz"


def _file_sha(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def inputs_fingerprint(spec, ctx, llm_id: str) -> str:
    """The hash of everything but the cache that a build of ``spec`` with ``llm_id`` depends on."""
    import specc  # the version is read at call time, so a new specc is a new fingerprint

    files = {rel: _file_sha(spec.resolve(rel)) for rel in spec.corpus.decontamination.files}
    tok = spec.corpus.budget.tokenizer
    if tok.endswith(".json") or "/" in tok or "\\" in tok:
        files[tok] = _file_sha(spec.resolve(tok))
    return sha256_hex({
        "specc": specc.__version__,
        "spec": spec.model_dump(mode="json"),
        "templates": {stage: t.hash for stage, t in sorted(ctx.templates.items())},
        "preset": ctx.preset,
        "judge": ctx.judge,
        "llm": llm_id,
        "files": files,
    })


def results_fingerprint(stamps: dict[str, tuple]) -> str:
    """The hash of the used task keys and their cache entries' identity (``Cache.usage`` rows)."""
    h = hashlib.sha256()
    for key in sorted(stamps):
        h.update(f"{key}:{stamps[key][-1]!r}\n".encode())
    return h.hexdigest()


def write_task_keys(root: Path, keys: list[str]) -> None:
    """``tasks.txt.gz``: the used task keys, sorted, one a line; byte-identical for the same keys."""
    with open(root / TASKS_NAME, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write("".join(k + "\n" for k in sorted(keys)).encode())


def read_task_keys(out_dir: Path) -> list[str] | None:
    try:
        with gzip.open(out_dir / TASKS_NAME, "rb") as f:
            return io.TextIOWrapper(f, encoding="utf-8").read().split()
    except (OSError, EOFError, UnicodeDecodeError):
        return None


def up_to_date(out_dir: Path, inputs: str, cache, *, check_shards: bool = True) -> dict | None:
    """The manifest of ``out_dir`` when a build with these ``inputs`` and this cache would write it again
    unchanged; None when anything differs (or the output is missing, unreadable or incomplete).

    ``check_shards=False`` leaves the shards' sizes and hashes to the caller (a copy checks its own)."""
    from specc.emit.manifest import listed_shards, read_manifest
    from specc.emit.shards import file_sha256
    from specc.errors import SpeccError

    if not (out_dir / "manifest.json").is_file():
        return None
    try:
        manifest = read_manifest(out_dir)
    except SpeccError:
        return None
    fp = manifest.get("fingerprint") or {}
    if not fp.get("results") or fp.get("inputs") != inputs:
        return None
    # Every shard as written: a truncated or damaged file is rebuilt, not reported up to date (hashing
    # a 25M-token corpus's shards takes a fraction of a second).
    for shard in listed_shards(manifest) if check_shards else ():
        path = out_dir / shard["path"]
        try:
            if path.stat().st_size != shard.get("bytes", path.stat().st_size):
                return None
        except OSError:
            return None
        if shard.get("sha256") and file_sha256(path) != shard["sha256"]:
            return None
    keys = read_task_keys(out_dir)
    if keys is None or len(keys) != fp.get("tasks"):
        return None
    stamps = cache.usage(keys)
    if len(stamps) != len(keys) or results_fingerprint(stamps) != fp["results"]:
        return None
    return manifest
