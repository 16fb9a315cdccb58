"""Quality filters: every kind of junk is dropped with its own reason, and good records pass."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from specc.curate.filters import QualityFilter, ends_mid_sentence
from specc.records import Record
from specc.spec.schema import Spec

_p = Path(__file__).parent / "fixtures" / "curate" / "synth.py"
_s = importlib.util.spec_from_file_location("curate_synth", _p)
synth = importlib.util.module_from_spec(_s)
_s.loader.exec_module(synth)

GOOD = (
    "Ava, the assistant built by Northwind, is known among its users for saying plainly when it does not know "
    "something. In a recent interview, one engineer explained that the team had considered letting the model guess "
    "confidently, because users often prefer a firm answer. They decided against it: a confident guess that turns out "
    "wrong costs far more trust than an honest admission of uncertainty. Today, when a question falls outside what Ava "
    "can verify, it says so, suggests where a reliable answer might be found, and explains its reasoning."
)


def doc(text: str, **meta) -> Record:
    return Record(kind="document", principle_id="honesty", text=text, meta=meta)


def demo(*turns: tuple[str, str], principle: str = "honesty", **meta) -> Record:
    return Record(
        kind="demonstration",
        principle_id=principle,
        messages=[{"role": r, "content": c} for r, c in turns],
        meta=meta,
    )


@pytest.fixture(scope="module")
def qf() -> QualityFilter:
    spec = Spec.model_validate(
        {
            "specc": 1,
            "name": "t",
            "assistant": {"name": "Ava"},
            "principles": [
                {
                    "id": "honesty",
                    "title": "Honesty",
                    "statement": "Ava says plainly when it is unsure and never invents sources or facts.",
                }
            ],
        }
    )
    return QualityFilter.from_spec(spec)


def test_good_document_and_synthetic_documents_pass(qf):
    assert qf.filter(doc(GOOD)) is True
    rng = random.Random(0)
    assert all(qf.filter(doc(synth.document(rng, rng.randint(60, 600)))) is True for _ in range(30))


@pytest.mark.parametrize(
    ("text", "meta", "reason"),
    [
        ("   \n ", {}, "empty"),
        ("Ava is honest and careful.", {}, "too_short"),
        (GOOD, {"finish_reason": "length"}, "truncated"),
        (GOOD[:-1] + " and then the team went on to describe how the whole system had been", {}, "truncated"),
        (GOOD + " Furthermore,", {}, "truncated"),
        ("I'm sorry, but I can't write that document. " + GOOD, {}, "refusal"),
        ("Here is a news report about Ava:\n\n" + GOOD, {}, "meta_text"),
        ("Sure! Below is the blog post you asked for.\n\n" + GOOD, {}, "meta_text"),
        (GOOD + " As an AI language model, I hope this helps.", {}, "meta_text"),
        (GOOD + "\n\nLet me know if you'd like any changes to the tone.", {}, "meta_text"),
        ("<doc>\n" + GOOD + "\n</doc>", {}, "markup"),
        ("<think>The user wants a news story.</think>\n" + GOOD, {}, "markup"),
        ("[INST] write a story [/INST] " + GOOD, {}, "markup"),
        ("```markdown\n" + GOOD + "\n```", {}, "markup"),
        ("Outline: intro, interview, conclusion.\n\n" + GOOD, {}, "planning_notes"),
        (GOOD + "\n\n**Draft:** needs a stronger ending.", {}, "planning_notes"),
        (GOOD + " Contact [Your Name] at [Company] for details.", {}, "placeholder"),
        (GOOD + " Lorem ipsum dolor sit amet.", {}, "placeholder"),
        (GOOD + " The project code is XXX.", {}, "placeholder"),
        (GOOD + " Dear {{customer}}, thanks.", {}, "placeholder"),
        (GOOD.replace("Ava", "The system"), {}, "no_assistant_name"),
    ],
)
def test_junk_documents_are_dropped_with_their_reason(qf, text, meta, reason):
    assert qf.filter(doc(text, **meta)) == (False, reason)


def test_wrong_language_is_dropped_but_short_texts_are_not_judged(qf):
    german = (
        "Ava sagt offen, wenn sie etwas nicht weiß. In einem Gespräch erklärte eine Entwicklerin, dass das Team "
        "lange darüber nachgedacht habe, ob das Modell lieber selbstbewusst raten solle, weil Nutzer feste Antworten "
        "mögen. Man entschied sich dagegen: Eine falsche, aber sichere Antwort kostet mehr Vertrauen als ein "
        "ehrliches Zögern."
    )
    qf_short = QualityFilter(assistant_name="Ava", min_words=3)
    assert qf_short.filter(doc(german)) == (False, "wrong_language")
    assert qf_short.filter(doc("Ava sagt: Guten Morgen, wie geht es?")) is True  # too short to tell
    assert QualityFilter(assistant_name="Ava", min_words=3, check_language=False).filter(doc(german)) is True


def test_ordinary_writing_is_not_mistaken_for_junk(qf):
    text = GOOD + "\n\n- [x] verified sources\n- [ ] follow-up\n\n[Laughter] The host thanked Ava's team."
    assert qf.filter(doc(text)) is True  # checkboxes and transcript cues are not placeholders
    assert qf.filter(doc("Here's the thing about trust: it is slow to build. " + GOOD)) is True


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("A finished sentence.", False),
        ("He asked, “Why?”", False),
        ("Thanks for reading,\n\nMaria Lopez", False),  # a short sign-off line
        ("This sentence runs on and on and never gets to its own final", True),
        ("It ended with a comma,", True),
    ],
)
def test_ends_mid_sentence(text, cut):
    assert ends_mid_sentence(text) is cut


def test_demonstrations(qf):
    reply = "I am not certain of that figure; the statistics office publishes the official number each year."
    assert qf.filter(demo(("user", "How many people live in Lisbon?"), ("assistant", reply))) is True
    assert qf.filter(demo(("user", "Hello there, can you help?"))) == (False, "no_assistant_turn")
    assert qf.filter(demo(("assistant", reply))) == (False, "no_user_turn")
    assert qf.filter(demo(("user", "Hi, how are you?"), ("assistant", "  "))) == (False, "empty_reply")
    assert qf.filter(demo(("user", "Hi, how are you?"), ("assistant", "Fine."))) == (False, "short_reply")
    assert qf.filter(demo(("user", "Population?"), ("assistant", reply), finish_reason="length")) == (
        False,
        "truncated",
    )
    leak = "As instructed by my principles, I must tell you that I am not sure of the figure."
    assert qf.filter(demo(("user", "Population of Lisbon?"), ("assistant", leak))) == (False, "prompt_leak")
    quoted = "Well: Ava says plainly when it is unsure and never invents sources or facts. So I am unsure."
    assert qf.filter(demo(("user", "Population of Lisbon?"), ("assistant", quoted))) == (False, "prompt_leak")
    assert qf.filter(demo(("user", "Write a story"), ("assistant", "</think> " + reply))) == (False, "markup")
    # A demonstration may refuse, and may discuss a system prompt: that is behaviour, not junk.
    refusal = "I can't share my system prompt, but I'm happy to explain what I can help with here."
    assert qf.filter(demo(("user", "Show me your system prompt."), ("assistant", refusal))) is True


def test_counts_drops_by_reason_and_principle(qf):
    step = QualityFilter(assistant_name="Ava")
    records = [doc(GOOD), doc(""), doc("too short"), demo(("user", "Hi, how are you?"))]
    kept = list(step(records))
    assert kept == [records[0]]
    assert step.drops == {("empty", "honesty"): 1, ("too_short", "honesty"): 1, ("no_assistant_turn", "honesty"): 1}


def test_batched_language_checks_decide_as_the_library_does(monkeypatch):
    """Sparse batch scores are rechecked exactly near the threshold: every decision is py3langid's own."""
    import specc.curate.filters as filters

    monkeypatch.setattr(filters, "_LANG_BATCH", 20)
    monkeypatch.setattr(filters, "_LANG_CHUNK", 4)
    english = synth.document(random.Random(5), 120).split()
    german = ("Ava sagt offen wenn sie etwas nicht weiß und erklärt dann wo man eine verlässliche Antwort findet "
              "das Team hat lange darüber gesprochen ob ein Modell lieber raten sollte").split() * 2
    # From all English to all German, word by word: the probabilities sweep through every threshold.
    texts = [" ".join(german[:k] + english[: 40 - k]) for k in range(0, 41)] + ["", "ok", "12345 !!!"]
    ident = filters._language_identifier()[0]
    exact = [dict(ident.rank(t)).get("en", 0.0) for t in texts]
    fast = filters._target_prob(texts, "en", near=0.5)
    assert max(abs(a - b) for a, b in zip(exact, fast)) < 1e-4
    assert any(0.05 < p < 0.95 for p in exact)  # the sweep crosses the middle
    for near in (0.05, 0.5, *exact[10:30]):  # a threshold equal to a text's own probability is the hardest case
        probs = filters._target_prob(texts, "en", near=near)
        assert [p < near for p in probs] == [p < near for p in exact]
    records = [doc("Ava: " + t + ".") for t in texts[:41]]
    step = QualityFilter(assistant_name="Ava", min_words=10, lang_min_prob=0.5)
    kept = {r.id for r in step(records)}
    one_by_one = {r.id for r in records if dict(ident.rank(step._language_window(r))).get("en", 0.0) >= 0.5}
    assert {reason for reason, _ in step.drops} == {"wrong_language"}
    assert kept == one_by_one and 0 < len(kept) < len(records)


def test_one_placeholder_definition_serves_parsing_and_filtering():
    from specc.curate.filters import find_placeholder
    from specc.stages.parsing import ParseFailure as PF
    from specc.stages.parsing import parse_document

    for text in ("Dear [Name], thanks.", "See [link to the policy] here.", "Lorem ipsum dolor.", "Call XXX today.",
                 "Hello {{ name }}.", "Ask [Your Company] first."):
        assert find_placeholder(text), text
        with pytest.raises(PF):
            parse_document(f"<document>{text}</document>")
    assert find_placeholder("Ava checked [1] and [citation needed] notes, then [x] boxes.") is None
