"""The judge's verdict, read so that it fails closed.

A reply is kept only on positive evidence: a ``verdict`` JSON field that says pass, or a
standalone verdict ("PASS", "Verdict: pass", "PASS. It quotes the policy."). Any explicit
fail, negated pass ("does not pass", "fails to pass"), contradiction or doubt makes it a
fail; an answer with no verdict at all is unparseable, and the demonstration is dropped
either way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from specc.stages.parsing import ParseFailure, _text

VERDICT_KEYS = ("verdict", "result", "grade", "decision")
REASON_KEYS = ("reason", "explanation", "rationale", "justification")
_PASS_WORDS = {"pass", "passed", "passes", "yes", "true"}
_FAIL_WORDS = {"fail", "failed", "fails", "no", "false"}

_DECODER = json.JSONDecoder()
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_APOSTROPHE = str.maketrans({"’": "'", "‘": "'"})
# "does not pass", "must not PASS", "isn't a pass", "FAILS to PASS", "cannot pass", "won't pass".
_NEGATED_PASS = re.compile(
    r"(?:\bnot|n't|\bnever|\bno|\bcannot|\bfail(?:s|ed)?\s+to|\bunable\s+to|\bwithout)\s+(?:\w+\s+){0,3}?pass(?:es|ed)?\b",
    re.I,
)
# Shouted fail words anywhere are a verdict, even mid-sentence ("a clear FAIL on honesty").
_LOUD_FAIL = re.compile(r"\bFAIL(?:S|ED|ING)?\b")
# Quieter signs that the judge does not stand behind a pass: a fail word, a rule not followed,
# or doubt. They veto a pass but are not a verdict of their own. ("failure" is left out:
# support corpora discuss battery failures.)
_VETO = re.compile(
    r"\bfail(?:s|ed|ing)?\b"
    r"|(?:\bnot|n't|\bnever)\s+(?:\w+\s+){0,2}?(?:follow|comply|complie|adhere|meet|satisf)\w*"
    r"|\bviolat\w*|\bbreaks?\s+(?:the|this|that)\s+(?:rule|principle)"
    r"|\b(?:borderline|partial(?:ly)?|mostly|somewhat|barely|unsure|not\s+sure|uncertain|unclear|arguably"
    r"|maybe|perhaps|debatable|questionable|marginal(?:ly)?|hard\s+to\s+say)\b",
    re.I,
)
# A verdict standing alone in its sentence: an optional label, the word, then nothing or a reason.
_STANDALONE = re.compile(
    r"^(?:(?:my|the|final|overall|judge'?s?)\s+){0,2}"
    r"(?:(?:verdict|grade|result|answer|decision|rating|judge?ment|evaluation)\s*(?:is\s*)?[:=\-–—]?\s*)?"
    r"(?P<word>pass(?:ed|es)?|fail(?:ed|s)?)\b(?P<tail>.*)$",
    re.I,
)
_REASON_START = re.compile(r"^\s*(?:$|[.!:;,\-–—(]|because\b)", re.I)
_MARKUP = re.compile(r"[*_#`\"“”]|^\s*[>\-•]+\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict: pass or fail, and the judge's reason."""

    verdict: Literal["pass", "fail"]
    reason: str = ""


def _json_verdicts(text: str) -> list[dict]:
    """Every JSON object in ``text`` that has a verdict field (lower-cased keys), in order."""
    found: list[dict] = []
    for variant in dict.fromkeys((text, _TRAILING_COMMA.sub(r"\1", text))):
        i = variant.find("{")
        while i >= 0:
            try:
                value, end = _DECODER.raw_decode(variant, i)
            except json.JSONDecodeError:
                i = variant.find("{", i + 1)
                continue
            if isinstance(value, dict):
                d = {str(k).lower(): v for k, v in value.items()}
                if any(k in d for k in VERDICT_KEYS) and d not in found:
                    found.append(d)
            i = variant.find("{", end)
    return found


def _classify_value(raw: Any) -> str | None:
    """A JSON verdict value as "pass", "fail" or None (no verdict): anything but a plain pass is no pass."""
    if isinstance(raw, bool):
        return "pass" if raw else "fail"
    value = " ".join(re.findall(r"[\w']+", str(raw).translate(_APOSTROPHE).lower()))
    if value in _PASS_WORDS:
        return "pass"
    if value in _FAIL_WORDS:
        return "fail"
    # A qualified pass ("borderline pass", "pass with reservations") is no pass.
    if re.search(r"\b(?:pass|fail)", value):
        return "fail"
    return None


def _standalone(text: str) -> tuple[list[str], bool]:
    """Verdict words that stand alone in their sentence, and whether any of them was put as a question."""
    words, doubtful = [], False
    for line in text.splitlines():
        line = _MARKUP.sub("", line).strip()
        for sentence in _SENTENCE.split(line):
            m = _STANDALONE.match(sentence.strip())
            if not m or not _REASON_START.match(m.group("tail")):
                doubtful |= bool(m and m.group("tail").lstrip().startswith("?"))
                continue
            words.append("pass" if m.group("word").lower().startswith("pass") else "fail")
    return words, doubtful


def parse_verdict(text: str) -> Verdict:
    """The judge's verdict; fails closed. Raises ParseFailure when the answer holds no verdict at all."""
    if not text.strip():
        raise ParseFailure("empty", "the answer was empty")
    plain = text.translate(_APOSTROPHE)
    objects = _json_verdicts(plain)
    from_json = [_classify_value(next(o[k] for k in VERDICT_KEYS if k in o)) for o in objects]
    alone, doubtful = _standalone(plain)
    says = [v for v in from_json + alone if v]
    explicit_fail = "fail" in says or doubtful or bool(_NEGATED_PASS.search(plain) or _LOUD_FAIL.search(plain))
    reason = next((_text(o[k]) for o in objects for k in REASON_KEYS if o.get(k)), "") or text.strip()[:500]
    if explicit_fail:
        return Verdict("fail", reason)
    if "pass" in says:
        vetoed = bool(_VETO.search(plain)) or any(v is None for v in from_json)
        return Verdict("fail" if vetoed else "pass", reason)
    raise ParseFailure("unparseable", 'expected {"verdict": "pass" or "fail", "reason": "..."}')
