"""The spec as pydantic v2 models: extra keys forbidden, frozen.

Only ``specc``, ``name``, ``assistant`` and one principle (id, title, statement)
are required; everything else has a default that builds a sensible corpus.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Shapes of real credentials; a spec is kept in git, so one of these is never accepted.
KEY_SHAPES = re.compile(r"^(sk-|sk_|hf_|ghp_|gho_|xox[bp]-|AKIA|AIza|pk-|rk-|key-)|^[A-Za-z0-9_\-]{32,}$")

DEFAULT_GENRES: tuple[str, ...] = (
    "news report",
    "textbook section",
    "encyclopedia entry",
    "forum thread",
    "FAQ",
    "case study",
    "lecture transcript",
    "op-ed",
    "policy memo",
    "interview",
    "help-centre article",
    "research summary",
    "blog post",
    "podcast transcript",
    "book review",
    "internal engineering wiki page",
    "letter to the editor",
    "ethics seminar discussion notes",
    "customer story",
    "explainer for parents",
    "debate transcript",
    "short story",
)

DemoKind = Literal["direct", "indirect", "edge_case", "adversarial", "multi_turn", "conflict"]
DEMO_KINDS: tuple[str, ...] = ("direct", "indirect", "edge_case", "adversarial", "multi_turn", "conflict")
STAGES: tuple[str, ...] = ("facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Assistant(Model):
    """Who the corpus is about."""

    name: str = Field(min_length=1, description="The assistant's name, used in every document.")
    developer: str = Field("", description="Who builds the assistant.")


class Turn(Model):
    """One message of an example conversation."""

    role: Literal["user", "assistant", "tool"] = Field(description="Who speaks: `user`, `assistant` or `tool` (a tool's output).")
    content: str = Field(min_length=1, description="What the message says.")


class Example(Model):
    """A worked example of the principle; ``holdout`` examples never enter a prompt or the corpus."""

    user: str | None = Field(None, min_length=1, description="What the user says (a one-turn example).")
    turns: list[Turn] = Field(
        default_factory=list,
        description="A multi-turn example instead of `user`: the conversation before the reply, ending with a "
        "`user` or `tool` message.",
    )
    system: str | None = Field(None, description="An optional operator (developer) system prompt.")
    good: str | None = Field(None, description="A reply that follows the principle.")
    bad: str | None = Field(None, description="A reply that violates it.")
    acceptable: str | None = Field(None, description="A reply that is acceptable but not the best: neither good nor bad.")
    note: str = Field("", description="Why the good reply is good (or the bad one bad).")
    holdout: bool = Field(False, description="Held out: used only to decontaminate the corpus.")

    @model_validator(mode="after")
    def _complete(self) -> Example:
        if self.user is not None and self.turns:
            raise ValueError("give either `user` (one turn) or `turns` (a conversation), not both")
        if self.user is None and not self.turns and self.system is None:
            raise ValueError("an example needs a `user` message (or `turns`)")
        if self.turns and self.turns[-1].role == "assistant":
            raise ValueError("`turns` must end with a `user` or `tool` message: the replies answer it")
        if self.good is None and self.bad is None and self.acceptable is None:
            raise ValueError("an example needs a `good` or a `bad` reply (or an `acceptable` one)")
        return self

    @property
    def conversation(self) -> list[tuple[str, str]]:
        """The messages before the reply as (role, content), without the system prompt."""
        if self.user is not None:
            return [("user", self.user)]
        return [(t.role, t.content) for t in self.turns]


class Principle(Model):
    """One rule the assistant follows, and why."""

    id: str = Field(pattern=SLUG, max_length=64, description="Unique slug, e.g. `honesty`.")
    title: str = Field(min_length=1, description="A short name for the principle.")
    statement: str = Field(min_length=1, description="What the assistant does.")
    rationale: str = Field("", description="Why: explaining the value generalises better than the bare rule.")
    subrules: list[str] = Field(default_factory=list, description="Concrete refinements of the statement.")
    priority: int = Field(5, ge=0, description="Lower wins when two principles conflict.")
    weight: float = Field(1.0, gt=0, description="Relative share of the token budget.")
    tags: list[str] = Field(default_factory=list, description="Free-form labels, kept in the dataset card.")
    examples: list[Example] = Field(
        default_factory=list, description="Worked examples; they seed scenarios and guide the judge."
    )

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class Budget(Model):
    tokens: int = Field(200_000, gt=0, description="Total corpus size in tokens.")
    tokenizer: str = Field(
        "cl100k_base", description="A tiktoken encoding name, or a path to a Hugging Face tokenizer.json."
    )


class Mix(Model):
    documents: float = Field(0.8, ge=0, le=1)
    demonstrations: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> Mix:
        total = self.documents + self.demonstrations
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"documents + demonstrations must sum to 1 (got {total:g})")
        return self


class Documents(Model):
    genres: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GENRES), min_length=1, description="Kinds of document to write."
    )
    ideas_per_genre: int = Field(
        4,
        ge=1,
        le=100,
        description="Document ideas asked for in one call (per facet and document type): a batch size, not a "
        "ceiling. Each idea becomes one document; the budget decides how many calls run.",
    )
    generate_types: bool = Field(
        True,
        description="When a facet needs more ideas calls than `genres` has entries, ask the generator for "
        "further realistic document types for it (else the genres are used again for a further batch).",
    )
    types_per_call: int = Field(8, ge=1, le=50, description="Document types asked for in one call.")
    max_tokens: int = Field(1500, ge=64, description="Output limit for one document.")
    audiences: list[str] = Field(
        default_factory=lambda: ["general public", "students", "professionals", "policy makers", "developers"],
        min_length=1,
    )


class Demonstrations(Model):
    kinds: list[DemoKind] = Field(
        default_factory=lambda: list(DEMO_KINDS), min_length=1, description="Kinds of scenario to demonstrate."
    )
    per_kind: int = Field(
        4,
        ge=1,
        le=100,
        description="Scenarios asked for in one call (per facet and kind): a batch size, not a ceiling. The "
        "budget decides how many calls run; each kept scenario gets a reply.",
    )
    judge: bool | None = Field(
        None,
        description="Grade each demonstration; failing ones are dropped. Unset: on, except when the generator is "
        "the embedded model, which cannot grade.",
    )
    system_prompt_share: float = Field(0.3, ge=0, le=1, description="Share of scenarios with an operator prompt.")
    max_tokens: int = Field(700, ge=32)
    seed_with_examples: bool = Field(True, description="Show non-holdout examples to the scenario writer.")


class Facets(Model):
    """How a principle expands into facets: the aspects its documents and scenarios are about."""

    generate: bool = Field(
        True,
        description="Besides the principle itself, its sub-rules and examples, ask the generator for further "
        "facets (concrete behaviours, the values behind them, situations, mistakes they prevent) when the "
        "budget needs more calls than the given facets spread well over.",
    )
    per_call: int = Field(6, ge=1, le=50, description="Facets asked for in one call.")
    max: int = Field(24, ge=0, le=500, description="At most this many generated facets per principle.")


class Dedup(Model):
    enabled: bool = Field(True, description="Remove exact and near duplicates.")
    threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard similarity above which records are duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    ngram: int = Field(5, ge=1, le=20, description="Word n-gram size of the shingles.")


class Decontamination(Model):
    files: list[str] = Field(default_factory=list, description="Eval files, relative to the spec.")
    ngram: int = Field(13, ge=4, le=50, description="A record sharing any word n-gram of this size with an eval item is dropped.")


class Filters(Model):
    min_words: int = Field(40, ge=0, description="Documents shorter than this are dropped.")
    min_reply_words: int = Field(3, ge=0)
    require_assistant_name: bool = True
    check_language: bool = True


class Corpus(Model):
    budget: Budget = Field(default_factory=Budget)
    mix: Mix = Field(default_factory=Mix)
    documents: Documents = Field(default_factory=Documents)
    demonstrations: Demonstrations = Field(default_factory=Demonstrations)
    dedup: Dedup = Field(default_factory=Dedup)
    decontamination: Decontamination = Field(default_factory=Decontamination)
    facets: Facets = Field(default_factory=Facets)
    filters: Filters = Field(default_factory=Filters)
    context: Literal["principle", "spec"] = Field(
        "principle",
        description="`principle`: a prompt carries only the principle(s) it targets, so an edit regenerates "
        "only that principle. `spec`: every prompt carries the whole spec, and every edit regenerates all.",
    )
    rounds: int = Field(3, ge=1, le=20, description="Top-up rounds when a quota is short after curation.")
    seed: int = Field(0, description="Seeds every random choice: sampling seeds, shuffles, selection.")


class Prices(Model):
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


class BatchOptions(Model):
    """How builds use a provider's Batch API (``generator.batch`` or ``specc build --batch``)."""

    poll_seconds: float = Field(30.0, gt=0, description="Seconds between checks on submitted batches.")
    max_requests: int = Field(50_000, ge=1, description="Requests per batch file (OpenAI allows 50,000).")
    max_bytes: int = Field(
        200_000_000, ge=1024, description="Bytes per batch file (OpenAI allows 200 MB); a larger wave is split."
    )


class Generator(Model):
    provider: Literal["local", "openai"] = Field("local", description="`local`: the embedded offline model; `openai`: any OpenAI-compatible endpoint.")
    model: str = Field("smollm2-135m", description="Model name as the endpoint knows it.")
    base_url: str | None = Field(None, description="Endpoint URL, e.g. http://localhost:8000/v1 (default: OpenAI).")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="The NAME of the environment variable that holds the key."
    )
    temperature: float = Field(0.9, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(0, description="Base sampling seed, varied deterministically per task.")
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(None, gt=0, description="Optional rate limit.")
    tokens_per_minute: int | None = Field(None, gt=0, description="Optional rate limit.")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(6, ge=0, le=50)
    max_failure_rate: float = Field(0.25, gt=0, le=1, description="Stop when more tasks than this share fail.")
    max_usd: float | None = Field(
        None,
        ge=0,
        description="Stop dispatching new calls once this much is spent (calls already in flight still finish, "
        "so it may overshoot by at most `concurrency` calls). Needs a known price: the built-in table or `prices`.",
    )
    prices: Prices | None = Field(None, description="Override the built-in price table for this model.")
    batch: bool = Field(
        False,
        description="Send tasks through the endpoint's Batch API in waves (half the price, results within 24 h); "
        "a build stopped while batches run resumes them. Same as `specc build --batch`.",
    )
    batch_options: BatchOptions = Field(default_factory=BatchOptions, description="Polling and batch file limits.")
    cache_namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Cached results are keyed by provider, model name and prompt, not by URL, so moving a model "
        "to another host reuses them. Set a different namespace on endpoints that serve different models "
        "under the same name.",
    )

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, v: str) -> str:
        if KEY_SHAPES.search(v) or not ENV_NAME.match(v):
            raise ValueError(
                "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "and this looks like a key itself; remove it from the spec and rotate it"
            )
        return v


class Hub(Model):
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="ORG/NAME on the Hugging Face Hub.")
    private: bool = Field(True, description="Create the Hub repository as private.")


class Output(Model):
    dir: str | None = Field(None, description="Default: build/<name>, relative to the spec.")
    format: Literal["parquet", "jsonl.gz"] = "parquet"
    shard_bytes: int = Field(500_000_000, gt=0, description="Target uncompressed shard size.")
    hub: Hub = Field(default_factory=Hub)


Preset = Literal["default", "small"]


class Templates(Model):
    """Prompt templates: a built-in set, and per-stage Jinja2 overrides (paths relative to the spec).

    `templates: small` is short for `templates: {preset: small}`.
    """

    preset: Preset | None = Field(
        None,
        description="The built-in prompt set: `default` for capable models, `small` for the embedded SmolLM2-135M "
        "(short single-instruction prompts). Unset: `small` when the generator is the embedded model, else `default`.",
    )
    facets: str | None = Field(None, description="A template file replacing the preset's `facets` prompt.")
    doctypes: str | None = Field(None, description="A template file replacing the preset's `doctypes` prompt.")
    ideas: str | None = Field(None, description="A template file replacing the preset's `ideas` prompt.")
    document: str | None = Field(None, description="A template file replacing the preset's `document` prompt.")
    scenarios: str | None = Field(None, description="A template file replacing the preset's `scenarios` prompt.")
    reply: str | None = Field(None, description="A template file replacing the preset's `reply` prompt.")
    judge: str | None = Field(None, description="A template file replacing the preset's `judge` prompt.")


def _templates_or_preset(schema: dict) -> None:
    """The JSON Schema of ``templates``: the Templates object, or a preset name as shorthand."""
    ref = schema.pop("$ref", None)
    if ref:
        schema["anyOf"] = [{"$ref": ref}, {"type": "string", "enum": list(Preset.__args__)}]


class Spec(Model):
    """A behavioural spec: who the assistant is, its principles, and the corpus to build."""

    specc: Literal[1] = Field(description="Schema version.")
    name: str = Field(pattern=SLUG, max_length=96, description="Slug naming the spec and its dataset.")
    version: str = Field("0.1.0", description="The spec's own version; recorded in every record's provenance.")
    description: str = Field("", description="One paragraph: what the spec is for. Goes into the dataset card.")
    license: str = Field("cc-by-4.0", description="License of the generated dataset (a Hub license id).")
    language: str = Field("en", pattern=r"^[a-z]{2,3}$", description="ISO 639 code of the corpus language.")
    assistant: Assistant = Field(description="Who the corpus is about.")
    include: list[str] = Field(default_factory=list, description="Spec files whose principles are merged in.")
    principles: Annotated[list[Principle], Field(min_length=1, description="The rules, with their reasons.")]
    corpus: Corpus = Field(default_factory=Corpus, description="What to build from the principles.")
    generator: Generator = Field(default_factory=Generator, description="The LLM that writes the corpus.")
    output: Output = Field(default_factory=Output, description="Where and how the dataset is written.")
    templates: Templates = Field(
        default_factory=Templates,
        description="The prompt set (`default` or `small`) and per-stage template overrides.",
        json_schema_extra=_templates_or_preset,
    )

    @field_validator("templates", mode="before")
    @classmethod
    def _preset_shorthand(cls, v):
        return {"preset": v} if isinstance(v, str) else v

    # Set by the loader: the file it came from. Relative paths in the spec resolve against its folder.
    _source: Path | None = PrivateAttr(None)
    # Set by the loader: where each field was written, so checks made after loading can name a line.
    _where: Any = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    def resolve(self, relpath: str) -> Path:
        """A path from the spec, resolved against the spec's folder."""
        p = Path(relpath).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def sha256(self) -> str:
        return spec_sha256(self)

    def principle(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)


class Fragment(Model):
    """An included file: principles (and includes of its own) shared between specs."""

    specc: Literal[1] | None = None
    include: list[str] = Field(default_factory=list)
    principles: list[Principle] = Field(default_factory=list)



def spec_sha256(spec: Spec) -> str:
    """Content hash of the resolved spec (includes merged, variables rendered)."""
    from specc.records import sha256_hex

    return sha256_hex(spec.model_dump(mode="json"))
