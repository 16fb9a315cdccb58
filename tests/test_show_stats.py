"""`specc stats` and `specc show` on a real build: tables without Python repr; rows wrapped, whole, as JSON, filtered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

import pytest  # noqa: E402

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder, _name, _rng, _words  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.emit import read_manifest  # noqa: E402

BOX = set("│╭╮╰╯─┃━╇")


class LongDocuments(StageResponder):
    """Documents of some 600 words, each ending in words of its own; every fourth verdict a fail."""

    def __init__(self):
        super().__init__()
        self.judged = 0

    def document(self, body, text):
        rng = _rng(body)
        sentences = " ".join(f"{_name(text)} {_words(rng, 11)}." for _ in range(55))
        return f"<document>\n{sentences} Closing mark {rng.randrange(10**8):08d} ends it.\n</document>"

    def judge(self, body, text):
        self.judged += 1
        verdict = "fail" if self.judged % 4 == 0 else "pass"
        return json.dumps({"verdict": verdict, "reason": f"the reply {verdict}s the rule"})


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("show")
    d = spec_dict(2, budget={"tokens": 9000}, documents={"max_tokens": 1200})
    path = write_spec(tmp / "spec.yaml", d)
    with FakeServer(LongDocuments()) as server:
        r = run_build(path, out=tmp / "out", provider="openai", model="fake-model", base_url=server.url,
                      cache_path=tmp / "cache.sqlite", quiet=True, allow_short=True)
    return r.out_dir


def specc(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """The installed CLI in a subprocess, as a terminal of ``columns`` would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECC_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "specc", *args], capture_output=True, text=True, env=env, timeout=120)


def test_stats_prints_every_section_as_a_table_without_python_repr(out):
    res = specc("stats", str(out), columns=80)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "{'" not in text and "': " not in text and "[" not in text
    assert "LLM per stage" in text
    per_stage = read_manifest(out)["llm"]["per_stage"]
    for stage, numbers in per_stage.items():
        row = next(line for line in text.splitlines() if line.split("│")[0].strip() == stage)
        assert f"{numbers['calls']:,}" in row and f"{numbers['input_tokens']:,}" in row
    assert max(len(line) for line in text.splitlines()[1:]) <= 80  # the first line is the build's summary
