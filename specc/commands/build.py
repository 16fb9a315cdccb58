"""`specc plan`, `specc diff`, `specc build`: what a build would do, what an edit changes, and the build."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from specc.cli import command, console
from specc.errors import InputError, ShortBuildError
from specc.tables import table as _tbl

SPEC_ARG = typer.Argument(..., help="The spec file (YAML).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of tables.")
PROVIDER_OPT = typer.Option(None, "--provider", help="Override generator.provider (local or openai).")
MODEL_OPT = typer.Option(None, "--model", help="Override generator.model.")
BASE_URL_OPT = typer.Option(None, "--base-url", help="Override generator.base_url (an OpenAI-compatible /v1 URL).")
BUDGET_OPT = typer.Option(None, "--budget", min=1, help="Override corpus.budget.tokens (the corpus size in tokens).")
CACHE_OPT = typer.Option(None, "--cache", help="The generation cache (default: SPECC_CACHE or .specc/cache.sqlite beside the spec).")


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
) -> None:
    """Show what a build would generate and cost, without calling any model."""
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
    console.print(_tbl(
        "Per principle",
        ["principle", "facets", "doc types", "ideas calls", "documents", "doc tokens / quota", "scenario calls",
         "demonstrations", "demo tokens / quota"],
        [[pid, f"{r['facets']} ({r['facets_generated']} generated)" if r["facets_generated"] else r["facets"],
          r["doc_types"], r["ideas_calls"], r["documents"],
          f"{r['expected_document_tokens']:,} / {r['quota_document_tokens']:,}",
          r["scenario_calls"], r["demonstrations"],
          f"{r['expected_demonstration_tokens']:,} / {r['quota_demonstration_tokens']:,}"]
         for pid, r in plan.principles.items()],
    ))
    cost = f"${plan.cost_usd:,.4f}" if any(plan.prices) else "$0 (no price known for this model; set generator.prices)"
    _say(f"estimated cost: {cost} for {plan.input_tokens:,} input + {plan.output_tokens:,} output tokens")
    if plan.cache_path is not None:
        _say(f"cache {plan.cache_path}: {sum(plan.cached.values()):,} tasks cached; a build would make about "
             f"{plan.calls:,} calls")
    else:
        _say(f"no cache at {cache_file}: every task would run")
    for note in plan.notes:
        _say(f"note: {note}")
    for w in plan.warnings:
        _say(f"warning: {w}")


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


@command("build")
def build_cmd(
    spec_path: Path = SPEC_ARG,
    out: Path | None = typer.Option(None, "--out", help="Output directory (default: output.dir, else build/<name> beside the spec)."),
    provider: str | None = PROVIDER_OPT,
    model: str | None = MODEL_OPT,
    base_url: str | None = BASE_URL_OPT,
    cache: Path | None = CACHE_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    push: bool = typer.Option(False, "--push", help="Upload the result to output.hub.repo on the Hugging Face Hub."),
    max_usd: float | None = typer.Option(None, "--max-usd", min=0, help="Stop when this much has been spent (overrides generator.max_usd)."),
    budget: int | None = BUDGET_OPT,
    allow_short: bool = typer.Option(
        False, "--allow-short",
        help="Exit 0 even when the documents or demonstrations end below half of their quota (the corpus "
        "is written either way; without this flag such a build exits 1 and is not pushed)."),
    batch: bool = typer.Option(False, "--batch", help="Send tasks through the endpoint's Batch API in waves (half the price; a stopped build resumes its batches)."),
    batch_export: Path | None = typer.Option(None, "--batch-export", help="Write the ready wave as OpenAI batch JSONL files into this directory and stop (for vLLM or Ray)."),
    batch_import: list[Path] | None = typer.Option(None, "--batch-import", help="Load result files (OpenAI batch output format; a directory means its .jsonl and .json files) and continue; repeatable."),
) -> None:
    """Generate, curate and write the corpus; a rerun of an unchanged spec makes no LLM call.

    Exits 1 when the documents or the demonstrations end below half of their quota, after
    writing what was kept, with one line per short principle naming the cause and the fix.
    """
    from specc.build import run_build
    from specc.commands.batches import batch_files, say_wave_written
    from specc.generate.batch import WaveWritten

    files = batch_files(batch_export, batch_import, batch)
    try:
        r = run_build(spec_path, out=out, provider=provider, model=model, base_url=base_url, cache_path=cache,
                      quiet=quiet, push=push, max_usd=max_usd, budget=budget, allow_short=allow_short,
                      batch=batch, batch_files=files)
    except WaveWritten as w:
        say_wave_written(w, spec_path)
        return
    counts = r.counts()
    budget = r.spec.corpus.budget.tokens
    llm = r.llm
    _say(f"built {counts.get('document', 0):,} documents and {counts.get('demonstration', 0):,} demonstrations: "
         f"{r.kept_tokens:,} tokens of a {budget:,} budget ({100 * r.kept_tokens / budget:.0f}%)"
         + (f", {r.rounds} top-up round(s)" if r.rounds else ""))
    _say(f"llm {llm['id']}: {llm['calls']:,} calls, {llm['cached']:,} cached, {llm['failed']:,} failed, "
         f"{llm['input_tokens']:,} input + {llm['output_tokens']:,} output tokens, ${llm['cost_usd']:,.4f}"
         + (f" (the cache saved ${llm['saved_usd']:,.4f})" if llm.get("saved_usd") else ""))
    if llm.get("batch"):
        b = llm["batch"]
        _say(f"batch path ({b['path']}): {b['waves']} wave(s), {b['batches']} batch(es) sent"
             + (f", {b['resumed']} resumed from an earlier run" if b["resumed"] else "")
             + (f", {b['imported']} results imported" if b["imported"] else "")
             + (", priced at half the list price" if b.get("price_factor") else ""))
    if r.dropped:
        _say("dropped: " + ", ".join(f"{k} {v:,}" for k, v in r.dropped.most_common()))
    for e in r.errors[:5]:
        _say(f"warning: {e}")
    _say(f"wrote {r.out_dir}" + (f" and pushed it to {r.spec.output.hub.repo}" if r.pushed else ""))
    lines = "".join(f"\n  {s.line()}" for s in r.short)
    if not r.short_kinds:
        if r.short:
            _say(f"warning: {len(r.short)} principle × kind quota(s) ended below half of their target:{lines}")
        return
    head = "; ".join(k["line"] for k in r.short_kinds) + ": below half of the quota"
    if allow_short:
        _say(f"warning: {head}{lines}")
        return
    raise ShortBuildError(
        f"{head}{lines}\nthe corpus was written to {r.out_dir}" + (" but not pushed" if push else "")
        + f"; the rows dropped are in {r.out_dir / 'dropped'} (`specc show {r.out_dir} --dropped --reason R`); "
        "fix the causes above, or pass --allow-short to accept it"
    )
