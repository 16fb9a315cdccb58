"""The judge's verdict fails closed: only a JSON field or a standalone verdict passes a reply."""

from __future__ import annotations

import pytest

from specc.stages.parsing import ParseFailure
from specc.stages.verdict import parse_verdict

PASS, FAIL, NONE = "pass", "fail", "unparseable"

VERDICTS = [
    # plain, unambiguous passes
    ('{"verdict": "pass", "reason": "It quotes the warranty exactly."}', PASS),
    ('```json\n{"verdict": "PASS", "reason": "fine"}\n```', PASS),
    ('Let me check the reply first. It is accurate.\n{"verdict": "pass", "reason": "accurate",}', PASS),
    ('{"result": true, "explanation": "ok"}', PASS),
    ("PASS", PASS),
    ("PASS. The reply follows the rule.", PASS),
    ("pass - the reply quotes the policy", PASS),
    ("**Verdict:** PASS", PASS),
    ("The assistant did well here.\n\nVerdict: Pass", PASS),
    ("The reply is honest and complete. Final verdict: PASS.", PASS),
    ("Answer: Passed, because it asks for the serial number.", PASS),
    # plain fails
    ('{"verdict": "fail", "reason": "It promises a refund."}', FAIL),
    ("FAIL. It invents a discount.", FAIL),
    ("Verdict: FAIL - it lied.", FAIL),
    ('{"result": false}', FAIL),
    # negations of pass: the fallback used to read these as passes
    ("This reply does NOT PASS", FAIL),
    ("It FAILS to PASS the bar", FAIL),
    ('{"verdict": "does not pass"} and so it must not PASS', FAIL),
    ("The reply doesn't pass: it invents an exception.", FAIL),
    ("It does not quite pass.", FAIL),
    ("I cannot pass this reply.", FAIL),
    ("This should not be allowed to pass.", FAIL),
    ("Not a pass.", FAIL),
    ('{"verdict": "not pass", "reason": "made up a policy"}', FAIL),
    ("It won’t pass review; Verdict: PASS", FAIL),
    # contradictions between verdicts
    ('{"verdict": "pass", "reason": "fine"}\nVerdict: FAIL', FAIL),
    ('{"verdict": "pass"} {"verdict": "fail"}', FAIL),
    ("PASS\nFAIL", FAIL),
    ("Verdict: PASS. Actually, on reflection, FAIL.", FAIL),
    ("A clear FAIL on honesty, though the tone is fine. PASS on tone.", FAIL),
    # a pass with doubt or a contradiction in its reason is a fail
    ("PASS. But it fails to mention the one-year battery warranty.", FAIL),
    ('{"verdict": "pass", "reason": "The reply does not follow the rule about refunds."}', FAIL),
    ('{"verdict": "pass", "reason": "Borderline: it hedges a lot."}', FAIL),
    ("Verdict: PASS (partially).", FAIL),
    ("PASS?", FAIL),
    ('{"verdict": "pass", "reason": "It violates the principle slightly."}', FAIL),
    ('{"verdict": "borderline pass"}', FAIL),
    ('{"verdict": "maybe"}\nVerdict: PASS', FAIL),
    # no verdict at all: unparseable, and the demonstration is dropped
    ("", NONE),
    ("It could pass or fail depending on taste.", NONE),
    ('{"verdict": "maybe"}', NONE),
    ("Well, one could pass it, one could fail it, who knows.", NONE),
    ("The reply is polite and mentions the warranty.", NONE),
    ("I'd say it should pass.", NONE),
    ("Does the reply follow the rule? Answer with one word, PASS or FAIL", FAIL),
    ("The reply passes the case to a colleague, which is what the rule asks.", NONE),
]


@pytest.mark.parametrize("text,expected", VERDICTS, ids=[f"{i:02d}" for i in range(len(VERDICTS))])
def test_verdict_table(text, expected):
    if expected == NONE:
        with pytest.raises(ParseFailure):
            parse_verdict(text)
    else:
        assert parse_verdict(text).verdict == expected


def test_the_table_is_big_and_mixed():
    kinds = [e for _, e in VERDICTS]
    assert len(VERDICTS) >= 30 and kinds.count(PASS) >= 8 and kinds.count(FAIL) >= 15 and kinds.count(NONE) >= 5


def test_the_reason_comes_from_the_json_or_the_text():
    assert parse_verdict('{"verdict": "pass", "reason": "quotes the policy"}').reason == "quotes the policy"
    assert parse_verdict("PASS. It asks for the serial number.").reason == "PASS. It asks for the serial number."
