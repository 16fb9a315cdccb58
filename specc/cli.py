"""The typer app. The only place a SpeccError becomes a message and an exit code.

Commands live in ``specc/commands/*.py``; each registers itself on ``app`` with the
``command`` decorator below, which maps errors to exit codes in one place:
0 success, 1 a run that failed, 2 invalid input. ``SPECC_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import typer
from rich.console import Console

from specc import __version__
from specc.errors import SpeccError

app = typer.Typer(
    name="specc",
    help="Compile a behavioural model spec (YAML) into a midtraining corpus and chat demonstrations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def command(*args, group: typer.Typer | None = None, **kwargs) -> Callable:
    """``app.command`` (or ``group.command``) plus the error policy: SpeccError -> message + exit code."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                return fn(*a, **kw)
            except SpeccError as e:
                if os.environ.get("SPECC_DEBUG"):
                    raise
                raise fail(str(e), e.exit_code) from None
            except KeyboardInterrupt:
                raise fail("interrupted; finished work is cached and a rerun resumes", 130) from None

        return (group or app).command(*args, **kwargs)(wrapper)

    return deco


def _version(value: bool) -> None:
    if value:
        console.print(f"specc {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Compile a behavioural model spec (YAML) into a midtraining corpus and chat demonstrations."""


def _register() -> None:
    import importlib
    import pkgutil

    import specc.commands as pkg

    # `specc --help` lists commands in the order a user meets them; a module not named here comes last.
    order = ["spec", "importers", "plan", "build", "batches", "output", "report", "eval", "cache"]
    found = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    for mod in [m for m in order if m in found] + sorted(found - set(order)):
        importlib.import_module(f"specc.commands.{mod}")


_register()


def main() -> None:
    try:
        app()
    except SpeccError as e:  # raised outside a command (e.g. while parsing options)
        if os.environ.get("SPECC_DEBUG"):
            raise
        err_console.print(f"error: {e}", markup=False)
        sys.exit(e.exit_code)
