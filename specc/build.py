"""The driver: load → plan → generate (engine DAG) → curate → emit, with top-up rounds."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from specc.errors import InputError, RunError
from specc.records import Record
from specc.spec.schema import Spec

CONFIG_KIND = {"documents": "document", "demonstrations": "demonstration"}
LLM_FIELDS = ("calls", "cached", "failed", "retries", "input_tokens", "output_tokens", "cost_usd", "saved_usd")
BATCH_FIELDS = ("waves", "batches", "resumed", "imported")  # counted by the batch executor only


def output_dir(spec: Spec, out: str | Path | None = None) -> Path:
    """``--out``, else ``output.dir`` relative to the spec, else ``build/<name>`` beside the spec."""
    if out is not None:
        return Path(out).expanduser().absolute()
    return spec.resolve(spec.output.dir or f"build/{spec.name}").resolve()


@dataclass
class BuildResult:
    """What a build did: where the corpus is, what it holds, what it cost and what was dropped."""

    spec: Spec
    out_dir: Path
    manifest: dict
    _kept: list[Record] | None  # None: read back from the shards when asked for (an up-to-date output)
    llm: dict
    per_stage: dict[str, dict]
    dropped: Counter
    rounds: int
    generated: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    short: list = field(default_factory=list)  # specc.curate.shortfall.Short: quotas under half their target
    pushed: bool = False
    short_kinds: list[dict] = field(default_factory=list)  # kinds under half their quota: the build failed
    up_to_date: bool = False  # the output's fingerprint matched: nothing was called, curated or written
    # The output was copied from this folder, built from the same inputs and cache entries (up_to_date is set).
    copied_from: Path | None = None
    # Per principle, this run's {"calls", "cached"}: what an edit made the model write again.
    per_principle: dict[str, dict] = field(default_factory=dict)

    @property
    def kept(self) -> list[Record]:
        if self._kept is None:
            self._kept = read_kept(self.out_dir)
        return self._kept

    @property
    def kept_tokens(self) -> int:
        if self._kept is None:
            return self.manifest["tokens"]["total"]
        return sum(r.tokens for r in self.kept)

    def counts(self) -> Counter:
        if self._kept is None:
            return Counter({CONFIG_KIND[c]: n for c, n in self.manifest["counts"].items() if n})
        return Counter(r.kind for r in self.kept)

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "records": dict(self.counts()),
            "tokens": self.kept_tokens,
            "budget_tokens": self.spec.corpus.budget.tokens,
            "llm": self.llm,
            "per_stage": self.per_stage,
            "generated": dict(self.generated),
            "dropped": dict(sorted(self.dropped.items())),
            "rounds": self.rounds,
            "short": [s.to_dict() for s in self.short],
            "short_kinds": self.short_kinds,
        }


def read_kept(out_dir: Path) -> list[Record]:
    """The kept rows of a written output as records (their ids, kinds, text and token counts)."""
    import json

    from specc.emit import iter_rows

    out: list[Record] = []
    for config, kind in CONFIG_KIND.items():
        for row in iter_rows(out_dir, config):
            meta = {k: row[k] for k in ("model", "template_hash", "task_key", "spec_version") if row.get(k)}
            if row.get("idea"):
                meta["idea"] = json.loads(row["idea"])
            out.append(Record(kind=kind, principle_id=row["principle_id"], text=row.get("text") or "",
                              messages=list(row.get("messages") or []), genre=row.get("genre"),
                              demo_kind=row.get("kind"), facet=row.get("facet"), tokens=row["tokens"], meta=meta,
                              id=row["id"]))
    return out


def expansion(pipe) -> dict:
    """Per principle: its facets (by source) and the document types its ideas calls used."""
    out = {}
    for pid, st in pipe.states.items():
        facets = st.facets or []
        out[pid] = {
            "facets": len(facets),
            "facets_by_source": dict(Counter(f.source for f in facets)),
            "doc_types": len(st.types_used),
            "ideas_calls": st.ideas_calls,
            "scenario_calls": st.scenario_calls,
        }
    return out


def _add_stats(total: dict, per_stage: dict, stats) -> None:
    for k in LLM_FIELDS + BATCH_FIELDS:
        total[k] = total.get(k, 0) + getattr(stats, k, 0)
    for stage, d in stats.per_stage.items():
        acc = per_stage.setdefault(stage, {})
        for k, v in d.items():
            acc[k] = acc.get(k, 0) + v


# A top-up round is a full round of calls; a gap under this share of a typical record is not worth one
# (the tiny quotas of small specs are otherwise always a few tokens off, and every round ran) unless it
# is also more than budget selection's grain of the quota (a small principle's quota can be one record).
TOPUP_RECORD_SHARE = 0.25


def topup_gaps(ctx) -> dict[str, int]:
    """The smallest shortfall, in tokens, that a top-up round is run for, by kind."""
    from specc.plan.sizing import expected_demonstration_tokens, expected_document_tokens, usable_kinds

    kinds = usable_kinds(ctx.spec) or ["direct"]
    demo = sum(expected_demonstration_tokens(ctx.spec, ctx.tokenizer, k) for k in kinds) / len(kinds)
    return {"document": int(TOPUP_RECORD_SHARE * expected_document_tokens(ctx.spec)),
            "demonstration": int(TOPUP_RECORD_SHARE * demo)}


def worth_topping_up(shortfall: dict[tuple[str, str], int], gaps: dict[str, int],
                     targets: dict[tuple[str, str], int] | None = None) -> dict[tuple[str, str], int]:
    """The (principle, kind) shortfalls a top-up round is run for: those of at least ``gaps[kind]`` tokens,
    or of more than ``GRAIN`` of their quota's target (``targets``), which budget selection never calls met."""
    from specc.curate.budget import GRAIN

    targets = targets or {}
    return {k: v for k, v in shortfall.items()
            if v > 0 and (v >= gaps[k[1]] or (k in targets and v > GRAIN * targets[k]))}


def with_overrides(
    spec: Spec, *, max_usd: float | None = None, budget: int | None = None, batch: bool = False
) -> Spec:
    """The spec with command-line overrides applied (``--max-usd``, ``--budget``, ``--batch``)."""
    if max_usd is not None:
        spec = spec.model_copy(update={"generator": spec.generator.model_copy(update={"max_usd": max_usd})})
    if batch:
        spec = spec.model_copy(update={"generator": spec.generator.model_copy(update={"batch": True})})
    if budget is not None:
        if budget <= 0:
            raise InputError(f"--budget must be a positive number of tokens, got {budget}")
        b = spec.corpus.budget.model_copy(update={"tokens": budget})
        spec = spec.model_copy(update={"corpus": spec.corpus.model_copy(update={"budget": b})})
    return spec


def run_build(
    spec_path: str | Path,
    *,
    out: str | Path | None = None,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    cache_path: str | Path | None = None,
    quiet: bool = False,
    push: bool = False,
    max_usd: float | None = None,
    budget: int | None = None,
    allow_short: bool = False,
    batch: bool = False,
    batch_files=None,
) -> BuildResult:
    """Build the corpus for the spec at ``spec_path``; a rerun of an unchanged spec makes no LLM call."""
    from specc.generate.cache import default_cache_path
    from specc.spec.load import load_spec

    spec = with_overrides(load_spec(spec_path), max_usd=max_usd, budget=budget, batch=batch)
    return build_spec(
        spec, out=out, provider=provider, model=model, base_url=base_url,
        cache_path=cache_path or default_cache_path(Path(spec_path)), quiet=quiet, push=push, allow_short=allow_short,
        batch_files=batch_files,
    )


def build_spec(
    spec: Spec,
    *,
    cache_path: str | Path,
    out: str | Path | None = None,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    quiet: bool = False,
    push: bool = False,
    allow_short: bool = False,
    llm=None,
    batch_files=None,
) -> BuildResult:
    """Build from a loaded spec (``llm`` overrides the provider the spec and flags name).

    A build whose documents or demonstrations fall under half of their quota
    (``BuildResult.short_kinds``) is written but not pushed unless ``allow_short``. The output
    folder is locked for the whole build, so a second build into it fails at once instead of
    deleting this one's temporary folders.

    ``generator.batch`` sends tasks through the endpoint's Batch API; ``batch_files`` (a
    ``specc.generate.executor.BatchFiles``) imports result files and writes the next wave instead.
    """
    from specc.emit import output_lock

    if push and not spec.output.hub.repo:
        raise InputError("--push needs output.hub.repo in the spec (ORG/NAME)")
    out_dir = output_dir(spec, out)
    with output_lock(out_dir):
        return _build_locked(spec, out_dir, cache_path=cache_path, provider=provider, model=model,
                             base_url=base_url, quiet=quiet, push=push, allow_short=allow_short, llm=llm,
                             batch_files=batch_files)


class _Threads:
    """The event loop's default executor, owned here so its idle threads can be stopped.

    Name lookups (and the embedded model) run on that executor, and its threads stay alive after
    the calls; curation forks workers only in a process without other threads. A fresh executor
    starts its threads when it is next used, so a top-up round loses nothing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._new = lambda: ThreadPoolExecutor(thread_name_prefix="asyncio")
        self.loop = loop
        self.executor = self._new()
        loop.set_default_executor(self.executor)

    def stop_idle(self) -> None:
        old, self.executor = self.executor, self._new()
        self.loop.set_default_executor(self.executor)
        old.shutdown(wait=True)  # its threads are idle between rounds: they end at once


def _build_locked(spec: Spec, out_dir: Path, *, cache_path, provider, model, base_url, quiet, push, allow_short,
                  llm, batch_files) -> BuildResult:
    from specc.curate import Curator
    from specc.curate.shortfall import Hints, diagnose, short_kinds
    from specc.generate.cache import Cache
    from specc.generate.executor import batch_info, make_executor, refuse_local_batches
    from specc.generate.factory import make_llm
    from specc.generate.openai import OPENAI_URL, public_url
    from specc.generate.progress import Progress
    from specc.spec.advice import embedded
    from specc.emit.fingerprint import TASKS_NAME, inputs_fingerprint, results_fingerprint, up_to_date, write_task_keys
    from specc.emit.outputs import copy_up_to_date, remember_output
    from specc.generate.engine import model_name
    from specc.generate.pricing import batch_prices, run_prices
    from specc.stages import Context, Pipeline

    started = datetime.now(timezone.utc)
    curator = Curator(spec)  # fails now, not after generation, on a bad decontamination file
    if llm is None:
        refuse_local_batches(spec, provider, batch_files)
    # The files path never calls a model, so it needs no key.
    llm = llm or make_llm(spec.generator, provider=provider, model=model, base_url=base_url,
                          require_key=batch_files is None)
    cache = Cache(Path(cache_path))
    ctx = Context.create(spec, llm.id)
    inputs = inputs_fingerprint(spec, ctx, llm.id)
    if batch_files is None:  # imported batch results are new work, whatever the fingerprint says
        try:
            fresh = up_to_date(out_dir, inputs, cache)
            copied = None
            if fresh is not None:
                remember_output(cache, inputs, out_dir)
            else:  # a new folder: an output this cache built from the same inputs is what a build would write
                copied = copy_up_to_date(cache, inputs, out_dir)
        except BaseException:
            cache.close()
            raise
        if fresh is not None or copied is not None:
            cache.close()
            source, manifest = copied or (None, fresh)
            return _unchanged(spec, out_dir, manifest, llm, push, allow_short, copied_from=source)
    pipe = Pipeline(ctx)
    min_gap = topup_gaps(ctx)
    totals: dict = {}
    per_stage: dict = {}
    cap = spec.generator.max_usd

    async def generate():
        # One event loop for every round: providers keep per-loop HTTP clients.
        engine = make_executor(spec, llm, cache, progress, batch_files)
        threads = _Threads(asyncio.get_running_loop())
        tasks = pipe.first_tasks(0)
        rounds = 0
        while True:
            if cap is not None:  # the cap covers the whole build, not each round
                engine.max_usd = max(cap - totals.get("cost_usd", 0.0), 1e-9)
            stats = await engine.run(tasks, pipe.on_result, pipe.on_failure)
            _add_stats(totals, per_stage, stats)
            threads.stop_idle()  # a process with threads is not forked: curation would use one core
            result = curator.run(pipe.sorted_records())
            targets = {(q["principle_id"], q["kind"]): q["target"] for q in result.quotas}
            short = worth_topping_up(result.wanting, min_gap, targets)
            if not short or rounds >= spec.corpus.rounds:
                return result, rounds
            tasks = pipe.topup_tasks(short, rounds + 1, pipe.records)
            if not tasks:
                return result, rounds
            rounds += 1

    outcome: list = []

    async def generate_and_close() -> None:
        try:
            outcome.append(await generate())
        finally:  # the provider's connections belong to this loop
            close = getattr(llm, "aclose", None)
            if close is not None:
                await close()

    try:
        with Progress(quiet=quiet) as progress:
            # The corpus is handed over outside the task's result: on the way out asyncio.run formats its
            # main task (and so the task's result) while restoring the Ctrl-C handler, which for a whole
            # corpus cost seconds and a repr the size of every text.
            asyncio.run(generate_and_close())
        result, rounds = outcome[0]
        # One query for every result the build used: the usage behind the corpus, whichever run paid
        # for it, and the identity of each entry for the fingerprint.
        stamps = cache.usage(pipe.used)
    finally:
        cache.close()

    slots: dict[tuple[str, str], Counter] = {}
    for source in (pipe.drops_by_slot, result.dropped_by_slot):
        for key, c in source.items():
            slots.setdefault(key, Counter()).update(c)
    hints = Hints(spec.assistant.name, embedded(llm.id), ctx.preset == "small")
    short = diagnose(result.quotas, slots, pipe.answers, result.curated, hints)
    failed = short_kinds(result.quotas)
    dropped = Counter(pipe.drops) + Counter(result.dropped)
    if not result.kept:
        top = ", ".join(f"{k} {v}" for k, v in dropped.most_common(6)) or "nothing was generated"
        why = "".join(f"\n  {s.line()}" for s in short)
        raise RunError(f"the build produced no records ({top}); generations are cached, so a rerun resumes{why}")

    by_principle: dict[str, dict] = {}
    for source in (pipe.drops_by_principle, result.dropped_by_principle):
        for pid, c in source.items():
            acc = by_principle.setdefault(pid, Counter())
            acc.update(c)
    gen_model = model or spec.generator.model
    prices = run_prices(llm.id, model_name(llm), spec.generator.prices)
    if spec.generator.batch:
        prices = batch_prices(prices)
    fingerprint = None
    if not pipe.failed and len(stamps) == len(pipe.used):  # a failed task is retried by the next build
        fingerprint = {"inputs": inputs, "results": results_fingerprint(stamps), "tasks": len(stamps),
                       "task_keys": TASKS_NAME}
    per_principle = {pid: {"calls": c["calls"], "cached": c["cached"]} for pid, c in sorted(pipe.by_principle.items())}
    gen_provider = provider or spec.generator.provider
    build_info = {
        # The endpoint without credentials or query: `specc eval` writes its suite with the same model.
        "llm": {"provider": gen_provider, "model": gen_model, "id": llm.id,
                "base_url": public_url(base_url or spec.generator.base_url or OPENAI_URL) if gen_provider == "openai"
                else None,
                **{k: totals.get(k, 0) for k in ("calls", "cached", "failed", "input_tokens", "output_tokens")},
                "cost_usd": round(totals.get("cost_usd", 0.0), 6),
                "saved_usd": round(totals.get("saved_usd", 0.0), 6),
                "per_stage": {st: {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(d.items())}
                              for st, d in sorted(per_stage.items())}},
        "dropped": dict(sorted(dropped.items())),
        "dropped_by_principle": {p: dict(sorted(c.items())) for p, c in sorted(by_principle.items())},
        "quotas": result.quotas,
        "expansion": expansion(pipe),
        "rounds": rounds,
        "judge": ctx.judge,
        "short": [s.to_dict() for s in short],
        "short_kinds": failed,
        "dedup": result.dedup_params,
        "provenance": provenance(result.kept, stamps, prices),
        "llm_by_principle": per_principle,
        "fingerprint": fingerprint,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    batch = batch_info(spec, batch_files, totals)
    if batch is not None:
        build_info["llm"]["batch"] = batch
    from specc.emit import emit

    from specc.emit.report import write_report

    rejected = pipe.sorted_dropped() + result.rejected
    curator.count_tokens([r for r, _ in rejected])
    writers = [write_report]
    if fingerprint is not None:
        writers.append(lambda root: write_task_keys(root, list(stamps)))
    manifest = emit(result.kept, spec, out_dir, build_info=build_info, extra_writers=writers, dropped=rejected)
    if fingerprint is not None:
        with Cache(Path(cache_path)) as c:
            remember_output(c, inputs, out_dir)
    pushed = push and (allow_short or not failed)
    if pushed:
        from specc.emit.hub import push as push_to_hub

        push_to_hub(out_dir, spec.output.hub.repo, private=spec.output.hub.private)
    generated = Counter(pipe.counts)
    generated.update(r.kind for r in pipe.records)
    return BuildResult(spec, out_dir, manifest, result.kept, build_info["llm"], per_stage, dropped, rounds,
                       generated, list(pipe.errors), short, pushed, failed, per_principle=per_principle)


def _unchanged(spec: Spec, out_dir: Path, manifest: dict, llm, push: bool, allow_short: bool,
               copied_from: Path | None = None) -> BuildResult:
    """The result of a build whose output is up to date (or ``copied_from`` an up-to-date output built from the
    same inputs): read from its manifest, nothing called, curated or rendered."""
    from specc.curate.shortfall import Short

    old = manifest.get("llm") or {}
    # What this run did: every result the output used is in the cache, so a full build would have
    # served them all from it.
    this_run = {"provider": old.get("provider"), "model": old.get("model"), "id": llm.id, "calls": 0,
                "cached": (old.get("calls") or 0) + (old.get("cached") or 0), "failed": 0, "input_tokens": 0,
                "output_tokens": 0, "cost_usd": 0.0, "saved_usd": 0.0, "per_stage": {}}
    short = [Short(**{k: v for k, v in s.items() if k != "line"}) for s in manifest.get("short") or []]
    failed = list(manifest.get("short_kinds") or [])
    pushed = push and (allow_short or not failed)
    if pushed:
        from specc.emit.hub import push as push_to_hub

        push_to_hub(out_dir, spec.output.hub.repo, private=spec.output.hub.private)
    return BuildResult(spec, out_dir, manifest, None, this_run, {}, Counter(manifest.get("dropped") or {}),
                       manifest.get("rounds") or 0, short=short, pushed=pushed, short_kinds=failed, up_to_date=True,
                       copied_from=copied_from)


def provenance(kept: list[Record], stamps: dict[str, tuple], prices: tuple[float, float]) -> dict:
    """The generations behind the corpus, whichever run made them: those the kept rows were written from
    (each row's own call, the ideas or scenarios call it came from, its judge) and every one the build used."""
    from specc.generate.pricing import cost_usd

    def total(keys) -> dict:
        tin = tout = n = 0
        for k in keys:
            row = stamps.get(k)
            if row is not None:
                n += 1
                tin += row[2]
                tout += row[3]
        return {"calls": n, "input_tokens": tin, "output_tokens": tout,
                "cost_usd": round(cost_usd(prices, tin, tout), 6)}

    behind: set[str] = set()
    for r in kept:
        m = r.meta
        for k in (m.get("task_key"), m.get("parent_key"), (m.get("judge") or {}).get("task_key")
                  if isinstance(m.get("judge"), dict) else None):
            if k:
                behind.add(k)
    by_stage: dict[str, list[str]] = {}
    for k, row in stamps.items():
        by_stage.setdefault(row[0], []).append(k)
    return {"kept": total(behind), "build": total(stamps),
            "by_stage": {st: total(keys) for st, keys in sorted(by_stage.items())},
            "prices_per_mtok": list(prices)}
