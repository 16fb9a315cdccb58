"""`specc report OUT`: (re)write the self-contained HTML report of an output directory."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from specc.cli import command, console


@command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="An output directory written by `specc build`."),
    open_: bool = typer.Option(False, "--open", help="Open the report in a web browser."),
) -> None:
    """Write OUT/report.html (charts, drops, cost and samples) from the manifest and shards, and print its path."""
    from specc.emit.report import write_report

    path = write_report(out)
    console.print(str(path), markup=False)
    if open_:
        webbrowser.open(path.resolve().as_uri())
