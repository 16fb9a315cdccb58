"""`specc build` end to end on the real embedded model (SmolLM2-135M through llama.cpp), offline."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app

ROOT = Path(__file__).resolve().parent.parent
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_LLAMA and not os.environ.get("SPECC_REQUIRE_LOCAL"), reason="needs pip install 'specc[local]'"
    ),
]

SPEC = """\
specc: 1
name: tiny-local
assistant: {{name: Tess, developer: Tandem Cycles}}
principles:
  - id: policy-accuracy
    title: State policies exactly
    statement: >
      Tess describes the warranty and return policies exactly as written and never
      invents exceptions, discounts or promises.
    rationale: >
      A support agent's words are taken as the company's word; an invented refund
      becomes an obligation or a broken promise.
    examples:
      - user: "My battery died after 14 months. That's covered, right?"
        good: "Batteries are covered for one year, so at 14 months it is outside the warranty."
corpus:
  budget: {{tokens: 700}}
  mix: {{documents: 0.6, demonstrations: 0.4}}
  documents: {{genres: [FAQ, customer story], ideas_per_genre: 2, max_tokens: 250}}
  demonstrations: {{kinds: [direct], per_kind: 3, judge: false, max_tokens: 150}}
  filters: {{min_words: 15}}
  rounds: 1
generator: {{provider: local, concurrency: 1, temperature: 0.7}}
templates:
  ideas: {prompts}/ideas.j2
  document: {prompts}/document.j2
  scenarios: {prompts}/scenarios.j2
  reply: {prompts}/reply.j2
  judge: {prompts}/judge.j2
"""


def test_offline_build_with_the_real_model(tmp_path, monkeypatch):
    from datasets import load_dataset

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(prompts=ROOT / "examples" / "prompts" / "small"))
    out = tmp_path / "out"
    cache = tmp_path / "cache.sqlite"
    runner = CliRunner()

    first = runner.invoke(app, ["build", str(spec), "--out", str(out), "--cache", str(cache), "--quiet"])
    assert first.exit_code == 0, first.stderr + first.stdout
    from specc.emit import read_manifest

    m = read_manifest(out)
    assert m["llm"]["calls"] > 0 and m["llm"]["failed"] == 0
    assert m["counts"]["documents"] + m["counts"]["demonstrations"] > 0, m["dropped"]
    assert (out / "report.html").is_file() and (out / "README.md").is_file()
    if m["counts"]["documents"]:
        docs = load_dataset(str(out), "documents", split="train")
        assert len(docs) == m["counts"]["documents"]
        assert all(t.strip() for t in docs["text"])
        assert set(docs["principle_id"]) == {"policy-accuracy"}
    if m["counts"]["demonstrations"]:
        demos = load_dataset(str(out), "demonstrations", split="train")
        roles = [msg["role"] for msg in demos[0]["messages"]]
        assert roles[-1] == "assistant" and "user" in roles

    # Unchanged spec: no model call, byte-identical shards.
    shards = {s["path"]: s["sha256"] for s in m["shards"]}
    again = runner.invoke(app, ["build", str(spec), "--out", str(out), "--cache", str(cache), "--quiet"])
    assert again.exit_code == 0, again.stderr
    m2 = read_manifest(out)
    assert m2["llm"]["calls"] == 0 and m2["llm"]["cached"] == m["llm"]["calls"]
    assert {s["path"]: s["sha256"] for s in m2["shards"]} == shards
