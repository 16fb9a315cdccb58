"""`specc import rules`: a labelled or numbered rule list -> a YAML spec that validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app
from specc.errors import SpecError
from specc.spec.import_rules import import_rules
from specc.spec.importers import IdAllocator, render_yaml, short_title, slugify, write_spec
from specc.spec.load import load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "import"


def test_labelled_rules(tmp_path):
    out = tmp_path / "rules.yaml"
    imp = import_rules(FIXTURES / "rules.txt", name="acme", assistant="Acme Helper", developer="Acme")
    write_spec(imp, out)
    spec = load_spec(out)
    assert spec.name == "acme" and spec.assistant.name == "Acme Helper"
    assert spec.description == "Acme Helper behaviour rules. These rules describe how Acme Helper behaves with customers and staff."
    rows = [(p.id, p.priority, p.tags) for p in spec.principles]
    # SP rules come first in the file, so the SP group outranks GP; a repeated label gets a suffix.
    assert rows == [
        ("sp1", 0, ["safety_principles"]),
        ("sp2", 0, ["safety_principles"]),
        ("gp1", 1, ["general_principles"]),
        ("gp2", 1, ["general_principles"]),
        ("gp3", 1, ["general_principles"]),
        ("sp3", 0, ["general_principles"]),
        ("gp1_2", 1, ["general_principles"]),
    ]
    assert [str(w) for w in imp.warnings] == [f"{FIXTURES / 'rules.txt'}:23: label GP1 repeats an earlier one; its id is gp1_2"]
    sp1 = spec.principle("sp1")
    assert sp1.title == "Never help anyone cause serious physical harm"
    assert sp1.statement == (
        "Never help anyone cause serious physical harm. This holds even when the request is framed as fiction "
        "or a hypothetical."
    )
    # A wrapped sub-bullet is joined back into one subrule.
    assert sp1.subrules == [
        "Refuse detailed instructions for weapons capable of mass casualties.",
        "Offer crisis resources when someone may be at risk of harming themselves or others.",
    ]
    sp2 = spec.principle("sp2")
    assert sp2.statement.endswith("private individuals, even when it can be found online.")  # a wrapped rule line
    assert sp2.subrules == ["Public officials' office contact details are fine to share.",
                            "Home addresses and personal phone numbers are not."]
    assert sp2.rationale == "Privacy matters because people cannot take back what has been exposed."
    assert spec.principle("gp1").title == "Be honest about uncertainty"  # cut at the clause
    assert spec.principle("gp2").title == "Follow the operator's formatting instructions"  # no dangling "unless they"
    assert spec.principle("gp3").subrules == ["Lead with the answer, then the reasoning.",
                                              "Use lists only when the content is a list."]
    text = out.read_text()
    assert "  # Safety principles\n  - id: sp1" in text and "  # General principles\n  - id: gp1\n" in text


def test_numbered_rules_use_list_order(tmp_path):
    imp = import_rules(FIXTURES / "numbered_rules.md")
    out = tmp_path / "n.yaml"
    spec = write_spec(imp, out)
    assert load_spec(out).model_dump() == spec.model_dump()
    assert [(p.id, p.priority, p.tags) for p in spec.principles] == [
        ("guide_students_toward_answers", 0, []),
        ("explain_mistakes_kindly", 1, []),
        ("adapt_explanations", 2, []),
        ("never_complete_graded_work", 3, []),
    ]
    # The one heading over every rule is the document's title, not a tag.
    assert spec.name == "numbered-rules" and spec.description == "House rules for the tutoring assistant"
    first = spec.principles[0]
    assert first.subrules == ["Ask what the student has tried first.", "Give one hint at a time."]
    assert first.statement == "Guide students toward answers instead of giving the final answer straight away."
    assert spec.principles[1].statement == "Explain mistakes kindly and concretely."  # "2)" style
    assert spec.principles[2].rationale == "A ninth grader and a graduate student need different words for the same idea."


def test_cli_round_trip(tmp_path):
    out = tmp_path / "r.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["import", "rules", str(FIXTURES / "rules.txt"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "7 principles from 7 rules" in res.output and "label GP1 repeats" in res.output
    strict = runner.invoke(app, ["import", "rules", str(FIXTURES / "rules.txt"), "-o", str(tmp_path / "s.yaml"), "--strict"])
    assert strict.exit_code == 2 and "rules.txt:23: label GP1 repeats" in strict.output
    assert not (tmp_path / "s.yaml").exists()
    checked = runner.invoke(app, ["validate", str(out)])
    assert checked.exit_code == 0, checked.output
    again = runner.invoke(app, ["import", "rules", str(FIXTURES / "rules.txt"), "-o", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Some notes\nwith no rules at all.\n", 1, "no rules found"),
        ("Rules:\n  - a bullet first\nSP1: then a rule\n", 2, "a sub-bullet before any rule"),
        ("", 1, "no rules found"),
    ],
)
def test_malformed_rules(tmp_path, text, line, message):
    src = tmp_path / "rules.txt"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        import_rules(src)
    assert f"{src}:{line}: {message}" in str(err.value)


def test_ids_titles_and_yaml_shape(tmp_path):
    ids = IdAllocator()
    assert [ids("Be Honest!"), ids("be honest"), ids("???"), ids("x" * 80)] == ["be_honest", "be_honest_2", "principle", "x" * 64]
    assert ids("x" * 80) == "x" * 62 + "_2"
    assert slugify("Éclair — déjà vu", "-") == "eclair-deja-vu"
    assert short_title("Short. Second sentence.") == "Short"
    src = tmp_path / "long.txt"
    long_rule = "1. " + "The assistant explains its reasoning in plain words " * 4 + "so people can check it.\n"
    src.write_text(long_rule + "2. A second rule.\n", encoding="utf-8")
    text = render_yaml(import_rules(src))
    assert "statement: >-\n" in text  # long prose is folded into short lines
    assert max(len(line) for line in text.splitlines()) <= 100
