"""Why a principle × kind fell far short of its quota, and what to change: one line each.

A build whose documents or demonstrations, all principles together, keep under half of
their quota is not the corpus the spec asked for: it fails (``short_kinds``). Every
principle × kind under half of its own quota gets a line naming the drop reason that
took most of its records and the fix (``diagnose``), whether or not the build fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

# A quota under this share of its target makes the build fail (unless --allow-short).
SHORT_SHARE = 0.5

_LABEL = {"document": "documents", "demonstration": "demonstrations"}
# Which answers a reason is counted against: (stage or None for curated records, unit).
_STAGE_OF = {"doctypes": "doctypes", "ideas": "ideas", "scenarios": "scenarios", "judge": "judge", "internal": None}
_UNITS = {"doctypes": "document-type lists", "ideas": "idea lists", "scenarios": "scenario lists",
          "document": "documents", "reply": "replies", "judge": "replies"}


@dataclass(frozen=True)
class Short:
    """One principle × kind under ``SHORT_SHARE`` of its quota, and the likeliest cause."""

    principle_id: str
    kind: str
    target: int
    achieved: int
    reason: str  # step:reason, or "" when nothing was dropped
    count: int
    of: int  # what ``count`` is out of (0 when unknown)
    unit: str
    fix: str

    def line(self) -> str:
        share = f"{self.achieved:,} of {self.target:,} tokens"
        if not self.reason:
            return f"{self.principle_id} {_LABEL[self.kind]}: {share}: {self.fix}"
        on = f"on {self.count:,} of {self.of:,} {self.unit}" if self.of else f"on {self.count:,} {self.unit}"
        return f"{self.principle_id} {_LABEL[self.kind]}: {share}; {self.reason} {on}: {self.fix}"

    def to_dict(self) -> dict:
        return {**asdict(self), "line": self.line()}


@dataclass(frozen=True)
class Hints:
    """What the fixes depend on: who the assistant is and what model and prompts wrote the corpus."""

    assistant: str = "the assistant"
    embedded: bool = False  # the generator is the embedded small model
    small_prompts: bool = False  # the small-model prompt set is in use


def short_kinds(quotas: list[dict]) -> list[dict]:
    """The kinds whose tokens, over all principles, ended under ``SHORT_SHARE`` of their quota."""
    totals: dict[str, list[int]] = {}
    for q in quotas:
        t = totals.setdefault(q["kind"], [0, 0])
        t[0] += int(q["achieved"])
        t[1] += int(q["target"])
    return [{"kind": k, "achieved": a, "target": t, "line": f"{_LABEL[k]}: {a:,} of {t:,} tokens"}
            for k, (a, t) in totals.items() if t > 0 and a < SHORT_SHARE * t]


def fix_for(reason: str, kind: str, hints: Hints) -> str:
    """The change most likely to fill the quota, for the main drop ``reason``."""
    step, _, why = reason.partition(":")
    tokens = "documents.max_tokens" if kind == "document" else "demonstrations.max_tokens"
    capable = "use a capable model (--provider openai --model ...)"
    if hints.embedded and not hints.small_prompts:
        capable += ", or templates: small, the prompts the embedded model can follow"
    if step == "judge" and why == "unparseable":
        return "the judge model cannot grade; use a capable judge or set demonstrations.judge: false"
    if step == "judge":
        return ("the judge failed most replies; read them with `specc show OUT --dropped --reason judge`, " + capable
                + ", or set demonstrations.judge: false")
    if why in ("truncated",) and step in ("parse", "filter"):
        return f"answers hit the token limit; raise corpus.{tokens}"
    if step in ("doctypes", "ideas", "scenarios", "internal") or why in ("empty", "unparseable"):
        return f"the model's answers cannot be used; {capable}"
    if why == "too_short":
        return f"records are too short; lower corpus.filters.min_words or raise corpus.{tokens}"
    if why == "no_assistant_name":
        return (f"the documents never name {hints.assistant}; {capable}, "
                "or set corpus.filters.require_assistant_name: false")
    if why == "wrong_language":
        return "the text is not in the spec's language; set `language` right, or corpus.filters.check_language: false"
    if step == "dedup":
        return "the model repeats itself; raise generator.temperature, add genres or kinds, or " + capable[4:]
    if step == "decontam":
        return "records overlap the held-out evals; make the spec's examples differ from them"
    if step == "generate":
        return "model calls failed; check the endpoint (the build output lists the errors)"
    if step == "budget":
        return (f"each record is over twice the quota; raise corpus.budget.tokens or lower corpus.{tokens}")
    return f"the model writes what the filters drop ({why.replace('_', ' ')}); {capable}"


def _denominator(reason: str, kind: str, pid: str, answers: Counter, curated: Counter) -> tuple[int, str]:
    step = reason.split(":", 1)[0]
    if step in ("filter", "dedup", "decontam", "budget"):
        return curated.get((pid, kind), 0), _LABEL[kind]
    if step == "parse":
        stage = "document" if kind == "document" else "reply"
    elif step == "generate":
        stage = reason.split(":", 1)[1].rsplit("_", 1)[0]
        return 0, f"{_UNITS.get(stage, 'calls')} (failed calls)"
    else:
        stage = _STAGE_OF.get(step) or ("document" if kind == "document" else "reply")
    if reason.endswith((":duplicate", ":invalid")):  # counted per item, not per answer
        return 0, "ideas" if step == "ideas" else "scenarios"
    return answers.get((pid, stage), 0), _UNITS[stage]


def diagnose(
    quotas: list[dict],
    drops: dict[tuple[str, str], Counter],
    answers: Counter,
    curated: Counter,
    hints: Hints = Hints(),
) -> list[Short]:
    """Every principle × kind under ``SHORT_SHARE`` of its target, with its main drop reason and fix.

    ``quotas``: the budget step's report; ``drops``: reasons per (principle, kind), from
    generation and curation together; ``answers``: answers per (principle, stage);
    ``curated``: records that entered curation per (principle, kind).
    """
    out = []
    for q in quotas:
        target, achieved = int(q["target"]), int(q["achieved"])
        if target <= 0 or achieved >= SHORT_SHARE * target:
            continue
        pid, kind = q["principle_id"], q["kind"]
        reasons = Counter(drops.get((pid, kind)) or {})
        over = reasons.pop("budget:over_quota", 0)
        if not reasons and over:
            reasons["budget:over_quota"] = over
        if not reasons:
            # Nothing was dropped: the answers held fewer items than asked, or the top-up rounds ran out.
            what = "ideas" if kind == "document" else "scenarios"
            out.append(Short(pid, kind, target, achieved, "", 0, 0, "",
                             f"too few records were made (the model wrote fewer {what} than asked); raise "
                             "corpus.rounds, so top-up rounds fill what is missing"))
            continue
        reason, count = min(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        of, unit = _denominator(reason, kind, pid, answers, curated)
        out.append(Short(pid, kind, target, achieved, reason, count, max(of, count) if of else 0, unit,
                         fix_for(reason, kind, hints)))
    return out
