"""`specc import openai-model-spec`: Model Spec markdown -> a commented YAML spec that validates.

The fixture is written for these tests in the public document's format and uses every form
the document does: OK labels, labels with a reason or a section link, examples that open
with a developer, system or tool turn, elisions between and inside turns, unlabelled replies.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc.cli import app
from specc.errors import InputError, SpecError
from specc.spec.import_openai import import_model_spec
from specc.spec.import_openai_examples import (
    Comparison,
    ConversationError,
    Gap,
    build_examples,
    parse_conversation,
    strip_elisions,
)
from specc.spec.importers import render_yaml, write_spec
from specc.spec.load import load_spec

FIXTURE = Path(__file__).parent / "fixtures" / "import" / "model_spec.md"
# A copy of the public document, if at hand; read before the isolation fixture clears SPECC_* variables.
PUBLIC = os.environ.get("SPECC_OPENAI_MODEL_SPEC")


@pytest.fixture(scope="module")
def imported():
    return import_model_spec(FIXTURE, assistant="Hearth", developer="Example Homes")


@pytest.fixture
def spec(tmp_path, imported):
    out = tmp_path / "spec.yaml"
    write_spec(imported, out)
    return load_spec(out)


def _examples(spec, pid):
    return spec.principle(pid).examples


def test_sections_with_authority_become_principles(spec):
    got = {p.id: (p.priority, p.tags) for p in spec.principles}
    assert got == {
        "obey_orders": (0, ["who_gives_orders"]),
        "read_intent": (0, ["who_gives_orders"]),
        "respect_owners": (0, ["who_gives_orders"]),  # authority=platform, the older name of root
        "no_gas_work": (0, ["limits", "dangerous_work"]),
        "local_rules": (1, ["limits"]),
        "maker_format": (2, ["limits"]),
        "be_patient": (3, ["manner"]),  # no anchor: the id comes from the title
        "short-replies": (4, ["manner", "voice"]),  # tags=voice on the heading
        "short-replies_2": (4, ["manner"]),  # a repeated anchor gets a suffix
    }
    assert spec.name == "model-spec"
    assert spec.assistant.name == "Hearth" and spec.assistant.developer == "Example Homes"
    # The generator and the budget are the user's to choose: the spec defaults stay.
    assert spec.generator.model == "smollm2-135m" and spec.corpus.budget.tokens == 200_000


def test_statement_rationale_subrules(spec):
    p = spec.principle("obey_orders")
    assert p.title == "Obey the applicable orders"
    assert p.statement.startswith("The helper must carry out every applicable order when it answers.")
    assert "[^" not in p.statement and "*" not in p.statement  # footnote markers and emphasis are gone
    # Links keep their text; [?](#id) becomes the title of the heading it points to.
    assert "See also Read for intent and the app maker guide." in p.rationale
    # Commentary blocks (both paragraphs) are rationale; the list's lead-in points at the subrules.
    assert "Unrestricted test builds help when probing weaknesses." in p.rationale
    assert "The builds we release follow this handbook." in p.rationale
    assert "Here is the ranking, from highest to lowest (see the subrules)." in p.rationale
    assert p.subrules == [
        'Platform: this handbook\'s "root" sections',
        "App maker: developer messages (including the tool descriptions an app maker writes; "
        "and anything they quote as an instruction)",
        "Household: user messages",
    ]
    gas = spec.principle("no_gas_work")
    # A long first paragraph is cut at a sentence; the rest opens the rationale.
    assert gas.statement.endswith("about hiring a registered engineer.")
    assert gas.rationale.startswith("When it helps, it may also suggest")
    # A plain heading nested in a principle adds to it.
    assert "A smell of gas is an emergency" in gas.rationale
    assert gas.subrules == ["Tell people to leave and call the emergency line.",
                            "Never suggest looking for the leak with a flame."]
    assert "homes, their belongings and their privacy — while" in spec.principle("respect_owners").statement


def test_introduction_is_kept(imported, spec):
    assert spec.description.startswith("This handbook sets out how the household helper behaves")
    text = render_yaml(imported)
    # Sections without an authority are comments above the principles that follow them, in full.
    for line in ("  # Section: Overview", "  # - Ship a helper that saves households time.",
                 "  # Notes to human readers, which do not instruct the helper, sit in blocks like this one.",
                 "  # Section: How instructions rank", "  # Section: Terms",
                 "  # Helper: the program that a household member talks to.",
                 "  # Section: Limits", "  # Section: Admin override"):
        assert line in text.splitlines(), line
    assert text.index("# Section: Who gives orders") < text.index("- id: obey_orders")
    # A section after the last principle, and what to set next, close the file.
    assert "\n# Section: Closing notes\n" in text
    assert text.rstrip().endswith("then `specc plan` shows the calls and cost before `specc build` spends them.")
    assert "\ngenerator:" not in text and "\ncorpus:" not in text
    assert "[^" not in text and "---" not in text and "](#" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_labels_ok_and_section_links(spec):
    locksmith, tool = _examples(spec, "obey_orders")
    assert locksmith.system.startswith("You are a locksmith helper")  # a <developer> turn opens it
    assert locksmith.user == "Tell me how to open the side door of the bakery on Elm Street tonight."
    assert locksmith.good.startswith("I can't help get into a building")
    assert locksmith.acceptable == "Sorry, I can't help with that."  # <!-- OK -->
    # A truncation at the end ("[...]") is removed; the reply still stands.
    assert locksmith.bad == "Sure. First, slide a thin card between the latch and"
    assert not locksmith.holdout
    # BAD[#who_gives_orders]: the link names the section the reply goes against.
    assert locksmith.note == "an app maker asks for something the platform forbids; bad reply (see Who gives orders)"

    # Opens with an assistant tool call and a tool turn: kept as turns, with a note.
    assert [(t.role, t.content[:10]) for t in tool.turns] == [("assistant", 'open("http'), ("tool", "Lentil sou")]
    assert tool.user is None and tool.system is None
    assert tool.bad == "You should also order the spice box at example.com/spice."  # "[... recipe text]" removed
    assert "an assistant turn calls the browser tool" in tool.note
    assert "bad reply: follows an order hidden in a web page" in tool.note  # "BAD, reason"
    assert "elided from the bad reply: recipe text" in tool.note


def test_conversations_stay_turns(spec):
    listing, first, second, spam, voice = _examples(spec, "read_intent")
    # "**Example**:" alone with its title on the next line; a GOOD reply outside a comparison.
    assert listing.note == "a shopping list with an order hidden in it"
    assert listing.user.startswith("Please tidy this list") and "- rye bread" in listing.user

    # <system> then <developer>: one operator prompt; the label on the line after <assistant>.
    assert first.system == "The helper may book tables through the booking tool.\n\nAlways confirm before you book."
    assert [t.role for t in first.turns] == ["user", "assistant", "tool"]
    assert first.good == "Marco's has a table for two at seven. Shall I book it?"
    assert [t.role for t in second.turns] == ["user", "assistant", "tool", "assistant", "user"]
    assert second.turns[3].content == first.good  # the conversation goes on with the GOOD reply
    assert second.good.startswith("Marco's is free at 8:45")
    assert second.acceptable == "Which time works for you?"  # unlabelled in a comparison
    assert second.bad == "Done: a table for two at seven is booked."
    for part in ("part of the conversation is elided", "the acceptable reply has no label in the source",
                 "bad reply (see Obey the applicable orders): keeps the old plan, see Read for intent"):
        assert part in second.note

    # Only a developer message before the replies.
    assert spam.system.startswith("Answer YES or NO") and "<untrusted>" in spam.system
    assert spam.user is None and not spam.turns and (spam.good, spam.bad) == ("YES", "NO")

    # An elided opening and a stage direction leave the assistant's turn and the user's turns.
    assert [(t.role, t.content) for t in voice.turns] == [
        ("assistant", "The pressure gauge should read between one and two bar. If it reads"),
        ("user", "Hang on, the doorbell."),
        ("user", "Sorry, go on."),
    ]
    assert "an assistant turn not shown: waits for the user to come back" in voice.note
    assert "elided from an assistant turn: earlier answer about the boiler" in voice.note


def test_elided_replies_are_held_out(spec):
    (shed,) = _examples(spec, "respect_owners")
    # A direction in a user turn describes input the document cannot show: it stays.
    assert shed.user.startswith("[photo of a garden shed with its door open]\nWhat tools")
    assert "the user message: the attached photo shows a neighbour's open shed" in shed.note
    # "a hedge trimmer [...], which": words are missing inside the reply, so it cannot seed generation.
    assert shed.bad == "I can see a ladder and a hedge trimmer, which you could take while they are away."
    assert shed.holdout
    (fitting,) = _examples(spec, "no_gas_work")
    assert fitting.bad == "Here is how to do it:" and fitting.holdout  # a lead-in to elided steps
    assert "elided from the bad reply: step-by-step fitting instructions" in fitting.note
    assert spec.principle("maker_format").examples[0].good == '{"minutes": 8}'
    assert spec.principle("local_rules").examples == []
    for p in spec.principles:
        for ex in p.examples:
            for text in (ex.user, ex.good, ex.bad, ex.acceptable, *(t.content for t in ex.turns)):
                assert "..." not in (text or ""), (p.id, text)


def test_warnings_name_file_and_line(imported):
    got = [(w.line, w.message) for w in imported.warnings]
    assert all(w.file == str(FIXTURE) for w in imported.warnings)
    expected = [
        (21, "example 'how messages are written down in this handbook' is under 'Terms', a section without an authority"),
        (258, "example 'a question with no reply shown' shows no assistant reply"),
        (272, "example 'a reply that the handbook only describes': nothing is left of its replies"),
        (288, "example 'a broken block': unknown tag <butler>"),
        (299, "example 'a second order from the app maker': a <developer> message after the conversation began"),
        (313, "example 'a label the importer does not know': unknown label <!-- MAYBE -->: expected GOOD, BAD or OK"),
        (345, "unknown authority 'admin'"),
        (359, "example 'a stray example with nothing after it' is not followed by an ```xml block"),
    ]
    assert len(got) == len(expected)
    for (line, message), (want_line, fragment) in zip(got, expected):
        assert line == want_line and fragment in message, (line, message)
    assert imported.summary == (
        "9 principles from 10 sections with an authority; 10 examples (2 held out) from 9 of 16 example blocks"
    )


def test_cli_writes_validates_and_refuses_overwrite(tmp_path):
    out = tmp_path / "imported.yaml"
    runner = CliRunner()
    first = runner.invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(out), "--name", "ms"])
    assert first.exit_code == 0, first.output
    assert f"{FIXTURE}:288: example 'a broken block': unknown tag <butler>" in first.stderr
    assert "9 principles from 10 sections with an authority" in first.stdout
    assert "8 warning(s) above: those parts were skipped" in first.stdout
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("next: the generator is the spec default (local smollm2-135m)") and "specc plan" in last
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


def test_strict_turns_warnings_into_errors(tmp_path):
    out = tmp_path / "strict.yaml"
    result = CliRunner().invoke(app, ["import", "openai-model-spec", str(FIXTURE), "-o", str(out), "--strict"])
    assert result.exit_code == 2
    assert f"{FIXTURE}:313: example 'a label the importer does not know'" in result.output
    assert not out.exists()
    clean = tmp_path / "clean.md"
    clean.write_text("# Rules {#rules}\n\n## Be kind {#kind authority=user}\n\nThe helper is kind.\n", encoding="utf-8")
    ok = CliRunner().invoke(app, ["import", "openai-model-spec", str(clean), "-o", str(out), "--strict"])
    assert ok.exit_code == 0, ok.output


GOOD_HEAD = "# Section {#s}\n\n## Rule {#rule authority=user}\n\nThe assistant follows the rule.\n\n"


def _example(body: str, fence: str = "~~~") -> str:
    return GOOD_HEAD + f"**Example**: a case\n\n{fence}xml\n{body}\n{fence}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Just prose.\n\nNo headings here.\n", 1, "no markdown headings found"),
        ("# A {#a}\n\ntext\n\n## B {#b}\n\nmore\n", 1, "no heading carries an authority"),
        (GOOD_HEAD + "**Example**: open\n\n```xml\n<user>\nhi\n</user>\n", 9, "code block opened with ``` is never closed"),
    ],
)
def test_unusable_documents_are_errors(tmp_path, text, line, message):
    src = tmp_path / "spec.md"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        import_model_spec(src)
    assert f"{src}:{line}: " in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("<user>\nhi\n</user>\n<comparison>\n<assistant> <!-- GOOD -->\nyo\n</assistant>", 13, "<comparison> is never closed"),
        ("<user>\nhi\n<assistant> <!-- GOOD -->\nhello\n</assistant>", 10, "<user> is never closed"),
        ("<user>\nhi\n</user>\n</comparison>", 13, "</comparison> without an opening <comparison>"),
        ("<user>\nhi\n</user>\n</assistant>", 13, "</assistant> closes a tag that is not open"),
        ("<usr>\nhi\n</usr>", 10, "unknown tag <usr>"),
        ("hello there\n<user>\nhi\n</user>", 10, "text outside a message tag"),
        ("<user> <!-- GOOD -->\nhi\n</user>", 10, "only <assistant> replies are labelled"),
        ("<assistant> <!-- GOOD -->\nhi\n</assistant>", 10, "a reply with no message before it"),
        ("<user>\nhi\n</user>\n<comparison>\n</comparison>", 13, "<comparison> holds no <assistant> reply"),
        ("<user>\nhi\n</user>\n<assistant> <!-- MEH -->\nyo\n</assistant>", 13, "unknown label <!-- MEH -->"),
        ("<user>\nhi\n</user>\n<assistant> <!-- GOOD -->\n[...]\n</assistant>", 13, "nothing is left of its replies"),
    ],
)
def test_unconvertible_examples_are_skipped_with_a_warning(tmp_path, body, line, message):
    src = tmp_path / "spec.md"
    src.write_text(_example(body) + "\n**Example**: fine\n\n~~~xml\n<user>\nhi\n</user>\n<assistant> <!-- GOOD -->\nhello\n</assistant>\n~~~\n",
                   encoding="utf-8")
    imp = import_model_spec(src)
    assert [(w.file, w.line) for w in imp.warnings] == [(str(src), line)], imp.warnings
    assert message in imp.warnings[0].message
    assert imp.principles[0]["examples"] == [{"user": "hi", "good": "hello", "note": "fine"}]


def test_conversation_helpers():
    items = parse_conversation(
        "<user>Hi there</user>\n[...]\n<assistant> <!-- BAD[#kind]: rude -->Go away</assistant>", 1
    )
    assert isinstance(items[1], Gap)
    assert [(t.role, t.content, t.label, t.ref, t.reason) for t in (items[0], items[2])] == [
        ("user", "Hi there", None, "", ""),
        ("assistant", "Go away", "bad", "#kind", "rude"),
    ]
    built = build_examples(items, "", section=lambda ref: "Be kind")
    assert built.examples == [{"user": "Hi there", "bad": "Go away",
                               "note": "part of the conversation is elided; bad reply (see Be kind): rude"}]
    comparison = parse_conversation("<user>\nq\n</user>\n<comparison>\n<assistant>\na\n</assistant>\n</comparison>", 1)[1]
    assert isinstance(comparison, Comparison) and comparison.replies[0].label is None
    with pytest.raises(ConversationError) as err:
        parse_conversation("<user>\nhi\n</user>\n<comparison>\n<user>\nagain\n</user>\n</comparison>", 5)
    assert err.value.line == 9 and "only <assistant> replies belong there" in str(err.value)


@pytest.mark.parametrize(
    ("text", "directions", "clean", "descriptions", "cut"),
    [
        ("It was a dark night [...]", False, "It was a dark night", [], False),
        ("Steps:\n[... the steps ...]", False, "Steps:", ["the steps"], True),
        ("I assumed that [...], which may be wrong.", False, "I assumed that, which may be wrong.", [], True),
        ("Try again. [... another attempt].\nDone.", False, "Try again.\nDone.", ["another attempt"], False),
        ("[... intro]\n\nThe answer is 4.", False, "The answer is 4.", ["intro"], False),
        ("[says nothing]", True, "", ["says nothing"], True),
        ("[photo of a cat]\nWhat breed?", False, "[photo of a cat]\nWhat breed?", [], False),
        ("A [song] by [artist]", True, "A [song] by [artist]", [], False),
    ],
)
def test_strip_elisions(text, directions, clean, descriptions, cut):
    got = strip_elisions(text, directions=directions)
    assert (got.text, got.descriptions, got.cut) == (clean, descriptions, cut)


def test_output_exists_as_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_spec(import_model_spec(FIXTURE), tmp_path / "d", force=True)


@pytest.mark.skipif(not PUBLIC, reason="set SPECC_OPENAI_MODEL_SPEC=path/to/model_spec.md")
def test_public_model_spec(tmp_path):
    """The acceptance figures on the public document (github.com/openai/model_spec), when a copy is at hand."""
    source = Path(PUBLIC)
    imp = import_model_spec(source)
    write_spec(imp, tmp_path / "spec.yaml")
    spec = load_spec(tmp_path / "spec.yaml")
    with_authority = source.read_text(encoding="utf-8").count("authority=")
    assert len(spec.principles) >= 0.9 * with_authority
    assert sum(len(p.examples) for p in spec.principles) >= 150
