"""Rich tables for the CLI's reports: one number format everywhere, and no Python repr in any cell."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def fmt_number(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt_number(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_number(x) for x in v)
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def table(title: str, columns: list[str], rows: list[list], *, keep_first: bool = True) -> Table:
    """A borderless table; the first column is left-aligned, numbers right-aligned.

    The first column names the row (a principle id, a stage), so it is kept whole while the
    others give way (``keep_first=False``: it gives way too); a cell too long for its column
    folds onto the next line, never cut.
    """
    t = Table(title=title, title_justify="left", show_edge=False)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right", no_wrap=keep_first and i == 0, overflow="fold")
    for row in rows:
        t.add_row(*(Text(fmt_number(v)) for v in row))
    return t


def section_tables(title: str, section: dict) -> list[Table]:
    """A manifest section as tables: its plain entries as name/value rows, then a table per nested dict.

    A dict of dicts (``per_stage``: stage -> numbers) becomes one row per key and a column per
    inner key, ordered as the section orders the same keys.
    """
    plain = [[k, v] for k, v in section.items() if not isinstance(v, dict)]
    out = [table(title, ["", "value"], plain)] if plain else []
    for key, value in section.items():
        if not isinstance(value, dict):
            continue
        name = f"{title} {key.replace('_', ' ')}"
        if value and all(isinstance(v, dict) for v in value.values()):
            inner = set().union(*value.values())
            # in the order the section lists the same numbers (calls, cached, ...), then the rest
            cols = [k for k, _ in plain if k in inner] + sorted(inner - {k for k, _ in plain})
            out.append(table(name, ["", *(c.replace("_", " ") for c in cols)],
                             [[k, *(row.get(c) for c in cols)] for k, row in value.items()]))
        else:
            out.extend(section_tables(name, value))
    return out
