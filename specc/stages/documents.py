"""Midtraining documents: ideas per principle × genre, then a document for each of the first k ideas."""

from __future__ import annotations

from specc.generate.base import Generation
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle
from specc.curate.scaffold import brief_pieces
from specc.stages import Context, Pipeline, max_tokens_for, recover_list, retry_longer, retry_with_error, spec_content
from specc.stages.parsing import Idea, ParseFailure, parse_document, parse_ideas

TONES = ("neutral", "warm", "critical", "enthusiastic", "sceptical", "formal", "conversational", "reflective")
# Target lengths as shares of what fits in documents.max_tokens, so lengths vary across a corpus.
LENGTHS = (0.35, 0.6, 0.9)


def ideas_task(ctx: Context, p: Principle, genre: str, round: int = 0, k: int | None = None) -> Task:
    """Ask for ``ideas_per_genre`` ideas whatever ``k`` is (so the budget never changes the key); the first ``k`` get a document."""
    docs = ctx.spec.corpus.documents
    messages = ctx.templates["ideas"].render(
        **ctx.base(p, round), genre=genre, k=docs.ideas_per_genre, audiences=list(docs.audiences)
    )
    params = ctx.params("ideas", max_tokens_for(ctx.spec, "ideas"), (p.id, genre, round), json_mode=True)
    k = docs.ideas_per_genre if k is None else max(0, min(k, docs.ideas_per_genre))
    return ctx.task("ideas", p, messages, params, {"genre": genre, "round": round, "k": k})


def ideas_tasks(ctx: Context, round: int = 0, genres_for: dict[str, list[tuple[str, int]]] | None = None) -> list[Task]:
    """An ideas task per planned (genre, documents) slot of each principle; ``genres_for`` gives a top-up's slots instead."""
    out = []
    for p in ctx.spec.principles:
        slots = ctx.sizing()[p.id].genres if genres_for is None else genres_for.get(p.id, [])
        out += [ideas_task(ctx, p, g, round, k) for g, k in slots]
    return out


def document_task(ctx: Context, p: Principle, genre: str, idea: Idea, round: int = 0, parent_key: str = "") -> Task:
    docs = ctx.spec.corpus.documents
    h = int(sha256_hex([p.id, genre, round, idea.normalised_title()])[:8], 16)
    tone = TONES[h % len(TONES)]
    # ~0.7 words per token leaves room for the plan and the markers.
    target_words = max(40, int(docs.max_tokens * 0.7 * LENGTHS[(h // len(TONES)) % len(LENGTHS)]) // 10 * 10)
    messages = ctx.templates["document"].render(
        **ctx.base(p, round), genre=genre, idea=idea.model_dump(), tone=tone, target_words=target_words
    )
    params = ctx.params("document", max_tokens_for(ctx.spec, "document"), (p.id, genre, round, idea.normalised_title()))
    meta = {"genre": genre, "idea": idea.model_dump(), "round": round, "tone": tone, "target_words": target_words,
            "parent_key": parent_key}
    return ctx.task("document", p, messages, params, meta)


def on_ideas(pipe: Pipeline, task: Task, gen: Generation) -> list[Task]:
    ctx = pipe.ctx
    try:
        ideas, truncated, invalid = parse_ideas(gen.text)
    except ParseFailure as f:
        return recover_list(pipe, task, gen, f, "ideas")
    pipe.drop("ideas:invalid", invalid, task=task)
    p = ctx.spec.principle(task.principle_id)
    seen = set(pipe.prior_ideas.get(p.id, ()))
    kept: list[Idea] = []
    for idea in ideas:
        key = idea.normalised_title()
        if key in seen:
            pipe.drop("ideas:duplicate", task=task)
            continue
        seen.add(key)
        if len(kept) < task.meta["k"]:
            kept.append(idea)
    pipe.round_ideas.setdefault(p.id, set()).update(i.normalised_title() for i in kept)
    pipe.ideas_count += len(kept)
    return [document_task(ctx, p, task.meta["genre"], idea, task.meta["round"], task.key) for idea in kept]


def on_document(pipe: Pipeline, task: Task, gen: Generation) -> list[Task]:
    ctx = pipe.ctx
    try:
        text = parse_document(gen.text, gen.finish_reason)
    except ParseFailure as f:
        retry = (
            retry_longer(task)
            if f.reason == "truncated"
            else retry_with_error(
                task, gen.text, f,
                "Write the complete document again between <document> and </document>, "
                "with concrete details instead of placeholders.",
            )
        )
        if retry:
            return [retry]
        pipe.drop(f"parse:{f.reason}", task=task)
        return []
    meta = ctx.provenance(task, gen) | {
        k: task.meta[k] for k in ("genre", "idea", "tone", "target_words", "parent_key")
    }
    content = spec_content(ctx.spec.principle(task.principle_id)) + [ctx.spec_text, *task.meta["idea"].values()]
    pipe.records.append(
        Record(
            kind="document",
            principle_id=task.principle_id,
            text=text,
            genre=task.meta["genre"],
            tokens=ctx.tokenizer.count(text),
            meta=meta,
            brief=brief_pieces([m["content"] for m in task.messages], content, ctx.pieces),
        )
    )
    return []
