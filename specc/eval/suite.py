"""Compile a held-out eval suite from a spec: items per principle and kind, deduplicated, clean of the corpus.

For each principle, ``n`` items spread over the kinds (``specc.eval.kinds``), written by the
generator ``PER_CALL`` at a time (so a prompt never depends on ``n``), plus the spec's
``holdout: true`` examples as they are. Items are deduplicated per principle in a fixed order
(batch, then kind, then place in the answer) and dropped when they share a word n-gram with
any kept corpus row; a kind left short asks again with the next batch, like a build's top-up.
Every call goes through the cache and its seed follows its slot, so the same spec, corpus and
``n`` give the same suite; ``suite.json`` records a fingerprint of those, and an unchanged
suite is read back from ``items.jsonl`` without compiling it again (so hand-pruned items stay
pruned). The suite's hash is a hash of its items.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specc.errors import InputError, OutputError, RunError
from specc.eval.corpus import Corpus, contaminated, corpus_texts
from specc.eval.kinds import HOLDOUT, KINDS, other_language, spread
from specc.eval.stages import PER_CALL, Collector, EvalItem, ItemsInput, default_rubric, holdout_item, item_id
from specc.eval.stages import STAGES as EVAL_STAGES
from specc.records import Task, canonical_json, sha256_hex
from specc.spec.schema import Spec
from specc.stages.context import Context
from specc.stages.gates import SCENARIO_SIMILARITY
from specc.stages.items import NearSet

SUITE_VERSION = 1  # the rules a suite is compiled by; part of its fingerprint
ITEMS_NAME = "items.jsonl"
SUITE_NAME = "suite.json"
TOPUPS = 2  # further batches a short kind may ask for


@dataclass
class Suite:
    """A compiled suite: its items, their hash, and how it was made."""

    items: list[EvalItem]
    hash: str
    dir: Path
    info: dict
    stats: dict = field(default_factory=dict)  # the generator's calls, cached and failed, when compiled now
    reused: bool = False
    previous_hash: str | None = None  # the suite this one replaced in ``dir``, if it differed

    @property
    def path(self) -> Path:
        return self.dir / ITEMS_NAME


def suite_hash(items: list[EvalItem]) -> str:
    return sha256_hex([it.model_dump(mode="json") for it in items])


def fingerprint(spec: Spec, ctx: Context, n: int, corpus: Corpus | None, ngram: int) -> str:
    """Everything a compiled suite depends on: spec, n, generator, prompt, corpus rows, n-gram size, these rules."""
    return sha256_hex({"version": SUITE_VERSION, "spec": spec.sha256, "n": n, "generator": ctx.model,
                       "template": ctx.templates["eval_items"].hash, "corpus": corpus.fingerprint if corpus else None,
                       "ngram": ngram})


def read_items(path: Path) -> list[EvalItem]:
    """The items of a suite file; every bad line is an error naming it."""
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the suite {path}: {e}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(EvalItem.model_validate_json(line))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(map(str, first["loc"])) or "item"
            raise InputError(f"{path}:{lineno}: {where}: {first['msg']}") from None
    if not items:
        raise InputError(f"{path}: the suite has no items")
    return items


def write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _reuse(out_dir: Path, fp: str) -> tuple[list[EvalItem] | None, dict | None]:
    try:
        info = json.loads((out_dir / SUITE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(info, dict) or info.get("fingerprint") != fp or not (out_dir / ITEMS_NAME).is_file():
        return None, info if isinstance(info, dict) else None
    return read_items(out_dir / ITEMS_NAME), info


class _Compiler:
    """One compilation: the batches asked for so far, and the items they yield."""

    def __init__(self, spec: Spec, ctx: Context, n: int, corpus: Corpus | None, ngram: int):
        self.spec, self.ctx, self.n, self.corpus, self.ngram = spec, ctx, n, corpus, ngram
        self.want = {p.id: spread(spec, p, n) for p in spec.principles}
        self.next_batch: Counter = Counter()  # (pid, kind) -> batches asked for
        self.clean: dict[str, bool] = {}  # item id -> no overlap with the corpus (checked once)
        self.pipe = Collector({"eval_items": ctx})
        self.dropped: Counter = Counter()
        self.holdouts = {p.id: [holdout_item(spec, p, e) for e in p.examples if e.holdout] for p in spec.principles}

    def ask(self, pid: str, kind: str, calls: int) -> list[Task]:
        p = self.spec.principle(pid)
        domains = self.corpus.describe(pid) if self.corpus is not None and kind == "other_domain" else ""
        out = []
        for _ in range(calls):
            b = self.next_batch[(pid, kind)]
            self.next_batch[(pid, kind)] += 1
            out.append(EVAL_STAGES["eval_items"].render(self.ctx, p, ItemsInput(kind=kind, batch=b,
                                                                                corpus_domains=domains)))
        return out

    def first_tasks(self) -> list[Task]:
        return [t for pid, kinds in self.want.items() for kind, k in kinds.items() if k
                for t in self.ask(pid, kind, math.ceil(k / PER_CALL))]

    def select(self) -> tuple[dict[str, list[EvalItem]], dict[tuple[str, str], int]]:
        """Every principle's items in a fixed order, and what each (principle, kind) still lacks."""
        spec = self.spec
        candidates: dict[str, list[EvalItem]] = {}
        dropped: Counter = Counter()
        for p in spec.principles:
            seen = NearSet(SCENARIO_SIMILARITY)
            for h in self.holdouts[p.id]:
                seen.add(h.text)
            found: list[EvalItem] = []
            lang = other_language(spec, p)[0]
            batches = sorted((b, KINDS.index(k), k) for (pid, k, b) in self.pipe.batches if pid == p.id)
            for b, _, kind in batches:
                key, drafts = self.pipe.batches[(p.id, kind, b)]
                for d in drafts:
                    messages = d.scenario.messages()
                    item = EvalItem(id=item_id(p.id, kind, messages), principle_id=p.id, kind=kind,
                                    messages=messages, rubric=d.rubric or default_rubric(spec, p, kind),
                                    language=lang if kind == "other_language" else spec.language, task_key=key)
                    why = seen.keep(item.text)
                    if why:
                        dropped[f"dedup:{why}"] += 1
                        continue
                    found.append(item)
            candidates[p.id] = self.holdouts[p.id] + found
        self._decontaminate([it for items in candidates.values() for it in items])
        chosen: dict[str, list[EvalItem]] = {}
        short: dict[tuple[str, str], int] = {}
        for p in spec.principles:
            taken: Counter = Counter()
            keep = []
            for it in candidates[p.id]:
                if not self.clean[it.id]:
                    dropped["decontam:corpus_overlap"] += 1
                elif it.kind == HOLDOUT or taken[it.kind] < self.want[p.id].get(it.kind, 0):
                    taken[it.kind] += 1
                    keep.append(it)
            order = {k: i for i, k in enumerate((HOLDOUT, *KINDS))}
            chosen[p.id] = sorted(keep, key=lambda it: order[it.kind])  # stable: slot order within a kind
            for kind, k in self.want[p.id].items():
                if taken[kind] < k:
                    short[(p.id, kind)] = k - taken[kind]
        self.dropped = dropped
        return chosen, short

    def _decontaminate(self, items: list[EvalItem]) -> None:
        todo = {it.id: it.text for it in items if it.id not in self.clean}
        if self.corpus is None or not todo:
            self.clean.update({i: True for i in todo})
            return
        hit = contaminated(todo, corpus_texts(self.corpus.path), self.ngram)
        self.clean.update({i: i not in hit for i in todo})


def compile_suite(spec: Spec, ctx: Context, engine: Callable[[], Any], *, n: int, out_dir: Path,
                  corpus: Corpus | None, ngram: int | None = None) -> Suite:
    """The suite in ``out_dir`` if it is current, else compiled now and written.

    ``engine()`` makes the generator's engine; it is called only when something must be compiled,
    so a current suite needs no generator at all.
    """
    if n < 1:
        raise InputError(f"-n must be at least 1 item per principle (got {n})")
    ngram = ngram or spec.corpus.decontamination.ngram
    fp = fingerprint(spec, ctx, n, corpus, ngram)
    items, old = _reuse(out_dir, fp)
    if items is not None:
        return Suite(items, suite_hash(items), out_dir, old, reused=True)
    c = _Compiler(spec, ctx, n, corpus, ngram)
    run = engine()
    totals: Counter = Counter()
    tasks = c.first_tasks()
    for round in range(TOPUPS + 1):
        stats = run.run_sync(tasks, c.pipe.on_result, c.pipe.on_failure)
        totals.update({k: getattr(stats, k) for k in ("calls", "cached", "failed")})
        chosen, short = c.select()
        if not short or round == TOPUPS:
            break
        tasks = [t for (pid, kind), missing in sorted(short.items()) for t in c.ask(pid, kind, math.ceil(missing / PER_CALL))]
    items = [it for p in spec.principles for it in chosen[p.id]]
    if not items:
        raise RunError("the suite has no items: the generator wrote none that could be used "
                         f"({', '.join(f'{k} {v}' for k, v in (c.pipe.drops + c.dropped).most_common(4)) or 'no answers'})")
    by_principle = {p.id: dict(Counter(it.kind for it in chosen[p.id])) for p in spec.principles}
    h = suite_hash(items)
    info = {
        "schema_version": SUITE_VERSION,
        "hash": h,
        "fingerprint": fp,
        "items": len(items),
        "n": n,
        "generator": ctx.model,
        "by_kind": dict(sorted(Counter(it.kind for it in items).items())),
        "by_principle": by_principle,
        "short": {f"{pid}/{kind}": k for (pid, kind), k in sorted(short.items())},
        "dropped": dict(sorted((c.pipe.drops + c.dropped).items())),
        "corpus": None if corpus is None else {"path": str(corpus.path), "spec_sha256": corpus.fingerprint[0],
                                               "ngram": ngram},
    }
    write_text(out_dir / ITEMS_NAME, "".join(canonical_json(it.model_dump(mode="json")) + "\n" for it in items))
    write_json(out_dir / SUITE_NAME, info)
    previous = old.get("hash") if old and old.get("hash") != h else None
    return Suite(items, h, out_dir, info, dict(totals), previous_hash=previous)
