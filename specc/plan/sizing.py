"""Sizing: how many records, facets and calls each principle gets from its quotas, and where each call goes.

Pure functions of the spec, no LLM. The budget decides how many slots run; what a slot's
prompt says never depends on it, so a larger budget re-uses every cached call whose slot
it keeps.

The layout, per principle:

- **facets**: the principle as a whole, its sub-rules and its (non-holdout) examples, then,
  when the calls outnumber them, facets the generator proposes (``facets`` calls, one lens
  each: behaviours, values, situations, mistakes). A principle wants about √calls facets,
  so facets and document types per facet grow together.
- **ideas** call ``j`` goes to facet ``j mod F`` at rank ``j div F``: every facet gets a
  call before any gets a second. A facet's rank ``r`` uses the ``r``-th document type of
  its own rotation of the genre catalogue, then of the types the generator proposed for
  it (``doctypes`` calls, only when a facet needs more calls than the catalogue has
  genres), then the same types again as a further batch.
- **scenarios** call ``j`` goes to kind ``j mod K`` and facet ``(j div K + j mod K) mod F``:
  every (facet, kind) pair once before any repeats as a further batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from specc.plan.quotas import compute_quotas

# Plan this many times the records a quota needs: parsing, filters, dedup, the judge and
# decontamination drop some of what is generated, and budget selection can only fill a
# quota from records that exist; a quarter more fills most quotas without a top-up round.
OVERSHOOT = 1.25
# Share of max_tokens an answer typically uses: for estimates and for how many records a quota
# needs, never for what a prompt says.
FILL = {"facets": 0.7, "doctypes": 0.6, "ideas": 0.7, "document": 0.75, "scenarios": 0.7, "reply": 0.4,
        "judge": 0.4}
# Facets and document types are asked for with this much to spare: dedup drops some.
FACET_SPARE = 1.25
TYPE_SPARE = 1.25
LENSES = ("behaviours", "values", "situations", "mistakes")
# Principle i starts its genre and kind rotation near i times this share of the catalogue (the
# golden ratio's conjugate): offsets stay well spread for any number of principles, so the
# principles together cover the catalogue, and appending a principle moves no other's offset.
_SPREAD = (math.sqrt(5) - 1) / 2


def records_needed(quota: int, per_record: int) -> int:
    """Records to generate for a token quota: ``OVERSHOOT`` × quota / a typical record; at least 1 if quota > 0."""
    return math.ceil(OVERSHOOT * quota / max(per_record, 1)) if quota > 0 else 0


def rotation_offsets(n_principles: int, n_items: int) -> list[int]:
    """Where each principle starts its rotation through ``n_items`` genres or kinds.

    Golden-ratio points, each moved on to the next position no earlier principle starts at
    (while the catalogue has one left): distinct and well spread, and a principle's offset
    depends only on the principles before it.
    """
    out: list[int] = []
    for i in range(n_principles):
        taken = set(out[i - i % n_items:]) if n_items else set()
        o = int(i * _SPREAD * n_items) % n_items if n_items else 0
        while o in taken:
            o = (o + 1) % n_items
        out.append(o)
    return out


def usable_kinds(spec) -> list[str]:
    """The demonstration kinds a spec can generate: a conflict needs a second principle."""
    return [k for k in spec.corpus.demonstrations.kinds if k != "conflict" or len(spec.principles) > 1]


# A document's brief asks for WORDS_SHARE x max_tokens words (leaving room for its plan), times one of
# LENGTHS, so lengths vary across a corpus and small quotas can be filled closely by a combination.
WORDS_SHARE = 0.7
LENGTHS = (0.3, 0.45, 0.6, 0.75, 0.9)
TOKENS_PER_WORD = 1.25  # English prose through cl100k_base and similar encodings


def expected_document_tokens(spec) -> int:
    """Tokens of a typical kept document: the words its brief asks for, on average over the lengths."""
    words = spec.corpus.documents.max_tokens * WORDS_SHARE * sum(LENGTHS) / len(LENGTHS)
    return max(1, int(words * TOKENS_PER_WORD))


def expected_demonstration_tokens(spec, tokenizer, kind: str) -> int:
    """Tokens of a typical ``kind`` demonstration: its turns and a filled reply, through the chat rendering."""
    from specc.stages.items import proto_scenario
    from specc.tokens import count_messages

    turns = proto_scenario(kind).messages() + [{"role": "assistant", "content": ""}]
    return count_messages(tokenizer, turns) + int(spec.corpus.demonstrations.max_tokens * FILL["reply"])


def given_facets(p) -> int:
    """Facets a principle brings itself: the whole principle, each sub-rule, each non-holdout example."""
    return 1 + len(p.subrules) + sum(1 for e in p.examples if not e.holdout)


def facets_wanted(spec, given: int, calls: int) -> tuple[int, int]:
    """(generated facets wanted, facet calls) for a principle with ``given`` facets and ``calls`` ideas or scenario calls.

    About √calls facets in all, so facets and the document types per facet grow together;
    none generated when the given ones already reach that, or ``corpus.facets.generate`` is off.
    """
    f = spec.corpus.facets
    want = math.ceil(math.sqrt(calls)) if calls > 0 else 0
    extra = min(max(0, want - given), f.max) if f.generate else 0
    return extra, (math.ceil(extra * FACET_SPARE / f.per_call) if extra else 0)


@dataclass(frozen=True)
class Sizing:
    """A principle's share of the corpus: the records its quotas want, and the calls that make them."""

    documents: int  # documents wanted: OVERSHOOT x quota / a typical document
    demonstrations: int
    ideas_calls: int  # ceil(documents / ideas_per_genre): each idea becomes one document
    scenario_calls: int  # ceil(demonstrations / per_kind)
    given_facets: int
    generated_facets: int  # facets wanted from the generator
    facet_calls: int
    genre_offset: int  # where this principle's facets start their genre rotations
    kind_offset: int

    @property
    def facets(self) -> int:
        return self.given_facets + self.generated_facets


def size_principles(spec, tokenizer) -> dict[str, Sizing]:
    """{principle_id: Sizing} from the quotas; the calls follow the records, the facets follow the calls."""
    quotas = compute_quotas(spec)
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    kinds = usable_kinds(spec)
    doc_tokens = expected_document_tokens(spec)
    demo_tokens = (round(sum(expected_demonstration_tokens(spec, tokenizer, k) for k in kinds) / len(kinds))
                   if kinds else 1)
    genre_at = rotation_offsets(len(spec.principles), len(docs.genres))
    kind_at = rotation_offsets(len(spec.principles), len(kinds))
    out = {}
    for i, p in enumerate(spec.principles):
        n_docs = records_needed(quotas.get((p.id, "document"), 0), doc_tokens)
        n_demos = records_needed(quotas.get((p.id, "demonstration"), 0), demo_tokens) if kinds else 0
        ideas = math.ceil(n_docs / docs.ideas_per_genre)
        scen = math.ceil(n_demos / demos.per_kind)
        given = given_facets(p)
        extra, calls = facets_wanted(spec, given, max(ideas, scen))
        out[p.id] = Sizing(n_docs, n_demos, ideas, scen, given, extra, calls, genre_at[i], kind_at[i])
    return out


# ---------------------------------------------------------------- the slot layout


def per_facet(calls: int, n_facets: int) -> list[int]:
    """How many of ``calls`` consecutive slots from slot 0 land on each facet."""
    if n_facets <= 0:
        return []
    return [calls // n_facets + (1 if f < calls % n_facets else 0) for f in range(n_facets)]


def ideas_slot(j: int, n_facets: int) -> tuple[int, int]:
    """(facet, rank) of ideas call ``j``."""
    return j % n_facets, j // n_facets


def genre_start(offset: int, facet: int, n_genres: int) -> int:
    """Where facet ``facet`` of a principle starting at ``offset`` starts its genre rotation."""
    step = max(1, round(n_genres * _SPREAD))
    return (offset + facet * step) % n_genres if n_genres else 0


def doctype_calls(calls_on_facet: int, n_genres: int, per_call: int) -> int:
    """Calls to the doctypes stage a facet needs: none while the catalogue has a genre for each of its calls."""
    extra = calls_on_facet - n_genres
    return math.ceil(extra * TYPE_SPARE / per_call) if extra > 0 else 0


def type_for(rank: int, types: list[str]) -> tuple[str, int]:
    """(document type, batch) of a facet's rank-th ideas call, given its ordered types."""
    return types[rank % len(types)], rank // len(types)


def scenario_slot(j: int, n_facets: int, n_kinds: int) -> tuple[int, int, int]:
    """(facet, kind index, batch) of scenarios call ``j``: each (facet, kind) pair once per batch."""
    k = j % n_kinds
    lap = j // n_kinds
    return (lap + k) % n_facets, k, lap // n_facets
