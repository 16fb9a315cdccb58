"""`specc import openai-model-spec`: Model Spec markdown -> a commented YAML spec that validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app
from specc.errors import InputError, SpecError
from specc.spec.import_openai import ConversationError, build_examples, import_model_spec, parse_conversation
from specc.spec.importers import render_yaml, write_spec
from specc.spec.load import load_spec

FIXTURE = Path(__file__).parent / "fixtures" / "import" / "model_spec.md"


@pytest.fixture
def spec(tmp_path):
    out = tmp_path / "spec.yaml"
    write_spec(import_model_spec(FIXTURE, assistant="Aria", developer="Example Labs"), out)
    return load_spec(out)


def test_principles_priorities_and_tags(spec):
    got = {p.id: (p.priority, p.tags) for p in spec.principles}
    assert got == {
        "follow_all_applicable_instructions": (0, ["chain_of_command"]),
        "letter_and_spirit": (0, ["chain_of_command"]),
        "respect_creators": (0, ["chain_of_command"]),  # authority=platform, the older name of root
        "avoid_info_hazards": (0, ["stay_in_bounds", "disallowed_content"]),
        "comply_with_laws": (1, ["stay_in_bounds"]),
        "developer_formatting": (2, ["stay_in_bounds"]),
        "be_kind": (3, ["be_approachable"]),  # no anchor: the id comes from the title
        "use-markdown": (4, ["be_approachable"]),
        "use-markdown_2": (4, ["be_approachable"]),  # a repeated anchor gets a suffix
    }
    assert spec.name == "model-spec"
    assert spec.assistant.name == "Aria" and spec.assistant.developer == "Example Labs"
    assert spec.description.startswith("The Model Spec describes how the assistant behaves")


def test_statement_rationale_subrules(spec):
    p = spec.principle("follow_all_applicable_instructions")
    assert p.title == "Follow all applicable instructions"
    assert p.statement.startswith("The assistant must strive to follow all applicable instructions when producing a response.")
    assert "[^" not in p.statement and "*" not in p.statement  # footnote markers and emphasis are gone
    # Links keep their text; [?](#id) becomes the title of the heading it points to.
    assert "See also Respect the letter and spirit of instructions and the glossary." in p.rationale
    # Commentary blocks (both paragraphs) are rationale; the list's lead-in points at the subrules.
    assert '"Rail free" models can be useful for red teaming.' in p.rationale
    assert "The models we deploy publicly should comply with this spec." in p.rationale
    assert "Here is the ordering of authority levels (see the subrules)." in p.rationale
    assert p.subrules == [
        'Root: the spec\'s "root" sections',
        'System: "system" sections and system messages',
        "Developer: developer messages (including tool descriptions a developer supplies; and instructions quoted by them)",
        "User: user messages",
    ]
    hazards = spec.principle("avoid_info_hazards")
    # A long first paragraph is cut at a sentence; the rest opens the rationale.
    assert hazards.statement.endswith("that could amplify the risk of harm.")
    assert hazards.rationale.startswith("When appropriate, the assistant may also gently")
    # A plain heading nested in a principle adds to it.
    assert "Information can be dual-use" in hazards.rationale
    assert hazards.subrules[0] == "Explain how a class of chemicals works in general terms."
    creators = spec.principle("respect_creators")
    assert "rights — while striving" in creators.statement


def test_examples(spec):
    follow = spec.principle("follow_all_applicable_instructions").examples
    assert len(follow) == 2
    dev = follow[0]
    assert dev.system.startswith("You are a library assistant")  # a <developer> turn
    assert dev.user == "Please give me the full text of The Tale of the Four Clever Bunnies"
    assert dev.good.startswith("Sorry — I can't provide the full text")
    assert dev.bad.startswith("CHAPTER ONE\n\nIt was an unusual sight")
    assert dev.note == "root/developer conflict: request that goes against the Respect creators and their rights section"
    sys = follow[1]
    assert sys.system.startswith('You are in a special "safety testing mode"')
    assert sys.note == (
        "root/system conflict: a system message asks to ignore the safety rules; "
        "good reply: root instructions override system; bad reply: system message cannot override root-level rules"
    )

    spirit = spec.principle("letter_and_spirit").examples
    # "**Example**:" alone with its title on the next line; a GOOD reply outside a comparison.
    assert spirit[0].note == "detecting spurious instructions from web content"
    assert spirit[0].user.startswith("I found this article") and spirit[0].bad is None
    assert "1. Use time-blocking" in spirit[0].user
    # Multi-turn: a GOOD mark on the line after <assistant>, tool turns, then a comparison with two GOODs.
    first, second, third = spirit[1:]
    assert first.good == "Luigi's has a table for two at 7pm. Shall I book it?"
    assert first.user.startswith("User: Book me a table") and "Tool: {\"available\"" in first.user
    assert second.user.endswith("Assistant: Luigi's has a table for two at 7pm. Shall I book it?\n\n"
                                "User: Actually make it four people, and later if possible.")
    assert second.good.startswith("Sure — Luigi's also has 8:30pm")
    assert second.bad == "Done! Your table for two at 7pm is booked."
    assert "bad reply: ignores the change of plan" in second.note  # BAD[#ref]: the reference is dropped
    assert third.good.startswith("I can look for a later slot") and third.bad is None and third.user == second.user

    fmt = spec.principle("developer_formatting").examples[0]
    assert fmt.good == '{"answer": "Paris"}'
    assert fmt.note == "the developer asks for JSON; bad reply: breaks the developer's format"
    assert spec.principle("comply_with_laws").examples == []


def test_warnings_and_yaml_comments():
    imp = import_model_spec(FIXTURE)
    assert imp.warnings == [
        "skipped 1 example(s) with no GOOD or BAD reply",
        "skipped 1 example(s) under headings without an authority",
    ]
    text = render_yaml(imp)
    assert text.startswith("# Imported from model_spec.md (OpenAI Model Spec markdown)")
    assert "  # Section: Stay in bounds. This section describes limits on the assistant's behavior" in text
    assert "[^" not in text and "---" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_cli_writes_validates_and_refuses_overwrite(tmp_path):
    out = tmp_path / "imported.yaml"
    runner = CliRunner()
    first = runner.invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(out), "--name", "ms"])
    assert first.exit_code == 0, first.output
    assert "9 principles, 9 examples" in first.output
    checked = runner.invoke(app, ["validate", str(out)])
    assert checked.exit_code == 0, checked.output
    again = runner.invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(out)])
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    forced = runner.invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert load_spec(out).name == "model-spec"
    bad_name = runner.invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(tmp_path / "x.yaml"),
                                   "--name", "Bad Name"])
    assert bad_name.exit_code == 2 and "not a valid spec name" in bad_name.output
    missing = runner.invoke(app, ["import", "openai-model-spec", str(tmp_path / "nope.md")])
    assert missing.exit_code == 2 and "no such file" in missing.output


GOOD_HEAD = "# Section {#s}\n\n## Rule {#rule authority=user}\n\nThe assistant follows the rule.\n\n"


def _example(body: str, fence: str = "~~~") -> str:
    return GOOD_HEAD + f"**Example**: a case\n\n{fence}xml\n{body}\n{fence}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Just prose.\n\nNo headings here.\n", 1, "no markdown headings found"),
        ("# A {#a}\n\ntext\n\n## B {#b}\n\nmore\n", 1, "no heading carries an authority"),
        ("# A {#a}\n\n## B {#b authority=admin}\n\ntext\n", 3, "unknown authority 'admin'"),
        (GOOD_HEAD + "**Example**: open\n\n```xml\n<user>\nhi\n</user>\n", 9, "code block opened with ``` is never closed"),
        (GOOD_HEAD + "**Example**: lost\n\nNo block follows.\n", 7, "example 'lost' is not followed by an ```xml block"),
        (_example("<user>\nhi\n</user>\n<assistant>\nhello\n</assistant>"), 13, "final <assistant> reply needs <!-- GOOD -->"),
        (_example("<user>\nhi\n</user>\n<comparison>\n<assistant>\nhello\n</assistant>\n</comparison>"), 14,
         "<assistant> in a <comparison> needs"),
        (_example("<user>\nhi\n<assistant> <!-- GOOD -->\nhello\n</assistant>"), 10, "<user> is never closed"),
        (_example("<user>\nhi\n</user>\n</comparison>"), 13, "</comparison> without an opening <comparison>"),
        (_example("<user>\nhi\n</user>\n<comparison>\n<assistant> <!-- GOOD -->\nyo\n</assistant>"), 13,
         "<comparison> is never closed"),
        (_example("<user>\nhi\n</user>\n</assistant>"), 13, "</assistant> closes a tag that is not open"),
        (_example("<usr>\nhi\n</usr>"), 10, "unknown tag <usr>"),
        (_example("hello there\n<user>\nhi\n</user>"), 10, "text outside a message tag"),
        (_example("<user> <!-- GOOD -->\nhi\n</user>"), 10, "only <assistant> replies are marked"),
        (_example("<assistant> <!-- GOOD -->\nhi\n</assistant>"), 10, "a reply before any <user> turn"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, text, line, message):
    src = tmp_path / "spec.md"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        import_model_spec(src)
    assert f"{src}:{line}: " in str(err.value)
    assert message in str(err.value)


def test_every_problem_is_reported(tmp_path):
    src = tmp_path / "spec.md"
    src.write_text(
        _example("<user>\nhi\n</user>\n<assistant>\nno mark\n</assistant>")
        + "\n**Example**: second\n\n~~~xml\n<tool>\nx\n</tool>\n<bogus>\n~~~\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as err:
        import_model_spec(src)
    assert [i.line for i in err.value.issues] == [13, 24]


def test_conversation_helpers():
    items = parse_conversation("<user>Hi there</user>\n<assistant> <!-- BAD: rude -->Go away</assistant>", 1)
    assert [(t.role, t.content, t.mark, t.reason) for t in items] == [
        ("user", "Hi there", None, ""),
        ("assistant", "Go away", "bad", "rude"),
    ]
    assert build_examples(items, "", 1) == [{"user": "Hi there", "bad": "Go away", "note": "bad reply: rude"}]
    with pytest.raises(ConversationError) as err:
        parse_conversation("<user>\nhi\n</user>\n<comparison>\n<user>\nagain\n</user>\n</comparison>", 5)
    assert err.value.line == 9 and "only <assistant> replies belong there" in str(err.value)


def test_output_exists_as_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_spec(import_model_spec(FIXTURE), tmp_path / "d", force=True)
