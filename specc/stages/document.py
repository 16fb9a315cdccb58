"""Documents: one per kept idea, written in its document type about its facet; each becomes a record."""

from __future__ import annotations


from specc.generate.base import Generation
from specc.plan.sizing import LENGTHS, WORDS_SHARE
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage, TextResult, prompt_of, retry_longer, retry_with_error, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet
from specc.stages.parsing import Idea, parse_document

TONES = ("neutral", "warm", "critical", "enthusiastic", "sceptical", "formal", "conversational", "reflective")


class DocumentInput(Input):
    round: int = 0
    facet: Facet
    doctype: str
    idea: Idea
    parent_key: str = ""  # the ideas task it came from


DocumentResult = TextResult


class DocumentStage(Stage[DocumentInput, DocumentResult]):
    name = "document"
    drop_prefix = "parse"
    retry_instruction = ("Write the complete document again between <document> and </document>, "
                         "with concrete details instead of placeholders.")

    @staticmethod
    def brief(ctx: Context, p: Principle, inp: DocumentInput) -> tuple[str, int]:
        """(tone, target words): varied across the corpus, fixed for an idea."""
        h = int(sha256_hex([p.id, inp.doctype, inp.idea.normalised_title()])[:8], 16)
        # WORDS_SHARE words per token of max_tokens leaves room for the plan and the markers.
        words = int(ctx.spec.corpus.documents.max_tokens * WORDS_SHARE * LENGTHS[(h // len(TONES)) % len(LENGTHS)])
        return TONES[h % len(TONES)], max(40, words // 10 * 10)

    def render(self, ctx: Context, p: Principle, inp: DocumentInput) -> Task:
        tone, target_words = self.brief(ctx, p, inp)
        messages = ctx.templates["document"].render(
            **ctx.base(p), facet=inp.facet.model_dump(), genre=inp.doctype, idea=inp.idea.model_dump(), tone=tone,
            target_words=target_words,
        )
        seed = (p.id, inp.facet.id, inp.doctype, inp.idea.normalised_title())
        return ctx.task("document", p, messages, ctx.params("document", max_tokens_for(ctx.spec, "document"), seed), inp)

    def retry(self, ctx: Context, task: Task, gen: Generation, failure) -> Task | None:
        if failure.reason == "truncated":
            return retry_longer(task)
        return retry_with_error(task, gen.text, failure, self.retry_instruction)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> DocumentResult:
        return DocumentResult(text=parse_document(gen.text, gen.finish_reason), finish_reason=gen.finish_reason)

    def _meta(self, ctx: Context, task: Task, finish_reason: str | None) -> dict:
        inp: DocumentInput = task.input
        tone, target_words = self.brief(ctx, ctx.principle(task.principle_id), inp)
        return ctx.provenance(task, finish_reason, inp.round) | {"genre": inp.doctype, "idea": inp.idea.model_dump(), "tone": tone,
                       "target_words": target_words, "parent_key": inp.parent_key}

    def children(self, pipe, task: Task, result: DocumentResult) -> list[Task]:
        ctx, inp = pipe.ctx, task.input
        # The document may quote its principle, facet and idea, never the rest of its prompt.
        brief = pipe.brief(prompt_of(task), (ctx.principle(task.principle_id),),
                           [inp.facet.text, *inp.idea.model_dump().values()])
        # Tokens are counted in curation, in batches; the plan's walk never needs them.
        pipe.add(Record(kind="document", principle_id=task.principle_id, text=result.text, genre=inp.doctype,
                        facet=inp.facet.id, meta=self._meta(ctx, task, result.finish_reason), brief=brief))
        return []

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        inp: DocumentInput = task.input
        row = Record(kind="document", principle_id=task.principle_id, text=text, genre=inp.doctype,
                     facet=inp.facet.id, meta=self._meta(pipe.ctx, task, None),
                     id=sha256_hex(["document", task.key, reason])[:32])
        pipe.drop(reason, task=task, row=row)
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        name = ctx.spec.assistant.name
        return f"<plan>\nstub\n</plan>\n<document>\n{name} {stub_words(task.key, 40)}.\n</document>"


STAGE = DocumentStage()
