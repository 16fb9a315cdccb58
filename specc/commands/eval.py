"""`specc eval run` and `specc eval compare`: how well a model follows the spec, per principle, and what changed."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from specc.cli import app, command, console, err_console
from specc.tables import table

eval_app = typer.Typer(help="Measure whether a model follows the spec, on a held-out suite compiled from it.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _rate(t: dict) -> str:
    if not t or not t.get("items"):
        return "-"
    lo, hi = t["ci95"]
    return f"{100 * t['pass_rate']:.0f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


def _say(text: str) -> None:
    console.print(Text(text))


@command("run", group=eval_app)
def run_cmd(
    spec_path: Path = typer.Argument(..., help="The spec file (YAML)."),
    model: str | None = typer.Option(None, "--model", help="The target: the model to evaluate, as its endpoint serves it."),
    provider: str = typer.Option("openai", "--provider", help="The target's provider: openai (any compatible endpoint) or local (the embedded model)."),
    base_url: str | None = typer.Option(None, "--base-url", help="The target's endpoint (an OpenAI-compatible /v1 URL; default: OpenAI)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="The environment variable holding the target's key (default: OPENAI_API_KEY, if set)."),
    cache_namespace: str | None = typer.Option(None, "--cache-namespace", help="Tell apart two models served one after the other under one name at one URL."),
    label: str | None = typer.Option(None, "--label", help="The target's name in results-<label>.json and the report (default: the model name)."),
    n: int = typer.Option(20, "-n", help="Generated items per principle, spread over the kinds (the spec's holdout examples come on top)."),
    out: Path | None = typer.Option(None, "--out", help="Where the suite and results go (default: the corpus folder's eval/)."),
    corpus: Path | None = typer.Option(None, "--corpus", help="The built corpus to keep the suite clean of (default: the spec's output folder)."),
    no_corpus: bool = typer.Option(False, "--no-corpus", help="Compile the suite without a corpus, so without decontamination (needs --out)."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge (default: the generator)."),
    judge_provider: str | None = typer.Option(None, "--judge-provider", help="The judge's provider (default: the generator's)."),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url", help="The judge's endpoint (default: the generator's)."),
    generator_model: str | None = typer.Option(None, "--generator-model", help="The model that writes the suite (default: the one the corpus was built with)."),
    generator_provider: str | None = typer.Option(None, "--generator-provider", help="Its provider."),
    generator_base_url: str | None = typer.Option(None, "--generator-base-url", help="Its endpoint."),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="Longest reply asked of the target, in tokens."),
    cache: Path | None = typer.Option(None, "--cache", help="The generation cache (default: SPECC_CACHE or .specc/cache.sqlite beside the spec)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Evaluate a target model on the spec's held-out suite (compiled, or reused, first); a rerun makes no call."""
    from specc.eval.run import run_eval

    r = run_eval(spec_path, model=model, provider=provider, base_url=base_url, api_key_env=api_key_env,
                 cache_namespace=cache_namespace, label=label, n=n, out=out, corpus=corpus, no_corpus=no_corpus,
                 judge_model=judge_model, judge_provider=judge_provider, judge_base_url=judge_base_url,
                 generator_model=generator_model, generator_provider=generator_provider,
                 generator_base_url=generator_base_url, max_tokens=max_tokens, cache_path=cache, quiet=quiet)
    res, suite = r.results, r.suite

    def row(name: str, t: dict) -> list:
        return [name, t["items"], t["passes"], _rate(t), t["unparseable"] + t["empty"] + t["error"]]

    head = ["items", "passes", "pass rate [95% CI]", "no verdict"]
    label = res["target"]["label"]
    console.print(table(f"{label}: per principle", ["principle"] + head,
                        [row(pid, t) for pid, t in res["principles"].items()] + [row("overall", res["overall"])]))
    console.print(table(f"{label}: per kind", ["kind"] + head, [row(k, t) for k, t in res["kinds"].items()]))
    calls = res["calls"]
    made = "reused" if suite.reused else f"{calls['generator'].get('calls', 0)} calls, {calls['generator'].get('cached', 0)} cached"
    _say(f"suite {suite.hash[:12]}: {len(suite.items)} items ({made}); target {calls['target']['calls']} calls, "
         f"{calls['target']['cached']} cached; judge {res['judge']['llm_id']}: {calls['judge']['calls']} calls, "
         f"{calls['judge']['cached']} cached")
    for w in r.warnings:
        err_console.print(f"warning: {w}", markup=False)
    _say(f"wrote {r.results_path}, {r.replies_path.name} and {r.report_path}")


@command("compare", group=eval_app)
def compare_cmd(
    a: Path = typer.Argument(..., help="Results before (results-<target>.json)."),
    b: Path = typer.Argument(..., help="Results after, on the same suite."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per principle, both pass rates, the difference and whether it is significant (two-proportion test, 95 %)."""
    from specc.eval.results import compare, read_results

    ra, rb = read_results(a), read_results(b)
    c = compare(ra, rb, (str(a), str(b)))
    if as_json:
        typer.echo(json.dumps(c.to_dict(), indent=2))
        return
    for name, r, path in (("A", ra, a), ("B", rb, b)):
        t = r.get("target") or {}
        _say(f"{name}: {t.get('label') or path}, {path}")

    def line(r) -> list:
        p = "<0.001" if r.test.p_value < 0.001 else f"{r.test.p_value:.3f}"
        return [r.name, _rate(r.a), _rate(r.b), f"{100 * r.test.diff:+.0f} pts", p, "yes" if r.test.significant else "no"]

    head = ["A", "B", "B - A", "p", "sig."]
    _say(f"suite {ra['suite']['hash'][:12]}, {ra['suite']['items']} items; pass rate [95% CI]; sig.: the difference is "
         "significant at 95% (two-proportion test, p < 0.05)")
    console.print(table("By principle",
                        ["principle"] + head, [line(r) for r in c.principles] + [line(c.overall)]))
    console.print(table("By kind", ["kind"] + head, [line(r) for r in c.kinds]))
    for w in c.warnings:
        err_console.print(f"warning: {w}", markup=False)
