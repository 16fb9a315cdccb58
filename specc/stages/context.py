"""What every stage needs to render a task: the spec, the model id, the templates, the tokenizer, seeds."""

from __future__ import annotations

from dataclasses import dataclass, field

from specc.generate.base import Message, SamplingParams
from specc.prompts import PromptTemplate, load_templates
from specc.records import Task, sha256_hex
from specc.spec.schema import Principle, Spec
from specc.tokens import Tokenizer, get_tokenizer


def max_tokens_for(spec: Spec, stage: str, kind: str | None = None) -> int:
    """The output limit of a first attempt at ``stage``."""
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    # Room for well-formed JSON plus some slack; a cut list still yields its complete items.
    if stage == "facets":
        return 60 + 70 * spec.corpus.facets.per_call
    if stage == "doctypes":
        return 40 + 16 * docs.types_per_call
    if stage == "ideas":
        return 60 + 80 * docs.ideas_per_genre
    if stage == "document":  # room to plan before the document itself
        return docs.max_tokens + max(64, docs.max_tokens // 4)
    if stage == "scenarios":
        return 60 + (250 if kind == "multi_turn" else 120) * demos.per_kind
    if stage == "reply":
        return demos.max_tokens
    return 256


@dataclass
class Context:
    """What every stage needs to build tasks: the spec, the model id, the templates, the tokenizer."""

    spec: Spec
    model: str
    templates: dict[str, PromptTemplate]
    tokenizer: Tokenizer
    spec_text: str = ""
    preset: str = "default"  # the built-in prompt set in use (``specc.spec.advice.preset_for``)
    judge: bool = True  # whether demonstrations are judged (``specc.spec.advice.judge_for``)
    # Prompt pieces shared by the records' briefs (specc.curate.scaffold.brief_pieces), stored once per build.
    pieces: dict[str, str] = field(default_factory=dict, repr=False)
    _sizing: dict | None = field(default=None, repr=False)
    _principles: dict[str, Principle] = field(default_factory=dict, repr=False)
    _bases: dict[tuple[str, bool], dict] = field(default_factory=dict, repr=False)
    # specc.stages.scenarios.pair, per (principle, conflict kind or not, examples): a partner is found by a scan.
    _pairs: dict[tuple[str, bool, bool], tuple] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, spec: Spec, model: str) -> Context:
        from specc.spec.advice import judge_for, preset_for
        from specc.stages import format_spec

        preset = preset_for(spec, model)
        return cls(
            spec=spec,
            model=model,
            templates=load_templates(spec, preset),
            tokenizer=get_tokenizer(spec.corpus.budget.tokenizer, spec.base_dir),
            spec_text=format_spec(spec) if spec.corpus.context == "spec" else "",
            preset=preset,
            judge=judge_for(spec, model),
            _principles={p.id: p for p in spec.principles},
        )

    def principle(self, pid: str) -> Principle:
        return self._principles[pid]

    def sizing(self) -> dict:
        """{principle_id: specc.plan.sizing.Sizing}: the records and calls each principle gets from the budget."""
        if self._sizing is None:
            from specc.plan.sizing import size_principles

            self._sizing = size_principles(self.spec, self.tokenizer)
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

    def base(self, p: Principle, *, examples: bool = True) -> dict:
        """The template variables every stage shares (built once per principle: tens of thousands of tasks use them)."""
        from specc.stages import format_principle

        cached = self._bases.get((p.id, examples))
        if cached is not None:
            return cached
        a = self.spec.assistant
        self._bases[(p.id, examples)] = out = {
            "assistant": {"name": a.name, "developer": a.developer},
            "language": self.spec.language,
            "spec_text": self.spec_text,
            "round": 0,  # kept for custom templates; a top-up round uses new slots, not a new prompt
            "principle": p.model_dump(mode="json", exclude={"examples"}),
            "principle_text": format_principle(p, examples=examples),
        }
        return out

    def task(self, stage: str, p: Principle, messages: list[Message], params: SamplingParams, inp) -> Task:
        return Task(
            stage=stage,
            principle_id=p.id,
            model=self.model,
            messages=tuple(messages),
            params=params,
            template_hash=self.templates[stage].hash,
            input=inp,
        )

    def provenance(self, task: Task, finish_reason: str | None, round: int = 0) -> dict:
        """What every record says about where it came from."""
        return {
            "principle_id": task.principle_id,
            "model": self.model,
            "template_hash": task.template_hash,
            "task_key": task.key,
            "spec_version": self.spec.version,
            "finish_reason": finish_reason,
            "round": round,
        }
