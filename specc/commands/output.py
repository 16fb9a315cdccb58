"""`specc push`, `specc stats`, `specc show`: publish and inspect an emitted corpus."""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.panel import Panel
from rich.text import Text

from specc.cli import command, console, err_console
from specc.errors import InputError
from specc.tables import section_tables
from specc.tables import table as _tbl

CONFIGS = ("documents", "demonstrations")  # specc.emit.shards.CONFIGS, without importing pyarrow at startup
OUT_ARG = typer.Argument(..., help="An output directory written by `specc build`.")


@command("push")
def push_cmd(
    out: Path = OUT_ARG,
    repo: str | None = typer.Option(None, "--repo", help="ORG/NAME on the Hub (default: the spec's output.hub.repo)."),
    private: bool | None = typer.Option(None, "--private/--public", help="Visibility of a new repo (default: the spec's)."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to push to (created if missing)."),
    message: str | None = typer.Option(None, "--message", "-m", help="Commit message."),
) -> None:
    """Upload an output directory to the Hugging Face Hub as a dataset (token from HF_TOKEN)."""
    from specc.emit import read_manifest
    from specc.emit.hub import push

    manifest = read_manifest(out)
    hub = manifest.get("hub") or {}
    repo = repo or hub.get("repo")
    if not repo:
        raise InputError("no Hub repo: pass --repo ORG/NAME or set output.hub.repo in the spec")
    if private is None:
        private = bool(hub.get("private", True))
    url = push(out, repo, private=private, revision=revision, message=message, endpoint=os.environ.get("HF_ENDPOINT"))
    console.print(f"pushed {out} to {repo} ({'private' if private else 'public'}): {url}", markup=False)


@command("stats")
def stats_cmd(out: Path = OUT_ARG) -> None:
    """Print an output's numbers from its manifest."""
    from specc.emit import read_manifest

    m = read_manifest(out)
    # Header words wrap before any number does, where the terminal allows it.
    tbl = functools.partial(_tbl, width=console.width)
    spec, counts, tokens = m["spec"], m["counts"], m["tokens"]
    console.print(
        Text(f"{spec['name']} {spec['version']} (sha256 {spec['sha256'][:12]}), assistant {spec['assistant']}, "
             f"built {m['created_at']} by specc {m['specc_version']}, {m['format']}")
    )
    console.print(
        tbl(
            "Corpus",
            ["config", "rows", "tokens"],
            [
                ["documents", counts["documents"], tokens["documents"]],
                ["demonstrations", counts["demonstrations"], tokens["demonstrations"]],
                ["total", counts["documents"] + counts["demonstrations"], tokens["total"]],
                ["budget", None, tokens["budget"]],
            ],
        )
    )
    console.print(
        tbl(
            "Principles",
            ["principle", "documents", "demonstrations", "tokens", "quota", "of quota"],
            [
                [pid, p["documents"], p["demonstrations"], p["tokens"], p["quota"],
                 f"{100 * p['tokens'] / p['quota']:.0f}%" if p["quota"] else ""]
                for pid, p in m["principles"].items()
            ],
        )
    )
    div = {pid: p.get("diversity") for pid, p in m["principles"].items() if p.get("diversity")}
    if div:
        console.print(tbl(
            "Coverage and diversity (distinct word 4-grams per 1,000 words)",
            ["principle", "facets covered", "document types", "documents", "demonstrations", "low"],
            [[pid, f"{d['facets_covered']} / {d['facets']}" if d.get("facets") else d["facets_covered"],
              d["doc_types_used"], d["distinct_4grams_per_1k_words"].get("documents"),
              d["distinct_4grams_per_1k_words"].get("demonstrations"), ", ".join(d.get("low_diversity") or [])]
             for pid, d in div.items()],
        ))
    for config, label in (("documents", "genre"), ("demonstrations", "kind")):
        if m["kinds"].get(config):
            console.print(tbl(f"{config.capitalize()} by {label}", [label, "rows"], list(m["kinds"][config].items())))
    if m["dropped"]:
        console.print(tbl("Dropped", ["step:reason", "records"], list(m["dropped"].items())))
    if m["llm"]:
        for t in section_tables("LLM", m["llm"], width=console.width):
            console.print(t)
    console.print(
        tbl("Shards", ["path", "rows", "bytes", "sha256"],
               [[s["path"], s["rows"], s["bytes"], s["sha256"][:16]] for s in m["shards"]], keep_first=False)
    )


@command("show")
def show_cmd(
    out: Path = OUT_ARG,
    principle: str | None = typer.Option(None, "--principle", "-p", help="Only rows of this principle."),
    config: str | None = typer.Option(None, "--config", "-c", help="documents or demonstrations (default: documents; "
                                      "with --dropped, both)."),
    genre: str | None = typer.Option(None, "--genre", help="Only documents of this genre (quote a name with spaces); "
                                     "implies --config documents."),
    kind: str | None = typer.Option(None, "--kind", help="Only demonstrations of this kind (direct, edge_case, ...); "
                                    "implies --config demonstrations."),
    n: int = typer.Option(3, "-n", min=0, help="How many rows (0: every row that matches)."),
    max_chars: int | None = typer.Option(None, "--max-chars", min=0, help="Cut each text in the panels after this "
                                         "many characters (default, or 0: show it all)."),
    full: bool = typer.Option(False, "--full", help="Print rows whole as plain text, with no panel or markup "
                              "(for piping)."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines: one row per line, as stored."),
    dropped: bool = typer.Option(False, "--dropped", help="Show what the build dropped (OUT/dropped/), with the reason."),
    reason: str | None = typer.Option(None, "--reason", "-r", help="With --dropped: only this reason (`judge:fail`) "
                                      "or step (`judge`)."),
) -> None:
    """Print sample rows of an output, or the rows it dropped and why.

    Panels wrap to the terminal; --full and --json print rows untouched. A filter value the
    output has no rows of is an error that lists the values it has; filters that match no row
    together say so on stderr and exit 0.
    """
    from specc.emit import read_manifest

    m = read_manifest(out)
    config = _check_filters(out, m, principle=principle, config=config, genre=genre, kind=kind,
                            max_chars=max_chars, full=full, as_json=as_json, dropped=dropped, reason=reason)
    rows = _matching(out, m, config, dropped, reason, principle, genre, kind)
    shown = 0
    try:
        for row in itertools.islice(rows, n or None):
            shown += 1
            if as_json:
                print(json.dumps({k: v for k, v in row.items() if k != "config"}, ensure_ascii=False, default=str))
            elif full:
                print(("\n" if shown > 1 else "") + f"==> {_title(row)} <==\n{_body(row, 0).plain}")
            else:
                console.print(Panel(_body(row, max_chars or 0, header=True),
                                    title=Text(_heading(row)), title_align="left"), soft_wrap=False)
        sys.stdout.flush()
    except BrokenPipeError:  # a reader that stops early (`| head`) ends the command quietly
        _quiet_stdout()
        return
    if not shown:
        what = ", ".join(f"{label} {value}" for label, value in (("principle", principle), ("genre", genre),
                                                                 ("kind", kind), ("reason", reason)) if value)
        rows_of = f"{'dropped ' if dropped else ''}{config or 'rows'}"
        err_console.print(f"no {rows_of} in {out} match {what}" if what else f"no {rows_of} in {out}", markup=False)


def _check_filters(out: Path, m: dict, *, principle, config, genre, kind, max_chars, full, as_json, dropped,
                   reason) -> str | None:
    """Refuse option combinations that cannot mean anything and values the output has no rows of; return the config."""
    if full and as_json:
        raise InputError("--full and --json are two formats: use one")
    if max_chars is not None and (full or as_json):
        raise InputError("--max-chars cuts text in the panels; --full and --json print rows whole")
    if config is not None and config not in CONFIGS:
        raise InputError(f"unknown config {config!r}: use documents or demonstrations")
    if genre is not None and kind is not None:
        raise InputError("--genre filters documents and --kind demonstrations: use one")
    for value, option, wants in ((genre, "--genre", "documents"), (kind, "--kind", "demonstrations")):
        if value is not None:
            if config not in (None, wants):
                raise InputError(f"{option} filters {wants}: leave out --config {config}")
            config = wants
    if reason is not None and not dropped:
        raise InputError("--reason needs --dropped")
    if principle is not None and principle not in m["principles"]:
        raise InputError(f"unknown principle {principle!r}: this output's principles are {', '.join(m['principles'])}")
    if dropped:
        entry = m.get("dropped_rows")
        if entry is None:
            raise InputError(f"{out} has no dropped rows recorded: it was built by an older specc; rebuild it")
        reasons = entry.get("reasons") or {}
        if reason is not None and not any(reason in (r, r.split(":", 1)[0]) for r in reasons):
            raise InputError(f"no row of {out} was dropped for {reason!r}: the reasons are {_counts(reasons)}")
    for value, column in ((genre, "genre"), (kind, "kind")):
        if value is None:
            continue
        if dropped:  # the manifest counts kept rows only; the dropped ones are read to say what they hold
            from specc.emit.dropped import iter_dropped

            have = Counter(r.get(column) for r in iter_dropped(out, m, config))
            where = f"the dropped {config} of {out}"
        else:
            have, where = Counter((m.get("kinds") or {}).get(config) or {}), f"the {config} of {out}"
        if value not in have:
            raise InputError(f"unknown {column} {value!r}: {where} have {column}s {_counts(have)}")
    return config if dropped else config or "documents"


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} ({v:,})" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))) or "none"


def _matching(out: Path, m: dict, config: str | None, dropped: bool, reason: str | None, principle: str | None,
              genre: str | None, kind: str | None) -> Iterator[dict]:
    from specc.emit import iter_rows
    from specc.emit.dropped import iter_dropped

    if dropped:
        rows = iter_dropped(out, m, config, reason)
    else:
        rows = ({**r, "config": config} for r in iter_rows(out, config))
    wanted = {k: v for k, v in (("principle_id", principle), ("genre", genre), ("kind", kind)) if v is not None}
    return (r for r in rows if all(r.get(k) == v for k, v in wanted.items()))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so Python does not report the closed pipe again when it flushes at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _label(row: dict) -> str:
    return (row.get("genre") if row["config"] == "documents" else row.get("kind")) or ""


def _heading(row: dict) -> str:
    """The panel's title: short enough for any terminal; the rest of the title goes in the panel."""
    return f"dropped: {row['reason']}  {row['id']}" if row.get("reason") else row["id"]


def _details(row: dict) -> str:
    facet = f"facet {row['facet']}" if row.get("facet") else None
    judge = f"judge={row['judge_verdict']}" if row.get("judge_verdict") else None
    return "  ".join(x for x in (row["principle_id"], _label(row), facet, f"{row['tokens']} tokens", judge) if x)


def _title(row: dict) -> str:
    return f"{_heading(row)}  {_details(row)}"


def _cut(text: str, max_chars: int) -> str:
    return text if not max_chars or len(text) <= max_chars else text[:max_chars] + " [...]"


def _body(row: dict, max_chars: int, header: bool = False) -> Text:
    """A row's text or turns (with the idea or the judge's reason for a dropped row); ``header``: details first."""
    body = Text(_details(row) + "\n\n", style="dim") if header else Text()
    if row["config"] == "documents":
        if not row["text"] and row.get("idea"):  # a dropped idea: it never became a document
            return body.append("idea: " + _cut(row["idea"], max_chars))
        body.append(_cut(row["text"], max_chars))
        if row.get("reason") and row.get("idea"):
            body.append("\n\nidea: " + _cut(row["idea"], max_chars), style="dim")
        return body
    for i, msg in enumerate(row["messages"]):
        if i:
            body.append("\n\n")
        body.append(f"{msg['role']}: ", style="bold")
        body.append(_cut(msg["content"], max_chars))
    if row.get("reason") and row.get("judge_reason"):
        body.append(f"\n\njudge: {_cut(row['judge_reason'], max_chars)}", style="dim")
    return body
