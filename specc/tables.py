"""Rich tables for the CLI's reports: one number format everywhere."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def fmt_number(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".")
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    """A borderless table; the first column is left-aligned, numbers right-aligned."""
    t = Table(title=title, title_justify="left", show_edge=False)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(Text(fmt_number(v)) for v in row))
    return t
