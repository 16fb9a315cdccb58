"""`specc batches SPEC`: the batches a build submitted and their states; `--cancel` stops them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.text import Text

from specc.cli import command, console
from specc.errors import EndpointError, InputError
from specc.tables import table as _tbl


def batch_files(export: Path | None, imports: list[Path] | None, batch: bool):
    """The ``--batch-export``/``--batch-import`` flags as a BatchFiles, or None; a directory imports its JSON lines files."""
    from specc.generate.executor import BatchFiles

    if export is None and not imports:
        return None
    if batch:
        raise InputError("--batch sends waves to the endpoint's Batch API and --batch-export/--batch-import move "
                         "them as files: use one or the other")
    paths: list[Path] = []
    for p in imports or []:
        if p.is_dir():
            found = sorted(x for x in p.iterdir() if x.suffix in (".jsonl", ".json") and x.is_file())
            if not found:
                raise InputError(f"--batch-import {p}: the directory holds no *.jsonl or *.json result files")
            paths += found
        elif not p.is_file():
            raise InputError(f"--batch-import {p}: no such file")
        else:
            paths.append(p)
    return BatchFiles(export_dir=export, imports=tuple(paths))


def say_wave_written(w, spec_path: Path) -> None:
    """What a build that exported a wave wrote, and the commands that come next."""
    out = Text(f"wrote wave {w.wave}: {w.requests:,} requests in {len(w.paths)} file(s)")
    if w.imported:
        out.append(f" (after importing {w.imported:,} results)")
    console.print(out)
    for p in w.paths:
        console.print(Text(f"  {p}"))
    console.print(Text(
        "run each file with your engine, e.g. `python -m vllm.entrypoints.openai.run_batch -i FILE "
        "-o RESULTS.jsonl --model MODEL`, then load the results and continue with "
        f"`specc build {spec_path} --batch-import RESULTS.jsonl`"
    ))


def _results(b) -> str:
    if b.kind == "export":
        return "exported"
    if b.collected_at is not None:
        return "stored"
    return "-" if b.state == "abandoned" else "pending"


@command("batches")
def batches_cmd(
    spec_path: Path = typer.Argument(..., help="The spec file (YAML) whose build submitted the batches."),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel the build's batches that are still running."),
    cache: Path | None = typer.Option(None, "--cache", help="The generation cache (default: SPECC_CACHE or .specc/cache.sqlite beside the spec)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Override generator.base_url (where the batches were sent)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the batches and exported waves of a build with their states, refreshed from the endpoint."""
    from specc.generate.batchstore import ENDED, BatchStore
    from specc.generate.cache import Cache, default_cache_path
    from specc.spec.load import load_spec

    spec = load_spec(spec_path)
    cache_file = Path(cache) if cache else default_cache_path(spec_path)
    if not cache_file.is_file():
        raise InputError(f"no cache at {cache_file}: this build has submitted no batch")
    notes: list[str] = []
    with Cache(cache_file) as c:
        store = BatchStore(c)
        records = store.of_build(spec.name)
        live = [b for b in records if b.outstanding and b.batch_id]
        if live:
            records = _refresh(spec, spec_path, store, records, live, cancel, base_url, notes)
        elif cancel:
            notes.append("no batch of this build is running; nothing to cancel")
    if as_json:
        typer.echo(json.dumps({"build": spec.name, "batches": [vars(b) for b in records], "notes": notes}, indent=2))
        return
    if not records:
        console.print(Text(f"{spec.name}: no batches submitted or exported from {cache_file}"))
    else:
        console.print(_tbl(
            f"Batches of {spec.name}",
            ["wave", "state", "requests", "done", "failed", "results", "batch or file"],
            [[b.name, b.state, b.requests, b.completed, b.failed, _results(b),
              b.batch_id or (Path(b.path).name if b.path else "-")] for b in records],
        ))
        running = sum(1 for b in records if b.outstanding and b.batch_id and b.state not in ENDED)
        unsure = [b.name for b in records if b.outstanding and not b.batch_id]
        if running and not cancel:
            notes.append(f"{running} batch(es) running: `specc build {spec_path} --batch` collects them when they "
                         "end; --cancel stops them")
        if unsure:
            notes.append(f"batch {', '.join(unsure)} was being created when its build stopped: the next "
                         "`specc build` looks for it at the endpoint and sends its requests again if it is not there")
    for note in notes:
        console.print(Text(f"note: {note}"))


def _refresh(spec, spec_path: Path, store, records, live, cancel: bool, base_url: str | None, notes: list[str]):
    """Ask the endpoint for the state of the build's running batches (cancelling them first with ``cancel``)."""
    from specc.generate.batchapi import BatchClient
    from specc.generate.factory import make_llm
    from specc.generate.openai import public_url

    try:
        llm = make_llm(spec.generator, provider="openai", base_url=base_url)
    except EndpointError as e:  # e.g. no key in the environment: the stored states still help
        notes.append(f"showing the states last seen: {e}")
        return records
    here = public_url(llm.base_url)
    elsewhere = [b for b in live if b.endpoint != here]
    if elsewhere:
        notes.append(f"{len(elsewhere)} batch(es) were sent to another endpoint ({elsewhere[0].endpoint}); "
                     "give it with --base-url to see or cancel them")
    mine = [b for b in live if b.endpoint == here]

    async def run() -> dict:
        api = BatchClient(llm, max_retries=2)
        seen = {}
        try:
            for b in mine:
                if cancel and b.state not in ("completed", "expired", "cancelled", "failed", "cancelling"):
                    got = await api.cancel(b.batch_id)
                else:
                    got = await api.retrieve(b.batch_id)
                seen[b.local_id] = got
        finally:
            await llm.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    except EndpointError as e:
        notes.append(f"could not reach the endpoint, so these are the states last seen: {e}")
        return records
    out = []
    for b in records:
        if b.local_id in seen:
            got = seen[b.local_id]
            if got is None:
                b = store.update(b, state="abandoned")
            else:
                counts = got.request_counts
                b = store.update(b, state=got.status, completed=counts.completed if counts else b.completed,
                                 failed=counts.failed if counts else b.failed)
        out.append(b)
    if cancel:
        notes.append(f"asked the endpoint to cancel {len(seen)} batch(es); finished requests are kept, and the "
                     f"next `specc build {spec_path} --batch` collects them and resubmits the rest")
    return out
