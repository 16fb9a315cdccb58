"""Quality filters: cheap, explainable checks that drop generations a trainer should never see."""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache

import numpy as np

from specc.curate.base import Step, process_context
from specc.curate.normalize import normalize
from specc.records import Record
from specc.spec.schema import Spec

# Refusals at the start of a document: the generator declined instead of writing.
_REFUSAL = re.compile(
    r"^\W*(?:i(?:'m| am) sorry,? but |sorry,? but |unfortunately,? )?"
    r"i (?:cannot|can't|can not|won't|am unable to|'m unable to|am not able to) "
    r"(?:write|create|produce|generate|help|comply|assist|fulfil)",
    re.IGNORECASE,
)
# Text about the generation rather than the document itself.
_META_ANYWHERE = re.compile(r"\bas an ai(?: language)? model\b", re.IGNORECASE)
# "Here's the thing..." can open an op-ed; "Here is a news report about..." cannot.
_ARTIFACT = (
    r"(?:document|article|post|report|story|essay|piece|draft|version|faq|transcript|memo|summary|entry|section"
    r"|letter|review|interview|thread|study|explainer|lecture|notes|page|text|response)s?"
)
_META_START = re.compile(
    r"^\W*(?:(?:sure|certainly|of course|absolutely|okay|ok)\b[!,.]?\s*)?"
    r"(?:(?:here(?: is|'s)|below is) (?:a|an|the|your)\s+(?:[\w-]+\s+){0,4}?" + _ARTIFACT + r"\b"
    r"|sure[!,.]?\s+below\b)",
    re.IGNORECASE,
)
_META_END = re.compile(
    r"(?:let me know if you(?:'d| would)? (?:like|want|need)\b|feel free to (?:adjust|modify|customi[sz]e|edit)\b"
    r"|i hope this (?:document|article|piece|helps)\b)",
    re.IGNORECASE,
)
_TAGS = re.compile(r"</?(?:doc|document|think|thinking|scratchpad)>|\[/?INST\]|<</?SYS>>|<\|[a-z_]+\|>", re.IGNORECASE)
# Matched against lower-cased text (a case-insensitive multiline scan is several times slower).
_PLANNING = re.compile(
    r"^[ \t>*#_-]*(?:plan|outline|draft|rough draft|revised draft|final draft|word count)[ \t*_]*:", re.MULTILINE
)
_PLACEHOLDER = re.compile(
    r"\[(?:your |insert |the |recipient'?s? |company'?s? |author'?s? )?"
    r"(?:name|full name|company|company name|date|location|city|country|organi[sz]ation|address|email|"
    r"phone|phone number|title|job title|product|product name|author|person|school|website|number)\]"
    r"|\[(?:insert|your|name|author|date|company|organi[sz]ation|location|city|country|link|url|website|phone"
    r"|e-?mail|product|first name|last name|x{2,}|\.\.\.)[^\]\n]{0,40}\]"
    r"|lorem ipsum|<insert|\btodo\b"
)  # matched against lower-cased text
_PLACEHOLDER_CASED = re.compile(r"\bXXX+\b|\{\{")


def find_placeholder(text: str, lower: str | None = None) -> str | None:
    """The first template placeholder left in ``text`` ("[Name]", "Lorem ipsum", "XXX"...), if any.

    The one definition: generation parsing (which retries) and the quality filter both use it.
    """
    lower = text.lower() if lower is None else lower
    # Plain substring guards first: a regex over a whole document costs tens of microseconds.
    if "[" in text or "lorem" in lower or "<insert" in lower or "todo" in lower:
        m = _PLACEHOLDER.search(lower)
        if m:
            return text[m.start():m.end()]
    if "XXX" in text or "{{" in text:
        m = _PLACEHOLDER_CASED.search(text)
        if m:
            return m.group(0)
    return None


# A reply quoting the teacher's instructions instead of simply behaving.
_LEAK = re.compile(
    r"\bas (?:instructed|directed) by my (?:principles|guidelines|instructions|system prompt|teacher)\b"
    r"|\bmy (?:principles|guidelines|instructions) (?:state|say|tell me|instruct me|require me)\b",
    re.IGNORECASE,
)
# Language identification dominates the filter's cost; big inputs spread it over processes.
_LANG_BATCH = 4096
_LANG_CHUNK = 256
_TERMINAL = set(".!?…\"'”’)]»*_`~>|")
_DANGLING = set(",;:-–—(")


@lru_cache(maxsize=1)
def _language_identifier():
    """py3langid's identifier with probabilities, and the set of labels it knows."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return ident, frozenset(ident.labels)


def _target_prob(texts: list[str], language: str) -> list[float]:
    """Probability that each text is in ``language`` (a module function so a process pool can run it)."""
    ident, labels = _language_identifier()
    if language not in labels:
        return [0.0] * len(texts)
    if _batch_agrees():
        return _batch_probs(ident, texts, language)
    return [dict(ident.rank(t)).get(language, 0.0) for t in texts]


# py3langid's scores, for many texts at once. Its DFA walks each text's bytes in a Python loop; here
# all texts of a batch take each step together as numpy operations. Each text is then scored exactly
# as ``LanguageIdentifier._decide`` scores it (features in the order first seen, the same numpy calls),
# so the probabilities are the library's to the bit; ``_batch_agrees`` checks that against ``rank``.
@lru_cache(maxsize=1)
def _walk_tables():
    ident = _language_identifier()[0]
    nextmove = np.frombuffer(ident.tk_nextmove, dtype=np.uint32 if ident.tk_nextmove.itemsize == 4 else np.uint16)
    return (nextmove.astype(np.int64), np.asarray(ident._rowbase, dtype=np.int64),
            np.asarray(ident.tk_output, dtype=np.int64))


def _batch_scores(ident, texts: list[str]) -> list[np.ndarray]:
    nextmove, rowbase, output = _walk_tables()
    encoded = [ident._encode(t) for t in texts]
    if not encoded:
        return []
    width = max(len(e) for e in encoded)
    data = np.zeros((len(encoded), width), dtype=np.int64)
    for i, e in enumerate(encoded):
        data[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    state = np.zeros(len(encoded), dtype=np.int64)
    feats = np.empty((width, len(encoded)), dtype=np.int64)
    for pos in range(width):
        state = nextmove[rowbase[state] + data[:, pos]]
        feats[pos] = output[state]
    feats = feats.T
    out = []
    for i, e in enumerate(encoded):
        f = feats[i, : len(e)]
        visits = Counter(f[f >= 0].tolist())
        if visits:
            scores = ident._sparse_score(visits, ident.nb_ptc)
        else:
            scores = np.full(len(ident.nb_classes), 0.0, dtype=np.float32)
        scores *= 1.0 / math.sqrt(len(e) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for a, b in ident._alias_pairs:
            scores[a] += scores[b]
            scores[b] = 0.0
        out.append(scores)
    return out


def _batch_probs(ident, texts: list[str], language: str) -> list[float]:
    col = ident.nb_classes.index(language)  # the first column of a label holds its merged score
    return [s.tolist()[col] for s in _batch_scores(ident, texts)]


_SAMPLES = (
    "The assistant explained why it could not share the file, and what the user could do instead.",
    "Der Assistent erklärte, warum er die Datei nicht teilen konnte und was der Nutzer stattdessen tun kann.",
    "L'assistant a expliqué pourquoi il ne pouvait pas partager le fichier, et ce que l'utilisateur pouvait faire.",
    "助手解释了为什么不能共享该文件，以及用户可以做什么。", "Ассистент объяснил, почему не может поделиться файлом.",
    "AN UPPER CASE LINE ABOUT THE WEATHER TODAY", "12345 !!! ...", "", "ok",
)


@lru_cache(maxsize=1)
def _batch_agrees() -> bool:
    """Whether the batch scores equal ``LanguageIdentifier.rank`` on a few texts (else rank is used)."""
    try:
        ident = _language_identifier()[0]
        for lang in ("en", "de", "fr", "zh", "ru"):
            if _batch_probs(ident, list(_SAMPLES), lang) != [dict(ident.rank(t)).get(lang, 0.0) for t in _SAMPLES]:
                return False
        return True
    except Exception:  # noqa: BLE001 - another py3langid's internals: fall back to its public API
        return False


def ends_mid_sentence(text: str, min_line_words: int = 8) -> bool:
    """True when a text stops inside a sentence (short last lines such as sign-offs are fine)."""
    tail = text.rstrip()
    if not tail or tail[-1] in _TERMINAL:
        return False
    if tail[-1] in _DANGLING:
        return True
    last_line = tail.rsplit("\n", 1)[-1]
    return tail[-1].isalnum() and len(last_line.split()) >= min_line_words


class QualityFilter(Step):
    """Drops empty, short, truncated, refusing, meta, marked-up, placeholder and off-language records."""

    name = "filter"

    def __init__(
        self,
        *,
        assistant_name: str = "",
        language: str = "en",
        min_words: int = 40,
        min_reply_words: int = 3,
        require_assistant_name: bool = True,
        check_language: bool = True,
        principle_statements: dict[str, str] | None = None,
        lang_min_words: int = 20,
        lang_min_prob: float = 0.05,
        lang_sample_chars: int = 500,
        leak_min_words: int = 8,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.min_words = min_words
        self.min_reply_words = min_reply_words
        self.name_re = (
            re.compile(r"(?<!\w)" + re.escape(assistant_name.strip()) + r"(?!\w)", re.IGNORECASE)
            if require_assistant_name and assistant_name.strip()
            else None
        )
        self.language = language
        self.check_language = check_language
        self.lang_min_words = lang_min_words
        self.lang_min_prob = lang_min_prob
        self.lang_sample_chars = lang_sample_chars
        # Statements long enough that quoting one verbatim can only be a leak, not a coincidence.
        self.statements = {
            pid: norm
            for pid, s in (principle_statements or {}).items()
            if len((norm := normalize(s)).split()) >= leak_min_words
        }

    @classmethod
    def from_spec(cls, spec: Spec, **overrides) -> QualityFilter:
        f = spec.corpus.filters
        args = dict(
            assistant_name=spec.assistant.name,
            language=spec.language,
            min_words=f.min_words,
            min_reply_words=f.min_reply_words,
            require_assistant_name=f.require_assistant_name,
            check_language=f.check_language,
            principle_statements={p.id: p.statement for p in spec.principles},
        )
        args.update(overrides)
        return cls(**args)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        reason = self._checks(record)
        if reason is None:
            window = self._language_window(record)
            if window is not None and _target_prob([window], self.language)[0] < self.lang_min_prob:
                reason = "wrong_language"
        return (False, reason) if reason else True

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        """Like the base, but language checks run in batches, on worker processes for big inputs.

        While the workers judge one batch's language, this process runs the other checks on the
        next batch.
        """
        pool = None
        pending = None
        batch: list[Record] = []
        batches = 0
        try:
            for record in records:
                batch.append(record)
                if len(batch) >= _LANG_BATCH:
                    batches += 1
                    if pool is None and batches >= 2 and self.workers > 1:
                        pool = ProcessPoolExecutor(self.workers, mp_context=process_context())
                    job = self._start(batch, pool)
                    if pending is not None:
                        yield from self._finish(*pending)
                    pending, batch = job, []
            job = self._start(batch, pool)
            if pending is not None:
                yield from self._finish(*pending)
            yield from self._finish(*job)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _start(self, batch: list[Record], pool: ProcessPoolExecutor | None) -> tuple:
        reasons = [self._checks(r) for r in batch]
        windows = {i: w for i, r in enumerate(batch) if reasons[i] is None and (w := self._language_window(r))}
        texts = list(windows.values())
        futures = []
        if pool is not None and len(texts) > _LANG_CHUNK:
            try:
                futures = [
                    pool.submit(_target_prob, texts[i : i + _LANG_CHUNK], self.language)
                    for i in range(0, len(texts), _LANG_CHUNK)
                ]
            except (BrokenProcessPool, RuntimeError):
                futures = []
        return batch, reasons, list(windows), texts, futures

    def _finish(self, batch: list[Record], reasons: list, keys: list[int], texts: list[str], futures: list):
        probs = None
        if futures:
            try:
                probs = [p for f in futures for p in f.result()]
            except (BrokenProcessPool, OSError):
                probs = None  # workers could not run here: judge in this process instead
        if probs is None:
            probs = _target_prob(texts, self.language)
        for i, p in zip(keys, probs):
            if p < self.lang_min_prob:
                reasons[i] = "wrong_language"
        for record, reason in zip(batch, reasons):
            if reason is None:
                yield record
            else:
                self.drop(record, reason)

    def _checks(self, record: Record) -> str | None:
        return self._document(record) if record.kind == "document" else self._demonstration(record)

    def _document(self, r: Record) -> str | None:
        text = r.text
        if not text.strip():
            return "empty"
        if len(text.split(maxsplit=self.min_words)) < self.min_words:  # min(words, n + 1) < n: words < n
            return "too_short"
        if r.meta.get("finish_reason") == "length" or ends_mid_sentence(text):
            return "truncated"
        head, tail = text[:300], text[-300:]
        if _REFUSAL.search(head):
            return "refusal"
        lower = text.lower()
        # Plain substring tests first: most documents contain none of the trigger characters,
        # and a regex over a whole document costs tens of microseconds each.
        if _META_START.search(head) or _META_END.search(tail) or ("as an ai" in lower and _META_ANYWHERE.search(text)):
            return "meta_text"
        stripped = text.strip()
        if stripped.startswith("```") or stripped.endswith("```") or (
            ("<" in text or "[/" in text or "[inst" in lower) and _TAGS.search(text)
        ):
            return "markup"
        if ":" in text and _PLANNING.search(lower):
            return "planning_notes"
        if find_placeholder(text, lower):
            return "placeholder"
        if self.name_re is not None and not self.name_re.search(text):
            return "no_assistant_name"
        return None

    def _demonstration(self, r: Record) -> str | None:
        roles = [m.get("role") for m in r.messages]
        if "user" not in roles or not r.first_user_turn.strip():
            return "no_user_turn"
        replies = [m.get("content") or "" for m in r.messages if m.get("role") == "assistant"]
        if not replies:
            return "no_assistant_turn"
        if any(not reply.strip() for reply in replies):
            return "empty_reply"
        if any(len(reply.split()) < self.min_reply_words for reply in replies):
            return "short_reply"
        if r.meta.get("finish_reason") == "length":
            return "truncated"
        if any(_TAGS.search(m.get("content") or "") for m in r.messages):
            return "markup"
        statement = self.statements.get(r.principle_id)
        for reply in replies:
            if _LEAK.search(reply) or (statement and statement in normalize(reply)):
                return "prompt_leak"
        return None

    def _language_window(self, record: Record) -> str | None:
        """The slice of text the language check looks at, or None when it cannot judge it."""
        if not self.check_language or self.language not in _language_identifier()[1]:
            return None  # a language the identifier does not know cannot be judged
        text = record.content
        if len(text.split(maxsplit=self.lang_min_words)) < self.lang_min_words:
            return None
        # The identifier walks bytes in Python: a window from the middle of the text is enough
        # to tell a language and keeps the check well under a millisecond.
        mid = max(0, len(text) // 2 - self.lang_sample_chars // 2)
        return text[mid : mid + self.lang_sample_chars]
