"""OUT/dropped/: every dropped record, idea and scenario, with its reason, and `specc show --dropped`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from typer.testing import CliRunner  # noqa: E402

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.emit import read_manifest  # noqa: E402
from specc.emit.shards import SCHEMAS  # noqa: E402

runner = CliRunner()


class Picky(StageResponder):
    """Every ideas answer repeats its first idea; every third verdict is a fail; every fifth document is too short."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def ideas(self, body, text):
        ideas = json.loads(super().ideas(body, text))["ideas"]
        return json.dumps({"ideas": ideas + [dict(ideas[0])]})

    def document(self, body, text):
        self.n += 1
        return "<document>\nNova is fine.\n</document>" if self.n % 5 == 0 else super().document(body, text)

    def judge(self, body, text):
        self.n += 1
        verdict = "fail" if self.n % 3 == 0 else "pass"
        return json.dumps({"verdict": verdict, "reason": f"the reply {'misses' if verdict == 'fail' else 'keeps'} the rule"})


def test_dropped_rows_are_written_with_their_reason_and_shown(tmp_path):
    from datasets import load_dataset

    path = write_spec(tmp_path / "spec.yaml", spec_dict(2, budget={"tokens": 4000}))
    with FakeServer(Picky()) as server:
        r = run_build(path, out=tmp_path / "out", provider="openai", model="fake-model", base_url=server.url,
                      cache_path=tmp_path / "cache.sqlite", quiet=True)
    out = r.out_dir
    m = read_manifest(out)
    entry = m["dropped_rows"]
    assert entry["shards"] and all((out / s["path"]).is_file() for s in entry["shards"])
    rows: dict[str, list[dict]] = {}
    for config in ("documents", "demonstrations"):
        files = sorted(str(out / s["path"]) for s in entry["shards"] if s["config"] == config)
        ds = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
        # the columns of the kept rows, plus the reason
        assert ds.column_names == SCHEMAS[config].names + ["reason"]
        rows[config] = list(ds)
    reasons = Counter(row["reason"] for config_rows in rows.values() for row in config_rows)
    assert reasons == Counter(entry["reasons"])
    for reason in ("judge:fail", "ideas:duplicate", "filter:too_short"):
        assert reasons[reason] == m["dropped"][reason] > 0, reason
    idea = next(row for row in rows["documents"] if row["reason"] == "ideas:duplicate")
    assert idea["text"] == "" and json.loads(idea["idea"])["title"] and idea["facet"] and idea["genre"]
    failed = next(row for row in rows["demonstrations"] if row["reason"] == "judge:fail")
    assert failed["judge_verdict"] == "fail" and failed["messages"][-1]["role"] == "assistant"
    short = next(row for row in rows["documents"] if row["reason"] == "filter:too_short")
    assert short["text"] == "Nova is fine." and short["tokens"] > 0

    res = runner.invoke(app, ["show", str(out), "--dropped", "--reason", "judge:fail", "-n", "2"])
    assert res.exit_code == 0, res.output
    assert res.output.count("dropped: judge:fail") == 2 and "judge: the reply misses the rule" in res.output
    res = runner.invoke(app, ["show", str(out), "--dropped", "--reason", "ideas", "-n", "1"])
    assert "dropped: ideas:duplicate" in res.output and "idea: " in res.output
    res = runner.invoke(app, ["show", str(out), "--dropped", "--reason", "nothing:like_this"])
    # a reason no row was dropped for is a typo: refused, with the reasons there are
    assert res.exit_code == 2 and "was dropped for 'nothing:like_this'" in res.stderr and "judge:fail (" in res.stderr
    assert runner.invoke(app, ["show", str(out), "--reason", "judge"]).exit_code == 2
    # the kept rows are untouched by all this
    res = runner.invoke(app, ["show", str(out), "-n", "1"])
    assert res.exit_code == 0 and "dropped:" not in res.output
