"""validate and plan warn when a spec pairs the embedded model with prompts, a judge or a budget it cannot handle."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from specc.cli import app
from specc.spec.advice import warnings
from specc.spec.schema import Spec

runner = CliRunner()
STARTER = yaml.safe_load(resources.files("specc.spec").joinpath("starter.yaml").read_text(encoding="utf-8"))


def starter(**changes) -> dict:
    d = json.loads(json.dumps(STARTER))
    for path, value in changes.items():
        *head, last = path.split("__")
        node = d
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return d


def write(tmp_path: Path, d: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


def test_the_starter_spec_needs_no_advice():
    assert warnings(Spec.model_validate(STARTER)) == []


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"templates": "default"}, "cannot follow those prompts"),
        ({"templates": {"preset": "default", "judge": "j.j2"}}, "cannot follow those prompts"),
        ({"corpus__demonstrations__judge": True}, "cannot grade"),
        ({"corpus__budget__tokens": 200_000}, "about 333 minutes"),
        ({"corpus__demonstrations__kinds": ["direct", "multi_turn"]}, "single questions"),
        ({"generator__provider": "openai", "generator__model": "gpt-4o-mini", "templates": "small"}, "capable model"),
    ],
)
def test_pairings_that_build_badly_are_warned_about(changes, needle):
    found = warnings(Spec.model_validate(starter(**changes)))
    assert len(found) == 1 and needle in found[0], found


def test_a_full_set_of_own_templates_is_the_users_call():
    from specc.spec.schema import STAGES

    own = {s: f"{s}.j2" for s in STAGES}
    assert warnings(Spec.model_validate(starter(templates={"preset": "default", **own}))) == []


def test_validate_and_plan_print_the_warnings(tmp_path):
    path = write(tmp_path, starter(corpus__demonstrations__judge=True))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0 and "warning: demonstrations.judge is on" in res.stderr
    res = runner.invoke(app, ["plan", str(path)])
    assert res.exit_code == 0 and "warning: demonstrations.judge is on" in res.output
    res = runner.invoke(app, ["plan", str(path), "--json"])
    assert any("cannot grade" in w for w in json.loads(res.stdout)["warnings"])
    # A capable model named on the command line makes the same spec fine.
    res = runner.invoke(app, ["plan", str(path), "--json", "--provider", "openai", "--model", "gpt-4o-mini"])
    assert json.loads(res.stdout)["warnings"] == []


def test_plan_warns_of_a_long_build_with_its_own_wall_time_estimate(tmp_path):
    from specc.plan.throughput import DEFAULT_TOKENS_PER_S

    spec = Spec.model_validate(starter(corpus__budget__tokens=200_000))
    assert "about 42 minutes by the plan's estimate" in warnings(spec, minutes=42.4)[0]
    assert warnings(spec, minutes=10.0) == []  # the plan knows better than the budget's rule of thumb
    data = json.loads(runner.invoke(app, ["plan", str(write(tmp_path, starter(corpus__budget__tokens=200_000))),
                                          "--json"]).stdout)
    minutes = data["output_tokens"] / DEFAULT_TOKENS_PER_S / 60
    assert data["wall_time"]["source"] == "default"
    assert any(f"about {minutes:.0f} minutes by the plan's estimate" in w for w in data["warnings"]), data["warnings"]

