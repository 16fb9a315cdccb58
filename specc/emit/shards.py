"""Records -> rows with explicit schemas -> deterministic, size-bounded shards (parquet or jsonl.gz)."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from specc.records import Record, canonical_json, sha256_hex

CONFIGS = ("documents", "demonstrations")
KIND_TO_CONFIG = {"document": "documents", "demonstration": "demonstrations"}
FORMATS = {"parquet": "parquet", "jsonl.gz": "jsonl.gz"}
HASH_CHARS = 12  # of a shard's sha256, in its file name

# Small row groups keep the Hub's dataset viewer (and random access) responsive.
ROW_GROUP_ROWS = 1000
ROW_GROUP_BYTES = 64 * 1024 * 1024

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
PROVENANCE = [
    ("model", pa.string()),
    ("template_hash", pa.string()),
    ("task_key", pa.string()),
    ("spec_version", pa.string()),
    ("idea", pa.string()),  # JSON text: ideas are strings or objects depending on the stage
    ("meta", pa.string()),  # JSON text of any other provenance keys
]
SCHEMAS: dict[str, pa.Schema] = {
    "documents": pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("principle_id", pa.string()),
            ("genre", pa.string()),
            ("facet", pa.string()),
            ("tokens", pa.int64()),
            *PROVENANCE,
        ]
    ),
    "demonstrations": pa.schema(
        [
            ("id", pa.string()),
            ("messages", MESSAGES),
            ("principle_id", pa.string()),
            ("kind", pa.string()),
            ("facet", pa.string()),
            ("tokens", pa.int64()),
            ("judge_verdict", pa.string()),
            ("judge_reason", pa.string()),
            *PROVENANCE,
        ]
    ),
}
_COLUMN_META = {"model", "template_hash", "task_key", "spec_version", "idea", "judge"}


@dataclass(frozen=True)
class Shard:
    """One written file, relative to the output directory."""

    config: str
    path: str
    rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"config": self.config, "path": self.path, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


def _str_or_none(v) -> str | None:
    return None if v is None else str(v)


def _provenance(meta: dict) -> dict:
    rest = {k: v for k, v in meta.items() if k not in _COLUMN_META}
    idea = meta.get("idea")
    return {
        "model": _str_or_none(meta.get("model")),
        "template_hash": _str_or_none(meta.get("template_hash")),
        "task_key": _str_or_none(meta.get("task_key")),
        "spec_version": _str_or_none(meta.get("spec_version")),
        "idea": None if idea is None else canonical_json(idea),
        "meta": canonical_json(rest) if rest else None,
    }


def record_to_row(rec: Record) -> tuple[str, dict]:
    """(config, row) with the columns in schema order."""
    meta = rec.meta or {}
    if rec.kind == "document":
        row = {
            "id": rec.id,
            "text": rec.text,
            "principle_id": rec.principle_id,
            "genre": rec.genre,
            "facet": rec.facet,
            "tokens": int(rec.tokens),
        }
        return "documents", {**row, **_provenance(meta)}
    if rec.kind == "demonstration":
        judge = meta.get("judge") or {}
        row = {
            "id": rec.id,
            "messages": [{"role": str(m["role"]), "content": str(m["content"])} for m in rec.messages],
            "principle_id": rec.principle_id,
            "kind": rec.demo_kind,
            "facet": rec.facet,
            "tokens": int(rec.tokens),
            "judge_verdict": _str_or_none(judge.get("verdict")) if isinstance(judge, dict) else None,
            "judge_reason": _str_or_none(judge.get("reason")) if isinstance(judge, dict) else None,
        }
        return "demonstrations", {**row, **_provenance(meta)}
    raise ValueError(f"record {rec.id}: unknown kind {rec.kind!r}")


def shuffle_seed(corpus_seed: int, config: str) -> int:
    """A per-config seed derived from the spec's corpus seed."""
    return int(sha256_hex({"shuffle": corpus_seed, "config": config})[:16], 16)


@dataclass
class SizedRow:
    row: dict
    size: int  # uncompressed estimate: the row's canonical JSON in bytes


def collect(records: Iterable[Record], seed: int) -> dict[str, list[SizedRow]]:
    """Rows per config in a seeded order that ignores input order, so every shard mixes principles."""
    out: dict[str, list[tuple[str, bytes, SizedRow]]] = {c: [] for c in CONFIGS}
    for rec in records:
        config, row = record_to_row(rec)
        data = canonical_json(row).encode("utf-8")
        # (id, digest of the whole row) orders rows fully even when two share an id.
        out[config].append((row["id"], hashlib.sha256(data).digest(), SizedRow(row, len(data))))
    result: dict[str, list[SizedRow]] = {}
    for config, items in out.items():
        items.sort(key=lambda t: (t[0], t[1]))  # content order first: the shuffle must not depend on input order
        rows = [t[2] for t in items]
        random.Random(shuffle_seed(seed, config)).shuffle(rows)
        result[config] = rows
    return result


def split(rows: list[SizedRow], limit: int) -> list[list[SizedRow]]:
    """Consecutive groups whose estimated size stays under ``limit`` (a single larger row gets its own)."""
    groups: list[list[SizedRow]] = []
    cur: list[SizedRow] = []
    size = 0
    for r in rows:
        if cur and size + r.size > limit:
            groups.append(cur)
            cur, size = [], 0
        cur.append(r)
        size += r.size
    if cur:
        groups.append(cur)
    return groups


def _row_groups(rows: list[SizedRow]) -> Iterator[list[dict]]:
    for group in split(rows, ROW_GROUP_BYTES):
        for i in range(0, len(group), ROW_GROUP_ROWS):
            yield [r.row for r in group[i : i + ROW_GROUP_ROWS]]


def _parquet_options() -> dict:
    opts: dict = {"compression": "zstd", "write_page_index": True}
    # Content-defined chunking lets Xet storage on the Hub deduplicate unchanged pages between pushes.
    if "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters:
        opts["use_content_defined_chunking"] = True
    return opts


def _write_parquet(path: Path, config: str, rows: list[SizedRow]) -> None:
    schema = SCHEMAS[config]
    with pq.ParquetWriter(path, schema, **_parquet_options()) as writer:
        for group in _row_groups(rows):
            writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=len(group))


def _write_jsonl_gz(path: Path, rows: list[SizedRow]) -> None:
    with open(path, "wb") as raw:
        # mtime=0 and no file name in the header: identical rows give identical bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            for r in rows:
                text.write(json.dumps(r.row, ensure_ascii=False, separators=(",", ":")) + "\n")
            text.flush()
            text.detach()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_name(config: str, i: int, n: int, digest: str, fmt: str) -> str:
    """``config/train-0000i-of-0000N-<content hash>.<ext>``.

    The content hash makes every build's files distinct: ``datasets`` caches a local dataset
    under a key made from its file names, so reused names served the previous build's rows.
    """
    return f"{config}/train-{i:05d}-of-{n:05d}-{digest[:HASH_CHARS]}.{FORMATS[fmt]}"


def write_shards(root: Path, config: str, rows: list[SizedRow], fmt: str, shard_bytes: int) -> list[Shard]:
    """Write ``rows`` as content-named shards; a config with no rows gets one empty shard, so it still loads."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    groups = split(rows, shard_bytes) or [[]]
    (root / config).mkdir(parents=True, exist_ok=True)
    shards = []
    for i, group in enumerate(groups):
        path = root / config / f".writing-{i:05d}.{FORMATS[fmt]}"
        if fmt == "parquet":
            _write_parquet(path, config, group)
        else:
            _write_jsonl_gz(path, group)
        digest = file_sha256(path)
        rel = shard_name(config, i, len(groups), digest, fmt)
        os.rename(path, root / rel)
        shards.append(Shard(config, rel, len(group), (root / rel).stat().st_size, digest))
    return shards


def read_shard(path: Path) -> Iterator[dict]:
    """Rows of one shard, by its extension."""
    if path.name.endswith(".parquet"):
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS):
            yield from batch.to_pylist()
    elif path.name.endswith(".jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    else:
        raise ValueError(f"{path}: not a parquet or jsonl.gz shard")
