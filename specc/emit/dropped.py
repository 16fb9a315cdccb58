"""``OUT/dropped/``: every record, idea and scenario a build dropped, with its reason, for review.

The rows have the columns of the kept rows of their config plus ``reason`` (``step:reason``,
as counted in the manifest). A dropped idea is a ``documents`` row with no text and its
idea; a dropped scenario is a ``demonstrations`` row that ends with the user's turn; a
demonstration the judge failed carries the judge's verdict and reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from specc.errors import InputError
from specc.records import Record, canonical_json

from .shards import CONFIGS, FORMATS, SCHEMAS, SizedRow, _parquet_options, _row_groups, _write_jsonl_gz, file_sha256, \
    read_shard, record_to_row, split

DROPPED_DIR = "dropped"


def dropped_schema(config: str) -> pa.Schema:
    return SCHEMAS[config].append(pa.field("reason", pa.string()))


def write_dropped(root: Path, rejected: Iterable[tuple[Record, str]], fmt: str, shard_bytes: int) -> dict:
    """Write the dropped rows under ``root/dropped/``; returns the manifest's ``dropped_rows`` entry."""
    rows: dict[str, list[SizedRow]] = {c: [] for c in CONFIGS}
    reasons: Counter = Counter()
    for rec, reason in rejected:
        config, row = record_to_row(rec)
        row["reason"] = reason
        reasons[reason] += 1
        rows[config].append(SizedRow(row, len(canonical_json(row).encode("utf-8"))))
    shards = []
    for config in CONFIGS:
        # Sorted by content, so the same build writes the same bytes.
        ordered = sorted(rows[config], key=lambda r: (r.row["reason"], r.row["principle_id"], r.row["id"]))
        groups = split(ordered, shard_bytes)
        if groups:
            (root / DROPPED_DIR).mkdir(parents=True, exist_ok=True)
        for i, group in enumerate(groups):
            rel = f"{DROPPED_DIR}/{config}-{i:05d}-of-{len(groups):05d}.{FORMATS[fmt]}"
            path = root / rel
            if fmt == "parquet":
                schema = dropped_schema(config)
                with pq.ParquetWriter(path, schema, **_parquet_options()) as writer:
                    for chunk in _row_groups(group):
                        writer.write_table(pa.Table.from_pylist(chunk, schema=schema), row_group_size=len(chunk))
            else:
                _write_jsonl_gz(path, group)
            shards.append({"config": config, "path": rel, "rows": len(group), "bytes": path.stat().st_size,
                           "sha256": file_sha256(path)})
    return {"shards": shards, "reasons": dict(sorted(reasons.items()))}


def iter_dropped(out_dir: Path, manifest: dict, config: str | None = None, reason: str | None = None) -> Iterator[dict]:
    """Dropped rows (each with ``config`` added); ``reason`` matches a whole ``step:reason`` or its step."""
    entry = manifest.get("dropped_rows")
    if entry is None:
        raise InputError(f"{out_dir} has no dropped rows recorded: it was built by an older specc; rebuild it")
    for shard in entry["shards"]:
        if config is not None and shard["config"] != config:
            continue
        path = Path(out_dir) / shard["path"]
        if not path.is_file():
            raise InputError(f"{path} is listed in the manifest but missing; rebuild with `specc build`")
        for row in read_shard(path):
            r = row.get("reason") or ""
            if reason is None or r == reason or r.split(":", 1)[0] == reason:
                yield {**row, "config": shard["config"]}
