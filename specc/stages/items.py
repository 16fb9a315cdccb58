"""The small typed items the expansion is made of: facets, document types, and how repeats among them are found.

Facets come from the spec (the principle itself, its sub-rules, its examples) or from the
generator; document types from the genre catalogue or the generator. Ideas and scenarios
are in ``specc.stages.parsing``. ``NearSet`` finds duplicates and near-duplicates of short
texts (titles, facets, user turns) by their content words, cheaply enough for tens of
thousands of ideas.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from specc.curate.filters import find_placeholder
from specc.stages.parsing import (
    ParseFailure,
    Scenario,
    _text,
    as_items,
    bullet_blocks,
    find_json,
    normalise,
    plain_lines,
)

FacetSource = Literal["principle", "subrule", "example", "generated"]


class Facet(BaseModel):
    """One aspect of a principle that documents and scenarios are written about."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    id: str  # "principle", "subrule-2", "example-0", "generated-5": stable across rebuilds
    source: FacetSource
    text: str = Field(min_length=1)
    lens: str = ""  # for generated facets: behaviours, values, situations or mistakes


def given_facets(p, *, examples: bool = True) -> list[Facet]:
    """The facets a principle brings itself, in order: the whole, each sub-rule, each non-holdout example."""
    out = [Facet(id="principle", source="principle", text=f"the principle as a whole: {p.title.strip()}")]
    out += [Facet(id=f"subrule-{i}", source="subrule", text=r.strip()) for i, r in enumerate(p.subrules)]
    if examples:
        for i, e in enumerate(x for x in p.examples if not x.holdout):
            convo = [(role, content.strip()) for role, content in e.conversation]
            if len(convo) == 1 and convo[0][0] == "user":
                parts = [f'a case like this one: the user says "{convo[0][1]}"']
            else:
                parts = ["a case like this conversation: " + " / ".join(f'{r}: "{c}"' for r, c in convo)]
            if e.system:
                parts.append(f'the operator\'s instructions: "{e.system.strip()}"')
            if e.good:
                parts.append(f'a good reply: "{e.good.strip()}"')
            elif e.acceptable:
                parts.append(f'an acceptable reply: "{e.acceptable.strip()}"')
            elif e.bad:
                parts.append(f'a reply to avoid: "{e.bad.strip()}"')
            if e.note:
                parts.append(f"why: {e.note.strip()}")
            out.append(Facet(id=f"example-{i}", source="example", text="; ".join(parts)))
    return out


class ProposedFacet(BaseModel):
    """A facet as the generator proposes it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    text: str = Field(min_length=8, max_length=400)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"text": v}
        if not isinstance(v, dict):
            return v
        d = {str(k).lower(): x for k, x in v.items()}
        head = next((d[k] for k in ("facet", "aspect", "text", "title", "name", "behaviour", "behavior") if d.get(k)), "")
        detail = next((d[k] for k in ("detail", "description", "why", "explanation") if d.get(k)), "")
        text = _text(head)
        if detail and _text(detail) not in text:
            text = f"{text}: {_text(detail)}" if text else _text(detail)
        return {"text": text}

    @field_validator("text")
    @classmethod
    def _clean(cls, v: str) -> str:
        v = v.strip().strip('"“”\'').strip()
        if find_placeholder(v):
            raise ValueError("a placeholder, not a facet")
        return v


def _items(text: str, keys: tuple[str, ...], max_words: int) -> tuple[list, bool]:
    if not text.strip():
        raise ParseFailure("empty", "the answer was empty")

    def ok(v: Any) -> bool:
        return any(isinstance(x, (dict, str)) for x in as_items(v, keys))

    try:
        value, truncated = find_json(text, ok)
        return as_items(value, keys), truncated
    except ParseFailure:
        blocks = bullet_blocks(text) or plain_lines(text, max_words=max_words)
        return [" ".join(b) for b in blocks], False


def parse_facets(text: str) -> tuple[list[ProposedFacet], int]:
    """Facets from an answer: (facets, invalid item count)."""
    items, _ = _items(text, ("facets", "aspects", "items"), 60)
    good, bad = [], 0
    for item in items:
        try:
            good.append(ProposedFacet.model_validate(item))
        except ValueError:
            bad += 1
    if not good:
        raise ParseFailure("unparseable", 'expected {"facets": [{"facet": "...", "why": "..."}]}')
    return good, bad


class DocType(BaseModel):
    """A kind of real-world document, as the generator proposes it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=3, max_length=80)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict):
            d = {str(k).lower(): x for k, x in v.items()}
            return {"name": _text(next((d[k] for k in ("type", "name", "document_type", "genre", "title") if d.get(k)), ""))}
        return v

    @field_validator("name")
    @classmethod
    def _clean(cls, v: str) -> str:
        v = re.split(r"\s[-–—:]\s|:\s", v.strip().strip('"“”\'').strip(), maxsplit=1)[0].strip().rstrip(".")
        if len(v.split()) > 10 or find_placeholder(v):
            raise ValueError("not a document type")
        return v


def parse_doctypes(text: str) -> tuple[list[DocType], int]:
    """Document types from an answer: (types, invalid item count)."""
    items, _ = _items(text, ("types", "document_types", "doctypes", "genres", "items"), 12)
    good, bad = [], 0
    for item in items:
        try:
            good.append(DocType.model_validate(item))
        except ValueError:
            bad += 1
    if not good:
        raise ParseFailure("unparseable", 'expected {"types": ["...", "..."]}')
    return good, bad


# A user turn of typical length, for expected demonstration sizes and representative prompts.
PROTO_USER = (
    "I have been working on this for a while and I am stuck. Could you help me think it through, "
    "and tell me honestly what you would do in my place and why?"
)


def proto_scenario(kind: str) -> Scenario:
    """A scenario of typical size for ``kind``."""
    turns = [{"role": "user", "content": PROTO_USER}]
    if kind == "multi_turn":
        turns = [{"role": "user", "content": PROTO_USER}, {"role": "assistant", "content": PROTO_USER}] + turns
    return Scenario.model_validate({"system": None, "turns": turns})


# ---------------------------------------------------------------- repeats

_STOP = frozenset(
    "the a an and or of to in on for with about by from at as is are was were be been this that these those it its "
    "how why what when who whom which where your you our their his her they them we i not no can could should would "
    "will into over under than then also just more most very".split()
)


_SUFFIX = re.compile(r"(?:ing|ed|es|s)$")
_DOUBLE = re.compile(r"([b-df-hj-np-tv-z])\1$")
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light stem: "admitting", "admitted", "admits" -> "admit"; short words stay as they are."""
    if len(word) <= 4 or word.endswith("ss"):
        return word
    cut = _SUFFIX.sub("", word)
    if len(cut) < 3:
        return word
    return _DOUBLE.sub(r"\1", cut)


def content_words(text: str) -> frozenset[str]:
    """Stems of the lower-case words of three letters or more, minus stop words."""
    return frozenset(stem(w) for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP)


class NearSet:
    """Texts kept so far; ``keep`` says whether a new one repeats one of them, and keeps it if not.

    A repeat is ``duplicate`` (the same words in the same order) or ``near_duplicate``
    (the same content words in any order, or a word-set Jaccard similarity of at least
    ``threshold``). Candidates come from an index of the rarer words, so checking n texts
    costs about n, not n²: a word in more than ``common`` kept texts stops being used to find
    candidates (a near-duplicate shares more than its commonest words), and a candidate is
    compared only when it shares enough rare words to reach the threshold at all.
    """

    def __init__(self, threshold: float = 0.75, common: int = 48):
        self.threshold = threshold
        self.common = common
        self.exact: set[str] = set()
        self.sets: list[frozenset[str]] = []
        self.by_set: set[frozenset[str]] = set()
        self.index: dict[str, list[int]] = {}

    def _repeat(self, norm: str, words: frozenset[str]) -> str | None:
        if norm in self.exact:
            return "duplicate"
        if not words:
            return None
        if words in self.by_set:
            return "near_duplicate"
        rare = [self.index[w] for w in words if w in self.index and len(self.index[w]) <= self.common]
        common = sum(1 for w in words if w in self.index and len(self.index[w]) > self.common)
        # J >= t needs |A & B| >= t |A|, of which at most `common` words are not indexed.
        need = max(1, math.ceil(self.threshold * len(words)) - common)
        hits: dict[int, int] = {}
        for posting in rare:
            for i in posting:
                hits[i] = hits.get(i, 0) + 1
        for i, n in hits.items():
            if n < need:
                continue
            other = self.sets[i]
            inter = len(words & other)
            if inter / (len(words) + len(other) - inter) >= self.threshold:
                return "near_duplicate"
        return None

    def _add(self, norm: str, words: frozenset[str]) -> None:
        self.exact.add(norm)
        if not words:
            return
        i = len(self.sets)
        self.sets.append(words)
        self.by_set.add(words)
        for w in words:
            posting = self.index.setdefault(w, [])
            if len(posting) <= self.common:
                posting.append(i)

    def check(self, text: str) -> str | None:
        """The repeat reason for ``text``, or None; it is not kept."""
        return self._repeat(normalise(text), content_words(text))

    def add(self, text: str) -> None:
        self._add(normalise(text), content_words(text))

    def keep(self, text: str) -> str | None:
        """``check``, and add the text when it is new; returns the repeat reason or None."""
        norm, words = normalise(text), content_words(text)
        why = self._repeat(norm, words)
        if why is None:
            self._add(norm, words)
        return why
