"""`specc eval run` with the real embedded model (SmolLM2-135M through llama.cpp) as the target."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.build import run_build  # noqa: E402
from specc.cli import app  # noqa: E402

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_LLAMA and not os.environ.get("SPECC_REQUIRE_LOCAL"), reason="needs pip install 'specc[local]'"
    ),
]


def test_the_embedded_model_as_a_target(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_dict(1, budget={"tokens": 800}))
    cache = tmp_path / "cache.sqlite"
    with FakeServer(StageResponder()) as gen:
        run_build(spec, provider="openai", model="fake-model", base_url=gen.url, cache_path=cache, quiet=True)
        args = ["eval", "run", str(spec), "--provider", "local", "-n", "2", "--max-tokens", "48", "--cache", str(cache),
                "-q"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.stderr
        served = gen.completions
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.stderr
        assert gen.completions == served  # suite and verdicts from the cache
    res = json.loads((tmp_path / "build" / "test-spec" / "eval" / "results-smollm2-135m.json").read_text())
    assert res["target"]["provider"] == "local" and res["target"]["base_url"] is None
    assert res["target"]["llm_id"].startswith("local:smollm2-135m@") and "gguf=" in res["target"]["llm_id"]
    assert res["overall"]["items"] == 3  # two generated items and the holdout example
    assert res["calls"]["target"] == {"calls": 0, "cached": 3, "failed": 0}
    replies = (tmp_path / "build" / "test-spec" / "eval" / "replies-smollm2-135m.jsonl").read_text().splitlines()
    assert all(json.loads(line)["reply"].strip() or json.loads(line)["status"] == "empty" for line in replies)
