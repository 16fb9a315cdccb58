"""The SQLite generation cache and the `specc cache` commands."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.generate.cache import Cache, default_cache_path
from specc.cli import app
from specc.errors import InputError
from specc.generate.base import Generation, SamplingParams
from specc.records import Task


def make_task(i: int, stage: str = "ideas", principle: str = "honesty", model: str = "openai:m") -> Task:
    return Task(stage, principle, model, ({"role": "user", "content": f"prompt {i}"},), SamplingParams(), "t")


def make_gen(i: int) -> Generation:
    return Generation(f"text {i}", "stop", 10 + i, 20 + i, "m-2024", latency_s=0.5, extra={"i": i})


def test_put_get_roundtrip_marks_cached_and_survives_reopen(tmp_path):
    path = tmp_path / "deep" / "c.sqlite"
    t = make_task(1)
    with Cache(path) as c:
        assert c.get(t.key) is None and not c.has(t.key)
        c.put(t.key, t, make_gen(1))
        c.put(t.key, t, make_gen(2))  # the first result for a key is kept
    with Cache(path) as c:
        g = c.get(t.key)
        assert c.has(t.key) and c.keys() == {t.key} and len(c) == 1
    assert g == Generation("text 1", "stop", 11, 21, "m-2024", latency_s=0.5, cached=True, extra={"i": 1})


def test_stats_group_by_stage_principle_and_model(tmp_path):
    with Cache(tmp_path / "c.sqlite") as c:
        for i in range(6):
            t = make_task(i, stage="ideas" if i < 4 else "document", principle="a" if i % 2 else "b")
            c.put(t.key, t, make_gen(i))
        s = c.stats()
    assert s["entries"] == 6 and s["input_tokens"] == sum(10 + i for i in range(6))
    assert s["by_stage"]["ideas"]["entries"] == 4 and s["by_stage"]["document"]["output_tokens"] == 24 + 25
    assert s["by_principle"]["a"]["entries"] == 3 and list(s["by_model"]) == ["openai:m"]
    assert s["bytes"] > 0


def test_clear_returns_count(tmp_path):
    with Cache(tmp_path / "c.sqlite") as c:
        for i in range(5):
            c.put(make_task(i).key, make_task(i), make_gen(i))
        assert c.clear() == 5 and len(c) == 0 and c.keys() == set()


def test_concurrent_threads_share_one_cache(tmp_path):
    with Cache(tmp_path / "c.sqlite") as c:

        def write(start: int) -> None:
            for i in range(start, start + 100):
                c.put(make_task(i).key, make_task(i), make_gen(i))
                assert c.get(make_task(i).key) is not None

        threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(c) == 800


def _process_writer(path: str, start: int) -> None:
    with Cache(Path(path)) as c:
        for i in range(start, start + 150):
            c.put(make_task(i).key, make_task(i), make_gen(i))


def test_concurrent_processes_write_safely(tmp_path):
    path = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")
    # Overlapping ranges: two processes race to store the same keys.
    procs = [ctx.Process(target=_process_writer, args=(str(path), k * 100)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with Cache(path) as c:
        assert len(c) == 450 and c.get(make_task(449).key).text == "text 449"


def test_no_secret_is_stored(tmp_path, monkeypatch):
    from specc.generate.openai import OpenAILLM

    monkeypatch.setenv("MY_KEY", "sk-verysecretvalue123")
    llm = OpenAILLM("m", base_url="http://user:pw-secret@127.0.0.1:9/v1?token=q-secret", api_key_env="MY_KEY")
    assert llm.id == "openai:m"
    t = make_task(1, model=llm.id)
    with Cache(tmp_path / "c.sqlite") as c:
        c.put(t.key, t, make_gen(1))
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite*"))
    for secret in (b"verysecret", b"pw-secret", b"q-secret"):
        assert secret not in blob


def test_corrupt_cache_is_an_input_error(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="delete it"):
        Cache(bad)


def test_incompatible_schema_version_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Cache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET v = '99' WHERE k = 'schema_version'")
    with pytest.raises(InputError, match="schema version 99"):
        Cache(path)


def test_a_cache_keyed_by_url_is_refused_with_what_to_do_and_clear_upgrades_it(tmp_path):
    path = tmp_path / "c.sqlite"
    with Cache(path) as c:
        c.put(make_task(1).key, make_task(1), make_gen(1))
    with sqlite3.connect(path) as db:  # as the previous specc left it
        db.execute("UPDATE meta SET v = '1' WHERE k = 'schema_version'")
    with pytest.raises(InputError) as e:
        Cache(path)
    assert "URL" in str(e.value) and f"specc cache clear --cache {path}" in str(e.value)
    out = CliRunner().invoke(app, ["cache", "clear", "--cache", str(path), "--yes"])
    assert out.exit_code == 0 and "cleared 1 entries" in out.output
    with Cache(path) as c:
        assert len(c) == 0


def _run_tasks(llm, cache, n=6):
    from specc.generate.engine import Engine

    tasks = [Task("ideas", "p", llm.id, ({"role": "user", "content": f"q{i}"},), SamplingParams(), "t") for i in range(n)]
    return Engine(llm, cache, concurrency=2).run_sync(tasks, lambda t, g: None)


def test_a_model_moved_to_another_host_keeps_its_cache_unless_namespaced(tmp_path):
    from fakeserver import FakeServer
    from specc.generate.factory import make_llm
    from specc.spec.schema import Generator

    with FakeServer() as old, FakeServer() as new, Cache(tmp_path / "c.sqlite") as cache:
        assert old.url != new.url
        first = _run_tasks(make_llm(Generator(provider="openai", model="fake-model", base_url=old.url)), cache)
        moved = _run_tasks(make_llm(Generator(provider="openai", model="fake-model", base_url=new.url)), cache)
        assert first.calls == 6 and moved.calls == 0 and moved.cached == 6 and new.completions == 0
        # A spec that says the new endpoint is a different model gets its own results.
        other = Generator(provider="openai", model="fake-model", base_url=new.url, cache_namespace="finetune-b")
        separate = _run_tasks(make_llm(other), cache)
        assert separate.calls == 6 and new.completions == 6


def test_default_cache_path(tmp_path, monkeypatch):
    assert default_cache_path(None) == tmp_path / "cache.sqlite"  # conftest sets SPECC_CACHE
    monkeypatch.delenv("SPECC_CACHE")
    spec = tmp_path / "proj" / "spec.yaml"
    assert default_cache_path(spec) == (tmp_path / "proj").resolve() / ".specc" / "cache.sqlite"
    monkeypatch.chdir(tmp_path)
    assert default_cache_path(None) == tmp_path / ".specc" / "cache.sqlite"


def test_cli_stats_and_clear(tmp_path):
    path = tmp_path / "c.sqlite"
    with Cache(path) as c:
        for i in range(3):
            c.put(make_task(i).key, make_task(i), make_gen(i))
    runner = CliRunner()
    out = runner.invoke(app, ["cache", "stats", "--cache", str(path)])
    assert out.exit_code == 0 and "3 entries" in out.output and "ideas" in out.output
    out = runner.invoke(app, ["cache", "clear", "--cache", str(path)], input="n\n")
    assert out.exit_code == 1
    out = runner.invoke(app, ["cache", "clear", "--cache", str(path), "--yes"])
    assert out.exit_code == 0 and "cleared 3 entries" in out.output
    with Cache(path) as c:
        assert len(c) == 0


def test_cli_uses_the_cache_beside_the_spec(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECC_CACHE")
    spec = tmp_path / "spec.yaml"
    spec.write_text("specc: 1\n")
    with Cache(tmp_path / ".specc" / "cache.sqlite") as c:
        c.put(make_task(0).key, make_task(0), make_gen(0))
    out = CliRunner().invoke(app, ["cache", "stats", str(spec)])
    assert out.exit_code == 0 and "1 entry," in out.output
    out = CliRunner().invoke(app, ["cache", "stats", str(tmp_path / "missing.yaml")])
    assert out.exit_code == 2 and "no such spec file" in out.output
