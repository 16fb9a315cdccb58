"""manifest.json: what a build produced, versioned so an incompatible reader refuses it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from specc import __version__
from specc.errors import InputError, ManifestVersionError
from specc.plan.quotas import compute_quotas
from specc.spec.schema import Spec

from .shards import CONFIGS, Shard, SizedRow

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
LLM_KEYS = ("provider", "model", "base_url", "id", "calls", "cached", "failed", "input_tokens", "output_tokens", "cost_usd", "saved_usd",
            "per_stage", "batch")
CONFIG_KIND = {"documents": "document", "demonstrations": "demonstration"}


def _quotas(spec: Spec, build_info: dict) -> dict[tuple[str, str], int]:
    """Targets per (principle, config): the driver's if it reported them, else the spec's."""
    given = build_info.get("quotas") or []
    if given:
        out: dict[tuple[str, str], int] = {}
        for q in given:
            config = {"document": "documents", "demonstration": "demonstrations"}.get(q["kind"], q["kind"])
            out[(q["principle_id"], config)] = int(q.get("target") or 0)
        return out
    return {(pid, kind + "s"): n for (pid, kind), n in compute_quotas(spec).items()}


def _meta_keys(rows: list[SizedRow]) -> list[str]:
    """The keys of the ``meta`` column's JSON over ``rows`` (rows of one build share a few layouts)."""
    keys: set[str] = set()
    for r in rows:
        if r.row.get("meta") is not None:
            keys.update(json.loads(r.row["meta"]))
    return sorted(keys)


def _sorted(d: dict) -> dict:
    return {k: d[k] for k in sorted(d)}


def build_manifest(spec: Spec, build_info: dict, rows: dict[str, list[SizedRow]], shards: list[Shard], fmt: str) -> dict:
    """Everything but ``created_at`` is a function of the spec, the records and ``build_info``."""
    quotas = _quotas(spec, build_info)
    pids = [p.id for p in spec.principles]
    pids += sorted({r.row["principle_id"] for c in CONFIGS for r in rows[c]} - set(pids))
    by_principle = {
        pid: {c: {"rows": 0, "tokens": 0, "quota": quotas.get((pid, c), 0)} for c in CONFIGS} for pid in pids
    }
    kinds: dict[str, Counter] = {"documents": Counter(), "demonstrations": Counter()}
    for c, col in (("documents", "genre"), ("demonstrations", "kind")):
        for r in rows[c]:
            slot = by_principle[r.row["principle_id"]][c]
            slot["rows"] += 1
            slot["tokens"] += r.row["tokens"]
            kinds[c][r.row[col] or "unspecified"] += 1
    dropped_by_p = build_info.get("dropped_by_principle") or {}
    llm_by_p = build_info.get("llm_by_principle") or {}
    principles = {
        pid: {
            # This run's results for the principle: made by the model, or served from the cache.
            "calls": (llm_by_p.get(pid) or {}).get("calls", 0),
            "cached": (llm_by_p.get(pid) or {}).get("cached", 0),
            "documents": v["documents"]["rows"],
            "demonstrations": v["demonstrations"]["rows"],
            "tokens": v["documents"]["tokens"] + v["demonstrations"]["tokens"],
            "quota": v["documents"]["quota"] + v["demonstrations"]["quota"],
            "by_config": v,
            "dropped": _sorted(dropped_by_p.get(pid) or {}),
        }
        for pid, v in by_principle.items()
    }
    from .diversity import principle_diversity

    diversity, diversity_summary = principle_diversity(rows, pids, build_info.get("expansion") or {})
    for pid, d in diversity.items():
        principles[pid]["diversity"] = d
    tokens = {c: sum(r.row["tokens"] for r in rows[c]) for c in CONFIGS}
    columns = {c: {"meta_keys": _meta_keys(rows[c]), "idea_rows": sum(r.row["idea"] is not None for r in rows[c])}
               for c in CONFIGS}
    llm = build_info.get("llm") or {}
    hub = spec.output.hub
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "specc_version": __version__,
        "spec": {
            "name": spec.name,
            "version": spec.version,
            "sha256": spec.sha256,
            "assistant": spec.assistant.name,
            "license": spec.license,
            "language": spec.language,
        },
        "format": fmt,
        "counts": {c: len(rows[c]) for c in CONFIGS},
        "tokens": {
            **tokens,
            "total": tokens["documents"] + tokens["demonstrations"],
            "budget": spec.corpus.budget.tokens,
            "tokenizer": spec.corpus.budget.tokenizer,
        },
        "principles": principles,
        # Target vs achieved for every principle x kind, from the rows actually written.
        "quotas": [
            {"principle_id": pid, "kind": CONFIG_KIND[c], "target": v[c]["quota"], "achieved": v[c]["tokens"],
             "records": v[c]["rows"]}
            for pid, v in by_principle.items()
            for c in CONFIGS
        ],
        "kinds": {c: _sorted(dict(kinds[c])) for c in CONFIGS},
        # What the rows' JSON columns hold: the keys found in `meta`, and how many rows have an `idea`.
        "columns": columns,
        "diversity": diversity_summary,
        "dropped": _sorted(dict(build_info.get("dropped") or {})),
        "llm": {k: llm.get(k) for k in LLM_KEYS if k in llm},
        # The generations behind the corpus whichever run made them ("llm" is what the run that wrote it did).
        "provenance": build_info.get("provenance") or {},
        "fingerprint": build_info.get("fingerprint"),
        "rounds": build_info.get("rounds"),
        "judge": bool(build_info.get("judge", spec.corpus.demonstrations.judge is not False)),
        # Principle × kind quotas that ended under half their target, with the likely cause and fix,
        # and the kinds that did so over all principles (then the build failed).
        "short": list(build_info.get("short") or []),
        "short_kinds": list(build_info.get("short_kinds") or []),
        "dedup": build_info.get("dedup") or {},
        # Every config, even an empty one: `load_dataset(out, "demonstrations")` must not raise.
        "configs": list(CONFIGS),
        "shards": [s.to_dict() for s in shards],
        "hub": {"repo": hub.repo, "private": hub.private},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def listed_shards(manifest: dict) -> list[dict]:
    """Every shard a manifest lists: the corpus's, then the dropped rows'."""
    return list(manifest.get("shards") or []) + list((manifest.get("dropped_rows") or {}).get("shards") or [])


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a specc output; refuses a missing, unreadable or incompatible one."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{out_dir} is not a specc output (no {MANIFEST_NAME}); run `specc build` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable manifest ({e}); rebuild with `specc build`") from e
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{path}: not a specc manifest (no schema_version)")
    if data["schema_version"] != MANIFEST_SCHEMA_VERSION:
        raise ManifestVersionError(
            f"{path}: manifest schema_version {data['schema_version']!r} (written by specc "
            f"{data.get('specc_version', '?')}); this specc {__version__} reads schema_version "
            f"{MANIFEST_SCHEMA_VERSION}: rebuild with `specc build` or use the matching specc version"
        )
    return data
