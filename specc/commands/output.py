"""`specc push`, `specc stats`, `specc show`: publish and inspect an emitted corpus."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import typer
from rich.panel import Panel
from rich.text import Text

from specc.cli import command, console
from specc.errors import InputError
from specc.tables import section_tables
from specc.tables import table as _tbl

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
    spec, counts, tokens = m["spec"], m["counts"], m["tokens"]
    console.print(
        Text(f"{spec['name']} {spec['version']} (sha256 {spec['sha256'][:12]}), assistant {spec['assistant']}, "
             f"built {m['created_at']} by specc {m['specc_version']}, {m['format']}")
    )
    console.print(
        _tbl(
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
        _tbl(
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
        console.print(_tbl(
            "Coverage and diversity (distinct word 4-grams per 1,000 words)",
            ["principle", "facets covered", "document types", "documents", "demonstrations", "low"],
            [[pid, f"{d['facets_covered']} / {d['facets']}" if d.get("facets") else d["facets_covered"],
              d["doc_types_used"], d["distinct_4grams_per_1k_words"].get("documents"),
              d["distinct_4grams_per_1k_words"].get("demonstrations"), ", ".join(d.get("low_diversity") or [])]
             for pid, d in div.items()],
        ))
    for config, label in (("documents", "genre"), ("demonstrations", "kind")):
        if m["kinds"].get(config):
            console.print(_tbl(f"{config.capitalize()} by {label}", [label, "rows"], list(m["kinds"][config].items())))
    if m["dropped"]:
        console.print(_tbl("Dropped", ["step:reason", "records"], list(m["dropped"].items())))
    if m["llm"]:
        for t in section_tables("LLM", m["llm"]):
            console.print(t)
    console.print(
        _tbl("Shards", ["path", "rows", "bytes", "sha256"],
               [[s["path"], s["rows"], s["bytes"], s["sha256"][:16]] for s in m["shards"]], keep_first=False)
    )


@command("show")
def show_cmd(
    out: Path = OUT_ARG,
    principle: str | None = typer.Option(None, "--principle", "-p", help="Only rows of this principle."),
    config: str | None = typer.Option(None, "--config", "-c", help="documents or demonstrations (default: documents; "
                                      "with --dropped, both)."),
    n: int = typer.Option(3, "-n", min=1, help="How many rows."),
    max_chars: int = typer.Option(2000, "--max-chars", min=0, help="Cut long text (0: never)."),
    dropped: bool = typer.Option(False, "--dropped", help="Show what the build dropped (OUT/dropped/), with the reason."),
    reason: str | None = typer.Option(None, "--reason", "-r", help="With --dropped: only this reason (`judge:fail`) "
                                      "or step (`judge`)."),
) -> None:
    """Print sample rows of an output, or the rows it dropped and why."""
    from specc.emit import iter_rows, read_manifest
    from specc.emit.dropped import iter_dropped

    m = read_manifest(out)
    if principle is not None and principle not in m["principles"]:
        raise InputError(f"unknown principle {principle!r}: one of {', '.join(m['principles'])}")
    if config is not None and config not in ("documents", "demonstrations"):
        raise InputError(f"unknown config {config!r}: use documents or demonstrations")
    if reason is not None and not dropped:
        raise InputError("--reason needs --dropped")
    if dropped:
        rows = iter_dropped(out, m, config, reason)
    else:
        rows = ({**r, "config": config or "documents"} for r in iter_rows(out, config or "documents"))
    if principle is not None:
        rows = (r for r in rows if r["principle_id"] == principle)
    shown = 0
    for row in itertools.islice(rows, n):
        shown += 1
        console.print(Panel(_body(row, row["config"], max_chars), title=Text(_title(row, row["config"])),
                            title_align="left"))
    if dropped and not shown:
        known = ", ".join(f"{k} {v}" for k, v in (m.get("dropped_rows") or {}).get("reasons", {}).items()) or "none"
        console.print(f"no dropped rows match in {out} (reasons: {known})", markup=False)
    elif not shown:
        where = f" for principle {principle}" if principle else ""
        console.print(f"no {config or 'documents'}{where} in {out}", markup=False)


def _title(row: dict, config: str) -> str:
    label = row.get("genre") if config == "documents" else row.get("kind")
    extra = f" judge={row['judge_verdict']}" if row.get("judge_verdict") else ""
    facet = f"  {row['facet']}" if row.get("facet") else ""
    why = f"dropped: {row['reason']}  " if row.get("reason") else ""
    return f"{why}{row['id']}  {row['principle_id']}  {label or ''}{facet}  {row['tokens']} tokens{extra}"


def _cut(text: str, max_chars: int) -> str:
    return text if not max_chars or len(text) <= max_chars else text[:max_chars] + " [...]"


def _body(row: dict, config: str, max_chars: int) -> Text:
    if config == "documents":
        if not row["text"] and row.get("idea"):  # a dropped idea: it never became a document
            return Text("idea: " + _cut(row["idea"], max_chars))
        body = Text(_cut(row["text"], max_chars))
        if row.get("reason") and row.get("idea"):
            body.append("\n\nidea: " + _cut(row["idea"], max_chars), style="dim")
        return body
    body = Text()
    for i, msg in enumerate(row["messages"]):
        if i:
            body.append("\n\n")
        body.append(f"{msg['role']}: ", style="bold")
        body.append(_cut(msg["content"], max_chars))
    if row.get("reason") and row.get("judge_reason"):
        body.append(f"\n\njudge: {_cut(row['judge_reason'], max_chars)}", style="dim")
    return body
