"""The engine's callbacks: route each result to its stage, keep the per-principle gates, collect records and drops.

``first_tasks`` starts every principle: its facet calls when it needs generated facets,
else its ideas and scenario calls at once. Each stage's ``children`` hands its result to
the gate of its scope here; an open gate dedups in slot order and yields the next tasks.
Every drop is counted as ``step:reason``, and dropped ideas, scenarios, documents and
demonstrations are kept as rows for ``OUT/dropped/``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from importlib import import_module

from specc.errors import RunError, SpeccError
from specc.generate.base import Generation
from specc.plan.sizing import (
    doctype_calls,
    genre_start,
    ideas_slot,
    per_facet,
    scenario_slot,
    type_for,
    usable_kinds,
)
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle
from specc.stages.context import Context
from specc.stages.gates import FACET_SIMILARITY, Gate, PrincipleState
from specc.stages.items import Facet, NearSet, given_facets
from specc.stages.parsing import ParseFailure, normalise

STAGE_NAMES = ("facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge")
# The kind of record a stage's losses cost; facets serve both kinds, so their losses are no one quota's.
STAGE_KIND = {"doctypes": "document", "ideas": "document", "document": "document", "scenarios": "demonstration",
              "reply": "demonstration", "judge": "demonstration"}


def all_stages() -> dict:
    """{name: Stage descriptor} for every stage, each from its own module."""
    return {name: import_module(f"specc.stages.{name}").STAGE for name in STAGE_NAMES}


def _type_key(name: str) -> str:
    words = normalise(name).split()
    return " ".join(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w for w in words)


@dataclass
class Pipeline:
    """Collects records and drops; ``on_result`` and ``on_failure`` are the engine's callbacks."""

    ctx: Context
    records: list[Record] = field(default_factory=list)
    dropped: list[tuple[Record, str]] = field(default_factory=list)  # (row, "step:reason") for OUT/dropped/
    drops: Counter = field(default_factory=Counter)
    drops_by_principle: dict[str, Counter] = field(default_factory=dict)
    drops_by_slot: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (principle, kind) -> reasons
    # Answers per (principle, stage), retries not counted: the "of N" when a build falls short.
    answers: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # facets, doctypes, ideas, scenarios used
    states: dict[str, PrincipleState] = field(default_factory=dict)
    # Every task key whose result the build used, and the keys that failed for good: the build's
    # fingerprint lists the first and is not written when there are any of the second.
    used: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    # Per principle: results the model made in this run ("calls") and results served from the cache.
    by_principle: dict[str, Counter] = field(default_factory=dict)
    # Records carry their prompt's own lines for the echo check (Record.brief); the walk of plan and
    # diff never curates, so it leaves them out.
    briefs: bool = True
    # Per principle ids: the spec's words about them in flat form, and which prompt pieces occur in those.
    _known: dict[tuple[str, ...], tuple[str, dict[str, bool]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.stages = all_stages()
        for p in self.ctx.spec.principles:
            self.states.setdefault(p.id, PrincipleState())

    # -- the engine's callbacks ---------------------------------------------------------
    def on_result(self, task: Task, gen: Generation) -> list[Task]:
        stage = self.stages[task.stage]
        self.used.add(task.key)
        c = self.by_principle.get(task.principle_id)
        if c is None:
            c = self.by_principle[task.principle_id] = Counter()
        c["cached" if gen.cached else "calls"] += 1
        if not task.retries:
            self.answers[(task.principle_id, task.stage)] += 1
        try:
            try:
                result = stage.parse(self.ctx, task, gen)
            except ParseFailure as f:
                retry = stage.retry(self.ctx, task, gen, f)
                if retry is not None:
                    return [retry]
                return stage.give_up(self, task, stage.reason(f.reason), gen.text)
            return stage.children(self, task, result)
        except ParseFailure as e:  # an answer no parser expected: a model-output problem, counted
            self.drop(f"internal:{task.stage}_unusable", task=task)
            if len(self.errors) < 20:
                self.errors.append(f"{task.stage} {task.key[:12]}: {e}")
            return []
        except SpeccError:
            raise
        except Exception as e:
            # A bug or a broken template, not a bad answer: counting it as a drop would turn a
            # broken build into a short one.
            raise RunError(
                f"the {task.stage} stage failed on a task for principle {task.principle_id!r} "
                f"(key {task.key[:12]}): {type(e).__name__}: {e}; finished work is cached, so a rerun resumes"
            ) from e

    def on_failure(self, task: Task, error: str) -> list[Task]:
        """A task the engine gave up on: dropped, and whatever waited on it goes on without it."""
        self.failed.add(task.key)
        return self.stages[task.stage].give_up(self, task, f"generate:{task.stage}_failed")

    def drop(self, reason: str, n: int = 1, *, pid: str | None = None, task: Task | None = None,
             row: Record | None = None, kind: str | None = None) -> None:
        """Count ``n`` drops for ``reason``: by principle, and by principle × kind when the kind is known
        (given, or the task's stage's, or the row's); keep ``row`` for ``OUT/dropped/``."""
        if not n:
            return
        pid = pid or (task.principle_id if task is not None else None)
        self.drops[reason] += n
        if pid:
            self.drops_by_principle.setdefault(pid, Counter())[reason] += n
            kind = kind or (STAGE_KIND.get(task.stage) if task is not None else None) or (row.kind if row else None)
            if kind:
                self.drops_by_slot.setdefault((pid, kind), Counter())[reason] += n
        if row is not None:
            self.dropped.append((row, reason))

    def add(self, record: Record) -> None:
        self.records.append(record)

    def brief(self, prompt: list[str], principles: tuple[Principle | None, ...], about: list[str]) -> tuple[str, ...]:
        """The prompt's own lines and sentences for ``Record.brief``, minus any that quote the spec's words
        about ``principles`` or what the record is ``about`` (its facet, idea or scenario)."""
        if not self.briefs:
            return ()
        from specc.curate.scaffold import brief_pieces, flat_text
        from specc.stages import spec_content

        ids = tuple(p.id for p in principles if p is not None)
        known = self._known.get(ids)
        if known is None:
            known = self._known[ids] = (flat_text(spec_content(*principles) + [self.ctx.spec_text]), {})
        return brief_pieces(prompt, about, self.ctx.pieces, *known)

    def sorted_records(self) -> list[Record]:
        """Records in a stable order, whatever order the tasks finished in."""
        order = {p.id: i for i, p in enumerate(self.ctx.spec.principles)}
        return sorted(self.records, key=lambda r: (r.kind, order.get(r.principle_id, 0), r.meta.get("task_key", ""), r.id))

    def sorted_dropped(self) -> list[tuple[Record, str]]:
        return sorted(self.dropped, key=lambda d: (d[0].kind, d[0].principle_id, d[1], d[0].id))

    # -- starting work ------------------------------------------------------------------
    def first_tasks(self, round: int = 0) -> list[Task]:
        """Every principle's first calls: its facets, or (with only the given facets) its ideas and scenarios."""
        out: list[Task] = []
        facets_stage = self.stages["facets"]
        from specc.stages.facets import FacetsInput, lens_of

        for p in self.ctx.spec.principles:
            s = self.ctx.sizing()[p.id]
            st = self.states[p.id]
            st.pending_round[0] = (s.ideas_calls, s.documents, s.scenario_calls, s.demonstrations)
            if s.facet_calls:
                st.facet_gate = Gate(range(s.facet_calls))
                for j in range(s.facet_calls):
                    lens, batch = lens_of(j)
                    out.append(facets_stage.render(self.ctx, p, FacetsInput(slot=j, lens=lens, batch=batch)))
            else:
                out += self._set_facets(p, [])
        return out

    def topup_tasks(self, shortfall: dict[tuple[str, str], int], round: int, records: list[Record] = ()) -> list[Task]:
        """New ideas or scenario slots for the quotas curation left short, and only those.

        How many comes from the tokens missing and the average size of what this principle
        produced so far; the slots continue after the ones already used, so every prompt is new.
        """
        spec = self.ctx.spec
        docs, demos = spec.corpus.documents, spec.corpus.demonstrations
        from specc.plan.quotas import compute_quotas
        from specc.plan.sizing import FILL, expected_document_tokens

        quotas = compute_quotas(spec)

        sizes: dict[tuple[str, str], list[int]] = {}
        for r in records:
            if r.tokens:
                sizes.setdefault((r.principle_id, r.kind), []).append(r.tokens)
        out: list[Task] = []
        for (pid, kind), missing in sorted(shortfall.items()):
            if missing <= 0 or pid not in self.states or self.states[pid].facets is None:
                continue
            got = sizes.get((pid, kind))
            default = expected_document_tokens(spec) if kind == "document" else demos.max_tokens * FILL["reply"] + 60
            avg = sum(got) / len(got) if got else default
            if quotas.get((pid, kind), 0) < avg / 2:
                # A quota under half a typical record is better left empty than overshot twice over.
                continue
            # 1.5x: some of what is generated is dropped again by parsing and curation. At least two: a gap
            # smaller than a record is closed by a better combination of lengths, which needs a choice.
            n = max(2, math.ceil(1.5 * missing / max(avg, 1)))
            p = self.ctx.principle(pid)
            if kind == "document":
                out += self._start_ideas(p, round, math.ceil(n / docs.ideas_per_genre), n)
            elif usable_kinds(spec):
                out += self._start_scenarios(p, round, math.ceil(n / demos.per_kind), n)
        return out

    def _set_facets(self, p: Principle, generated: list[Facet]) -> list[Task]:
        st = self.states[p.id]
        st.facets = given_facets(p, examples=self.ctx.spec.corpus.demonstrations.seed_with_examples) + generated
        self.counts["facets"] += len(generated)
        out: list[Task] = []
        for round, (ideas, docs, scen, demos) in sorted(st.pending_round.items()):
            out += self._start_ideas(p, round, ideas, docs)
            out += self._start_scenarios(p, round, scen, demos)
        st.pending_round.clear()
        return out

    def _catalogue(self, p: Principle, f: int) -> list[str]:
        genres = list(self.ctx.spec.corpus.documents.genres)
        start = genre_start(self.ctx.sizing()[p.id].genre_offset, f, len(genres))
        return [genres[(start + r) % len(genres)] for r in range(len(genres))]

    def _start_ideas(self, p: Principle, round: int, calls: int, wanted: int) -> list[Task]:
        st = self.states[p.id]
        if calls <= 0:
            return []
        n_facets = len(st.facets)
        slots = range(st.next_ideas, st.next_ideas + calls)
        st.next_ideas += calls
        st.ideas_calls += calls
        st.ideas_gates[round] = Gate(slots, wanted)
        out: list[Task] = []
        docs = self.ctx.spec.corpus.documents
        if round == 0 and docs.generate_types:
            from specc.stages.doctypes import DocTypesInput

            for f, n in enumerate(per_facet(calls, n_facets)):
                c = doctype_calls(n, len(docs.genres), docs.types_per_call)
                if c and f not in st.type_gates:
                    st.type_gates[f] = Gate(range(c))
                    st.type_want[f] = n - len(docs.genres)
                    out += [self.stages["doctypes"].render(self.ctx, p, DocTypesInput(facet_index=f, facet=st.facets[f], batch=b))
                            for b in range(c)]
        for j in slots:
            f, rank = ideas_slot(j, n_facets)
            gate = st.type_gates.get(f)
            if rank >= len(docs.genres) and gate is not None and not gate.released:
                st.held.setdefault(f, []).append((round, j, rank))
                continue
            out.append(self._ideas_task(p, round, j, f, rank))
        return out

    def _ideas_task(self, p: Principle, round: int, slot: int, f: int, rank: int) -> Task:
        from specc.stages.ideas import IdeasInput

        st = self.states[p.id]
        doctype, batch = type_for(rank, st.types.get(f) or self._catalogue(p, f))
        st.types_used.add(doctype)
        inp = IdeasInput(slot=slot, round=round, facet=st.facets[f], doctype=doctype, batch=batch)
        return self.stages["ideas"].render(self.ctx, p, inp)

    def _start_scenarios(self, p: Principle, round: int, calls: int, wanted: int) -> list[Task]:
        from specc.stages.scenarios import ScenariosInput

        st = self.states[p.id]
        kinds = usable_kinds(self.ctx.spec)
        if calls <= 0 or not kinds:
            return []
        offset = self.ctx.sizing()[p.id].kind_offset
        slots = range(st.next_scenarios, st.next_scenarios + calls)
        st.next_scenarios += calls
        st.scenario_calls += calls
        st.scenario_gates[round] = Gate(slots, wanted)
        out = []
        for j in slots:
            f, k, batch = scenario_slot(j, len(st.facets), len(kinds))
            kind = kinds[(offset + k) % len(kinds)]
            inp = ScenariosInput(slot=j, round=round, facet=st.facets[f], kind=kind, batch=batch)
            out.append(self.stages["scenarios"].render(self.ctx, p, inp))
        return out

    # -- gates, called by the stages -------------------------------------------------------
    def facets_resolved(self, task: Task, proposed: list | None) -> list[Task]:
        """A facet call resolved; once all of the principle's have, dedup in slot order and start its ideas and scenarios."""
        pid = task.principle_id
        st = self.states[pid]
        if not st.facet_gate.resolve(task.input.slot, (task.input.lens, proposed)):
            return []
        p = self.ctx.principle(pid)
        seen = NearSet(FACET_SIMILARITY)
        for g in given_facets(p):
            seen.add(g.text)
        want = self.ctx.sizing()[pid].generated_facets
        generated: list[Facet] = []
        for _, (lens, items) in st.facet_gate.in_order():
            for item in items or []:
                if len(generated) >= want:
                    break
                why = seen.keep(item.text)
                if why:
                    self.drop(f"facets:{why}", pid=pid)
                    continue
                generated.append(Facet(id=f"generated-{len(generated)}", source="generated", text=item.text, lens=lens))
        return self._set_facets(p, generated)

    def types_resolved(self, task: Task, proposed: list[str] | None) -> list[Task]:
        """A document-type call resolved; once all of the facet's have, its held ideas calls go out."""
        pid, f = task.principle_id, task.input.facet_index
        st = self.states[pid]
        gate = st.type_gates[f]
        if not gate.resolve(task.input.batch, proposed):
            return []
        p = self.ctx.principle(pid)
        catalogue = self._catalogue(p, f)
        seen = {_type_key(t) for t in catalogue}
        want = st.type_want.get(f, 0)
        extra: list[str] = []
        for _, names in gate.in_order():
            for name in names or []:
                if len(extra) >= want:
                    break
                key = _type_key(name)
                if key in seen:
                    self.drop("doctypes:duplicate", pid=pid, kind="document")
                    continue
                seen.add(key)
                extra.append(name)
        self.counts["doctypes"] += len(extra)
        st.types[f] = catalogue + extra
        return [self._ideas_task(p, r, j, f, rank) for r, j, rank in st.held.pop(f, [])]

    def ideas_resolved(self, task: Task, ideas: list | None) -> list[Task]:
        """An ideas call resolved; once all of the round's have, dedup in slot order: one document per kept idea."""
        from specc.stages.document import DocumentInput

        inp, pid = task.input, task.principle_id
        st = self.states[pid]
        gate = st.ideas_gates[inp.round]
        if not gate.resolve(inp.slot, (inp, ideas, task.key)):
            return []
        p = self.ctx.principle(pid)
        out: list[Task] = []
        for _, (src, items, parent) in gate.in_order():
            for idea in items or []:
                if len(out) >= gate.wanted:
                    break
                why = st.seen_ideas.keep(idea.title)
                if why:
                    self.drop(f"ideas:{why}", pid=pid, row=self._idea_row(pid, src, idea, parent))
                    continue
                doc = DocumentInput(round=src.round, facet=src.facet, doctype=src.doctype, idea=idea, parent_key=parent)
                out.append(self.stages["document"].render(self.ctx, p, doc))
        gate.results.clear()  # what the documents need is in their tasks now
        self.counts["ideas"] += len(out)
        return out

    def scenarios_resolved(self, task: Task, scenarios: list | None) -> list[Task]:
        """A scenarios call resolved; once all of the round's have, dedup in slot order: one reply per kept scenario."""
        from specc.stages.reply import ReplyInput

        inp, pid = task.input, task.principle_id
        st = self.states[pid]
        gate = st.scenario_gates[inp.round]
        if not gate.resolve(inp.slot, (inp, scenarios, task.key)):
            return []
        p = self.ctx.principle(pid)
        out: list[Task] = []
        for _, (src, items, parent) in gate.in_order():
            for sc in items or []:
                if len(out) >= gate.wanted:
                    break
                why = st.seen_scenarios.keep(" ".join(t.content for t in sc.turns))
                if why:
                    row = Record(kind="demonstration", principle_id=pid, messages=sc.messages(), demo_kind=src.kind,
                                 facet=src.facet.id, meta={"scenario": sc.model_dump(), "task_key": parent},
                                 id=sha256_hex(["scenario", parent, sc.identity()])[:32])
                    self.drop(f"scenarios:{why}", pid=pid, row=row)
                    continue
                out.append(self.stages["reply"].render(self.ctx, p, ReplyInput(
                    round=src.round, facet=src.facet, kind=src.kind, scenario=sc, parent_key=parent)))
        gate.results.clear()
        self.counts["scenarios"] += len(out)
        return out

    @staticmethod
    def _idea_row(pid: str, src, idea, parent: str) -> Record:
        return Record(kind="document", principle_id=pid, genre=src.doctype, facet=src.facet.id,
                      meta={"idea": idea.model_dump(), "task_key": parent},
                      id=sha256_hex(["idea", parent, idea.normalised_title()])[:32])
