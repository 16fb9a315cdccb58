"""`specc import openai-model-spec` and `specc import rules`: start a spec from an existing one."""

from __future__ import annotations

from pathlib import Path

import typer

from specc.cli import app, command, console, err_console

import_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(
    import_app,
    name="import",
    help="Convert a spec written in another format (Model Spec markdown, a rule list) into a specc YAML spec.",
)

OUTPUT = typer.Option(Path("spec.yaml"), "-o", "--output", help="The YAML spec to write.")
NAME = typer.Option(None, "--name", help="Spec name (a slug; default: from the file name).")
ASSISTANT = typer.Option("Assistant", "--assistant", help="The assistant's name, used in every document.")
DEVELOPER = typer.Option("", "--developer", help="Who builds the assistant.")
FORCE = typer.Option(False, "--force", help="Overwrite an existing output file.")
STRICT = typer.Option(False, "--strict", help="Treat every warning (something skipped) as an error: exit 2, write nothing.")


def _finish(imp, output: Path, force: bool, strict: bool) -> None:
    from specc.errors import SpecError
    from specc.spec.importers import write_spec

    if strict and imp.warnings:
        raise SpecError(imp.warnings)
    spec = write_spec(imp, output, force=force)
    for warning in imp.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    skipped = f"; {len(imp.warnings)} warning(s) above: those parts were skipped" if imp.warnings else ""
    console.print(f"wrote {output}: {imp.summary}{skipped}", markup=False)
    g = spec.generator
    console.print(
        f"next: the generator is the spec default ({g.provider} {g.model}) and the budget "
        f"{spec.corpus.budget.tokens:,} tokens; set generator and corpus.budget.tokens in {output} "
        f"(see the comment at its end), then `specc plan {output}`",
        markup=False,
    )


@command("openai-model-spec", group=import_app)
def import_openai_model_spec(
    source: Path = typer.Argument(..., help="A Model Spec markdown file (headings with {#id authority=LEVEL})."),
    output: Path = OUTPUT,
    name: str | None = NAME,
    assistant: str = ASSISTANT,
    developer: str = DEVELOPER,
    force: bool = FORCE,
    strict: bool = STRICT,
) -> None:
    """Import a spec in the OpenAI Model Spec markdown format; authority levels become priorities."""
    from specc.spec.import_openai import import_model_spec

    _finish(import_model_spec(source, name=name, assistant=assistant, developer=developer), output, force, strict)


@command("rules", group=import_app)
def import_rules_cmd(
    source: Path = typer.Argument(..., help="A text file of rules: 'SP1: ...' labels or a '1.' numbered list."),
    output: Path = OUTPUT,
    name: str | None = NAME,
    assistant: str = ASSISTANT,
    developer: str = DEVELOPER,
    force: bool = FORCE,
    strict: bool = STRICT,
) -> None:
    """Import a numbered or labelled rule list; indented bullets become subrules."""
    from specc.spec.import_rules import import_rules

    _finish(import_rules(source, name=name, assistant=assistant, developer=developer), output, force, strict)
