"""The engine against the fake server: DAG scheduling, retries, dedup, caching, cost cap, failure rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from fakeserver import FakeServer, Reply, default_responder
from specc.generate.cache import Cache
from specc.generate.engine import Engine, RunStats
from specc.errors import CostCapError, FailureRateError, InputError
from specc.generate.base import SamplingParams
from specc.generate.openai import OpenAILLM
from specc.records import Task

FAST = {"retry_base_delay": 0.01, "retry_max_delay": 0.05}


def task(llm, text: str, stage: str = "ideas", **params) -> Task:
    return Task(
        stage=stage,
        principle_id="honesty",
        model=llm.id,
        messages=({"role": "user", "content": text},),
        params=SamplingParams(**params),
        template_hash="t0",
        input={"text": text},
    )


@pytest.fixture
def cache(tmp_path):
    c = Cache(tmp_path / "cache.sqlite")
    yield c
    c.close()


def test_500_tasks_with_20_percent_faults_complete_each_stored_once(cache):
    with FakeServer(fault_rate=0.2, hang_seconds=5, seed=7) as server:
        # The timeout is what a "hang" costs; it must still be far above a loaded machine's real latency.
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=3.0)
        engine = Engine(llm, cache, concurrency=32, max_retries=10, **FAST)
        tasks = [task(llm, f"prompt {i}") for i in range(500)]
        results = {}
        stats = engine.run_sync(tasks, lambda t, g: results.__setitem__(t.key, g))
    assert stats.calls == 500 and stats.failed == 0 and stats.retries > 50
    assert sum(server.faults_served.values()) > 80  # the faults really happened
    assert set(results) == cache.keys() == {t.key for t in tasks}
    # Exactly one completion per prompt reached the client and was stored.
    assert server.completions == 500 and set(server.calls_by_prompt.values()) == {1}
    for t in tasks[:20]:
        assert cache.get(t.key).text == results[t.key].text


async def test_dag_schedules_follow_ups_without_stage_barriers(cache):
    with FakeServer(latency=(0.02, 0.25)) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=16)
        order: list[str] = []

        async def on_result(t: Task, g):
            order.append(t.stage)
            if t.stage == "ideas":
                await asyncio.sleep(0)  # async callbacks are awaited
                return [task(llm, f"{g.text} / doc {j}", stage="document") for j in range(3)]
            return None

        stats = await engine.run([task(llm, f"idea {i}") for i in range(24)], on_result)
        await llm.aclose()
    assert stats.per_stage["ideas"]["calls"] == 24 and stats.per_stage["document"]["calls"] == 72
    last_idea = max(i for i, s in enumerate(order) if s == "ideas")
    first_doc = order.index("document")
    assert first_doc < last_idea  # documents finished while ideas were still running


async def test_identical_keys_in_flight_are_called_once(cache):
    with FakeServer(latency=(0.2, 0.2)) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=8)
        seen = []
        same = [task(llm, "the same prompt") for _ in range(10)]
        stats = await engine.run(same, lambda t, g: seen.append((t, g.cached)))
        await llm.aclose()
    assert server.completions == 1 and stats.calls == 1 and stats.cached == 9
    assert len(seen) == 10 and [c for _, c in seen].count(False) == 1


def test_rerun_is_served_from_cache_even_with_the_server_gone(cache):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        tasks = [task(llm, f"p{i}") for i in range(30)]

        def fan(t, g):
            return [task(llm, f"child of {t.input['text']}", stage="document")] if t.stage == "ideas" else None

        first = Engine(llm, cache, concurrency=4).run_sync(tasks, fan)
    assert first.calls == 60
    # The server is stopped: a fully cached rebuild needs no endpoint at all.
    texts = []
    again = Engine(llm, cache, concurrency=4).run_sync(tasks, lambda t, g: texts.append(g.cached) or fan(t, g))
    assert again.calls == 0 and again.cached == 60 and all(texts)


def test_a_warm_rerun_reads_the_cache_one_list_of_tasks_per_query(cache, cache_queries):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        tasks = [task(llm, f"p{i}") for i in range(40)]

        def fan(t, g):  # each first-stage result has 5 follow-ups, and two of them share a prompt
            if t.stage != "ideas":
                return None
            return [task(llm, f"child {j} of {t.input['text']}", stage="document") for j in range(4)] + [
                task(llm, "a prompt every parent shares", stage="document")]

        first = Engine(llm, cache, concurrency=4).run_sync(tasks, fan)
    assert first.calls == 40 + 160 + 1 and first.cached == 39
    queries = cache_queries()
    # The server is gone: everything comes from the cache, in 1 + 40 lookups (the first list, then
    # one per parent's follow-ups), none of them one task at a time.
    again = Engine(llm, cache, concurrency=4).run_sync(tasks, fan)
    assert again.calls == 0 and again.cached == 240
    assert queries == {"get": 0, "get_many": 41}


def test_json_mode_falls_back_when_the_endpoint_rejects_response_format(cache):
    bodies = []

    def responder(body):
        bodies.append(body)
        return '{"ok": true}'

    with FakeServer(responder, accept_response_format=False) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=1)
        stats = engine.run_sync([task(llm, f"j{i}", json_mode=True) for i in range(10)], lambda t, g: None)
    assert stats.calls == 10 and stats.failed == 0
    assert server.requests == 1 + 1 + 10  # preflight, one rejected request, then plain requests
    assert all("response_format" not in b for b in bodies)


def test_json_mode_is_sent_when_supported(cache):
    bodies = []
    with FakeServer(lambda b: bodies.append(b) or "{}") as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        Engine(llm, cache).run_sync([task(llm, "j", json_mode=True, seed=3, stop=("END",))], lambda t, g: None)
    assert bodies[0]["response_format"] == {"type": "json_object"}
    assert bodies[0]["seed"] == 3 and bodies[0]["stop"] == ["END"] and bodies[0]["max_tokens"] == 1024


def test_failure_rate_stops_the_run_with_reasons(cache):
    failed = []
    with FakeServer(fault_rate=1.0, faults=("500",)) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=4, max_retries=1, min_tasks_for_failure_rate=10, **FAST)
        with pytest.raises(FailureRateError) as e:
            tasks = [task(llm, f"f{i}") for i in range(200)]
            engine.run_sync(tasks, lambda t, g: None, lambda t, why: failed.append(why))
    msg = str(e.value)
    assert "HTTP 500" in msg and "rerun" in msg and e.value.stats.failed == len(failed)
    assert 10 <= len(failed) < 30 and server.completion_requests < 80  # stopped early, not after 200 tasks


def test_a_few_failures_are_recorded_and_the_run_goes_on(cache):
    def responder(body):
        text = body["messages"][0]["content"]
        if text.startswith("server-breaks"):
            return Reply("boom", status=500)
        if text.startswith("too-long"):
            return Reply("this prompt is too long", status=400)
        return default_responder(body)

    failed = []
    with FakeServer(responder) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        tasks = [task(llm, f"fine {i}") for i in range(40)] + [task(llm, "server-breaks"), task(llm, "too-long")]
        engine = Engine(llm, cache, concurrency=4, max_retries=2, **FAST)
        stats = engine.run_sync(tasks, lambda t, g: None, lambda t, why: failed.append((t.input["text"], why)))
    assert stats.failed == 2 and stats.calls == 40 and len(cache) == 40
    reasons = dict(failed)
    assert reasons["server-breaks"] == "HTTP 500 (gave up after 3 attempts)"
    assert reasons["too-long"] == "HTTP 400: this prompt is too long"  # not retried
    assert server.completion_requests == 40 + 3 + 1
    assert {f["reason"] for f in stats.failures} == set(reasons.values())


def test_cost_cap_stops_dispatch_and_a_rerun_resumes(cache):
    with FakeServer(latency=(0.02, 0.05)) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        tasks = [task(llm, f"word{i}") for i in range(60)]  # one prompt token each
        # $1 per input token, so the cap is hit after about ten calls.
        capped = Engine(llm, cache, concurrency=2, max_usd=10.0, prices=(1_000_000.0, 0.0))
        with pytest.raises(CostCapError) as e:
            capped.run_sync(tasks, lambda t, g: None)
        assert "rerun resumes" in str(e.value) and e.value.stats.not_run > 0
        done_before = len(cache)
        assert 10 <= done_before <= 12 and server.completions == done_before  # in-flight work was stored
        stats = Engine(llm, cache, concurrency=4).run_sync(tasks, lambda t, g: None)
    assert stats.calls == 60 - done_before and stats.cached == done_before
    assert server.completions == 60 and set(server.calls_by_prompt.values()) == {1}


def test_retry_after_is_honoured(cache):
    with FakeServer(retry_after=0.4) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        # A huge backoff: only the server's Retry-After can make this retry quick.
        engine = Engine(llm, cache, retry_base_delay=60, retry_max_delay=60)
        server.force("429")
        t0 = time.monotonic()
        stats = engine.run_sync([task(llm, "x")], lambda t, g: None)
        took = time.monotonic() - t0
    assert stats.retries == 1 and stats.calls == 1 and 0.4 <= took < 2.0


def test_requests_per_minute_limit_is_applied(cache):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=16, requests_per_minute=120)
        t0 = time.monotonic()
        engine.run_sync([task(llm, f"r{i}") for i in range(122)], lambda t, g: None)
        took = time.monotonic() - t0
    # 120 go at once; the last two wait for the bucket to drain at 2 requests/s.
    assert took >= 0.8


def test_tokens_per_minute_limit_is_applied(cache):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        # Each task is estimated at 100 output tokens plus its prompt; 6,000 tokens/minute is 100 per second,
        # so after the first minute's worth (~60 tasks) the rest trickle out at about one per second.
        engine = Engine(llm, cache, concurrency=16, tokens_per_minute=6000)
        t0 = time.monotonic()
        stats = engine.run_sync([task(llm, f"t{i}", max_tokens=100) for i in range(61)], lambda t, g: None)
        took = time.monotonic() - t0
    assert stats.calls == 61
    assert took >= 0.8


def test_run_stats_to_dict_and_usage_tokens(cache):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        stats = Engine(llm, cache, prices=(2.0, 4.0)).run_sync([task(llm, "one two three")], lambda t, g: None)
    d = stats.to_dict()
    assert isinstance(stats, RunStats) and d["calls"] == 1 and d["input_tokens"] == 3
    assert d["output_tokens"] > 0 and d["cost_usd"] == pytest.approx((3 * 2.0 + d["output_tokens"] * 4.0) / 1e6)
    assert d["per_stage"]["ideas"]["calls"] == 1


def test_cache_hits_report_what_they_saved(cache):
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, prices=(2.0, 4.0))
        first = engine.run_sync([task(llm, "alpha beta"), task(llm, "gamma")], lambda t, g: None)
        second = engine.run_sync([task(llm, "alpha beta"), task(llm, "gamma")], lambda t, g: None)
    assert first.saved_usd == 0 and first.cost_usd > 0
    assert second.calls == 0 and second.cost_usd == 0
    assert second.saved_usd == pytest.approx(first.cost_usd)
    assert second.per_stage["ideas"]["saved_usd"] == pytest.approx(first.cost_usd)


def test_a_spending_cap_needs_a_price(cache):
    with FakeServer(models=("my-finetune",)) as server:
        llm = OpenAILLM("my-finetune", base_url=server.url, timeout=5)
        with pytest.raises(InputError, match=r"no price for model 'my-finetune'.*generator: \{prices:") as e:
            Engine(llm, cache, max_usd=5.0)
        assert e.value.exit_code == 2
        # An explicit price, even zero, or no cap at all, is fine.
        assert Engine(llm, cache, max_usd=5.0, prices=(0.0, 0.0)).prices == (0.0, 0.0)
        assert Engine(llm, cache).prices == (0.0, 0.0)
        assert Engine(OpenAILLM("gpt-4o-mini", base_url=server.url), cache, max_usd=5.0).prices == (0.15, 0.60)
    assert server.requests == 0


def test_a_task_backing_off_frees_its_slot_for_other_tasks(cache):
    """With one slot, B runs while A waits out its backoff; the server fails A until it has seen B."""
    seen = []

    def responder(body):
        text = body["messages"][0]["content"]
        seen.append(text)
        if text == "A" and "B" not in seen:
            return Reply("busy", status=503)
        return default_responder(body)

    with FakeServer(responder) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        # A long backoff and few retries: a slot held while waiting would spend A's retries on A alone.
        engine = Engine(llm, cache, concurrency=1, max_retries=2, retry_base_delay=0.3, retry_max_delay=0.3)
        stats = engine.run_sync([task(llm, "A"), task(llm, "B")], lambda t, g: None)
    assert seen == ["A", "B", "A"]
    assert stats.calls == 2 and stats.failed == 0 and stats.retries == 1


def test_retries_run_before_queued_work_and_still_give_up(cache):
    seen = []

    def responder(body):
        text = body["messages"][0]["content"]
        seen.append(text)
        return Reply("down", status=500) if text == "broken" else default_responder(body)

    with FakeServer(responder) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        engine = Engine(llm, cache, concurrency=1, max_retries=2, retry_base_delay=0.0, retry_max_delay=0.0)
        failed = []
        stats = engine.run_sync([task(llm, "broken")] + [task(llm, f"ok {i}") for i in range(50)],
                                lambda t, g: None, lambda t, why: failed.append(why))
    # A retry whose wait is over goes ahead of the 50 queued tasks, not behind them.
    assert seen[:6] == ["broken", "ok 0", "broken", "ok 1", "broken", "ok 2"] and stats.calls == 50
    assert failed == ["HTTP 500 (gave up after 3 attempts)"]


def test_the_cost_cap_does_not_wait_for_a_task_backing_off(cache):
    with FakeServer(retry_after=60, latency=(0.05, 0.05)) as server:
        llm = OpenAILLM("fake-model", base_url=server.url, timeout=5)
        server.force("429")  # the first request is told to come back in a minute
        capped = Engine(llm, cache, concurrency=2, max_usd=3.0, prices=(1_000_000.0, 0.0))
        t0 = time.monotonic()
        with pytest.raises(CostCapError) as e:
            capped.run_sync([task(llm, f"word{i}") for i in range(20)], lambda t, g: None)
        assert time.monotonic() - t0 < 10
    assert e.value.stats.retries == 1 and e.value.stats.not_run >= 1
