"""Quality filters: cheap, explainable checks that drop generations a trainer should never see."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from specc.curate.base import Step
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
# Records judged together (the language check is batched), and texts per sparse product.
_LANG_BATCH = 4096
_LANG_CHUNK = 1024
_TERMINAL = set(".!?…\"'”’)]»*_`~>|")
_DANGLING = set(",;:-–—(")


@lru_cache(maxsize=1)
def _language_identifier():
    """py3langid's identifier with probabilities, and the set of labels it knows."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return ident, frozenset(ident.labels)


def _target_prob(texts: list[str], language: str, near: float) -> list[float]:
    """Probability that each text is in ``language``, for comparing with ``near``.

    The texts are scored together as one sparse product, accurate to about 1e-6, and only those
    within a factor of two of ``near`` are scored again exactly as py3langid does: a comparison
    with ``near`` comes out as the library's would, for a fraction of the cost.
    """
    ident, labels = _language_identifier()
    if language not in labels:
        return [0.0] * len(texts)
    if not _batch_agrees():
        return [dict(ident.rank(t)).get(language, 0.0) for t in texts]
    out: list[float] = []
    for i in range(0, len(texts), _LANG_CHUNK):
        chunk = texts[i : i + _LANG_CHUNK]
        probs = _fast_probs(ident, *_walk(ident, chunk), language)
        unsure = [j for j, p in enumerate(probs) if near / 2 <= p <= near * 2]
        if unsure:
            for j, p in zip(unsure, _batch_probs(ident, [chunk[j] for j in unsure], language)):
                probs[j] = p
        out += probs
    return out


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


def _walk(ident, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(byte length of each encoded text, the feature seen at each position: ``(width, texts)``, -1 for none)."""
    nextmove, rowbase, output = _walk_tables()
    encoded = [ident._encode(t) for t in texts]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    width = int(lengths.max()) if len(encoded) else 0
    data = np.zeros((width, len(encoded)), dtype=np.int64)
    for i, e in enumerate(encoded):
        data[: len(e), i] = np.frombuffer(e, dtype=np.uint8)
    state = np.zeros(len(encoded), dtype=np.int64)
    feats = np.empty((width, len(encoded)), dtype=np.int64)
    for pos in range(width):
        state = nextmove[rowbase[state] + data[pos]]
        feats[pos] = output[state]
    feats[np.arange(width)[:, None] >= lengths[None, :]] = -1  # past a text's end
    return lengths, feats


def _batch_scores(ident, texts: list[str]) -> list[np.ndarray]:
    if not texts:
        return []
    lengths, feats = _walk(ident, texts)
    out = []
    for i, n in enumerate(lengths.tolist()):
        f = feats[:n, i]
        visits = Counter(f[f >= 0].tolist())
        if visits:
            scores = ident._sparse_score(visits, ident.nb_ptc)
        else:
            scores = np.full(len(ident.nb_classes), 0.0, dtype=np.float32)
        scores *= 1.0 / math.sqrt(n or 1)
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


@lru_cache(maxsize=1)
def _table32() -> np.ndarray:
    return _language_identifier()[0].nb_ptc.astype(np.float32)


def _fast_probs(ident, lengths: np.ndarray, feats: np.ndarray, language: str) -> list[float]:
    """The same scores as ``_batch_scores`` from one sparse product over the whole batch (rounding differs)."""
    from scipy import sparse

    if not len(lengths):
        return []
    table = _table32()
    pos, rows = np.nonzero(feats >= 0)
    counts = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, feats[pos, rows])), shape=(len(lengths), table.shape[0])
    )
    counts.sum_duplicates()
    np.log1p(counts.data, out=counts.data)
    scores = np.asarray(counts @ table, dtype=np.float64) + ident.nb_pc
    scores[np.diff(counts.indptr) == 0] = 0.0  # no feature: every language equally likely
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1)))[:, None]
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    for a, b in ident._alias_pairs:
        scores[:, a] += scores[:, b]
        scores[:, b] = 0.0
    return scores[:, ident.nb_classes.index(language)].tolist()


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
    ) -> None:
        super().__init__()
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
        reason = self.known[record.id] if record.id in self.known else self.reasons([record])[0]
        return (False, reason) if reason else True

    def prepare(self) -> None:
        if self.check_language and self.language in _language_identifier()[1] and _batch_agrees():
            _walk_tables()
            _table32()

    def facts(self, records: list[Record], texts=None) -> list[str | None]:
        return self.reasons(records)

    def reasons(self, records: list[Record]) -> list[str | None]:
        """The drop reason of each record (None to keep it): the cheap checks, then language in one batch."""
        reasons = [self._checks(r) for r in records]
        windows = {i: w for i, r in enumerate(records) if reasons[i] is None and (w := self._language_window(r))}
        probs = _target_prob(list(windows.values()), self.language, near=self.lang_min_prob)
        for i, p in zip(windows, probs):
            if p < self.lang_min_prob:
                reasons[i] = "wrong_language"
        return reasons

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        """Like the base, but records without a known verdict are judged in batches (language is batched)."""
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= _LANG_BATCH:
                yield from self._judge(batch)
                batch = []
        yield from self._judge(batch)

    def _judge(self, batch: list[Record]) -> Iterator[Record]:
        todo = [r for r in batch if r.id not in self.known]
        found = dict(zip((r.id for r in todo), self.reasons(todo))) if todo else {}
        for record in batch:
            reason = self.known[record.id] if record.id in self.known else found[record.id]
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
