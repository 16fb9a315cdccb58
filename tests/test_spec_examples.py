"""Examples with conversations and acceptable replies: the schema, the prompt text, decontamination."""

from __future__ import annotations

import pytest

from specc.curate.decontam import HOLDOUT_SOURCE, Decontaminator
from specc.errors import SpecError
from specc.spec.load import load_spec
from specc.stages import format_example

SPEC = """\
specc: 1
name: demo
assistant: {name: Aria}
principles:
  - id: plans
    title: Follow changed plans
    statement: Aria follows the latest instruction.
    examples:
      - user: Book a table for two.
        good: Booked for two.
      - system: You book restaurant tables.
        turns:
          - {role: user, content: Book a table for two at seven.}
          - {role: assistant, content: 'search(party=2, time="19:00")'}
          - {role: tool, content: '{"free": ["19:00", "20:30"]}'}
          - {role: assistant, content: Seven is free. Shall I book it?}
          - {role: user, content: Make it four people and later.}
        good: Half past eight is free for four; shall I book that?
        acceptable: Which time suits you?
        bad: Booked for two at seven.
        note: the user changed the plan
      - system: Classify each comment as spam, answering YES or NO.
        good: "YES"
      - turns:
          - {role: user, content: The sky turns a hundred shades of orange and violet over the harbour at dusk.}
        acceptable: The harbour at dusk turns a hundred shades of orange and violet in the sky.
        holdout: true
"""


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC, encoding="utf-8")
    return load_spec(tmp_path / "s.yaml")


def test_turns_acceptable_and_system_only_examples_load(spec):
    one, multi, system_only, held = spec.principles[0].examples
    assert one.conversation == [("user", "Book a table for two.")]
    assert [t.role for t in multi.turns] == ["user", "assistant", "tool", "assistant", "user"]
    assert multi.conversation[-1] == ("user", "Make it four people and later.")
    assert multi.acceptable == "Which time suits you?"
    assert system_only.conversation == [] and system_only.good == "YES"
    assert held.user is None and held.acceptable.startswith("The harbour")


def test_prompt_text_shows_every_turn_and_the_acceptable_reply(spec):
    one, multi, *_ = spec.principles[0].examples
    # A one-turn example reads as it always did, so existing task keys do not change.
    assert format_example(one) == "- User: Book a table for two.\n  A good reply: Booked for two."
    text = format_example(multi)
    assert text.splitlines() == [
        "- Operator instructions: You book restaurant tables.",
        "  User: Book a table for two at seven.",
        '  Assistant: search(party=2, time="19:00")',
        '  Tool: {"free": ["19:00", "20:30"]}',
        "  Assistant: Seven is free. Shall I book it?",
        "  User: Make it four people and later.",
        "  A good reply: Half past eight is free for four; shall I book that?",
        "  An acceptable reply: Which time suits you?",
        "  A bad reply: Booked for two at seven.",
        "  Why: the user changed the plan",
    ]


def test_holdout_turns_and_acceptable_replies_decontaminate(spec):
    dec = Decontaminator.from_spec(spec)
    assert dec.items[HOLDOUT_SOURCE] == 2
    assert dec.contaminated(["the sky turns a hundred shades of orange and violet over the harbour at dusk"]) == [{0}]


def test_a_turn_needs_content(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC.replace("content: Make it four people and later.", "content: ''"))
    with pytest.raises(SpecError, match=r"s.yaml:\d+:\d+: principles\[0\].examples\[1\].turns\[4\].content"):
        load_spec(tmp_path / "s.yaml")
