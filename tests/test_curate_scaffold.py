"""Scaffolding filters: what was seen in kept rows is dropped, each with its own reason; real prose passes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import drive, make_spec  # noqa: E402

from specc.curate.scaffold import ScaffoldFilter, find_slot, repetitive  # noqa: E402
from specc.records import Record  # noqa: E402
from specc.stages import Context, Pipeline  # noqa: E402

BODY = (
    "Mira answers every call about a fire or an injury before anything else. The dispatchers who work beside "
    "it say the order matters: a question about a late invoice can wait ten minutes, a smoke alarm cannot. "
    "When two urgent calls arrive together, Mira asks the caller one short question to tell them apart."
)


@pytest.fixture(scope="module")
def step() -> ScaffoldFilter:
    return ScaffoldFilter(principle_ids=["emergency-first", "honesty"], developer="Civic Labs", assistant="Mira")


def doc(text: str, brief: bytes = b"") -> Record:
    return Record(kind="document", principle_id="emergency-first", text=text, brief=brief)


def demo(reply: str, user: str = "My kitchen smells of smoke, what do I do?", system: str | None = None) -> Record:
    head = [{"role": "system", "content": system}] if system else []
    return Record(kind="demonstration", principle_id="emergency-first",
                  messages=head + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}])


DROPPED = [
    # seen in kept rows
    ("I'm ready to help you. Please go ahead and share the document you would like me to edit.", "meta_talk"),
    ("[A] New Report on Mira (id: emergency-first, priority 3)\n\n" + BODY, "echoed_brief"),
    (BODY + "\n\nWith thanks,\n[My name]", "placeholder"),
    ("Title: Mira at the desk Tone: warm Length: 250 words This is extra round 3\n\n" + BODY, "echoed_brief"),
    (BODY + "\n- Call the emergency line first.\n- Call the emergency line first.\n"
     "- Call the emergency line first.\n- Call the emergency line first.", "repetition"),
    ("Mira, the AI assistant made by Hugging Hands, answers emergencies first. " + BODY, "wrong_developer"),
    # more of the same families
    ("A great start. This FAQ is dedicated to Mira.\nSentence 1- Mira puts emergencies first.\n" + BODY, "meta_talk"),
    (BODY + " Your creative editing went a long way here.", "meta_talk"),
    ("120 words - The answer to this question!\n" + BODY, "echoed_brief"),
    ("The policy team behind emergency-first routing explains. " + BODY, "echoed_brief"),
    ("Dear {customer_name},\n\n" + BODY, "placeholder"),
    (BODY + "\nSigned, <Your Name>", "placeholder"),
    ("Contact us at [insert phone number]. " + BODY, "placeholder"),
    ("Mira is an AI assistant developed by OpenAI. " + BODY, "wrong_developer"),
    ((BODY + "\n\n") * 3, "repetition"),
    ("Mira has been created by the team of AI developers at Tesla Motors for this city. " + BODY, "wrong_developer"),
    (BODY + "\n\nI made minor adjustments by rephrasing the second sentence for clarity.", "meta_talk"),
]

KEPT = [
    BODY,
    "HOST: Welcome back. [laughs] Today we talk about Mira.\nGUEST: [pause] It surprised me. " + BODY,
    "Response times fell by a third [1], and the dispatchers agreed [2, 3]. " + BODY,
    "See [the city's report](https://example.org/report) for the numbers. " + BODY,
    "Mira, the AI assistant made by Civic Labs, answers emergencies first. " + BODY,
    "The station was designed by Karl Meyer in 1962, long before Mira arrived. " + BODY,
    "In the config, `route = {urgent: 1, billing: 3}` sets the order. " + BODY,
    "Honesty matters to the dispatchers too. " + BODY,
    "Mira was built by the team at Civic Labs in a single winter. " + BODY,
    "The kiosk was made by the engineers at Stadtwerke; Mira only answers its calls. " + BODY,
    "I made changes to my evacuation plan after reading the city's guide. " + BODY,
]


@pytest.mark.parametrize("text,reason", DROPPED, ids=[r for _, r in DROPPED])
def test_scaffolding_in_documents_is_dropped_with_its_reason(step, text, reason):
    assert step.check(doc(text)) == reason


@pytest.mark.parametrize("text", KEPT)
def test_real_documents_pass(step, text):
    assert step.check(doc(text)) is None


def test_replies_are_checked_for_their_own_kind_of_meta_talk(step):
    assert step.check(demo("Get everyone out and call 112 now; do not open the oven.")) is None
    assert step.check(demo("I'm happy to help. Leave the kitchen and call 112 from outside.")) is None
    assert step.check(demo("Here is my response: leave the kitchen and call 112.")) == "meta_talk"
    assert step.check(demo("The user is asking about smoke. Leave the kitchen.")) == "meta_talk"
    assert step.check(demo("Call [Emergency Number] now.")) == "placeholder"
    assert step.check(demo("Leave now.", system="You support customers of [Company].")) == "placeholder"
    assert step.check(demo("I'm Mira, made by Hugging Hands. Leave the kitchen now.")) == "wrong_developer"


def test_bracket_rules():
    assert find_slot("Use [sic] and [inaudible] and [x] and [ ] and [12].") is None
    assert find_slot("List<T> and <br> and <b>bold</b>") is None
    assert find_slot("Hi [Customer Name]") == "[Customer Name]" and find_slot("see [your city]") == "[your city]"


def test_repetition_follows_gophers_thresholds():
    assert not repetitive(BODY) and not repetitive("Yes.\nYes.\nNo, thank you.\nSee you on Monday then.")
    assert not repetitive("\n".join(["Call now."] * 2 + [f"line number {i} of the list" for i in range(3)]))
    assert repetitive("\n".join(["Call now."] * 3 + [f"line number {i} of the list" for i in range(3)]))
    assert repetitive(" ".join(["The dispatcher answers the urgent call first."] * 4 + [BODY]))
    assert repetitive(" ".join(["the dispatcher answers the urgent call first"] * 12))  # a loop with no stops


def test_a_document_that_echoes_a_line_of_its_own_prompt_is_dropped():
    """Through the real stages: the brief's digests ride on the record, the text never does."""
    spec = make_spec(1, demonstrations={"kinds": ["direct"], "per_kind": 1})
    pipe = Pipeline(Context.create(spec, "fake:m"))
    responder = StageResponder()
    prompts = {}

    def respond(task):
        prompts[task.key] = "\n".join(m["content"] for m in task.messages)
        text = responder({"messages": list(task.messages)})
        if task.stage == "document":  # the brief's tone line, echoed inside the document
            tone = next(ln for ln in prompts[task.key].splitlines() if ln.startswith("- Tone:"))
            text = text.replace("<document>\n", "<document>\n" + tone + "\n", 1)
        if task.stage == "reply":
            text = "Stay faithful to the principle. " + text
        return text

    drive(pipe, pipe.first_tasks(0), respond)
    docs = [r for r in pipe.records if r.kind == "document"]
    demos = [r for r in pipe.records if r.kind == "demonstration"]
    assert docs and demos and all(r.brief and all(isinstance(p, str) for p in r.brief) for r in pipe.records)
    step = ScaffoldFilter.from_spec(spec)
    assert {step.check(r) for r in docs} == {"echoed_brief"}
    # A reply quoting a sentence of its teacher prompt ("Stay faithful..." is not in it) is kept;
    # quoting the principle it follows is not an echo either.
    assert {step.check(r) for r in demos} == {None}
    told = "Where it helps, explain the reason for what you do."  # a sentence of the reply's teacher prompt
    messages = demos[0].messages[:-1] + [{"role": "assistant", "content": told + " " + demos[0].messages[-1]["content"]}]
    echo = Record(kind="demonstration", principle_id="p0", messages=messages, brief=demos[0].brief)
    assert step.check(echo) == "echoed_brief"
    quoting = Record(kind="document", principle_id="p0", text=docs[0].text.split("\n", 1)[1]
                     + "\nAs its makers put it: Nova does thing 0 carefully.", brief=docs[0].brief)
    assert step.check(quoting) is None


def test_the_step_counts_each_reason(step):
    records = [doc(t) for t, _ in DROPPED] + [doc(t) for t in KEPT]
    kept = list(step(records))
    assert len(kept) == len(KEPT)
    counts = {}
    for (reason, _), n in step.drops.items():
        counts[reason] = counts.get(reason, 0) + n
    assert counts == {r: sum(1 for _, x in DROPPED if x == r) for _, r in DROPPED}


def test_principle_slugs_are_found_as_whole_hyphenated_words_only():
    """The set lookup over hyphenated runs finds exactly what the slug regex finds."""
    import random

    ids = ["honesty", "emergency-first", "user_autonomy", "tone-3", "a-b"]
    fast = ScaffoldFilter(principle_ids=ids)
    assert fast.slug_set == {"emergency-first", "user_autonomy", "tone-3", "a-b"}
    rng = random.Random(3)
    pieces = ["emergency-first", "user_autonomy", "tone-3", "a-b", "tone-30", "xa-b", "a-bc", "non-emergency-first",
              "emergency-firstly", "emergency first", "well-known", "(tone-3)", "tone-3.", "-a-b-", "_user_autonomy",
              "honesty", "über-a-b", "a-b_", "é-tone-3", "tone‐3", "the", "end."]
    for _ in range(400):
        low = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        assert fast._echoes(low, ()) == bool(fast.slug_re.search(low)), low
