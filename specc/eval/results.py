"""Results of an eval run: pass rates with Wilson intervals per principle and kind, as versioned JSON; and comparisons.

``results-<target>.json`` (``RESULTS_VERSION``) holds, per principle and per kind and overall,
``items``, ``passes``, ``pass_rate`` and ``ci95``, plus how many verdicts were unparseable,
replies empty and calls failed (all counted as fails: grading fails closed), the target's
identity (never its key), the judge, and the suite's hash. ``compare`` refuses two results
of different suites.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from specc import __version__
from specc.errors import InputError, ManifestVersionError
from specc.eval.kinds import HOLDOUT, KINDS
from specc.eval.stats import Difference, two_proportions, wilson

RESULTS_VERSION = 1


@dataclass(frozen=True)
class Outcome:
    """One item's fate: its verdict, and whether it was graded or failed closed (and why)."""

    item_id: str
    principle_id: str
    kind: str
    verdict: str  # pass | fail
    status: str  # graded | unparseable | empty | error
    reason: str = ""


def slug(text: str) -> str:
    """A file-name-safe form of a model name or label."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:80] or "target"


def tally(outcomes: Iterable[Outcome]) -> dict:
    """Items, passes, pass rate with its 95 % Wilson interval, and the fails that were not the judge's verdict."""
    outcomes = list(outcomes)
    n = len(outcomes)
    passes = sum(o.verdict == "pass" for o in outcomes)
    lo, hi = wilson(passes, n)
    out = {"items": n, "passes": passes, "pass_rate": round(passes / n, 4) if n else None,
           "ci95": [round(lo, 4), round(hi, 4)]}
    for status in ("unparseable", "empty", "error"):
        out[status] = sum(o.status == status for o in outcomes)
    return out


def build_results(*, spec, suite, outcomes: list[Outcome], target: dict, judge: dict, calls: dict,
                  created_at: str) -> dict:
    """The results document for one target on one suite."""
    order = [p.id for p in spec.principles]
    known = (HOLDOUT, *KINDS)
    kinds = sorted({o.kind for o in outcomes}, key=lambda k: (known.index(k) if k in known else len(known), k))
    principles = {}
    for pid in order:
        mine = [o for o in outcomes if o.principle_id == pid]
        principles[pid] = {**tally(mine), "kinds": {k: tally(o for o in mine if o.kind == k)
                                                    for k in kinds if any(o.kind == k for o in mine)}}
    return {
        "schema_version": RESULTS_VERSION,
        "specc_version": __version__,
        "spec": {"name": spec.name, "version": spec.version, "sha256": spec.sha256},
        "suite": {"hash": suite.hash, "items": len(suite.items), "n": suite.info.get("n"),
                  "path": str(suite.path)},
        "target": target,
        "judge": judge,
        "overall": tally(outcomes),
        "principles": principles,
        "kinds": {k: tally(o for o in outcomes if o.kind == k) for k in kinds},
        "calls": calls,
        "created_at": created_at,
    }


def read_results(path: Path) -> dict:
    """A results file, refused when it is missing, unreadable or of another schema version."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable results file ({e})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "suite" not in data:
        raise InputError(f"{path}: not a specc eval results file (no schema_version)")
    if data["schema_version"] != RESULTS_VERSION:
        raise ManifestVersionError(
            f"{path}: results schema_version {data['schema_version']!r} (written by specc "
            f"{data.get('specc_version', '?')}); this specc {__version__} reads schema_version {RESULTS_VERSION}: "
            "run the eval again with this version"
        )
    return data


@dataclass(frozen=True)
class Row:
    """One line of a comparison: a principle (or kind, or everything) in A and in B."""

    name: str
    a: dict
    b: dict
    test: Difference


@dataclass(frozen=True)
class Comparison:
    overall: Row
    principles: list[Row]
    kinds: list[Row]
    warnings: list[str]

    def to_dict(self) -> dict:
        def row(r: Row) -> dict:
            return {"a": _brief(r.a), "b": _brief(r.b), "diff": round(r.test.diff, 4), "z": round(r.test.z, 3),
                    "p_value": round(r.test.p_value, 4), "significant": r.test.significant}

        return {"overall": row(self.overall), "principles": {r.name: row(r) for r in self.principles},
                "kinds": {r.name: row(r) for r in self.kinds}, "warnings": self.warnings}


def _brief(t: dict) -> dict:
    return {k: t.get(k) for k in ("items", "passes", "pass_rate", "ci95")}


def _row(name: str, a: dict, b: dict) -> Row:
    return Row(name, a, b, two_proportions(a["passes"], a["items"], b["passes"], b["items"]))


def compare(a: dict, b: dict, names: tuple[str, str] = ("A", "B")) -> Comparison:
    """Per principle and kind, B's pass rate against A's with a two-proportion test; only on the same suite."""
    ha, hb = a["suite"]["hash"], b["suite"]["hash"]
    if ha != hb:
        raise InputError(f"{names[0]} and {names[1]} were run on different suites ({ha[:12]} and {hb[:12]}): "
                         "pass rates are comparable only on the same items; run both targets on one suite")
    warnings = []
    ja, jb = (a.get("judge") or {}).get("llm_id"), (b.get("judge") or {}).get("llm_id")
    if ja != jb:
        warnings.append(f"the judges differ ({ja} and {jb}): a difference may be the judge's, not the target's")
    principles = [_row(pid, a["principles"][pid], b["principles"][pid])
                  for pid in a["principles"] if pid in b["principles"]]
    kinds = [_row(k, a["kinds"][k], b["kinds"][k]) for k in a.get("kinds", {}) if k in b.get("kinds", {})]
    return Comparison(_row("overall", a["overall"], b["overall"]), principles, kinds, warnings)
