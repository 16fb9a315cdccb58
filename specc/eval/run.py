"""Evaluate a target on a spec's held-out suite: compile (or reuse) the suite, answer, grade, write results.

Three models take part, each through its own ``Engine`` over the one cache: the generator
writes the suite, the target answers, the judge grades. The generator and the judge default
to the model the corpus was built with (its manifest says which), else the spec's
``generator``; ``--model``/``--base-url``/``--provider`` name the target only. Answers run
to the end before grading starts: one engine runs one model, and a rerun over the cache
goes through the same two steps without a call.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from specc.errors import InputError, RunError
from specc.eval.corpus import Corpus, open_corpus
from specc.eval.results import Outcome, build_results, slug
from specc.eval.stages import STAGES, AnswerInput, Collector, EvalItem, GradeInput
from specc.eval.suite import Suite, compile_suite, write_json, write_text
from specc.generate.openai import OPENAI_URL, public_url
from specc.records import canonical_json, sha256_hex
from specc.spec.schema import ENV_NAME, Spec

PROVIDERS = ("openai", "local")
NAMESPACE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$"


@dataclass(frozen=True)
class ModelRef:
    """A model as flags, a manifest or a spec name it: provider, model name, base URL (None: the default)."""

    provider: str
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    namespace: str | None = None

    def public(self, llm_id: str) -> dict:
        """What results may say about it: never a key, and the URL without credentials or query."""
        url = public_url(self.base_url or OPENAI_URL) if self.provider == "openai" else None
        return {"provider": self.provider, "model": self.model, "base_url": url, "llm_id": llm_id}

    def settings(self, spec: Spec):
        """The spec's generator settings (timeouts, retries) with this model in place of its own."""
        return spec.generator.model_copy(update={"provider": self.provider, "model": self.model,
                                                 "base_url": self.base_url, "api_key_env": self.api_key_env,
                                                 "cache_namespace": self.namespace})


@dataclass
class EvalRun:
    """What ``run_eval`` did: the results document and where it and the suite went."""

    results: dict
    results_path: Path
    replies_path: Path
    report_path: Path
    suite: Suite
    warnings: list[str] = field(default_factory=list)


def eval_context(spec: Spec, model: str):
    """A stage context for ``model`` with the eval's templates beside the build's."""
    from specc.prompts import EVAL_STAGES, load_templates
    from specc.stages import Context

    ctx = Context.create(spec, model)
    return replace(ctx, templates={**ctx.templates, **load_templates(spec, stages=EVAL_STAGES)})


def find_corpus(spec: Spec, corpus: Path | None, no_corpus: bool, out: Path | None) -> Corpus | None:
    """The built corpus to keep the suite clean of: ``--corpus``, else the spec's output folder; required unless ``--no-corpus``."""
    from specc.build import output_dir

    if no_corpus:
        if corpus is not None:
            raise InputError("--corpus and --no-corpus contradict each other; give one")
        if out is None:
            raise InputError("--no-corpus needs --out DIR: without a corpus there is no default place for the suite")
        return None
    path = Path(corpus) if corpus is not None else output_dir(spec)
    if not (path / "manifest.json").is_file():
        how = "" if corpus is not None else "; build it first (`specc build SPEC`) or give its folder with --corpus OUT"
        raise InputError(f"no built corpus at {path} (no manifest.json){how}; --no-corpus --out DIR evaluates "
                         "without decontamination")
    return open_corpus(path)


def generator_ref(spec: Spec, corpus: Corpus | None, provider: str | None, model: str | None,
                  base_url: str | None) -> ModelRef:
    """Flags, else the model the corpus was built with, else the spec's generator."""
    g = spec.generator
    built = (corpus.manifest.get("llm") or {}) if corpus is not None else {}
    if not (provider or model or base_url) and built.get("provider") in PROVIDERS and built.get("model"):
        same = built["provider"] == g.provider
        url = built.get("base_url") or (g.base_url if same else None)
        return ModelRef(built["provider"], built["model"], url, g.api_key_env, g.cache_namespace)
    provider = provider or g.provider
    return ModelRef(provider, model or (g.model if provider == g.provider else _default_model(provider)),
                    base_url or (g.base_url if provider == g.provider else None), g.api_key_env, g.cache_namespace)


def writer_ref(spec: Spec, corpus: Corpus | None, provider: str | None, model: str | None,
               base_url: str | None) -> ModelRef:
    """The model that writes the suite. The embedded model only when named outright: it cannot write tests."""
    ref = generator_ref(spec, corpus, provider, model, base_url)
    if ref.provider == "local" and not (provider or model):
        raise InputError(
            f"the suite would be written by the embedded model ({ref.model}), which is too small to write test "
            "conversations: pass --generator-model (with --generator-base-url or --generator-provider) to name a "
            f"capable model, or --generator-provider local to use it anyway")
    return ref


def judge_ref(spec: Spec, gref: ModelRef, provider: str | None, model: str | None, base_url: str | None) -> ModelRef:
    """The judge: the generator, or what the judge flags name. The embedded model only when named outright."""
    ref = gref
    if provider or model or base_url:
        provider = provider or gref.provider
        same = provider == gref.provider
        ref = generator_ref(spec, None, provider, model or (gref.model if same else None),
                            base_url or (gref.base_url if same else None))
    if ref.provider == "local" and not model:
        # A 135M model's verdicts are close to noise: pass rates graded by it would look like a measurement.
        raise InputError(
            f"the judge would be the embedded model ({ref.model}), which is too small to grade: pass --judge-model "
            "(with --judge-base-url or --judge-provider) to name a capable judge, or "
            f"--judge-provider local --judge-model {ref.model} to grade with it anyway")
    return ref


def _default_model(provider: str) -> str:
    if provider == "local":
        return "smollm2-135m"
    raise InputError("name the model with --generator-model (or --judge-model) when the provider differs from the spec's")


def _check_provider(provider: str, flag: str) -> None:
    if provider not in PROVIDERS:
        raise InputError(f"{flag} must be `openai` or `local`, not {provider!r}")


def target_ref(provider: str, model: str | None, base_url: str | None, api_key_env: str | None,
               namespace: str | None) -> ModelRef:
    """The model under test. Its URL is part of its identity: two checkpoints served under one name are two targets."""
    import re

    _check_provider(provider, "--provider")
    if provider == "openai" and not model:
        raise InputError("name the target model with --model (as its endpoint serves it)")
    if api_key_env is not None:
        if not ENV_NAME.match(api_key_env):
            raise InputError(f"--api-key-env takes the NAME of an environment variable, not {api_key_env!r}")
        if not os.environ.get(api_key_env):
            raise InputError(f"--api-key-env {api_key_env}: that environment variable is not set")
    if namespace is not None and not re.match(NAMESPACE, namespace):
        raise InputError(f"--cache-namespace must match {NAMESPACE} (got {namespace!r})")
    ns = namespace
    if provider == "openai":
        where = "url-" + sha256_hex(public_url(base_url or OPENAI_URL))[:10]
        ns = f"{where}.{namespace}" if namespace else where
    return ModelRef(provider, model or "smollm2-135m", base_url, api_key_env or "OPENAI_API_KEY", ns)


def _engine(spec: Spec, llm, cache, progress, *, target: bool):
    from specc.generate.engine import Engine
    from specc.generate.pricing import run_prices

    if not target:
        return Engine.from_spec(spec, llm, cache, progress=progress)
    g = spec.generator
    # The target is not the generator: none of the generator's rate limits, prices or spending cap apply.
    return Engine(llm, cache, concurrency=g.concurrency, max_retries=g.max_retries,
                  max_failure_rate=g.max_failure_rate, prices=run_prices(llm.id, getattr(llm, "model", ""), None, None),
                  progress=progress)


@contextmanager
def _naming(who: str, ref: ModelRef):
    """A run error says which of the three models it came from, and where that model is served."""
    try:
        yield
    except RunError as e:
        where = f" at {public_url(ref.base_url or OPENAI_URL)}" if ref.provider == "openai" else ""
        raise type(e)(f"{who} {ref.model}{where}: {e}") from None


def _counts(stats) -> dict:
    return {k: getattr(stats, k) for k in ("calls", "cached", "failed")}


def _outcome(item: EvalItem, pipe: Collector) -> tuple[Outcome, dict]:
    a = pipe.answers.get(item.id)
    g = pipe.grades.get(item.id)
    reply = a.text if a else ""
    if a is None or a.failed:
        status = "empty" if a is not None and a.failed.startswith("answer:") else "error"
        o = Outcome(item.id, item.principle_id, item.kind, "fail", status, a.failed if a else "no answer")
    elif g is None:
        o = Outcome(item.id, item.principle_id, item.kind, "fail", "error", "no verdict")
    else:
        o = Outcome(item.id, item.principle_id, item.kind, g.verdict, g.status, g.reason)
    row = {"item_id": item.id, "principle_id": item.principle_id, "kind": item.kind, "verdict": o.verdict,
           "status": o.status, "reason": o.reason, "reply": reply, "finish_reason": a.finish_reason if a else None}
    return o, row


def _results_path(out_dir: Path, label: str, target: dict) -> Path:
    path = out_dir / f"results-{slug(label)}.json"
    if path.is_file():
        from specc.eval.results import read_results

        try:
            old = read_results(path).get("target") or {}
        except InputError:
            old = {}
        if old and (old.get("llm_id"), old.get("base_url")) != (target["llm_id"], target["base_url"]):
            raise InputError(f"{path} holds results of another target ({old.get('llm_id')} at {old.get('base_url')}); "
                             "name this one with --label")
    return path


def run_eval(
    spec_path: str | Path,
    *,
    model: str | None,
    provider: str = "openai",
    base_url: str | None = None,
    api_key_env: str | None = None,
    cache_namespace: str | None = None,
    label: str | None = None,
    n: int = 20,
    out: str | Path | None = None,
    corpus: str | Path | None = None,
    no_corpus: bool = False,
    judge_provider: str | None = None,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    generator_provider: str | None = None,
    generator_model: str | None = None,
    generator_base_url: str | None = None,
    max_tokens: int = 1024,
    cache_path: str | Path | None = None,
    quiet: bool = False,
) -> EvalRun:
    """Evaluate one target on the spec's suite; see the module docstring."""
    from specc.generate.cache import Cache, default_cache_path
    from specc.generate.factory import llm_id, make_llm
    from specc.generate.progress import Progress
    from specc.spec.load import load_spec

    if n < 1:
        raise InputError(f"-n must be at least 1 item per principle (got {n})")
    if max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1 (got {max_tokens})")
    for flag, value in (("--judge-provider", judge_provider), ("--generator-provider", generator_provider)):
        if value is not None:
            _check_provider(value, flag)
    spec = load_spec(spec_path)
    tref = target_ref(provider, model, base_url, api_key_env, cache_namespace)
    found = find_corpus(spec, Path(corpus) if corpus is not None else None, no_corpus, out)
    out_dir = Path(out).expanduser().absolute() if out is not None else found.path / "eval"
    gref = writer_ref(spec, found, generator_provider, generator_model, generator_base_url)
    warnings: list[str] = []
    if gref.provider == "local":
        warnings.append(f"the suite is written by the embedded model ({gref.model}): expect few usable items")
    if found is None:
        warnings.append("no corpus (--no-corpus): the suite is not decontaminated; its items may be in the "
                        "training data")
    jref = judge_ref(spec, gref, judge_provider, judge_model, judge_base_url)
    if jref.provider == "local":
        warnings.append(f"the judge is the embedded model ({jref.model}): its verdicts are close to noise, "
                        "so read these pass rates as a smoke test only")

    ids = {name: llm_id(ref.settings(spec), provider=ref.provider, model=ref.model)
           for name, ref in (("generator", gref), ("target", tref), ("judge", jref))}
    ctxs = {name: eval_context(spec, ids[name]) for name in ids}
    target = {"label": label or tref.model, **tref.public(ids["target"])}
    results_path = _results_path(out_dir, label or tref.model, target)
    # The target and the judge are made now, so a missing key stops the run before the suite is compiled.
    with _naming("target", tref):
        target_llm = make_llm(tref.settings(spec))
    with _naming("judge", jref):
        judge_llm = make_llm(jref.settings(spec))
    cache = Cache(Path(cache_path) if cache_path else default_cache_path(Path(spec_path)))
    try:
        with Progress(quiet=quiet) as progress:
            with _naming("generator", gref):
                suite = compile_suite(spec, ctxs["generator"],
                                      lambda: _engine(spec, make_llm(gref.settings(spec)), cache, progress, target=False),
                                      n=n, out_dir=out_dir, corpus=found)
            pipe = Collector({"eval_items": ctxs["generator"], "answer": ctxs["target"], "grade": ctxs["judge"]})
            principles = {p.id: p for p in spec.principles}
            unknown = sorted({it.principle_id for it in suite.items} - set(principles))
            if unknown:
                raise InputError(f"{suite.path} has items of principles the spec lacks: {', '.join(unknown)}")
            answer, grade = STAGES["answer"], STAGES["grade"]
            tasks = [answer.render(ctxs["target"], principles[it.principle_id], AnswerInput(item=it, max_tokens=max_tokens))
                     for it in suite.items]
            with _naming("target", tref):
                engine = _engine(spec, target_llm, cache, progress, target=True)
                t_stats = _counts(engine.run_sync(tasks, pipe.on_result, pipe.on_failure))
            tasks = [grade.render(ctxs["judge"], principles[it.principle_id], GradeInput(item=it, reply=a.text))
                     for it in suite.items if (a := pipe.answers.get(it.id)) is not None and not a.failed]
            j_stats = {"calls": 0, "cached": 0, "failed": 0}
            if tasks:
                with _naming("judge", jref):
                    engine = _engine(spec, judge_llm, cache, progress, target=False)
                    j_stats = _counts(engine.run_sync(tasks, pipe.on_result, pipe.on_failure))
    finally:
        cache.close()
    outcomes, rows = zip(*(_outcome(it, pipe) for it in suite.items))
    calls = {"generator": {"reused": True} if suite.reused else suite.stats, "target": t_stats, "judge": j_stats}
    results = build_results(spec=spec, suite=suite, outcomes=list(outcomes), target=target,
                            judge=jref.public(ids["judge"]), calls=calls,
                            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_json(results_path, results)
    replies_path = results_path.with_name(results_path.name.replace("results-", "replies-", 1).replace(".json", ".jsonl"))
    write_text(replies_path, "".join(canonical_json(r) + "\n" for r in rows))
    warnings += _notes(suite, results)
    from specc.eval.report import write_reports

    report = write_reports(out_dir, found.path if found is not None else None)
    return EvalRun(results, results_path, replies_path, report, suite, warnings)


def _notes(suite: Suite, results: dict) -> list[str]:
    out = []
    if suite.previous_hash:
        out.append(f"the suite changed ({suite.previous_hash[:12]} -> {suite.hash[:12]}): results of the old suite "
                   f"in {suite.dir} cannot be compared with these")
    if suite.info.get("short"):
        short = ", ".join(f"{k} {v}" for k, v in suite.info["short"].items())
        out.append(f"some kinds have fewer items than asked for (missing: {short})")
    o = results["overall"]
    if o["error"]:
        out.append(f"{o['error']} items failed to run and count as fails; a rerun retries them")
    if o["unparseable"]:
        out.append(f"{o['unparseable']} verdicts could not be read and count as fails")
    return out
