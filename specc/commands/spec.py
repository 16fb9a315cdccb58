"""`specc init`, `specc validate`, `specc schema`: the spec front end's commands."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from specc.cli import command, console, err_console
from specc.errors import InputError, SpecError


@command("init")
def init(
    directory: Path = typer.Argument(Path("."), help="Where to write spec.yaml."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing spec.yaml."),
) -> None:
    """Write a commented starter spec that validates."""
    target = directory / "spec.yaml"
    if target.exists() and not force:
        raise InputError(f"{target} already exists (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(resources.files("specc.spec").joinpath("starter.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    console.print(f"wrote {target}; next: specc validate {target} && specc build {target}", markup=False)
    console.print(
        "it builds offline on the embedded model (SmolLM2-135M) with the prompts it can follow and no judge, "
        "in a few minutes; for a real corpus set generator.provider: openai and raise corpus.budget.tokens",
        markup=False,
    )


@command("validate")
def validate(specs: list[Path] = typer.Argument(..., help="Spec files to check.")) -> None:
    """Check specs; print a summary per valid spec and every problem as FILE:LINE:COL."""
    from specc.spec.load import load_spec
    from specc.spec.preflight import preflight

    failed = 0
    for path in specs:
        try:
            spec = load_spec(path)
        except SpecError as e:
            failed += 1
            err_console.print(str(e), markup=False)
            continue
        # What a build would reject only after loading: eval files, the tokenizer, the templates.
        issues = preflight(spec)
        if issues:
            failed += 1
            err_console.print(str(SpecError(issues)), markup=False)
            continue
        n_ex = sum(len(p.examples) for p in spec.principles)
        n_hold = sum(e.holdout for p in spec.principles for e in p.examples)
        c = spec.corpus
        console.print(
            f"ok {path}: {spec.name} {spec.version}: {len(spec.principles)} principles, "
            f"{n_ex} examples ({n_hold} holdout), budget {c.budget.tokens:,} tokens "
            f"({c.mix.documents:.0%} documents, {c.mix.demonstrations:.0%} demonstrations)",
            markup=False,
        )
        _warn_pairings(spec)
    if failed:
        raise typer.Exit(2)


def _warn_pairings(spec) -> None:
    from specc.spec.preflight import warnings

    for w in warnings(spec):
        err_console.print(f"warning: {w}", markup=False)


@command("schema")
def schema(output: Path = typer.Option(None, "-o", "--output", help="Write to a file instead of stdout.")) -> None:
    """Print the JSON Schema of the spec format."""
    from specc.spec import json_schema_text

    text = json_schema_text()
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
