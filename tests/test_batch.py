"""The batch executor against the fake server's Batch API, through the real openai client and a real SQLite cache."""

from __future__ import annotations

import asyncio
import io
import json
import re

import openai
import pytest
from rich.console import Console

from engine_driver import FAN_OUT, first_stage, follow_ups, task
from fakeserver import FakeServer, Reply, default_responder
from specc.errors import CostCapError, EndpointError, FailureRateError
from specc.generate.batch import BatchExecutor
from specc.generate.batchstore import BatchStore
from specc.generate.cache import Cache
from specc.generate.engine import Engine
from specc.generate.openai import OpenAILLM
from specc.generate.progress import Progress

POLL = 0.01


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "cache.sqlite") as c:
        yield c


def executor(server, cache, **kw) -> BatchExecutor:
    llm = OpenAILLM("fake-model", base_url=server.url, timeout=10)
    kw.setdefault("poll_seconds", POLL)
    kw.setdefault("retry_base_delay", 0.01)
    return BatchExecutor(llm, cache, build="t", **kw)


def llm_id_of(server) -> str:
    return OpenAILLM("fake-model", base_url=server.url).id


def two_stage(ex: BatchExecutor, n: int = 20, seen: list | None = None):
    """Run ``n`` ideas, each with FAN_OUT follow-ups; returns the stats."""

    def on_result(t, g):
        if seen is not None:
            seen.append((t.stage, g.cached))
        return follow_ups(ex.llm.id, t)

    return ex.run_sync(first_stage(ex.llm.id, n), on_result)


def test_two_waves_complete_through_batches_with_no_synchronous_call(cache):
    with FakeServer() as server:
        seen: list = []
        stats = two_stage(executor(server, cache), 20, seen)
        assert server.completions == 0 and server.completion_requests == 0  # no synchronous call at all
        assert stats.calls == 20 * (1 + FAN_OUT) and stats.failed == 0 and stats.cached == 0
        assert stats.waves == 2 and stats.batches == 2 and len(server.batch.created) == 2
        # wave 1 held the ideas, wave 2 every follow-up: each request was answered once
        assert server.batch.requests_of(server.batch.created[0]) == [t.key for t in first_stage(llm_id_of(server), 20)]
        assert len(server.batch.requests_of(server.batch.created[1])) == 20 * FAN_OUT
        assert set(server.batch.lines_run.values()) == {1}
        assert len(cache) == 20 * (1 + FAN_OUT)

        # The cache is shared with the synchronous path: the engine finds everything there.
        again = Engine(OpenAILLM("fake-model", base_url=server.url), cache).run_sync(
            first_stage(llm_id_of(server), 20), lambda t, g: follow_ups(llm_id_of(server), t))
        assert again.calls == 0 and again.cached == 20 * (1 + FAN_OUT) and server.completions == 0


def test_an_unchanged_rerun_submits_nothing_even_with_the_server_gone(cache):
    with FakeServer() as server:
        two_stage(executor(server, cache), 5)
        url = server.url
    llm_server = type("Gone", (), {"url": url})()
    stats = two_stage(executor(llm_server, cache), 5)
    assert stats.calls == 0 and stats.batches == 0 and stats.cached == 5 * (1 + FAN_OUT)


def test_a_warm_rerun_reads_the_cache_one_list_of_tasks_per_query(cache, cache_queries):
    with FakeServer() as server:
        two_stage(executor(server, cache), 6)
        url = server.url
    queries = cache_queries()
    stats = two_stage(executor(type("Gone", (), {"url": url})(), cache), 6)
    # The first list, then one per parent's follow-ups; none of them one task at a time.
    assert stats.calls == 0 and stats.cached == 6 * (1 + FAN_OUT)
    assert queries == {"get": 0, "get_many": 1 + 6}


def test_a_batch_line_is_the_synchronous_request_and_gives_the_same_result(cache, tmp_path):
    bodies: dict[str, list] = {}

    def recording(body):
        bodies.setdefault(json.dumps(body["messages"]), []).append(body)
        return default_responder(body)

    with FakeServer(recording) as server:
        llm = OpenAILLM("fake-model", base_url=server.url)
        t = task(llm.id, "ideas", "same prompt")
        t2 = type(t)(t.stage, t.principle_id, t.model, t.messages,
                     type(t.params)(max_tokens=64, seed=7, json_mode=True, stop=("END",)), t.template_hash)
        got = {}
        executor(server, cache).run_sync([t2], lambda task_, g: got.setdefault("batch", g) and None)
        with Cache(tmp_path / "sync.sqlite") as other:
            Engine(llm, other).run_sync([t2], lambda task_, g: got.setdefault("sync", g) and None)
    (batch_body, sync_body), = bodies.values()
    assert batch_body == sync_body and sync_body["response_format"] == {"type": "json_object"}
    assert sync_body["seed"] == 7 and sync_body["stop"] == ["END"] and sync_body["max_tokens"] == 64
    b, s = got["batch"], got["sync"]
    assert (b.text, b.finish_reason, b.input_tokens, b.output_tokens, b.model) == (
        s.text, s.finish_reason, s.input_tokens, s.output_tokens, s.model)


def test_an_expired_batch_keeps_its_finished_half_and_resubmits_only_the_rest(cache):
    with FakeServer() as server:
        server.batch.expire_next.append(12)  # the first batch expires with 12 of its 20 requests done
        stats = two_stage(executor(server, cache), 20)
        first, second = server.batch.batches[server.batch.created[0]], server.batch.batches[server.batch.created[1]]
        assert first["status"] == "expired" and first["request_counts"]["completed"] == 12
        resubmitted = server.batch.requests_of(second["id"])
        assert len([k for k in resubmitted if k in server.batch.requests_of(first["id"])]) == 8
        assert set(server.batch.lines_run.values()) == {1}  # nothing finished was requested again
        assert stats.calls == 20 * (1 + FAN_OUT) and stats.retries == 0 and stats.failed == 0


def test_failed_lines_are_retried_in_a_later_batch(cache):
    with FakeServer(batch={"fail_rate": 0.3}) as server:
        stats = two_stage(executor(server, cache), 20)
        failed_once = sum(server.batch.lines_failed.values())
        assert failed_once > 5 and stats.retries == failed_once and stats.failed == 0
        assert stats.calls == 20 * (1 + FAN_OUT) and len(server.batch.created) > 2
        assert all(server.batch.lines_run[k] == 1 + server.batch.lines_failed[k] for k in server.batch.lines_run)


def test_lines_that_keep_failing_count_as_failures_with_their_reason(cache):
    def responder(body):
        text = body["messages"][0]["content"]
        if text == "idea 1":
            return Reply("overloaded", status=503)
        if text == "idea 2":
            return Reply("this prompt is invalid", status=400)
        return default_responder(body)

    with FakeServer(responder) as server:
        failures = []
        ex = executor(server, cache, max_retries=2)
        stats = ex.run_sync(first_stage(ex.llm.id, 10), lambda t, g: None, lambda t, why: failures.append(why))
        assert stats.calls == 8 and stats.failed == 2 and stats.retries == 2
        reasons = sorted(f["reason"] for f in stats.failures)
        assert reasons[0].startswith("HTTP 400: this prompt is invalid")  # a 400 is not retried
        assert reasons[1].startswith("HTTP 503: overloaded") and "gave up after 3 attempts" in reasons[1]
        assert sorted(failures) == reasons
        assert server.batch.lines_run[first_stage(ex.llm.id, 10)[1].key] == 3
        assert server.batch.lines_run[first_stage(ex.llm.id, 10)[2].key] == 1


def test_too_many_failures_stop_the_run(cache):
    with FakeServer(lambda body: Reply("bad", status=400)) as server:
        with pytest.raises(FailureRateError, match="400 tasks|tasks failed") as e:
            two_stage(executor(server, cache), 30)
        assert e.value.stats.failed >= 20


def test_on_failure_may_return_follow_up_tasks(cache):
    def responder(body):
        return Reply("no", status=400) if body["messages"][0]["content"] == "idea 0" else default_responder(body)

    with FakeServer(responder) as server:
        ex = executor(server, cache)
        done = []
        stats = ex.run_sync(first_stage(ex.llm.id, 3), lambda t, g: done.append(t.messages[0]["content"]) and None,
                            lambda t, why: [task(ex.llm.id, "ideas", "instead of idea 0")])
        assert stats.failed == 1 and sorted(done) == ["idea 1", "idea 2", "instead of idea 0"]


def test_a_wave_larger_than_the_file_limits_is_split(cache):
    with FakeServer(batch={"max_lines": 7}) as server:
        stats = two_stage(executor(server, cache, max_requests=7), 10)
        assert stats.waves == 2 and stats.batches == 2 + 5  # 10 ideas in 2 files, 30 documents in 5
        assert all(len(server.batch.requests_of(b)) <= 7 for b in server.batch.created)
        assert stats.calls == 40 and stats.failed == 0
    with FakeServer() as server, Cache(cache.path.with_name("bytes.sqlite")) as other:
        stats = two_stage(executor(server, other, max_bytes=2000), 10)
        sizes = [server.batch.files[server.batch.batches[b]["input_file_id"]]["bytes"] for b in server.batch.created]
        assert max(sizes) <= 2000 and stats.batches > 2 and stats.calls == 40


def test_the_cost_cap_holds_back_what_could_pass_it(cache):
    with FakeServer() as server:
        prices = (1e4, 1e4)  # about $0.6 for an idea at its full max_tokens, and 1 cent a token actually used
        with pytest.raises(CostCapError, match="spending cap") as e:
            two_stage(executor(server, cache, prices=prices, max_usd=5.0), 20)
        st = e.value.stats
        assert 0 < st.cost_usd <= 5.0 and st.not_run > 0
        # A rerun without the cap resumes from the cache and finishes.
        stats = two_stage(executor(server, cache, prices=prices), 20)
        assert stats.cached == st.calls and stats.calls + stats.cached == 20 * (1 + FAN_OUT)


def test_an_endpoint_without_a_batch_api_says_what_to_do_instead(cache, monkeypatch):
    with FakeServer() as server:
        monkeypatch.setattr(server.batch, "handles", lambda path: False)  # a vLLM server: no /files, no /batches
        with pytest.raises(EndpointError, match="no Batch API.*--batch-export"):
            two_stage(executor(server, cache), 2)


def test_a_recorded_batch_is_found_by_its_metadata_or_abandoned(cache):
    """A build killed between recording a batch and learning its id finds it at the provider, or resubmits."""
    with FakeServer() as server:
        llm = OpenAILLM("fake-model", base_url=server.url)
        tasks = first_stage(llm.id, 4)
        store = BatchStore(cache)
        rows = [(t.key, t.stage, t.principle_id, t.model) for t in tasks]
        created = store.record(build="t", endpoint=f"{server.url}", kind="provider", wave=1, part=1, tasks=rows[:2])
        store.record(build="t", endpoint=f"{server.url}", kind="provider", wave=1, part=2, tasks=rows[2:])

        async def submit_first_behind_our_back():
            lines = "".join(json.dumps({"custom_id": t.key, "method": "POST", "url": "/v1/chat/completions",
                                        "body": llm.body(list(t.messages), t.params)}) + "\n" for t in tasks[:2])
            client = openai.AsyncOpenAI(api_key="x", base_url=server.url)
            f = await client.files.create(file=("a.jsonl", lines.encode()), purpose="batch")
            await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                        metadata={"specc_batch": created.local_id})
            await client.close()

        asyncio.run(submit_first_behind_our_back())
        stats = executor(server, cache).run_sync(tasks, lambda t, g: None)
        assert stats.resumed == 1 and stats.batches == 1 and stats.calls == 4
        assert len(server.batch.created) == 2 and set(server.batch.lines_run.values()) == {1}
        assert {b.part: b.state for b in store.of_build("t")} == {1: "completed", 2: "abandoned"}


def test_cancelled_by_the_user_keeps_what_finished(cache):
    with FakeServer(batch={"hold": True}) as server:
        buf = io.StringIO()
        ex = executor(server, cache, progress=Progress(quiet=True, console=Console(file=buf, width=200)))

        async def leave_then_cancel():
            run = asyncio.ensure_future(two_stage_async(ex, 10))
            # Wait until the client has recorded the batch, not only until the server opened it:
            # a cancel between the two is the "being created" case (the docs test for large builds meets it).
            while "batch 1.1: validating" not in buf.getvalue():
                await asyncio.sleep(POLL)
            run.cancel()  # what Ctrl-C does to the build's event loop
            with pytest.raises(asyncio.CancelledError):
                await run
            await ex.llm.aclose()

        asyncio.run(leave_then_cancel())
        said = buf.getvalue()
        assert "batch 1.1: validating" in said and "1 batch(es) keep running at the provider: 1.1 (batch_" in said
        (batch_id,) = server.batch.created
        b = server.batch.batches[batch_id]
        b["request_counts"]["completed"] = 4  # four requests ran before the cancel arrived
        client = openai.OpenAI(api_key="x", base_url=server.url)
        client.batches.cancel(batch_id)
        server.batch.release()
        stats = two_stage(executor(server, cache), 10)
        assert b["status"] == "cancelled" and stats.resumed == 1 and stats.calls == 40
        assert set(server.batch.lines_run.values()) == {1}  # the 4 that ran were not requested again


async def two_stage_async(ex, n):
    return await ex.run(first_stage(ex.llm.id, n), lambda t, g: follow_ups(ex.llm.id, t))


def test_progress_shows_each_batch_state_and_counts(cache):
    buf = io.StringIO()
    with FakeServer(batch={"polls": 3}) as server:
        with Progress(live=True, console=Console(file=buf, force_terminal=True, width=160)) as p:
            two_stage(executor(server, cache, progress=p), 6)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    for state in ("validating", "in_progress", "completed"):
        assert f"batch 1.1: {state}" in out and f"batch 2.1: {state}" in out
    assert "batch 2.1 completed" in out and "18/18" in out  # the bar: state in its label, requests done of all
    assert p.batches["1.1"] == ("completed", 6, 0, 6)
