"""How a spec expands into tasks, and how each result becomes records or further tasks.

``Pipeline`` is the engine's ``on_result``: an ideas result returns document tasks,
a scenarios result returns reply tasks, a reply returns a judge task, and the
leaves append Records. Everything a prompt contains is chosen here, so an edit to
one principle changes only the keys of the tasks that carry it. How many tasks run
(``Sizing``) follows the quotas; what a prompt says never depends on the budget.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from specc.errors import RunError, SpeccError
from specc.generate.base import Generation, Message, SamplingParams
from specc.prompts import PromptTemplate, load_templates
from specc.quotas import compute_quotas
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle, Spec
from specc.stages.parsing import ParseFailure, Scenario
from specc.tokens import Tokenizer, count_messages, get_tokenizer

FIRST_STAGES = ("ideas", "scenarios")
STAGE_KIND = {"ideas": "document", "document": "document", "scenarios": "demonstration", "reply": "demonstration",
              "judge": "demonstration"}
DOWNSTREAM = {"ideas": ("document",), "scenarios": ("reply", "judge")}
# Share of max_tokens an answer typically uses: for estimates and for how many records a quota
# needs (Sizing), never for what a prompt says.
FILL = {"ideas": 0.7, "document": 0.75, "scenarios": 0.7, "reply": 0.5, "judge": 0.4}
# Plan this many times the records a quota needs: parsing, filters, dedup, the judge and
# decontamination drop some of what is generated, and budget selection can only fill a
# quota from records that exist; a quarter more fills most quotas without a top-up round.
OVERSHOOT = 1.25
# Principle i starts its genre and kind rotation near i times this share of the catalogue (the
# golden ratio's conjugate): offsets stay well spread for any number of principles, so the
# principles together cover the catalogue, and appending a principle moves no other's offset.
_SPREAD = (math.sqrt(5) - 1) / 2


def llm_id(spec: Spec, provider: str | None = None, model: str | None = None, base_url: str | None = None) -> str:
    """The id ``make_llm`` would give, without constructing the provider."""
    from specc.generate.factory import llm_id as _llm_id

    return _llm_id(spec.generator, provider=provider, model=model, base_url=base_url)


def format_principle(p: Principle, *, examples: bool = True) -> str:
    """A principle as prompt text. Holdout examples never appear: they exist to test the corpus."""
    lines = [f'Principle "{p.title}" (id: {p.id}, priority {p.priority})', f"What: {p.statement.strip()}"]
    if p.rationale.strip():
        lines.append(f"Why: {p.rationale.strip()}")
    if p.subrules:
        lines.append("In particular:")
        lines += [f"- {r.strip()}" for r in p.subrules]
    shown = [e for e in p.examples if not e.holdout] if examples else []
    if shown:
        lines.append("Examples:")
        lines += [format_example(e) for e in shown]
    return "\n".join(lines)


def format_example(e) -> str:
    parts = []
    if e.system:
        parts.append(f"  Operator instructions: {e.system.strip()}")
    parts.append(f"  User: {e.user.strip()}")
    if e.good:
        parts.append(f"  A good reply: {e.good.strip()}")
    if e.bad:
        parts.append(f"  A bad reply: {e.bad.strip()}")
    if e.note:
        parts.append(f"  Why: {e.note.strip()}")
    return "-" + "\n".join(parts)[1:]


def spec_content(*principles: Principle | None) -> list[str]:
    """The spec's own words about ``principles``: what a record may quote without echoing its prompt."""
    out: list[str] = []
    for p in principles:
        if p is None:
            continue
        out += [p.title, p.statement, p.rationale, *p.subrules]
        for e in p.examples:
            if not e.holdout:
                out += [e.system or "", e.user, e.good or "", e.bad or "", e.note]
    return out


def format_spec(spec: Spec) -> str:
    """The whole spec as prompt text, for ``corpus.context: spec``."""
    head = f"Assistant: {spec.assistant.name}" + (f", developed by {spec.assistant.developer}" if spec.assistant.developer else "")
    desc = [spec.description.strip()] if spec.description.strip() else []
    return "\n\n".join([head, *desc, *(format_principle(p) for p in spec.principles)])


def partner_of(spec: Spec, p: Principle) -> Principle | None:
    """The principle a ``conflict`` demonstration pairs with ``p``: the nearest in priority, then in spec order."""
    order = {q.id: i for i, q in enumerate(spec.principles)}
    others = [q for q in spec.principles if q.id != p.id]
    if not others:
        return None
    return min(others, key=lambda q: (abs(q.priority - p.priority), abs(order[q.id] - order[p.id]), order[q.id]))


@dataclass
class Context:
    """What every stage needs to build tasks: the spec, the model id, the templates, the tokenizer."""

    spec: Spec
    model: str
    templates: dict[str, PromptTemplate]
    tokenizer: Tokenizer
    spec_text: str = ""
    preset: str = "default"  # the built-in prompt set in use
    judge: bool = True  # whether demonstrations are judged (``specc.spec.advice.judge_for``)
    # Prompt pieces shared by the records' briefs (specc.curate.scaffold.brief_pieces), stored once.
    pieces: dict[str, str] = field(default_factory=dict, repr=False)
    _sizing: dict[str, Sizing] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, spec: Spec, model: str) -> Context:
        from specc.spec.advice import judge_for, preset_for

        preset = preset_for(spec, model)
        return cls(
            spec=spec,
            model=model,
            templates=load_templates(spec, preset),
            tokenizer=get_tokenizer(spec.corpus.budget.tokenizer, spec.base_dir),
            spec_text=format_spec(spec) if spec.corpus.context == "spec" else "",
            preset=preset,
            judge=judge_for(spec, model),
        )

    def sizing(self) -> dict[str, Sizing]:
        """{principle_id: Sizing}: how many documents and demonstrations each principle gets, and from which slots."""
        if self._sizing is None:
            self._sizing = size_principles(self)
        return self._sizing

    def seed(self, *parts) -> int | None:
        """A per-task seed: the same slot always gets the same seed, different slots differ."""
        if self.spec.generator.seed is None:
            return None
        h = sha256_hex([self.spec.generator.seed, self.spec.corpus.seed, *parts])
        return int(h[:8], 16) & 0x7FFFFFFF

    def params(self, stage: str, max_tokens: int, seed_parts: tuple, *, json_mode: bool = False) -> SamplingParams:
        g = self.spec.generator
        return SamplingParams(
            # The judge grades; sampling noise would only make its verdicts less repeatable.
            temperature=0.0 if stage == "judge" else g.temperature,
            top_p=g.top_p,
            max_tokens=max_tokens,
            seed=self.seed(stage, *seed_parts),
            json_mode=json_mode,
        )

    def base(self, p: Principle, round: int, *, examples: bool = True) -> dict:
        a = self.spec.assistant
        return {
            "assistant": {"name": a.name, "developer": a.developer},
            "language": self.spec.language,
            "spec_text": self.spec_text,
            "round": round,
            "principle": p.model_dump(mode="json", exclude={"examples"}),
            "principle_text": format_principle(p, examples=examples),
        }

    def task(self, stage: str, p: Principle, messages: list[Message], params: SamplingParams, meta: dict) -> Task:
        return Task(
            stage=stage,
            principle_id=p.id,
            model=self.model,
            messages=tuple(messages),
            params=params,
            template_hash=self.templates[stage].hash,
            meta={"principle_id": p.id, "round": 0, **meta},
        )

    def provenance(self, task: Task, gen: Generation) -> dict:
        return {
            "principle_id": task.principle_id,
            "model": self.model,
            "template_hash": task.template_hash,
            "task_key": task.key,
            "spec_version": self.spec.version,
            "finish_reason": gen.finish_reason,
            "round": task.meta.get("round", 0),
        }


def max_tokens_for(spec: Spec, stage: str, kind: str | None = None) -> int:
    """The output limit of a first attempt at ``stage``."""
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    # Room for well-formed JSON plus some slack; a cut list still yields its complete items.
    if stage == "ideas":
        return 60 + 80 * docs.ideas_per_genre
    if stage == "document":  # room to plan before the document itself
        return docs.max_tokens + max(64, docs.max_tokens // 4)
    if stage == "scenarios":
        return 60 + (250 if kind == "multi_turn" else 120) * demos.per_kind
    if stage == "reply":
        return demos.max_tokens
    return 256


# ---------------------------------------------------------------- sizing

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


def expected_document_tokens(spec: Spec) -> int:
    """Tokens of a typical kept document: a filled answer without its <plan> part."""
    return max(1, int(spec.corpus.documents.max_tokens * FILL["document"] * 0.8))


def expected_demonstration_tokens(ctx: Context, kind: str) -> int:
    """Tokens of a typical ``kind`` demonstration: its turns and a filled reply, through the chat rendering."""
    turns = proto_scenario(kind).messages() + [{"role": "assistant", "content": ""}]
    return count_messages(ctx.tokenizer, turns) + int(max_tokens_for(ctx.spec, "reply") * FILL["reply"])


def usable_kinds(spec: Spec) -> list[str]:
    """The demonstration kinds a spec can generate: a conflict needs a second principle."""
    return [k for k in spec.corpus.demonstrations.kinds if k != "conflict" or len(spec.principles) > 1]


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


def fill_slots(items: list[str], start: int, n: int, per_call: int) -> tuple[tuple[str, int], ...]:
    """(item, records from its call) for ``n`` records, ``per_call`` per call, items taken in rotation from ``start``.

    Each call is used fully before the next item is opened. With the fewest calls this is
    the only split where a larger ``n`` keeps every slot of a smaller one (a cache hit) and
    only adds: an even split would move records off calls already made.
    """
    if n <= 0 or not items:
        return ()
    calls = min(len(items), math.ceil(n / per_call))
    n = min(n, calls * per_call)
    return tuple((items[(start + j) % len(items)], min(per_call, n - j * per_call)) for j in range(calls))


@dataclass(frozen=True)
class Sizing:
    """A principle's share of the corpus: records wanted from its quotas, and the first-stage slots that make them."""

    wanted_documents: int
    wanted_demonstrations: int
    genres: tuple[tuple[str, int], ...]  # (genre, documents from its ideas call)
    kinds: tuple[tuple[str, int], ...]  # (kind, scenarios from its call that get a reply)

    @property
    def documents(self) -> int:
        return sum(k for _, k in self.genres)

    @property
    def demonstrations(self) -> int:
        return sum(n for _, n in self.kinds)


def size_principles(ctx: Context) -> dict[str, Sizing]:
    """How many records each principle × kind needs for its quota, and which genres and kinds supply them.

    Prompts never depend on the budget (an ideas call always asks for ``ideas_per_genre``,
    a scenarios call for ``per_kind``): the budget picks how many calls and how many of each
    call's answers get a document or a reply, so a larger budget re-uses every cached call.
    """
    spec = ctx.spec
    quotas = compute_quotas(spec)
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    kinds = usable_kinds(spec)
    doc_tokens = expected_document_tokens(spec)
    demo_tokens = round(sum(expected_demonstration_tokens(ctx, k) for k in kinds) / len(kinds)) if kinds else 1
    genre_at = rotation_offsets(len(spec.principles), len(docs.genres))
    kind_at = rotation_offsets(len(spec.principles), len(kinds))
    out = {}
    for i, p in enumerate(spec.principles):
        n_docs = records_needed(quotas.get((p.id, "document"), 0), doc_tokens)
        n_demos = records_needed(quotas.get((p.id, "demonstration"), 0), demo_tokens)
        out[p.id] = Sizing(
            n_docs, n_demos,
            fill_slots(docs.genres, genre_at[i], n_docs, docs.ideas_per_genre),
            fill_slots(kinds, kind_at[i], n_demos, demos.per_kind),
        )
    return out


def retry_with_error(task: Task, answer: str, failure: ParseFailure, instruction: str) -> Task | None:
    """Once: the same task with the model's answer and the parse error appended, so it can fix it."""
    if task.meta.get("parse_retry"):
        return None
    shown = answer.strip()[:4000] or "(an empty answer)"
    messages = task.messages + (
        {"role": "assistant", "content": shown},
        {"role": "user", "content": f"That answer could not be used: {failure.detail}. {instruction}"},
    )
    return replace(task, messages=messages, meta={**task.meta, "parse_retry": True})


def retry_longer(task: Task) -> Task | None:
    """Once: the same task with twice the token limit (a new key, so not the cached truncated answer)."""
    if task.meta.get("length_retry"):
        return None
    params = replace(task.params, max_tokens=task.params.max_tokens * 2)
    return replace(task, params=params, meta={**task.meta, "length_retry": True})


JSON_AGAIN = "Answer again with only the JSON object described above."


LIST_AGAIN = "Write only the numbered list asked for above, one item per line."


def recover_list(pipe: "Pipeline", task: Task, gen: Generation, failure: ParseFailure, stage: str) -> list[Task]:
    """After an unparseable list answer: retry longer if it was cut off, else once with the error shown, else drop."""
    retry = retry_longer(task) if gen.finish_reason == "length" else None
    if pipe.ctx.preset == "small":
        # The small prompts ask for a numbered list: a JSON schema in the retry only confuses a tiny model.
        failure, again = ParseFailure(failure.reason, "it was not a numbered list"), LIST_AGAIN
    else:
        again = JSON_AGAIN
    retry = retry or retry_with_error(task, gen.text, failure, again)
    if retry:
        return [retry]
    pipe.drop(f"{stage}:{failure.reason}", task=task)
    return []


Handler = Callable[["Pipeline", Task, Generation], list[Task]]


@dataclass
class Pipeline:
    """The engine callbacks: collects records and counts every drop as ``step:reason``."""

    ctx: Context
    records: list[Record] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    drops_by_principle: dict[str, Counter] = field(default_factory=dict)
    drops_by_slot: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (principle, kind) -> reasons
    # Answers per (principle, stage), retries not counted: the "of N" when a build falls short.
    answers: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    ideas_count: int = 0
    scenarios_count: int = 0
    # Idea titles from finished rounds, per principle: a top-up round does not repeat them.
    # Ideas of the running round join only at its end, so what is kept never depends on
    # the order in which concurrent tasks finish.
    prior_ideas: dict[str, set[str]] = field(default_factory=dict)
    round_ideas: dict[str, set[str]] = field(default_factory=dict)

    def first_tasks(self, round: int = 0) -> list[Task]:
        from specc.stages import demonstrations, documents

        return documents.ideas_tasks(self.ctx, round) + demonstrations.scenario_tasks(self.ctx, round)

    def end_round(self) -> None:
        for pid, titles in self.round_ideas.items():
            self.prior_ideas.setdefault(pid, set()).update(titles)
        self.round_ideas.clear()

    def on_result(self, task: Task, gen: Generation) -> list[Task]:
        from specc.stages import demonstrations, documents

        handlers: dict[str, Handler] = {
            "ideas": documents.on_ideas,
            "document": documents.on_document,
            "scenarios": demonstrations.on_scenarios,
            "reply": demonstrations.on_reply,
            "judge": demonstrations.on_judge,
        }
        if not (task.meta.get("parse_retry") or task.meta.get("length_retry")):
            self.answers[(task.principle_id, task.stage)] += 1
        try:
            return handlers[task.stage](self, task, gen)
        except ParseFailure as e:  # an answer no parser expected: a model-output problem, counted
            self.drop(f"internal:{task.stage}_unusable", task=task)
            if len(self.errors) < 20:
                self.errors.append(f"{task.stage} {task.key[:12]}: {e}")
            return []
        except SpeccError:
            raise
        except Exception as e:
            # Anything else is a bug or a broken template, not a bad answer: counting it as a drop
            # turned a broken build into an empty one that exited 0.
            raise RunError(
                f"the {task.stage} stage failed on a task for principle {task.principle_id!r} "
                f"(key {task.key[:12]}): {type(e).__name__}: {e}; finished work is cached, so a rerun resumes"
            ) from e

    def on_failure(self, task: Task, error: str) -> None:
        self.drop(f"generate:{task.stage}_failed", task=task)

    def drop(self, reason: str, n: int = 1, *, pid: str | None = None, task: Task | None = None) -> None:
        """Count ``n`` drops for ``reason``, by principle and, given the task, by principle × kind."""
        if not n:
            return
        pid = pid or (task.principle_id if task else None)
        self.drops[reason] += n
        if pid:
            self.drops_by_principle.setdefault(pid, Counter())[reason] += n
        if task is not None:
            self.drops_by_slot.setdefault((task.principle_id, STAGE_KIND[task.stage]), Counter())[reason] += n

    def sorted_records(self) -> list[Record]:
        """Records in a stable order, whatever order the tasks finished in."""
        order = {p.id: i for i, p in enumerate(self.ctx.spec.principles)}
        return sorted(self.records, key=lambda r: (r.kind, order.get(r.principle_id, 0), r.meta.get("task_key", ""), r.id))


def count_tokens(tok: Tokenizer, texts: Iterable[str]) -> int:
    return sum(tok.count(t) for t in texts)
