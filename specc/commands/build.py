"""`specc build`: generate, curate and write the corpus (`specc plan` and `specc diff` are in ``plan.py``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from specc.cli import command, console
from specc.commands.options import BASE_URL_OPT, BUDGET_OPT, CACHE_OPT, MODEL_OPT, PROVIDER_OPT, SPEC_ARG
from specc.errors import ShortBuildError


def _say(text: str) -> None:
    console.print(Text(text))


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
    if r.up_to_date:
        what = (f"{counts.get('document', 0):,} documents and {counts.get('demonstration', 0):,} demonstrations, "
                f"{r.kept_tokens:,} tokens")
        pushed = f"; pushed it to {r.spec.output.hub.repo}" if r.pushed else ""
        if r.copied_from is not None:
            _say(f"copied {r.copied_from} to {r.out_dir}: it was built from the same spec and cached results, "
                 f"so it is what this build would write and no call was made ({what}){pushed}")
        else:
            _say(f"{r.out_dir} is up to date: nothing changed since it was built, so no call was made and "
                 f"nothing was rewritten ({what}){pushed}")
        _finish(r, push, allow_short)
        return
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
    line = regenerated_line(r.per_principle)
    if line:
        _say(line)
    if r.dropped:
        _say("dropped: " + ", ".join(f"{k} {v:,}" for k, v in r.dropped.most_common()))
    for e in r.errors[:5]:
        _say(f"warning: {e}")
    _say(f"wrote {r.out_dir}" + (f" and pushed it to {r.spec.output.hub.repo}" if r.pushed else ""))
    _finish(r, push, allow_short)


def regenerated_line(per_principle: dict[str, dict], most: int = 8) -> str:
    """"regenerated: a 12 calls, b 3 calls; 56 principles unchanged (all cached)", or "" when a build
    called nothing, or when nothing was cached (a first build regenerates everything: no news)."""
    called = sorted(((c["calls"], pid) for pid, c in per_principle.items() if c.get("calls")), key=lambda t: (-t[0], t[1]))
    if not called or not any(c.get("cached") for c in per_principle.values()):
        return ""
    parts = [f"{pid} {n:,} call{'s' if n != 1 else ''}" for n, pid in called[:most]]
    if len(called) > most:
        parts.append(f"{len(called) - most} more principles {sum(n for n, _ in called[most:]):,} calls")
    same = len(per_principle) - len(called)
    tail = f"; {same} principle{'s' if same != 1 else ''} unchanged (all cached)" if same else ""
    return "regenerated: " + ", ".join(parts) + tail


def _finish(r, push: bool, allow_short: bool) -> None:
    """Warn about short quotas, or fail the build when a whole kind fell under half of its quota."""
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
