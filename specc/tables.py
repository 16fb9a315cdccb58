"""Rich tables for the CLI's reports: one number format everywhere, and no Python repr in any cell."""

from __future__ import annotations

from rich.cells import cell_len
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


def table(title: str, columns: list[str], rows: list[list], *, keep_first: bool = True,
          width: int | None = None) -> Table:
    """A borderless table; the first column is left-aligned, numbers right-aligned.

    The first column names the row (a principle id, a stage), so it is kept whole while the
    others give way (``keep_first=False``: it gives way too); a cell too long for its column
    folds onto the next line, never cut. ``width``, the width it will print at: if the table
    is wider but can fit, the columns' header words wrap first and no cell breaks.
    """
    t = Table(title=title, title_justify="left", show_edge=False)
    fixed = _fit(columns, rows, width) if width is not None else None
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right", no_wrap=keep_first and i == 0, overflow="fold",
                     width=fixed[i] if fixed else None)
    for row in rows:
        t.add_row(*(Text(fmt_number(v)) for v in row))
    return t


def _needs(columns: list[str], rows: list[list]) -> list[tuple[int, int]]:
    """Per column: the narrowest it can be without breaking a cell or a header word, and its width unwrapped."""
    cells = [[fmt_number(v) for v in row] for row in rows]
    out = []
    for i, col in enumerate(columns):
        body = max((cell_len(row[i]) for row in cells), default=0)
        out.append((max(body, *(cell_len(w) for w in col.split() or [""])), max(body, cell_len(col))))
    return out


def widths(columns: list[str], rows: list[list]) -> tuple[int, int]:
    """How wide ``table(columns, rows)`` prints: at the narrowest that breaks no cell or header word, and unwrapped."""
    needs = _needs(columns, rows)
    rules = len(columns) - 1 + 2 * len(columns)  # a rule between columns, a space of padding each side of a cell
    return rules + sum(n for n, _ in needs), rules + sum(w for _, w in needs)


def _fit(columns: list[str], rows: list[list], width: int) -> list[int] | None:
    """Column widths for a table wider than ``width`` that fits it with wrapped headers; None if it fits or cannot."""
    narrow, natural = widths(columns, rows)
    if natural <= width or narrow > width:
        return None
    needs = _needs(columns, rows)
    fixed, spare = [n for n, _ in needs], width - narrow
    for i, (n, w) in enumerate(needs):  # the room left unwraps headers, left to right
        extra = min(spare, w - n)
        fixed[i] += extra
        spare -= extra
    return fixed


def section_tables(title: str, section: dict, *, width: int | None = None) -> list[Table]:
    """A manifest section as tables: its plain entries as name/value rows, then a table per nested dict.

    A dict of dicts (``per_stage``: stage -> numbers) becomes one row per key and a column per
    inner key, ordered as the section orders the same keys.
    """
    plain = [[k, v] for k, v in section.items() if not isinstance(v, dict)]
    out = [table(title, ["", "value"], plain, width=width)] if plain else []
    for key, value in section.items():
        if not isinstance(value, dict):
            continue
        name = f"{title} {key.replace('_', ' ')}"
        if value and all(isinstance(v, dict) for v in value.values()):
            inner = set().union(*value.values())
            # in the order the section lists the same numbers (calls, cached, ...), then the rest
            cols = [k for k, _ in plain if k in inner] + sorted(inner - {k for k, _ in plain})
            out.append(table(name, ["", *(c.replace("_", " ") for c in cols)],
                             [[k, *(row.get(c) for c in cols)] for k, row in value.items()], width=width))
        else:
            out.extend(section_tables(name, value, width=width))
    return out
