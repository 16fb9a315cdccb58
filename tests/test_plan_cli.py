"""`specc plan` as a user reads it: whole principle ids at 80 columns, and the embedded model's time, not price."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from stagekit import principle, spec_dict, write_spec  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from specc.cli import app  # noqa: E402
from specc.generate.base import Generation, SamplingParams  # noqa: E402
from specc.generate.cache import Cache  # noqa: E402
from specc.plan.throughput import DEFAULT_TOKENS_PER_S, measured  # noqa: E402
from specc.records import Task  # noqa: E402
from specc.spec.schema import Spec  # noqa: E402
from specc.stages import llm_id  # noqa: E402

runner = CliRunner()
LONG = "no-medical-diagnosis-without-a-referral-"  # 40 characters
assert len(LONG) == 40


def long_ids(tmp_path: Path, **generator) -> Path:
    d = spec_dict(2, budget={"tokens": 6000})
    d["principles"] = [principle(0, id=LONG), principle(1, id="be-brief")]
    d["generator"] = {**d["generator"], **generator}
    return write_spec(tmp_path / "spec.yaml", d)


def plan(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """`specc plan` in a subprocess, as a terminal of ``columns`` runs it."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "specc", "plan", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_plan_keeps_a_40_character_principle_id_whole_at_80_columns(tmp_path):
    path = long_ids(tmp_path)
    numbers = json.loads(plan(str(path), "--json").stdout)["principles"]
    res = plan(str(path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout
    # the per-principle numbers, every one whole, under each whole id (the table would need more than 80 columns)
    block = lines[lines.index(next(line for line in lines if line.startswith("Per principle"))):]
    assert "--wide" in block[0]
    for pid in (LONG, "be-brief"):
        at = block.index(f" {pid}")
        r = numbers[pid]
        assert block[at + 1].startswith(f"   facets          {r['facets']}")
        assert block[at + 1].endswith(f", {r['doc_types']} document type{'s' * (r['doc_types'] != 1)}")
        assert block[at + 2] == (f"   documents       {r['documents']:,} from {r['ideas_calls']:,} ideas call"
                                 f"{'s' * (r['ideas_calls'] != 1)}; "
                                 f"{r['expected_document_tokens']:,} tokens for a quota of "
                                 f"{r['quota_document_tokens']:,}")
        assert block[at + 3].startswith(f"   demonstrations  {r['demonstrations']:,} from {r['scenario_calls']:,} "
                                        f"scenario call{'s' * (r['scenario_calls'] != 1)}; ")
        assert all(len(line) <= 80 for line in block[at:at + 4])

    # --wide: the table, one line per principle however wide; a wide terminal gets it without asking
    for res in (plan(str(path), "--wide"), plan(str(path), columns=200)):
        assert res.returncode == 0, res.stderr
        row = next(line for line in res.stdout.splitlines() if line.startswith(f" {LONG} │"))
        r = numbers[LONG]
        cells = [c.strip() for c in row.split("│")]
        assert cells[4:6] == [str(r["documents"]), f"{r['expected_document_tokens']:,} / {r['quota_document_tokens']:,}"]
        assert "…" not in res.stdout


def test_a_plan_table_that_fits_once_its_headers_wrap_breaks_no_number(tmp_path):
    d = spec_dict(1, budget={"tokens": 3000})
    d["principles"] = [principle(0, id="p")]
    path = write_spec(tmp_path / "spec.yaml", d)
    r = json.loads(plan(str(path), "--json").stdout)["principles"]["p"]
    res = plan(str(path), columns=120)  # narrower than the table unwrapped, wider than its longest words
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Per principle"))
    table = [line for line in lines[start:] if "│" in line or "┃" in line]
    assert max(len(line) for line in table) <= 120
    assert sum("┃" in line for line in table) >= 2  # headers wrapped onto two lines
    rows = [line for line in table if "│" in line]
    assert len(rows) == 1 and rows[0].startswith(" p ")  # one line: no number broken onto the next
    cells = [c.strip() for c in rows[0].split("│")]
    assert cells[1:6] == [f"{r['facets']} ({r['facets_generated']} generated)", str(r["doc_types"]),
                          str(r["ideas_calls"]), str(r["documents"]),
                          f"{r['expected_document_tokens']:,} / {r['quota_document_tokens']:,}"]


def test_plan_prices_an_endpoint_as_before(tmp_path):
    path = long_ids(tmp_path)
    data = json.loads(runner.invoke(app, ["plan", str(path), "--json"]).stdout)
    assert data["free"] is False and data["wall_time"] is None
    res = runner.invoke(app, ["plan", str(path)])
    assert "estimated cost: $0 (no price known for this model; set generator.prices)" in res.stdout
    assert "wall time" not in res.stdout
    priced = long_ids(tmp_path, prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    data = json.loads(runner.invoke(app, ["plan", str(priced), "--json"]).stdout)
    assert data["cost_usd"] == round((data["input_tokens"] + 2 * data["output_tokens"]) / 1e6, 6) > 0


def test_the_embedded_model_is_free_and_timed_at_the_default_speed_without_a_measurement(tmp_path):
    path = long_ids(tmp_path, provider="local", model="smollm2-135m")
    data = json.loads(runner.invoke(app, ["plan", str(path), "--json"]).stdout)
    assert data["free"] is True and data["cost_usd"] == 0
    wall = data["wall_time"]
    assert wall["source"] == "default" and wall["measured_calls"] == 0 and wall["tokens_per_s"] == DEFAULT_TOKENS_PER_S
    assert wall["output_tokens"] == data["output_tokens"] > 0
    assert wall["seconds"] == round(data["output_tokens"] / DEFAULT_TOKENS_PER_S)
    res = runner.invoke(app, ["plan", str(path)])
    assert res.exit_code == 0, res.output
    assert "estimated cost: free: the embedded model runs on this machine" in res.stdout
    assert "no price known" not in res.stdout
    minutes = round(wall["seconds"] / 60)
    assert f"estimated wall time: about {minutes} minutes" in res.stdout
    assert f"{DEFAULT_TOKENS_PER_S:g} output tokens/s, a default for the embedded model on a 2-core CPU" in res.stdout


def _store(cache: Cache, llm: str, calls: list[tuple[float, float, int]]) -> None:
    """Results of ``llm`` that ran over (start, end) seconds and wrote so many tokens, stored as a build stores them."""
    for i, (start, end, tokens) in enumerate(calls):
        task = Task(stage="document", principle_id="p0", model=llm, messages=({"role": "user", "content": str(i)},),
                    params=SamplingParams(), template_hash="t")
        key = f"{llm}-{i}"
        cache.put(key, task, Generation("text", "stop", 10, tokens, "m", latency_s=end - start))
        with cache.transaction() as db:  # when it finished, as if the build had run at this time
            db.execute("UPDATE generations SET created_at = ? WHERE key = ?", (1_000_000 + end, key))


def test_throughput_counts_the_time_the_model_was_busy_once(tmp_path):
    with Cache(tmp_path / "c.sqlite") as cache:
        assert measured(cache, "local:x") is None
        # two calls overlap (queued behind one another: 15 s of work, not 20), then a pause, then one more
        _store(cache, "local:x", [(0, 10, 100), (5, 15, 100), (20, 25, 50)])
        _store(cache, "openai:other", [(0, 1, 10_000)])
        _store(cache, "local:x", [(30, 30, 999)])  # no latency recorded: says nothing about speed
        t = measured(cache, "local:x")
    assert (t.tokens_per_s, t.calls) == (250 / 20, 3)


def test_the_embedded_model_is_timed_from_its_cached_calls(tmp_path):
    path = long_ids(tmp_path, provider="local", model="smollm2-135m")
    llm = llm_id(Spec.model_validate(json.loads(path.read_text())))
    assert llm.startswith("local:smollm2-135m@")
    cache = tmp_path / "cache.sqlite"
    with Cache(cache) as c:
        _store(c, llm, [(0, 4, 100), (4, 8, 60), (10, 14, 40)])  # 200 tokens in 12 busy seconds
        _store(c, "local:smollm2-135m@another-build", [(0, 1, 5_000)])
    data = json.loads(runner.invoke(app, ["plan", str(path), "--json", "--cache", str(cache)]).stdout)
    wall = data["wall_time"]
    assert wall["source"] == "measured" and wall["measured_calls"] == 3
    assert wall["tokens_per_s"] == round(200 / 12, 2)
    assert wall["seconds"] == round(data["output_tokens"] / (200 / 12))
    res = runner.invoke(app, ["plan", str(path), "--cache", str(cache)])
    assert "16.7 output tokens/s, measured over 3 cached calls of this model" in res.stdout
    assert "estimated cost: free" in res.stdout
