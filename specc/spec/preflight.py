"""What `specc build` would reject before its first LLM call, checked by `specc validate`.

The schema cannot see files and code: the eval files named for decontamination, the
tokenizer, the prompt templates. These checks run the same code a build runs (the eval
file reader, the sizing, and one task of every stage rendered through the real stage
code with no LLM), so validate and build cannot disagree. ``warnings`` lists what a build
would run but do badly: settings the spec's model cannot handle (``specc.spec.advice``).
"""

from __future__ import annotations

from specc.errors import InputError, SpecIssue
from specc.spec.load import Loc, issue_at
from specc.spec.schema import STAGES, Spec


def preflight(spec: Spec) -> list[SpecIssue]:
    """Every problem a build of ``spec`` would stop at before generating, located in the spec file."""
    from specc.curate.decontam import read_eval_file

    issues: list[SpecIssue] = []
    for i, rel in enumerate(spec.corpus.decontamination.files):
        loc = ("corpus", "decontamination", "files", i)
        path = spec.resolve(rel)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "not found"
            issues.append(issue_at(spec, loc, f"eval file {rel!r} {what} (looked for {path})"))
            continue
        try:
            read_eval_file(path, rel)
        except InputError as e:
            issues.append(issue_at(spec, loc, str(e)))
    try:
        from specc.stages import Context, llm_id
        from specc.stages.samples import one_task_per_stage

        # The context loads the templates and the tokenizer; sizing and one task of every stage
        # run the build's own code, at any budget in the same short time.
        ctx = Context.create(spec, llm_id(spec))
        ctx.sizing()
        one_task_per_stage(ctx)
    except InputError as e:
        loc = _culprit(spec, str(e))
        issues.append(issue_at(spec, loc, _without_prefix(str(e), loc)))
    return issues


def warnings(spec: Spec) -> list[str]:
    """Settings a build of ``spec`` would run with but its model cannot handle, each with its fix."""
    from specc.spec.advice import warnings as advise
    from specc.stages import llm_id

    return advise(spec, llm_id(spec))


def _without_prefix(message: str, loc: Loc) -> str:
    """The message without a leading ``templates.reply:`` when the location already says it."""
    prefix = ".".join(map(str, loc)) + ": "
    return message[len(prefix) :] if loc and message.startswith(prefix) else message


def _culprit(spec: Spec, message: str) -> Loc:
    """The field a planner error is about, found by the value it quotes; the spec's top otherwise."""
    for stage in STAGES:
        override = getattr(spec.templates, stage)
        if override and (override in message or str(spec.resolve(override)) in message):
            return ("templates", stage)
    tokenizer = spec.corpus.budget.tokenizer
    if "tokenizer" in message and tokenizer in message:
        return ("corpus", "budget", "tokenizer")
    return ()
