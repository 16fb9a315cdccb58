"""The small values that flow through the pipeline: Task (one LLM call) and Record (one row)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

from specc.generate.base import Message, SamplingParams


def canonical_json(obj: Any) -> str:
    """Stable JSON used for every content hash."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(obj: Any) -> str:
    data = obj if isinstance(obj, (bytes, str)) else canonical_json(obj)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class Task:
    """One LLM call. ``key`` hashes everything that affects its output, nothing else.

    ``input`` is the stage's typed input (a pydantic model from ``specc.stages``: the facet,
    idea, scenario or draft the call is about, and its slot); it travels with the task to
    the stage that parses the result and is deliberately not part of the key, so identical
    prompts share one cached result. ``retries`` names the recoveries already tried
    ("parse", "length"), so each is tried once.
    """

    stage: str
    principle_id: str
    model: str  # LLM.id
    messages: tuple[Message, ...]
    params: SamplingParams
    template_hash: str
    input: Any = None
    retries: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        return sha256_hex(
            {
                "model": self.model,
                "messages": [dict(m) for m in self.messages],
                "params": _params(self.params),
                "template": self.template_hash,
            }
        )


def _params(p: SamplingParams) -> dict:
    """``SamplingParams.to_dict()`` without its deep copy: every field, tuples as lists (tens of thousands of keys)."""
    out = {f.name: getattr(p, f.name) for f in fields(p)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


Kind = Literal["document", "demonstration"]


@dataclass
class Record:
    """One row of the corpus.

    Documents carry ``text``; demonstrations carry ``messages`` (no teacher system
    prompt: the trained model must learn the behaviour, not read it). ``meta`` holds
    provenance: model, template_hash, task_key, spec_version, idea, judge verdict...
    """

    kind: Kind
    principle_id: str
    text: str = ""
    messages: list[Message] = field(default_factory=list)
    genre: str | None = None  # documents
    demo_kind: str | None = None  # demonstrations: direct, indirect, edge_case, ...
    facet: str | None = None  # the facet of its principle it is about: "principle", "subrule-1", "generated-3", ...
    tokens: int = 0
    meta: dict = field(default_factory=dict)
    id: str = ""
    # The prompt's own lines and sentences, for the echoed-brief check (specc.curate.scaffold); never written.
    brief: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.id:
            self.id = sha256_hex({"kind": self.kind, "text": self.text, "messages": self.messages})[:32]

    @property
    def content(self) -> str:
        """The text curation looks at: the document, or the conversation flattened."""
        if self.kind == "document":
            return self.text
        return "\n\n".join(m["content"] for m in self.messages)

    @property
    def first_user_turn(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")
