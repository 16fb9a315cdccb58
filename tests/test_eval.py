"""`specc eval` end to end: a corpus built by `specc build`, a suite compiled from the spec, two targets, compare.

Everything runs over real HTTP against fake OpenAI-compatible servers on loopback: one for the
generator and judge (the stage-aware responder), and one per target (a model that keeps to the
principles, one that mostly does not). The SQLite cache and the parquet corpus are the real ones.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import FOLLOWS, StageResponder, TargetResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.curate.normalize import normalize  # noqa: E402
from specc.emit import iter_rows  # noqa: E402
from specc.eval.kinds import HOLDOUT, KINDS  # noqa: E402

runner = CliRunner()
N = 8  # items per principle


def eval_spec() -> dict:
    d = spec_dict(3, budget={"tokens": 2500})
    d["principles"][1]["examples"].append(
        {"user": "A second held-out question about principle one, long enough to be checked", "bad": "No.",
         "note": "why it fails", "holdout": True})
    return d


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A built corpus and the servers: generator/judge, a target that keeps to the principles, one that does not."""
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OPENAI_API_KEY", "SPECC_CACHE", "SPECC_HOME"):
            mp.delenv(name, raising=False)
        mp.setenv("SPECC_HOME", str(root / "home"))
        gen = StageResponder()
        servers = {
            "gen": FakeServer(gen),
            "good": FakeServer(TargetResponder(0.9), models=("tuned-model",)),
            "bad": FakeServer(TargetResponder(0.2), models=("base-model",)),
            # the good target's twin: identical replies under another name, so its verdicts are all cached
            "twin": FakeServer(TargetResponder(0.9), models=("tuned-copy",)),
        }
        for s in servers.values():
            s.start()
        try:
            spec = write_spec(root / "spec.yaml", eval_spec())
            built = run_build(spec, provider="openai", model="fake-model", base_url=servers["gen"].url,
                              cache_path=root / "cache.sqlite", quiet=True)
            # Every item of p0's first direct batch repeats a corpus sentence: decontamination must drop them all.
            doc = next(iter_rows(built.out_dir, "documents"))["text"]
            gen.leak = {"p0": " ".join(doc.split()[:16])}
            yield {"root": root, "spec": spec, "out": built.out_dir, "gen": gen, "servers": servers,
                   "cache": root / "cache.sqlite", "leak": gen.leak["p0"]}
        finally:
            for s in servers.values():
                s.stop()


def run(world, target: str, model: str, *extra: str):
    result = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", model, "--base-url",
                                 world["servers"][target].url, "-n", str(N), "--cache", str(world["cache"]), "-q",
                                 *extra])
    return result


def calls(world) -> dict:
    return {name: s.completions for name, s in world["servers"].items()}


def ngrams(text: str, n: int = 13) -> set:
    words = normalize(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)} if len(words) >= n else {tuple(words)}


def test_suite_holds_holdouts_spreads_over_kinds_and_is_clean_of_the_corpus(world):
    before = calls(world)
    r = run(world, "good", "tuned-model")
    assert r.exit_code == 0, r.stderr
    after = calls(world)
    eval_dir = world["out"] / "eval"
    items = [json.loads(line) for line in (eval_dir / "items.jsonl").read_text().splitlines()]
    suite = json.loads((eval_dir / "suite.json").read_text())
    by_p = {pid: [i for i in items if i["principle_id"] == pid] for pid in ("p0", "p1", "p2")}
    # n generated items per principle, every kind, plus the spec's holdout examples as they are
    for pid, mine in by_p.items():
        generated = [i for i in mine if i["kind"] != HOLDOUT]
        assert len(generated) == N and {i["kind"] for i in generated} == set(KINDS)
    holdouts = [i for i in items if i["kind"] == HOLDOUT]
    assert sorted(i["messages"][-1]["content"] for i in holdouts)[:3] == [
        "A second held-out question about principle one, long enough to be checked", "HOLDOUT-USER-0",
        "HOLDOUT-USER-1"]
    assert all(i["source"] == "holdout" for i in holdouts)
    assert "HOLDOUT-GOOD-0" in next(i["rubric"] for i in by_p["p0"] if i["kind"] == HOLDOUT)
    assert all(i["rubric"] and i["language"] for i in items)
    assert {i["language"] for i in items if i["kind"] == "other_language"} - {"en"} == \
        {i["language"] for i in items if i["kind"] == "other_language"}
    assert all(len(i["messages"]) >= 3 and i["messages"][1]["role"] == "assistant" for i in items if i["kind"] == "multi_turn")
    assert all(i["messages"][0]["role"] == "system" for i in items if i["kind"] == "operator")
    assert suite["items"] == len(items) == 3 * N + 4
    # the leaked batch was dropped whole, and a top-up batch refilled it
    assert suite["dropped"]["decontam:corpus_overlap"] == 5
    assert not any(world["leak"] in i["messages"][-1]["content"] for i in items)
    assert sum(1 for p in world["gen"].prompts if "# specc:eval_items" in p and "This is set 2" in p) == 1
    # no item shares a 13-gram with any kept row (checked here without specc's own n-gram code)
    corpus = set()
    for config in ("documents", "demonstrations"):
        for row in iter_rows(world["out"], config):
            corpus |= ngrams(row.get("text") or "\n\n".join(m["content"] for m in row["messages"]))
    assert not any(ngrams("\n\n".join(m["content"] for m in i["messages"])) & corpus for i in items)
    # the other-domain writer is told which document types the corpus used for that principle
    domain = [p for p in world["gen"].prompts if "Kind of test: other_domain" in p]
    assert domain and all("Document types:" in p and ("FAQ" in p or "news report" in p) for p in domain)
    writer = [p for p in world["gen"].prompts if "# specc:eval_items" in p]
    assert writer and not any("HOLDOUT" in p for p in writer)  # holdouts never reach the item writer
    # calls: the suite's eval_items calls, one answer per item, one verdict per answer
    assert after["good"] - before["good"] == len(items)
    assert after["gen"] - before["gen"] == 3 * len(KINDS) + 1 + len(items)
    res = json.loads((eval_dir / "results-tuned-model.json").read_text())
    assert res["schema_version"] == 1 and res["suite"]["hash"] == suite["hash"]
    assert res["target"] == {"label": "tuned-model", "provider": "openai", "model": "tuned-model",
                             "base_url": world["servers"]["good"].url, "llm_id": res["target"]["llm_id"]}
    assert res["judge"]["model"] == "fake-model" and res["judge"]["base_url"] == world["servers"]["gen"].url
    for t in [res["overall"], *res["principles"].values(), *res["kinds"].values()]:
        lo, hi = t["ci95"]
        assert 0 <= lo <= t["pass_rate"] <= hi <= 1 and t["passes"] <= t["items"]
    assert sum(t["items"] for t in res["principles"].values()) == len(items)
    replies = [json.loads(line) for line in (eval_dir / "replies-tuned-model.jsonl").read_text().splitlines()]
    assert all((FOLLOWS in x["reply"]) == (x["verdict"] == "pass") for x in replies)
    assert "tuned-model" in r.stdout and "overall" in r.stdout


def test_a_rerun_makes_no_call_and_a_second_target_reuses_the_suite(world):
    first = run(world, "good", "tuned-model")
    assert first.exit_code == 0, first.stderr
    eval_dir = world["out"] / "eval"
    before, items = calls(world), (eval_dir / "items.jsonl").read_bytes()
    res = json.loads((eval_dir / "results-tuned-model.json").read_text())
    again = run(world, "good", "tuned-model")
    assert again.exit_code == 0, again.stderr
    assert calls(world) == before  # suite, answers and verdicts all from the cache
    res2 = json.loads((eval_dir / "results-tuned-model.json").read_text())
    assert {k: v for k, v in res2.items() if k not in ("created_at", "calls")} == \
        {k: v for k, v in res.items() if k not in ("created_at", "calls")}
    assert res2["calls"] == {"generator": {"reused": True}, "target": {"calls": 0, "cached": res["suite"]["items"],
                                                                      "failed": 0},
                             "judge": {"calls": 0, "cached": res["suite"]["items"], "failed": 0}}
    # the twin answers exactly like the good target: its own calls, but every verdict is cached
    twin = run(world, "twin", "tuned-copy")
    assert twin.exit_code == 0, twin.stderr
    after = calls(world)
    assert after["twin"] - before["twin"] == res["suite"]["items"] and after["gen"] == before["gen"]
    assert (eval_dir / "items.jsonl").read_bytes() == items


def test_compare_flags_the_difference_between_a_base_and_a_tuned_model(world):
    for target, model in (("bad", "base-model"), ("good", "tuned-model")):
        r = run(world, target, model)
        assert r.exit_code == 0, r.stderr
    eval_dir = world["out"] / "eval"
    a, b = eval_dir / "results-base-model.json", eval_dir / "results-tuned-model.json"
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["overall"]["pass_rate"] < 0.5 < rb["overall"]["pass_rate"]
    r = runner.invoke(app, ["eval", "compare", str(a), str(b)])
    assert r.exit_code == 0, r.stderr
    overall = next(line for line in r.stdout.splitlines() if line.strip().startswith("overall"))
    assert overall.rstrip().endswith("yes") and "+" in overall
    for pid in ("p0", "p1", "p2"):
        assert re.search(rf"^\s*{pid}\s", r.stdout, re.M)
    data = json.loads(runner.invoke(app, ["eval", "compare", str(a), str(b), "--json"]).stdout)
    assert data["overall"]["significant"] is True and data["overall"]["diff"] > 0.4
    assert data["overall"]["p_value"] < 0.001
    same = json.loads(runner.invoke(app, ["eval", "compare", str(b), str(b), "--json"]).stdout)
    assert same["overall"]["significant"] is False and same["overall"]["diff"] == 0
    # the corpus's report shows both targets' pass rates per principle
    html = (world["out"] / "report.html").read_text()
    section = html.split('data-section="eval"', 1)[1]
    assert "base-model" in section and "tuned-model" in section and 'data-chart="eval"' in section
    assert all(f"<code>{pid}</code>" in section for pid in ("p0", "p1", "p2"))


def test_compare_refuses_results_of_different_suites(world, tmp_path):
    r = run(world, "good", "tuned-model", "--out", str(tmp_path / "small"), "-n", "3")
    assert r.exit_code == 0, r.stderr
    # its own folder, outside the corpus: a report page of its own
    assert 'data-chart="eval"' in (tmp_path / "small" / "report.html").read_text()
    base = run(world, "good", "tuned-model")
    assert base.exit_code == 0
    r = runner.invoke(app, ["eval", "compare", str(world["out"] / "eval" / "results-tuned-model.json"),
                            str(tmp_path / "small" / "results-tuned-model.json")])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "different suites" in r.stderr
    (tmp_path / "junk.json").write_text("{}")
    r = runner.invoke(app, ["eval", "compare", str(tmp_path / "junk.json"), str(tmp_path / "junk.json")])
    assert r.exit_code == 2 and "not a specc eval results file" in r.stderr


def test_unreadable_verdicts_fail_closed(world, tmp_path):
    with FakeServer(TargetResponder(1.0, garble=True), models=("garbled",)) as server:
        r = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", "garbled", "--base-url", server.url,
                                "-n", "2", "--out", str(tmp_path / "g"), "--corpus", str(world["out"]),
                                "--cache", str(world["cache"]), "-q"])
    assert r.exit_code == 0, r.stderr
    res = json.loads((tmp_path / "g" / "results-garbled.json").read_text())
    assert res["overall"]["passes"] == 0 and res["overall"]["unparseable"] == res["overall"]["items"] > 0
    assert "could not be read and count as fails" in r.stderr


@pytest.mark.parametrize("args, code, message", [
    (["-n", "0"], 2, "-n must be at least 1"),
    (["--api-key-env", "SPECC_TEST_NO_SUCH_KEY"], 2, "is not set"),
    (["--judge-provider", "local"], 2, "too small to grade"),
    (["--provider", "llama"], 2, "--provider must be"),
    (["--no-corpus"], 2, "--no-corpus needs --out"),
])
def test_bad_input_is_one_line_and_exit_2(world, args, code, message):
    r = run(world, "good", "tuned-model", *args)
    assert r.exit_code == code, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1


def test_a_spec_without_a_corpus_needs_one(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", eval_spec())
    r = runner.invoke(app, ["eval", "run", str(spec), "--model", "m", "--base-url", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "no built corpus" in r.stderr and "specc build" in r.stderr and "--corpus" in r.stderr


def test_unreachable_or_wrong_targets_stop_the_run_with_exit_1(world):
    with FakeServer(models=("other",)) as server:
        r = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", "tuned-model", "--base-url", server.url,
                                "-n", str(N), "--cache", str(world["cache"]), "-q", "--label", "probe"])
        assert r.exit_code == 1 and "target tuned-model" in r.stderr and "not served" in r.stderr
        port = server.port
    r = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", "tuned-model", "--base-url",
                            f"http://127.0.0.1:{port}/v1", "-n", str(N), "--cache", str(world["cache"]), "-q",
                            "--label", "probe"])
    assert r.exit_code == 1 and "target tuned-model" in r.stderr and "cannot reach" in r.stderr
    with FakeServer(TargetResponder(1.0), models=("tuned-model",), api_key="secret-key-1") as server:
        r = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", "tuned-model", "--base-url", server.url,
                                "-n", str(N), "--cache", str(world["cache"]), "-q", "--label", "probe"])
    assert r.exit_code == 1 and "401" in r.stderr and "OPENAI_API_KEY" in r.stderr
    assert r.stderr.count("\n") == 1
    # OpenAI itself without a key: stopped before the suite is compiled, so before any call
    before = calls(world)
    r = runner.invoke(app, ["eval", "run", str(world["spec"]), "--model", "gpt-4o-mini", "-n", "30",
                            "--cache", str(world["cache"]), "-q"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "target gpt-4o-mini at https://api.openai.com/v1" in r.stderr and "OPENAI_API_KEY is not set" in r.stderr
    assert calls(world) == before
