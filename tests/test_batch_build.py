"""`specc build --batch`, `specc batches` and the batch files path, end to end against the fake server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakebatch import run_file  # noqa: E402
from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.generate.batch import WaveWritten  # noqa: E402
from specc.generate.batchstore import BatchStore  # noqa: E402
from specc.generate.cache import Cache  # noqa: E402
from specc.generate.executor import BatchFiles  # noqa: E402

runner = CliRunner()
PRICES = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}


def write(tmp_path: Path, server: FakeServer, name: str = "spec.yaml", **generator) -> Path:
    d = spec_dict(3)
    d["generator"] = {"provider": "openai", "model": "fake-model", "base_url": server.url, "prices": PRICES,
                      "batch_options": {"poll_seconds": 0.02}, **generator}
    return write_spec(tmp_path / name, d)


def _default_sigint() -> None:
    # A shell that starts a job in the background makes it ignore SIGINT, and children inherit that:
    # give the build the terminal's usual Ctrl-C, whoever started the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def specc(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "specc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, preexec_fn=_default_sigint, **kw)


def test_a_batch_build_matches_the_synchronous_one_at_half_the_cost(tmp_path):
    with FakeServer(StageResponder()) as server:
        spec = write(tmp_path, server)
        sync = run_build(spec, cache_path=tmp_path / "sync.sqlite", out=tmp_path / "sync", quiet=True)
        calls = server.completions
        batch = run_build(spec, cache_path=tmp_path / "batch.sqlite", out=tmp_path / "batch", quiet=True, batch=True)
        assert server.completions == calls  # the batch build made no synchronous call
        assert batch.llm["calls"] == sync.llm["calls"] == sum(server.batch.lines_run.values())
        assert batch.llm["cost_usd"] == pytest.approx(sync.llm["cost_usd"] / 2) and sync.llm["cost_usd"] > 0
        # the same generations, so the same corpus, shard for shard
        shards = {m: {s["path"]: s["sha256"] for s in json.loads((tmp_path / m / "manifest.json").read_text())["shards"]}
                  for m in ("sync", "batch")}
        assert shards["sync"] == shards["batch"]
        manifest = json.loads((tmp_path / "batch" / "manifest.json").read_text())
        assert manifest["llm"]["batch"]["path"] == "provider" and manifest["llm"]["batch"]["price_factor"] == 0.5
        assert manifest["llm"]["batch"]["waves"] >= 3 and "batch" not in json.loads(
            (tmp_path / "sync" / "manifest.json").read_text())["llm"]

        created = len(server.batch.created)
        again = run_build(spec, cache_path=tmp_path / "batch.sqlite", out=tmp_path / "batch", quiet=True, batch=True)
        assert again.llm["calls"] == 0 and len(server.batch.created) == created  # an unchanged rerun submits nothing

        plan = runner.invoke(app, ["plan", str(spec), "--json"])  # no cache: every call priced
        plan_batch = runner.invoke(app, ["plan", str(spec), "--json", "--batch"])
        full, half = json.loads(plan.stdout), json.loads(plan_batch.stdout)
        assert half["cost_usd"] == pytest.approx(full["cost_usd"] / 2) and full["cost_usd"] > 0


def test_kill_9_while_a_batch_is_pending_then_the_rerun_polls_it(tmp_path):
    with FakeServer(StageResponder(), batch={"hold": True}) as server:
        spec = write(tmp_path, server)
        env = {"SPECC_CACHE": str(tmp_path / "cache.sqlite")}
        build = specc("build", str(spec), "--batch", "--quiet", env=env)
        for line in build.stderr:  # --quiet still reports each batch's change of state
            if line.startswith("batch 1.1: validating"):
                break
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=10)
        build.stdout.close()
        build.stderr.close()
        assert build.returncode == -signal.SIGKILL
        (pending,) = server.batch.created
        assert server.batch.batches[pending]["status"] in ("validating", "in_progress")

        server.batch.release()
        rerun = specc("build", str(spec), "--batch", "--quiet", env=env)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert "1 resumed from an earlier run" in out and server.completions == 0
        first = set(server.batch.requests_of(pending))
        later = [k for b in server.batch.created[1:] for k in server.batch.requests_of(b)]
        assert first and not first & set(later)  # nothing of the pending batch was submitted again
        assert set(server.batch.lines_run.values()) == {1}


def test_ctrl_c_leaves_batches_running_and_the_same_command_collects_them(tmp_path):
    with FakeServer(StageResponder(), batch={"hold": True}) as server:
        spec = write(tmp_path, server)
        env = {"SPECC_CACHE": str(tmp_path / "cache.sqlite")}
        build = specc("build", str(spec), "--batch", "--quiet", env=env)
        for line in build.stderr:
            if line.startswith("batch 1.1: validating"):
                break
        build.send_signal(signal.SIGINT)
        _, err = build.communicate(timeout=30)
        assert build.returncode == 130
        assert "1 batch(es) keep running at the provider" in err and "specc batches SPEC --cancel" in err

        listed = runner.invoke(app, ["batches", str(spec), "--cache", env["SPECC_CACHE"]])
        assert listed.exit_code == 0 and "in_progress" in listed.stdout and "pending" in listed.stdout
        as_json = json.loads(runner.invoke(app, ["batches", str(spec), "--json", "--cache", env["SPECC_CACHE"]]).stdout)
        (b,) = as_json["batches"]
        assert b["batch_id"] == server.batch.created[0] and b["state"] == "in_progress"

        server.batch.batches[b["batch_id"]]["request_counts"]["completed"] = 3  # some requests ran meanwhile
        cancelled = runner.invoke(app, ["batches", str(spec), "--cancel", "--cache", env["SPECC_CACHE"]])
        assert cancelled.exit_code == 0 and "cancel" in cancelled.stdout
        server.batch.release()
        r = run_build(spec, cache_path=Path(env["SPECC_CACHE"]), quiet=True, batch=True)
        assert server.batch.batches[b["batch_id"]]["status"] == "cancelled" and r.llm["batch"]["resumed"] == 1
        assert set(server.batch.lines_run.values()) == {1} and r.kept


def test_export_run_elsewhere_import_until_the_build_completes(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-needed-and-never-written")
    with FakeServer(StageResponder()) as server:
        spec = write(tmp_path, server)
        d = json.loads(spec.read_text())
        del d["generator"]["base_url"]  # the files path needs no endpoint and calls none
        spec.write_text(json.dumps(d))
        cache = tmp_path / "cache.sqlite"
        waves = tmp_path / "waves"
        files = BatchFiles(export_dir=waves)
        results: list[Path] = []
        for n in range(1, 20):
            try:
                r = run_build(spec, cache_path=cache, quiet=True, batch_files=files)
                break
            except WaveWritten as w:
                assert w.wave == n and len(w.paths) == 1
                line = json.loads(w.paths[0].read_text().splitlines()[0])
                assert set(line) == {"custom_id", "method", "url", "body"} and line["method"] == "POST"
                assert line["url"] == "/v1/chat/completions" and line["body"]["model"] == "fake-model"
                assert "sk-not-needed" not in w.paths[0].read_text()
                results.append(tmp_path / "results" / f"wave{n}.jsonl")
                results[-1].parent.mkdir(exist_ok=True)
                run_file(server.url, str(w.paths[0]), str(results[-1]))
                files = BatchFiles(imports=(results[-1],))  # the next wave goes where the last one went
        assert r.kept and r.llm["batch"]["path"] == "files" and r.llm["batch"]["imported"] == r.llm["calls"] > 0
        assert server.completions == 0 and n >= 4
        with Cache(cache) as c:
            assert len(BatchStore(c).of_build("test-spec")) == n - 1

        # the same build from the cache makes no call, and importing the same results again changes nothing
        again = runner.invoke(app, ["build", str(spec), "--cache", str(cache), "--batch-import", str(results[0].parent),
                                    "--quiet"])
        assert again.exit_code == 0, again.output
        assert "0 calls" in again.stdout


def test_batch_flags_that_cannot_work_are_input_errors(tmp_path):
    with FakeServer(StageResponder()) as server:
        spec = write(tmp_path, server)
        both = runner.invoke(app, ["build", str(spec), "--batch", "--batch-export", str(tmp_path)])
        assert both.exit_code == 2 and "one or the other" in both.output
        missing = runner.invoke(app, ["build", str(spec), "--batch-import", str(tmp_path / "nope.jsonl")])
        assert missing.exit_code == 2 and "no such file" in missing.output
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"custom_id": "k", "response": {"status_code": 200}}\nnot json\n')
        garbled = runner.invoke(app, ["build", str(spec), "--batch-import", str(bad), "--batch-export", str(tmp_path)])
        assert garbled.exit_code == 2 and "bad.jsonl:2: not a JSON result line" in garbled.output
        unknown = runner.invoke(app, ["build", str(spec), "--batch-import", str(tmp_path)])
        assert unknown.exit_code == 2 and "--batch-export DIR" in unknown.output
        local = write(tmp_path, server, "local.yaml", provider="local", model="smollm2-135m", base_url=None)
        refused = runner.invoke(app, ["build", str(local), "--batch"])
        assert refused.exit_code == 2 and "OpenAI-compatible" in refused.output


def test_export_needs_no_key_and_no_endpoint(tmp_path):
    d = spec_dict(2)
    d["generator"] = {"provider": "openai", "model": "gpt-4o-mini"}  # api.openai.com, and no OPENAI_API_KEY set
    spec = write_spec(tmp_path / "spec.yaml", d)
    r = runner.invoke(app, ["build", str(spec), "--batch-export", str(tmp_path / "waves")])
    assert r.exit_code == 0, r.output
    assert "wrote wave 1" in r.stdout and "--batch-import" in r.stdout
    (wave,) = (tmp_path / "waves").glob("*.jsonl")
    assert wave.name == "test-spec-wave001.jsonl" and json.loads(wave.read_text().splitlines()[0])["body"]["model"] == "gpt-4o-mini"
    plain = runner.invoke(app, ["build", str(spec)])  # the synchronous path still wants the key
    assert plain.exit_code == 1 and "OPENAI_API_KEY is not set" in plain.output
