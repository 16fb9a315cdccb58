"""`specc init` then `specc build` on the real embedded model (SmolLM2-135M through llama.cpp), offline."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time

import pytest
from typer.testing import CliRunner

from specc.cli import app

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_LLAMA and not os.environ.get("SPECC_REQUIRE_LOCAL"), reason="needs pip install 'specc[local]'"
    ),
]


@pytest.mark.timeout(600)  # the starter spec must build on the embedded model in under ten minutes on two cores
def test_the_starter_spec_builds_both_configs_offline(tmp_path, monkeypatch):
    from datasets import load_dataset

    from specc.emit import read_manifest

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    made = runner.invoke(app, ["init", str(tmp_path / "mine")])
    assert made.exit_code == 0, made.output
    spec = tmp_path / "mine" / "spec.yaml"
    checked = runner.invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 0 and "warning" not in checked.output, checked.output
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"

    started = time.monotonic()
    first = runner.invoke(app, ["build", str(spec), "--out", str(out), "--cache", str(cache), "--quiet"])
    elapsed = time.monotonic() - started
    assert first.exit_code == 0, first.output
    m = read_manifest(out)
    # The next plan times the embedded model by what this build measured: busy for no longer than the build took.
    planned = json.loads(runner.invoke(app, ["plan", str(spec), "--cache", str(cache), "--json", "--budget",
                                             "20000"]).stdout)
    wall = planned["wall_time"]
    assert planned["free"] and wall["source"] == "measured" and wall["measured_calls"] == m["llm"]["calls"]
    assert wall["tokens_per_s"] >= m["llm"]["output_tokens"] / elapsed * 0.99
    assert m["llm"]["calls"] > 0 and m["llm"]["failed"] == 0 and m["short"] == []
    assert m["llm"]["per_stage"].keys() == {"ideas", "document", "scenarios", "reply"}  # no judge on this model
    assert m["counts"]["documents"] > 0 and m["counts"]["demonstrations"] > 0, m["dropped"]
    docs = load_dataset(str(out), "documents", split="train")
    demos = load_dataset(str(out), "demonstrations", split="train")
    assert len(docs) == m["counts"]["documents"] and len(demos) == m["counts"]["demonstrations"]
    assert set(docs["principle_id"]) | set(demos["principle_id"]) == {"honesty", "helpfulness"}
    assert all(t.strip() for t in docs["text"])
    assert all(d["messages"][-1]["role"] == "assistant" for d in demos)
    texts = list(docs["text"]) + [m["content"] for d in demos for m in d["messages"]]
    for text in texts:  # no prompt scaffolding reached the corpus
        assert not re.search(r"\(id: |extra round|\[(?:your|my|name|insert)", text, re.I), text

    # Unchanged spec: no model call and nothing rewritten; the manifest still tells what the corpus cost.
    again = runner.invoke(app, ["build", str(spec), "--out", str(out), "--cache", str(cache), "--quiet"])
    assert again.exit_code == 0 and "up to date" in again.output, again.output
    assert read_manifest(out) == m and m["provenance"]["build"]["calls"] == m["llm"]["calls"]
