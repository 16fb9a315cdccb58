"""Parsing the messy output of small models: every shape survives or fails with a counted reason."""

from __future__ import annotations

import json

import pytest

from specc.stages.parsing import (
    ParseFailure,
    find_json,
    parse_document,
    parse_ideas,
    parse_reply,
    parse_scenarios,
)

IDEAS = [
    {"title": "Why Nova says it is unsure", "angle": "calibration", "audience": "students", "setting": "a blog"},
    {"title": "Trust and the honest machine", "angle": "trust", "audience": "parents", "setting": "a newspaper"},
]


def titles(ideas) -> list[str]:
    return [i.title for i in ideas]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"ideas": IDEAS}),
        "```json\n" + json.dumps({"ideas": IDEAS}, indent=2) + "\n```",
        "Sure! Here are two ideas:\n" + json.dumps(IDEAS) + "\nLet me know if you want more.",
        '{"ideas": [{"title": "Why Nova says it is unsure", "angle": "calibration",},'
        ' {"title": "Trust and the honest machine",},]}',
        "```\n" + json.dumps({"documents": IDEAS}) + "\n```\nThese should work.",
    ],
    ids=["plain", "fenced", "prose-around-list", "trailing-commas", "other-key"],
)
def test_ideas_from_json_shapes(text):
    ideas, truncated, invalid = parse_ideas(text)
    assert titles(ideas) == [i["title"] for i in IDEAS]
    assert not truncated and invalid == 0


def test_single_idea_object_is_a_list_of_one():
    ideas, _, _ = parse_ideas(json.dumps(IDEAS[0]))
    assert titles(ideas) == [IDEAS[0]["title"]]


def test_numbered_keys_object_is_a_list():
    ideas, _, _ = parse_ideas(json.dumps({"idea1": IDEAS[0], "idea2": IDEAS[1]}))
    assert titles(ideas) == [i["title"] for i in IDEAS]


def test_truncated_list_keeps_complete_items():
    text = json.dumps({"ideas": IDEAS})
    cut = text[: text.rindex('"setting"') + 5]  # inside the last item
    ideas, truncated, _ = parse_ideas(cut)
    assert truncated
    assert titles(ideas) == [IDEAS[0]["title"]]


def test_numbered_list_fallback():
    text = (
        "Here are my ideas:\n"
        "1. **Title:** The Honest Bot\n   **Angle:** why it admits errors\n   **Audience:** teachers\n"
        "2. Second opinions - a forum post about trust\n"
        "- A third idea: in bullet form\n"
    )
    ideas, truncated, _ = parse_ideas(text)
    assert titles(ideas) == ["The Honest Bot", "Second opinions", "A third idea"]
    assert ideas[0].audience == "teachers" and ideas[1].angle == "a forum post about trust"


def test_invalid_items_are_counted_not_fatal():
    ideas, _, invalid = parse_ideas(json.dumps({"ideas": [{"title": "ok title"}, {"angle": "no title"}, 7]}))
    assert titles(ideas) == ["ok title"] and invalid == 2


@pytest.mark.parametrize("text", ["", "   \n", "I cannot help with that.", '{"text": "no ideas here"}'])
def test_unusable_ideas_raise(text):
    with pytest.raises(ParseFailure) as e:
        parse_ideas(text)
    assert e.value.reason in ("empty", "unparseable")


def test_find_json_skips_stray_brackets():
    value, truncated = find_json('Note [1]: see below {"verdict": "pass"}', lambda v: isinstance(v, dict))
    assert value == {"verdict": "pass"} and not truncated


def test_scenarios_shapes_and_normalisation():
    text = "```json\n" + json.dumps({"scenarios": [
        {"system": "You are the help desk of Acme.", "turns": [{"role": "user", "content": "Can you lie for me?"}]},
        {"system": "null", "messages": [{"role": "human", "content": "hi"}, {"role": "ai", "content": "hello"},
                                        {"role": "user", "content": "tell me a secret"},
                                        {"role": "assistant", "content": "the writer answered itself"}]},
        {"user": "Just a plain question?"},
        "A bare string question?",
    ]}) + "\n```"
    scenarios, truncated, invalid = parse_scenarios(text, "direct")
    assert len(scenarios) == 4 and invalid == 0 and not truncated
    assert scenarios[0].system == "You are the help desk of Acme."
    assert scenarios[1].system is None
    assert [t.role for t in scenarios[1].turns] == ["user", "assistant", "user"]  # trailing reply dropped
    assert scenarios[2].turns[0].content == "Just a plain question?"
    assert scenarios[0].messages()[0] == {"role": "system", "content": "You are the help desk of Acme."}


def test_multi_turn_needs_earlier_turns():
    one = {"turns": [{"role": "user", "content": "only one turn"}]}
    three = {"turns": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}]}
    scenarios, _, invalid = parse_scenarios(json.dumps([one, three]), "multi_turn")
    assert len(scenarios) == 1 and invalid == 1
    with pytest.raises(ParseFailure):
        parse_scenarios(json.dumps([one]), "multi_turn")


def test_scenarios_bulleted_fallback():
    scenarios, _, _ = parse_scenarios('1. "Is my essay perfect?"\n2. User: Can you check my maths?\n', "direct")
    assert [s.turns[0].content for s in scenarios] == ["Is my essay perfect?", "Can you check my maths?"]


def test_document_between_markers():
    text = "<plan>\n- open with a scene\n</plan>\n<document>\nHere is the article:\n\nNova answered.\n</document>\nI hope this helps!"
    assert parse_document(text) == "Nova answered."


def test_document_without_markers_loses_scaffolding():
    text = "Sure! Here is the FAQ you asked for:\n\nQ: Does Nova guess?\nA: No.\n\nLet me know if you need changes."
    assert parse_document(text) == "Q: Does Nova guess?\nA: No."


def test_document_unclosed_marker_and_fence():
    assert parse_document("<document>\n```\nBody of the post.\n```") == "Body of the post."


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<plan>only a plan, never the document</plan>", "empty"),
        ("<document>Dear [Your Name], thanks.</document>", "placeholder"),
        ("<document>Written by [Author] on [Date].</document>", "placeholder"),
    ],
)
def test_document_failures(text, reason):
    with pytest.raises(ParseFailure) as e:
        parse_document(text)
    assert e.value.reason == reason


def test_truncated_document_is_never_kept():
    with pytest.raises(ParseFailure) as e:
        parse_document("<document>A long text that was cut", "length")
    assert e.value.reason == "truncated"


def test_reply_label_and_empty():
    assert parse_reply("Nova: Happy to help.", name="Nova") == "Happy to help."
    assert parse_reply("**Assistant:** Sure thing.") == "Sure thing."
    assert parse_reply("Note: this is content.") == "Note: this is content."
    with pytest.raises(ParseFailure):
        parse_reply("  ")


def test_unmarked_short_lines_are_a_last_resort_for_tiny_models():
    from specc.stages.parsing import parse_ideas, parse_scenarios

    ideas, _, _ = parse_ideas("Why Tess quotes the warranty word for word\n\nA day on the support desk")
    assert [i.title for i in ideas] == ["Why Tess quotes the warranty word for word", "A day on the support desk"]
    scenarios, _, _ = parse_scenarios("Sure thing:\nIs my battery covered after 14 months?\nThat is all.", "direct")
    assert [s.turns[-1].content for s in scenarios] == ["Is my battery covered after 14 months?"]
    with pytest.raises(ParseFailure):
        parse_scenarios("I cannot think of anything to write here at all.", "direct")
    framed, _, _ = parse_scenarios('1. A user could ask: "Is my battery covered?"\n2. Question 2: Can I return it?', "direct")
    assert [s.turns[-1].content for s in framed] == ["Is my battery covered?", "Can I return it?"]
    answered, _, _ = parse_scenarios("1. **How do I fix the brakes?**\n   Answer: use this code:\n```python\nfix()\n```", "direct")
    assert [s.turns[-1].content for s in answered] == ["How do I fix the brakes?"]


def test_a_turn_with_no_words_is_not_a_scenario():
    from specc.stages.parsing import parse_scenarios

    scenarios, _, invalid = parse_scenarios("1. 2.\n2. Can I return my bike after 40 days?", "direct")
    assert [s.turns[-1].content for s in scenarios] == ["Can I return my bike after 40 days?"] and invalid == 1


def test_the_document_markers_are_found_as_the_plain_lazy_pattern_finds_them():
    import random
    import re

    from specc.stages.parsing import _DOC

    lazy = re.compile(r"<document>(.*?)(?:</document>|\Z)", re.S | re.I)
    texts = ["", "<document>", "<DOCUMENT>a</Document>b<document>cc", "x<document>a<b</document><document>long</document>",
             "<document>a</document", "<document><</document>", "<document>a<document>b</document>",
             "<plan>p</plan>\n<Document>\n\nİ ß <br> </documents> </DOCUMENT> after"]
    rng = random.Random(3)
    pieces = ["<document>", "</document>", "<", "</DOCUMENT>", "<doc", "</document", "word ", "\n", "İ", "</"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30))) for _ in range(2000)]
    for t in texts:
        assert _DOC.findall(t) == lazy.findall(t), t
