"""`specc cache stats` and `specc cache clear`: inspect or empty the generation cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from specc.generate.cache import Cache, default_cache_path
from specc.cli import app, command, console
from specc.errors import InputError

cache_app = typer.Typer(help="Inspect or clear the generation cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

SPEC_ARG = typer.Argument(None, help="The spec whose cache to use (the cache lives in .specc/ beside it).")
CACHE_OPT = typer.Option(
    None, "--cache", help="The cache file (default: $SPECC_CACHE, else .specc/cache.sqlite beside the spec)."
)


def _cache_path(spec: Path | None, cache: Path | None) -> Path:
    if cache is not None:
        return cache
    if spec is not None and not spec.is_file():
        raise InputError(f"{spec}: no such spec file")
    return default_cache_path(spec)


@command("stats", group=cache_app)
def stats(spec: Path | None = SPEC_ARG, cache: Path | None = CACHE_OPT) -> None:
    """Show how many generations the cache holds, by stage and model."""
    path = _cache_path(spec, cache)
    if not path.exists():
        console.print(f"{path}: no cache yet (0 entries)", markup=False)
        return
    with Cache(path) as c:
        s = c.stats()
    console.print(
        f"{s['path']}: {s['entries']} {'entry' if s['entries'] == 1 else 'entries'}, {s['input_tokens']} input + {s['output_tokens']} output tokens, "
        f"{s['bytes'] / 1e6:.1f} MB",
        markup=False,
    )
    for group, title in (("by_stage", "stage"), ("by_model", "model")):
        if not s[group]:
            continue
        table = Table(title=None, show_edge=False)
        for col in (title, "entries", "input tokens", "output tokens"):
            table.add_column(col, justify="left" if col == title else "right", overflow="fold")
        for name, row in s[group].items():
            table.add_row(name, str(row["entries"]), str(row["input_tokens"]), str(row["output_tokens"]))
        console.print(table)


@command("clear", group=cache_app)
def clear(
    spec: Path | None = SPEC_ARG,
    cache: Path | None = CACHE_OPT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every cached generation (the next build calls the model again)."""
    path = _cache_path(spec, cache)
    if not path.exists():
        console.print(f"{path}: no cache, nothing to clear", markup=False)
        return
    with Cache(path, any_version=True) as c:
        n = len(c)
        if not yes and not typer.confirm(f"Delete {n} cached generations from {path}?"):
            raise typer.Exit(1)
        removed = c.clear()
    console.print(f"cleared {removed} entries from {path}", markup=False)
