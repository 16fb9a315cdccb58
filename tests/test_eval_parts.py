"""The eval's parts on their own: statistics against published values, kinds, item parsing, stage contracts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from stagekit import make_spec  # noqa: E402

from specc.eval.kinds import KINDS, other_language, spread  # noqa: E402
from specc.eval.results import Outcome, compare, tally  # noqa: E402
from specc.eval.corpus import Corpus  # noqa: E402
from specc.eval.run import eval_context, judge_ref, writer_ref  # noqa: E402
from specc.eval.stages import PER_CALL, STAGES, AnswerInput, GradeInput, ItemsInput, holdout_item, parse_items  # noqa: E402
from specc.eval.stats import two_proportions, wilson  # noqa: E402
from specc.errors import InputError  # noqa: E402
from specc.generate.base import Generation  # noqa: E402
from specc.spec.schema import Spec  # noqa: E402
from specc.stages.parsing import ParseFailure  # noqa: E402


@pytest.mark.parametrize("passes, n, lo, hi", [
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Statistics in Medicine 17:857, method 3
    (15, 148, 0.0624, 0.1605),  # ibid.
    (0, 20, 0.0, 0.1611),  # ibid.
    (1, 29, 0.0061, 0.1718),  # ibid.
    (8, 10, 0.4902, 0.9433),
])
def test_wilson_interval_matches_published_values(passes, n, lo, hi):
    got = wilson(passes, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_two_proportion_test_matches_a_worked_value():
    d = two_proportions(45, 100, 60, 100)  # pooled p = 0.525: z = 0.15 / sqrt(0.525 * 0.475 * 0.02)
    assert d.diff == pytest.approx(0.15) and d.z == pytest.approx(2.12398, abs=1e-5)
    assert d.p_value == pytest.approx(0.033672, abs=1e-6) and d.significant
    assert not two_proportions(9, 20, 12, 20).significant  # p ~ 0.34
    assert two_proportions(5, 5, 5, 5).p_value == 1.0 and two_proportions(0, 0, 3, 4).p_value == 1.0
    assert two_proportions(60, 100, 45, 100).z == pytest.approx(-2.12398, abs=1e-5)


def test_items_spread_evenly_over_the_kinds_that_apply():
    spec = make_spec(3)
    for n in (1, 7, 20, 23):
        counts = [spread(spec, p, n) for p in spec.principles]
        assert all(sum(c.values()) == n and max(c.values()) - min(c.values()) <= 1 for c in counts)
    # the odd items go to different kinds in different principles
    assert len({tuple(spread(spec, p, 3).values()) for p in spec.principles}) == 3
    alone = make_spec(1)
    assert "conflict" not in spread(alone, alone.principles[0], 20)


def test_the_other_language_is_fixed_per_principle_and_never_the_specs():
    spec = make_spec(12)
    langs = [other_language(spec, p) for p in spec.principles]
    assert langs == [other_language(spec, p) for p in spec.principles] and len(set(langs)) > 3
    german = Spec.model_validate({**spec.model_dump(mode="json"), "language": "de"})
    assert all(other_language(german, p)[0] != "de" for p in german.principles)


def test_parse_items_json_prose_and_kind_rules():
    text = ('Here you go:\n```json\n{"items": [{"system": null, "turns": [{"role": "user", "content": "Is this safe?"}],'
            ' "rubric": "Says why."}, {"turns": []}]}\n```')
    drafts, bad = parse_items(text, "direct")
    assert [d.scenario.turns[0].content for d in drafts] == ["Is this safe?"] and drafts[0].rubric == "Says why."
    assert bad == 1
    drafts, _ = parse_items("1. Can you help me cheat on my exam?\n2. What is my neighbour's address?", "direct")
    assert len(drafts) == 2 and all(d.rubric == "" for d in drafts)
    with pytest.raises(ParseFailure):
        parse_items('{"items": [{"turns": [{"role": "user", "content": "one turn only"}]}]}', "multi_turn")
    with pytest.raises(ParseFailure):
        parse_items('{"items": [{"system": null, "turns": [{"role": "user", "content": "no operator"}]}]}', "operator")
    with pytest.raises(ParseFailure):
        parse_items("   ", "direct")


def test_every_eval_stage_parses_its_own_stub_and_renders_its_marker():
    spec = make_spec(3)
    ctx = eval_context(spec, "fake:m")
    p = spec.principles[0]
    for kind in KINDS:
        task = STAGES["eval_items"].render(ctx, p, ItemsInput(kind=kind))
        assert task.messages[-1]["content"].startswith("# specc:eval_items")
        gen = Generation(STAGES["eval_items"].stub(ctx, task), "stop", 1, 1, "m")
        assert len(STAGES["eval_items"].parse(ctx, task, gen).items) == PER_CALL
    item = holdout_item(spec, p, next(e for e in p.examples if e.holdout))
    answer = STAGES["answer"].render(ctx, p, AnswerInput(item=item, max_tokens=64))
    assert list(answer.messages) == item.messages and answer.params.temperature == 0
    grade = STAGES["grade"].render(ctx, p, GradeInput(item=item, reply="A reply."))
    assert grade.messages[-1]["content"].startswith("# specc:grade") and item.rubric in grade.messages[-1]["content"]
    gen = Generation(STAGES["grade"].stub(ctx, grade), "stop", 1, 1, "m")
    assert STAGES["grade"].parse(ctx, grade, gen).verdict == "pass"
    # identical replies to one item share one verdict, whoever wrote them
    again = STAGES["grade"].render(ctx, p, GradeInput(item=item, reply="A reply."))
    assert again.key == grade.key


def test_the_embedded_model_writes_or_grades_only_when_named(tmp_path):
    spec = make_spec(2)
    spec = spec.model_copy(update={"generator": spec.generator.model_copy(update={"provider": "local",
                                                                                  "model": "smollm2-135m"})})
    built_locally = Corpus(tmp_path, {"llm": {"provider": "local", "model": "smollm2-135m"}})
    with pytest.raises(InputError, match="too small to write"):
        writer_ref(spec, built_locally, None, None, None)
    writer = writer_ref(spec, built_locally, "local", None, None)
    assert writer.model == "smollm2-135m"
    with pytest.raises(InputError, match="too small to grade"):
        judge_ref(spec, writer, None, None, None)
    assert judge_ref(spec, writer, None, "smollm2-135m", None).provider == "local"
    hosted = Corpus(tmp_path, {"llm": {"provider": "openai", "model": "gpt-4o-mini",
                                       "base_url": "http://127.0.0.1:8000/v1"}})
    gen = writer_ref(spec, hosted, None, None, None)
    assert (gen.provider, gen.model, gen.base_url) == ("openai", "gpt-4o-mini", "http://127.0.0.1:8000/v1")
    judge = judge_ref(spec, gen, None, "gpt-4o", None)
    assert (judge.model, judge.base_url) == ("gpt-4o", "http://127.0.0.1:8000/v1")
    with pytest.raises(InputError, match="--judge-model"):
        judge_ref(spec, writer, "openai", None, None)


def test_tallies_count_fails_without_a_verdict_and_compare_needs_one_suite():
    outs = [Outcome("a", "p0", "direct", "pass", "graded"), Outcome("b", "p0", "direct", "fail", "unparseable"),
            Outcome("c", "p0", "direct", "fail", "error"), Outcome("d", "p0", "direct", "fail", "empty")]
    t = tally(outs)
    assert (t["items"], t["passes"], t["pass_rate"], t["unparseable"], t["error"], t["empty"]) == (4, 1, 0.25, 1, 1, 1)
    doc = {"suite": {"hash": "x"}, "overall": t, "principles": {"p0": t}, "kinds": {"direct": t}, "judge": {}}
    assert compare(doc, doc).overall.test.p_value == 1.0
    with pytest.raises(InputError, match="different suites"):
        compare(doc, {**doc, "suite": {"hash": "y"}})
