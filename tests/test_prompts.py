"""Stage templates: markers, overrides, hashes in keys, and spec text treated as data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from stagekit import make_spec, spec_dict  # noqa: E402

from specc.errors import InputError  # noqa: E402
from specc.prompts import STAGES, builtin_template, load_template, marker  # noqa: E402
from specc.spec.schema import Spec  # noqa: E402
from specc.stages import Context  # noqa: E402
from stagekit import stage_tasks as all_stage_tasks  # noqa: E402


def test_every_stage_has_a_template_with_its_marker():
    ctx = Context.create(make_spec(), "fake:m")
    for stage, task in all_stage_tasks(ctx).items():
        assert stage in STAGES
        assert task.template_hash == builtin_template(stage).hash
        first = task.messages[0] if stage == "reply" else next(m for m in task.messages if m["role"] == "user")
        assert first["content"].splitlines()[0] == marker(stage)


def test_literal_braces_in_a_spec_are_just_text():
    tricky = "Nova writes {{ user.name }} and {% if x %} literally, plus {# not a comment #} and }}."
    d = spec_dict(2)
    d["principles"][0]["statement"] = tricky
    d["principles"][0]["subrules"] = ["{% endif %} is fine too"]
    d["principles"][0]["examples"][0]["user"] = "What does {{ 7*7 }} print?"
    ctx = Context.create(Spec.model_validate(d), "fake:m")
    for stage, task in all_stage_tasks(ctx).items():
        text = "\n".join(m["content"] for m in task.messages)
        assert tricky in text, stage
        if stage != "scenarios":  # the scenario writer sees examples separately, verbatim too
            assert "{% endif %} is fine too" in text
    s = all_stage_tasks(ctx, kind="direct")["scenarios"]
    assert "What does {{ 7*7 }} print?" in s.messages[-1]["content"]
    # a facet is spec text too
    assert "{% endif %} is fine too" in all_stage_tasks(ctx)["scenarios"].messages[-1]["content"]


def test_prompt_carries_only_its_principle_unless_context_is_spec():
    narrow = Context.create(make_spec(3), "fake:m")
    ideas = "\n".join(m["content"] for m in all_stage_tasks(narrow)["ideas"].messages)
    assert "thing 0" in ideas and "thing 1" not in ideas and "thing 2" not in ideas
    wide = Context.create(make_spec(3, context="spec"), "fake:m")
    ideas = "\n".join(m["content"] for m in all_stage_tasks(wide)["ideas"].messages)
    assert all(f"thing {i}" in ideas for i in range(3))
    assert "HOLDOUT" not in ideas


def test_override_from_file_changes_only_its_stage(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "doc.j2").write_text(
        "{% block user %}# specc:document\nWrite a {{ genre }} about {{ assistant.name }}: {{ idea.title }}.\n"
        "{{ principle_text }}{% endblock %}",
        encoding="utf-8",
    )
    d = spec_dict()
    base = Context.create(Spec.model_validate(d), "fake:m")
    d["templates"] = {"document": "tpl/doc.j2"}
    spec = Spec.model_validate(d)
    spec._source = tmp_path / "spec.yaml"
    over = Context.create(spec, "fake:m")
    t_base, t_over = all_stage_tasks(base), all_stage_tasks(over)
    assert load_template("document", spec).origin == str(tmp_path / "tpl" / "doc.j2")
    assert t_over["document"].template_hash != t_base["document"].template_hash
    assert t_over["document"].key != t_base["document"].key
    assert [m["role"] for m in t_over["document"].messages] == ["user"]
    assert t_over["document"].messages[0]["content"].startswith("# specc:document\nWrite a FAQ about Nova: How Nova handled")
    for stage in ("facets", "doctypes", "ideas", "scenarios", "reply", "judge"):
        assert t_over[stage].key == t_base[stage].key


def test_same_source_same_hash_any_edit_new_hash(tmp_path):
    src = builtin_template("judge").source
    d = spec_dict()
    d["templates"] = {"judge": "judge.j2"}
    spec = Spec.model_validate(d)
    spec._source = tmp_path / "spec.yaml"
    (tmp_path / "judge.j2").write_text(src, encoding="utf-8")
    assert load_template("judge", spec).hash == builtin_template("judge").hash
    (tmp_path / "judge.j2").write_text(src + "\n", encoding="utf-8")
    assert load_template("judge", spec).hash != builtin_template("judge").hash


@pytest.mark.parametrize(
    "source,needle",
    [
        ("{% block user %}{{ nope }}{% endblock %}", "nope"),
        ("{% block user %}{% if %}{% endblock %}", "bad.j2:1"),
    ],
    ids=["undefined-variable", "syntax-error"],
)
def test_bad_override_is_an_input_error(tmp_path, source, needle):
    (tmp_path / "bad.j2").write_text(source, encoding="utf-8")
    d = spec_dict()
    d["templates"] = {"ideas": "bad.j2"}
    spec = Spec.model_validate(d)
    spec._source = tmp_path / "spec.yaml"
    with pytest.raises(InputError, match=needle):
        all_stage_tasks(Context.create(spec, "fake:m"))


def test_missing_override_file_is_an_input_error(tmp_path):
    d = spec_dict()
    d["templates"] = {"reply": "missing.j2"}
    spec = Spec.model_validate(d)
    spec._source = tmp_path / "spec.yaml"
    with pytest.raises(InputError, match="templates.reply"):
        Context.create(spec, "fake:m")


def test_the_small_prompt_set_is_built_in():
    """`templates: small` renders every stage from the built-in small set; a per-stage file still overrides it."""
    d = spec_dict(2)
    d["templates"] = "small"
    spec = Spec.model_validate(d)
    ctx = Context.create(spec, "fake:m")
    assert ctx.preset == "small" and ctx.judge
    for stage, task in all_stage_tasks(ctx).items():
        assert task.template_hash == builtin_template(stage, "small").hash != builtin_template(stage).hash
        if stage != "doctypes":  # document types are asked for a facet, not the whole principle
            assert "thing 0" in "\n".join(m["content"] for m in task.messages), stage


def test_a_per_stage_file_overrides_the_preset(tmp_path):
    (tmp_path / "judge.j2").write_text("{% block user %}Grade: {{ reply }}{% endblock %}", encoding="utf-8")
    d = spec_dict(1)
    d["templates"] = {"preset": "small", "judge": "judge.j2"}
    spec = Spec.model_validate(d)
    spec._source = tmp_path / "spec.yaml"
    tasks = all_stage_tasks(Context.create(spec, "fake:m"))
    assert tasks["judge"].messages[-1]["content"] == "Grade: A reply."
    assert tasks["reply"].template_hash == builtin_template("reply", "small").hash


def test_the_embedded_model_gets_the_small_set_and_no_judge_unless_the_spec_says_otherwise():
    local = "local:smollm2-135m@rp1.2"
    d = spec_dict(2)
    ctx = Context.create(Spec.model_validate(d), local)
    assert (ctx.preset, ctx.judge) == ("small", False)
    assert all(t.template_hash == builtin_template(s, "small").hash for s, t in all_stage_tasks(ctx).items())
    capable = Context.create(Spec.model_validate(d), "openai:gpt-4o@https://api.openai.com/v1")
    assert (capable.preset, capable.judge) == ("default", True)
    d["templates"] = {"preset": "default"}
    d["corpus"]["demonstrations"]["judge"] = True
    ctx = Context.create(Spec.model_validate(d), local)
    assert (ctx.preset, ctx.judge) == ("default", True)
