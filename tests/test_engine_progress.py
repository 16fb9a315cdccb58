"""Progress reporting and prices: what the engine shows and charges."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from fakeserver import FakeServer
from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.generate.base import SamplingParams
from specc.generate.openai import OpenAILLM
from specc.generate.pricing import cost_usd, price_for
from specc.generate.progress import Progress
from specc.records import Task
from specc.spec.schema import Prices, Spec


def _console(buf: io.StringIO, tty: bool) -> Console:
    return Console(file=buf, force_terminal=tty, width=160, highlight=False)


def _task(llm, stage: str, text: str) -> Task:
    return Task(stage, "p", llm.id, ({"role": "user", "content": text},), SamplingParams(), "t")


def _run(progress: Progress, tmp_path, prices=None) -> None:
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)

        def fan(t, g):
            if t.stage == "ideas":
                return [_task(llm, "document", f"{g.text} {j}") for j in range(2)]

        tasks = [_task(llm, "ideas", f"i{i}") for i in range(5)]
        with Cache(tmp_path / "c.sqlite") as cache:
            Engine(llm, cache, progress=progress, prices=prices).run_sync(tasks, fan)
            Engine(llm, cache, progress=progress, prices=prices).run_sync(tasks[:2], fan)


def test_plain_lines_when_not_a_terminal(tmp_path):
    buf = io.StringIO()
    with Progress(live=False, console=_console(buf, False), interval=0) as p:
        _run(p, tmp_path, prices=(1e6, 0))
    assert p.stages["ideas"].total == 7 and p.stages["document"].total == 14  # totals grew with the DAG
    assert p.stages["ideas"].cached == 2 and p.stages["document"].cached == 4
    last = buf.getvalue().strip().splitlines()[-1]
    assert last.startswith("ideas 7/7 (hits 2, failed 0") and "document 14/14 (hits 4" in last
    assert last.endswith(f"${p.cost:.4f}") and p.cost > 0


def test_rich_bars_on_a_terminal(tmp_path):
    buf = io.StringIO()
    with Progress(live=True, console=_console(buf, True)) as p:
        _run(p, tmp_path)
    out = buf.getvalue()
    assert "ideas" in out and "document" in out and "14/14" in out and "tok/s" in out


def test_live_bars_start_no_thread_and_draw_the_last_state():
    """A refresh thread would keep curation from forking its workers (it refuses fork with threads running)."""
    buf = io.StringIO()
    before = threading.active_count()
    with Progress(live=True, console=_console(buf, True)) as p:
        p.add("ideas", 3)
        for _ in range(3):  # faster than RENDER_INTERVAL: only the first event is drawn at once
            p.update("ideas", output_tokens=10)
        assert p._bars is not None and threading.active_count() == before
        assert "0/3" in buf.getvalue() and "3/3" not in buf.getvalue()
        p.batch("b1", "in_progress", 1, 0, 4)  # a batch's new state is drawn at once
        assert "batch b1 in_progress" in buf.getvalue() and "1/4" in buf.getvalue()
    assert "3/3" in buf.getvalue() and threading.active_count() == before  # close draws the final state


def test_quiet_prints_nothing(tmp_path):
    buf = io.StringIO()
    with Progress(quiet=True, console=_console(buf, False), interval=0) as p:
        _run(p, tmp_path)
    assert buf.getvalue() == "" and p.stages["document"].done == 14


def test_price_table_and_overrides():
    assert price_for("gpt-4o-mini") == (0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert price_for("openai/gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_for("claude-3-5-sonnet-20241022") == (3.0, 15.0)
    assert price_for("smollm2-135m") == (0.0, 0.0) and price_for("my-finetune") == (0.0, 0.0)
    assert price_for("gpt-4o", Prices(input_per_mtok=1, output_per_mtok=2)) == (1.0, 2.0)
    assert cost_usd((2.5, 10.0), 1_000_000, 100_000) == 3.5


def test_engine_from_spec_reads_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    spec = Spec.model_validate(
        {
            "specc": 1,
            "name": "s",
            "assistant": {"name": "A"},
            "principles": [{"id": "p", "title": "P", "statement": "S"}],
            "generator": {"provider": "openai", "model": "gpt-4o", "concurrency": 5, "requests_per_minute": 100,
                          "max_retries": 2, "max_failure_rate": 0.5, "max_usd": 3.0},
        }
    )
    llm = OpenAILLM(spec.generator.model)
    with Cache(tmp_path / "c.sqlite") as cache:
        e = Engine.from_spec(spec, llm, cache)
    assert (e.concurrency, e.requests_per_minute, e.max_retries, e.max_failure_rate, e.max_usd) == (5, 100, 2, 0.5, 3.0)
    assert e.prices == (2.5, 10.0)
