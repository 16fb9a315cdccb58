"""`specc plan` and `specc diff`: what a build would generate and cost, and what an edit changes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from specc.cli import command, console
from specc.commands.options import BASE_URL_OPT, BUDGET_OPT, CACHE_OPT, JSON_OPT, MODEL_OPT, PROVIDER_OPT, SPEC_ARG
from specc.errors import InputError
from specc.plan.throughput import duration
from specc.tables import table as _tbl
from specc.tables import widths


def _short(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" +{len(items) - n} more" if len(items) > n else "") if items else "-"


def _say(text: str) -> None:
    console.print(Text(text))


@command("plan")
def plan_cmd(
    spec_path: Path = SPEC_ARG,
    as_json: bool = JSON_OPT,
    cache: Path | None = CACHE_OPT,
    provider: str | None = PROVIDER_OPT,
    model: str | None = MODEL_OPT,
    base_url: str | None = BASE_URL_OPT,
    budget: int | None = BUDGET_OPT,
    batch: bool = typer.Option(False, "--batch", help="Price the calls as a provider's Batch API does: half."),
    wide: bool = typer.Option(False, "--wide", help="Print the per-principle table on one line per principle, "
                              "however wide (by default a table wider than the terminal prints as blocks)."),
) -> None:
    """Show what a build would generate and cost, without calling any model.

    The embedded model is free: for it the plan estimates the wall time, at the speed its
    cached calls measured on this machine, or at a default for a 2-core CPU.
    """
    from specc.build import with_overrides
    from specc.plan import make_plan
    from specc.spec.load import load_spec
    from specc.stages import llm_id

    spec = with_overrides(load_spec(spec_path), budget=budget, batch=batch)
    with _open_cache(spec_path, cache) as (handle, cache_file):
        plan = make_plan(spec, model=llm_id(spec, provider, model, base_url), cache=handle)
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2))
        return
    data = plan.to_dict()
    _say(f"{spec.name} {spec.version}: {len(spec.principles)} principles, model {plan.model}, "
         f"budget {spec.corpus.budget.tokens:,} tokens; {data['facets']:,} facets, {data['doc_types']:,} "
         "document types across principles")
    rows = [[s, e.tasks, e.input_tokens, e.output_tokens] for s, e in plan.stages.items()]
    t = plan.topup
    console.print(_tbl(
        "Calls by stage",
        ["stage", "calls", "input tokens", "output tokens"],
        rows + [["top-up (estimate)", t.tasks, t.input_tokens, t.output_tokens],
                ["total", plan.calls, plan.input_tokens, plan.output_tokens]],
    ))
    _per_principle(plan, wide)
    tokens = f"{plan.input_tokens:,} input + {plan.output_tokens:,} output tokens"
    if plan.throughput is not None:
        _say("estimated cost: free: the embedded model runs on this machine")
        _say(f"estimated wall time: {duration(plan.wall_seconds)} for {tokens}, at {plan.throughput.describe()}")
    else:
        _say(f"estimated cost: {_cost(plan)} for {tokens}")
    if plan.cache_path is not None:
        _say(f"cache {plan.cache_path}: {sum(plan.cached.values()):,} tasks cached; a build would make about "
             f"{plan.calls:,} calls")
    else:
        _say(f"no cache at {cache_file}: every task would run")
    for note in plan.notes:
        _say(f"note: {note}")
    for w in plan.warnings:
        _say(f"warning: {w}")


def _cost(plan) -> str:
    return f"${plan.cost_usd:,.4f}" if any(plan.prices) else "$0 (no price known for this model; set generator.prices)"


PER_PRINCIPLE = ["principle", "facets", "doc types", "ideas calls", "documents", "doc tokens / quota", "scenario calls",
                 "demonstrations", "demo tokens / quota"]


def _per_principle(plan, wide: bool) -> None:
    """The per-principle numbers: a table, or a block per principle where the table would not fit the terminal."""
    rows = [[pid, _facets(r), r["doc_types"], r["ideas_calls"], r["documents"],
             f"{r['expected_document_tokens']:,} / {r['quota_document_tokens']:,}",
             r["scenario_calls"], r["demonstrations"],
             f"{r['expected_demonstration_tokens']:,} / {r['quota_demonstration_tokens']:,}"]
            for pid, r in plan.principles.items()]
    narrowest, natural = widths(PER_PRINCIPLE, rows)
    if wide:  # wider than the terminal if need be (console.print clamps to it): for `less -S`, or a file
        from rich.console import Console

        Console(width=max(natural, console.width), highlight=False).print(_tbl("Per principle", PER_PRINCIPLE, rows))
        return
    if narrowest <= console.width:
        console.print(_tbl("Per principle", PER_PRINCIPLE, rows, width=console.width), soft_wrap=False)
        return
    # Long principle ids leave the numbers no room: each principle gets lines of its own, ids whole.
    _say(f"Per principle (the table needs {narrowest} columns; --wide prints it)")
    for pid, r in plan.principles.items():
        console.print(Text(f" {pid}", style="bold"), soft_wrap=False)
        generated = f" ({r['facets_generated']} generated)" if r["facets_generated"] else ""
        _say(f"   {'facets':<15} {r['facets']:,}{generated}, {_n(r['doc_types'], 'document type')}")
        for kind, made, calls, stage in (("documents", r["documents"], r["ideas_calls"], "ideas call"),
                                         ("demonstrations", r["demonstrations"], r["scenario_calls"], "scenario call")):
            one = kind[:-1]
            console.print(Text(f"   {kind:<15} {made:,} from {_n(calls, stage)}; "
                               f"{r[f'expected_{one}_tokens']:,} tokens for a quota of {r[f'quota_{one}_tokens']:,}"),
                          soft_wrap=False)


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _facets(r: dict):
    return f"{r['facets']} ({r['facets_generated']} generated)" if r["facets_generated"] else r["facets"]


class _open_cache:
    """The cache for ``plan``/``diff``: ``--cache``, else the default beside the spec if it exists; never created."""

    def __init__(self, spec_path: Path, cache: Path | None):
        from specc.generate.cache import default_cache_path

        self.file = Path(cache) if cache else default_cache_path(spec_path)
        if cache and not self.file.is_file():
            raise InputError(f"no cache at {self.file}")
        self.handle = None

    def __enter__(self):
        from specc.generate.cache import Cache

        self.handle = Cache(self.file) if self.file.is_file() else None
        return self.handle, self.file

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()


@command("diff")
def diff_cmd(
    old: Path = typer.Argument(..., help="The spec before the edit."),
    new: Path = typer.Argument(..., help="The spec after the edit."),
    as_json: bool = JSON_OPT,
    cache: Path | None = CACHE_OPT,
    provider: str | None = PROVIDER_OPT,
    model: str | None = MODEL_OPT,
    base_url: str | None = BASE_URL_OPT,
    budget: int | None = BUDGET_OPT,
) -> None:
    """Show which principles and stages an edit regenerates, and how many calls a rebuild makes.

    The overrides apply to both specs, as they would to both builds.
    """
    from specc.build import with_overrides
    from specc.plan import diff_specs
    from specc.spec.load import load_spec
    from specc.stages import llm_id

    a, b = (with_overrides(load_spec(p), budget=budget) for p in (old, new))
    with _open_cache(new, cache) as (handle, _):
        d = diff_specs(a, b, model_old=llm_id(a, provider, model, base_url), model_new=llm_id(b, provider, model, base_url),
                       cache=handle)
    if as_json:
        typer.echo(json.dumps(d.to_dict(), indent=2))
        return
    changed = {pid: r for pid, r in d.principles.items() if r["calls"] or r["status"] != "unchanged"}
    if changed:
        console.print(_tbl(
            "Principles",
            ["principle", "status", "stages regenerated", "calls by stage", "calls"],
            [[pid, r["status"], ", ".join(r["stages"]) or "-", _short(r["changes"], 4), r["calls"]]
             for pid, r in changed.items()],
        ))
    for stage, h in d.templates.items():
        _say(f"template {stage} changed ({h['old']} -> {h['new']}): its tasks regenerate")
    if d.resized:
        _say(f"changed the quotas, so how many tasks run (no prompt changed): {', '.join(d.resized)}; "
             "added tasks are counted below, dropped ones cost nothing")
    if d.curation_only:
        _say(f"changed without new calls (curation/emit re-run): {', '.join(d.curation_only)}")
    if d.context == "spec" and d.calls:
        _say("corpus.context is `spec`: every prompt carries the whole spec, so every edit regenerates everything")
    _say(f"a rebuild at {d.budget:,} tokens would make {d.calls:,} calls"
         + (f" ({', '.join(f'{s} {n:,}' for s, n in d.calls_by_stage.items())})" if d.calls else "")
         + ("" if d.cache else "; no cache found, so the old spec's build is assumed complete"))
