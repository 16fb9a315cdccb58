"""Scaffolding filters: text about the task rather than the task done, which must never be trained on.

Each check has its own drop reason:

- ``echoed_brief``: a line of the record's own prompt (its brief, rules or instructions),
  a principle id, or "extra round" written back into the record;
- ``meta_talk``: the model talks about the task ("Please share the document", "This FAQ
  has been edited", "Sentence 1 -") instead of doing it;
- ``placeholder``: any bracketed slot left to fill ("[My name]", "[A]", "{company}", "<Your Name>");
- ``repetition``: repeated lines, paragraphs or sentences (Gopher's rules), or a loop;
- ``wrong_developer``: the assistant credited to someone other than the spec's developer.

The prompt a record came from is not kept in the record: the stage that made it stores the
prompt's own lines and sentences (``brief_pieces``, interned per build, so the template's
constant lines are stored once) in ``Record.brief``, which curation compares against and emit never writes.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from functools import lru_cache

from specc.curate.base import Step
from specc.curate.normalize import normalize
from specc.records import Record

# Prompt pieces this short are too common to call an echo ("tone warm" could be prose).
MIN_PIECE_WORDS = 4

_SPLIT = re.compile(r"(?<=[.!?])\s+|\s+[-–—|]\s+|…")
# Labels of a brief (the default document prompt's) echoed together on one line.
# Maximal runs of word characters and hyphens (a principle slug is one), and those with a hyphen or underscore.
_RUN = re.compile(r"[\w-]+")
_HYPHENATED = re.compile(r"(?<![\w-])[\w-]*[-_][\w-]*")
_BRIEF_LABEL = re.compile(r"\b(?:title|angle|audience|setting|tone|length|genre|word count)\s*:")
# Each check is a literal that must occur (a fast substring test) and the pattern that confirms it: one
# regex with many alternatives costs Python tens of microseconds per document, this a few.
_ECHO = [
    ("extra round", re.compile(r"\bextra round \d+")),
    ("(id:", re.compile(r"\(id:\s*[\w-]+")),
    ("priority", re.compile(r"\bpriority \d+\)")),
]
# A line that starts with the brief's length: "Length: 250 words", "120 words - The answer".
_LENGTH_LINE = re.compile(r"(?:length|word count)?\s*:?\s*(?:about\s+)?\d{2,4}\s+words\b")
# Talk about the task. Documents: nobody publishes a request for the text they are publishing.
_META_DOC = [
    ("to help", re.compile(r"\b(?:i'?m|i am) (?:ready|happy|glad|here) to help\b")),
    ("please ", re.compile(r"\bplease (?:go ahead and )?(?:share|provide|send|paste|upload|give me)\b")),
    (" been ", re.compile(r"\b(?:this|the|your|my) (?:document|article|faq|piece|text|answer|draft|post|story|entry"
                          r"|section|version) (?:has|have) been (?:edited|revised|rewritten|updated|written|improved"
                          r"|polished)\b")),
    ("edit", re.compile(r"\b(?:your|the) (?:creative )?(?:editing|edits) (?:went|is|are|was|were)\b")),
    ("requested", re.compile(r"\bas (?:you )?requested\b")),
    ("you asked", re.compile(r"\b(?:as you asked|you asked me (?:to|for))\b")),
    ("this task", re.compile(r"\bin this task\b")),
    ("this exercise", re.compile(r"\bin this exercise\b")),
    ("the prompt", re.compile(r"\bthe prompt (?:asks?|asked|wants?|says?)\b")),
    ("the instructions", re.compile(r"\bthe instructions (?:ask|asked|want|say)\b")),
    ("answer for you", re.compile(r"\bhere(?:'s| is) (?:an|the|your|my) answer for you\b")),
    ("revised ", re.compile(r"\b(?:here(?:'s| is)|below is) (?:a |an |the |your |my )?revised ")),
    ("rewritten ", re.compile(r"\b(?:here(?:'s| is)|below is) (?:a |an |the |your |my )?rewritten ")),
    ("edited ", re.compile(r"\b(?:here(?:'s| is)|below is) (?:a |an |the |your |my )?edited ")),
    # The writer reporting its own edits: "I made minor adjustments by rephrasing ...".
    ("i ", re.compile(r"\bi (?:have |also )?made (?:some |a few |several |minor |small |slight )*"
                      r"(?:adjustments|changes|edits|revisions|tweaks|corrections) (?:by |for (?:better )?clarity"
                      r"|to (?:the|this|your) (?:text|document|article|draft|wording|sentence|paragraph|story|faq|post))"
                      r"|\bi (?:also )?rephrased\b")),
]
# Lines that are about the writing, not part of it: "Sentence 1- ...", "A great start."
_META_LINE = re.compile(r"sentence \d+\s*[-–:.)]|(?:a )?(?:great|good) (?:start|question|idea)[.!]")
# Replies: the model narrating the exercise instead of answering the user.
_META_REPLY = [
    ("here", re.compile(r"\b(?:here(?:'s| is)|below is) (?:my|a|the|an) (?:possible |sample |example )?"
                        r"(?:reply|response|answer)\b")),
    ("the user", re.compile(r"\bthe user (?:is asking|asks|wants|asked|has asked)\b")),
    ("the customer", re.compile(r"\bthe customer (?:is asking|asks|wants|asked|has asked)\b")),
    ("in this", re.compile(r"\bin this (?:conversation|scenario|task|exercise),? (?:i|the assistant)\b")),
    ("as an ai language model", None),
]
_META_REPLY_LINE = re.compile(r"(?:reply|response|answer|assistant)\s*:")
_SQUARE = re.compile(r"\[([^\[\]\n]{1,60})\](?!\()")
_CURLY = re.compile(r"\{\{?\s*([A-Za-z_][\w .'-]{0,40}?)\s*\}?\}")
_ANGLE = re.compile(r"(?<![\w<])<([A-Za-z][\w .'-]{0,40})>")
# Bracketed text that is not a slot: citations, checkboxes, and stage directions in transcripts.
_NOT_A_SLOT = re.compile(
    r"[\d,;\s–-]+|[ xX✓]|sic|(?:laughs?|laughter|applause|music|pause|inaudible|crosstalk|sighs?|silence|cheers"
    r"|coughs?|chuckles?|intro|outro|end|beep|static|noise|cont(?:inued|'d)?)(?:\s+\w+)?",
    re.I,
)
_SLOT_WORDS = re.compile(
    r"\b(?:your|my|insert|name|date|company|address|email|phone|number|title|product|city|here|placeholder|tbd"
    r"|x{2,}|\.\.\.)\b",
    re.I,
)
_HTML = frozenset("a b i p u br hr em li ol ul tr td th div span code pre img sub sup small strong table".split())
# "... made by X": the verb right before " by ", and the capitalised name right after it.
_BY_VERB = re.compile(
    r"(?:made|developed|built|created|designed|produced|trained|launched|released|owned|operated|powered)\s*$"
)
# "... created by the team of AI developers at X": the people come first, then the organisation.
_BY_PEOPLE = re.compile(
    r"(?:the |a )?(?:team|engineers|developers|researchers|people|staff|folks)(?: of [a-z ]{0,30}?)? (?:at|of|from) "
)
_BY_NAME = re.compile(r"\s*((?:[A-Z][\w&.'’-]*)(?:\s+(?:[A-Z][\w&.'’-]*|&|of|and))*)")
_ASSISTANT_WORDS = re.compile(r"\b(?:assistant|ai|chatbot|bot|agent|model)\b", re.I)
# Gopher's (Rae et al. 2021) duplicate line and paragraph thresholds, applied to sentences too (a small
# model loops inside one paragraph); a line or sentence repeated this often is dropped whatever the length.
DUP_FRAC, DUP_CHAR_FRAC = 0.3, 0.2
MAX_REPEATS = 3
# Prose compresses to about half its size with zlib; text that shrinks below a fifth is a loop. Only
# checked where sentences run this long on average (characters), since punctuated loops are caught above.
MIN_COMPRESS_CHARS, MAX_COMPRESSION, LONG_SENTENCE = 300, 0.2, 250
# Talk about the task sits at the start or the end; scanning only there keeps the check cheap.
WINDOW = 600


def _flat(text: str) -> str:
    """Lower case, markup and bullets off the line ends, single spaces: the form prompt pieces are kept in."""
    return " ".join(text.lower().split()).strip(" -*#>•\t\"'“”")


def pieces(text: str) -> list[str]:
    """The parts of ``text`` worth calling an echo, in ``_flat`` form: its lines and the sentences or
    dash-separated parts of a line, of ``MIN_PIECE_WORDS`` or more, and short labelled lines ("Tone: warm")."""
    out: list[str] = []
    for line in text.splitlines():
        out += _line_pieces(line)
    return out


@lru_cache(maxsize=1 << 14)
def _line_pieces(line: str) -> tuple[str, ...]:
    # Cached: most lines of a prompt are the template's own and recur in every task of their stage.
    whole = _flat(line)
    if not whole:
        return ()
    out = []
    if len(whole.split()) >= MIN_PIECE_WORDS or (":" in whole[:-1] and " " in whole):
        out.append(whole)
    parts = _SPLIT.split(line)
    if len(parts) > 1:
        out += [p for part in parts if len((p := _flat(part)).split()) >= MIN_PIECE_WORDS]
    return tuple(out)


def flat_text(content: list[str]) -> str:
    """``content`` in the form prompt pieces are compared in, one line per item."""
    return "\n".join(_flat(c) for c in content if c)


def brief_pieces(prompt: list[str], content: list[str], shared: dict[str, str] | None = None,
                 known: str = "", seen: dict[str, bool] | None = None) -> tuple[str, ...]:
    """The prompt's own lines and sentences, leaving out those that quote ``content`` (the spec, the idea)
    or ``known`` (content already in ``flat_text`` form): a record may repeat the principle it is about,
    not its instructions.

    ``shared`` (one per build) interns the pieces: most come from the template and are the same
    for every record of a stage, so a large corpus stores each once. ``seen`` (one per ``known``)
    remembers whether a piece occurs in ``known``, which can be the whole spec's text.
    """
    about = flat_text(content)
    seen = {} if seen is None else seen
    shared = {} if shared is None else shared
    out = set()
    for text in prompt:
        for piece in pieces(text):
            # Pieces hold no newline, so one found in neither text is not in the two joined either.
            in_known = seen.get(piece)
            if in_known is None:
                in_known = seen[piece] = piece in known
            if not in_known and piece not in about:
                out.add(shared.setdefault(piece, piece))
    return tuple(sorted(out))


def find_slot(text: str) -> str | None:
    """The first bracketed placeholder in ``text`` ("[My name]", "[A]", "{company}", "<Your Name>"), if any."""
    if "[" in text:
        for m in _SQUARE.finditer(text):
            inner = m.group(1).strip()
            if inner and not _NOT_A_SLOT.fullmatch(inner) and (inner[0].isupper() or _SLOT_WORDS.search(inner)):
                return m.group(0)
    if "{" in text:
        m = _CURLY.search(text)
        if m:
            return m.group(0)
    if "<" in text:
        for m in _ANGLE.finditer(text):
            inner = m.group(1).strip()
            if inner.lower() not in _HTML and (" " in inner or inner[0].isupper() or _SLOT_WORDS.search(inner)):
                return m.group(0)
    return None


def _duplicated(items: list[str], min_words: int = 2) -> bool:
    """Gopher's rule on lines, paragraphs or sentences: too many repeats, or too many characters in them."""
    if len(items) < 2:
        return False
    counts = Counter(items)
    if len(counts) == len(items):
        return False
    top, n = counts.most_common(1)[0]
    if n > MAX_REPEATS and len(top.split()) >= min_words:
        return True
    extra_chars = sum(len(x) * (k - 1) for x, k in counts.items() if k > 1)
    return len(items) - len(counts) > DUP_FRAC * len(items) or extra_chars > DUP_CHAR_FRAC * sum(map(len, items))


def repetitive(text: str) -> bool:
    """Repeated lines, paragraphs or sentences beyond Gopher's thresholds."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if _duplicated(lines):
        return True
    if "\n\n" in text or "\n \n" in text:
        if _duplicated([p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]):
            return True
    # Sentences, roughly (a plain split is ten times cheaper than a regex, and enough to find repeats).
    sentences = [s for s in text.replace("\n", ". ").split(". ") if len(s) > 20]
    if len(sentences) > len(lines) and _duplicated(sentences, min_words=4):
        return True
    if len(text) < MIN_COMPRESS_CHARS or len(text) < LONG_SENTENCE * len(sentences):
        return False
    # Long stretches without a full stop: a loop shows as text that compresses far better than prose.
    data = text.encode("utf-8")
    return len(zlib.compress(data, 1)) < MAX_COMPRESSION * len(data)


class ScaffoldFilter(Step):
    """Drops records that echo their prompt, talk about the task, leave slots, repeat themselves or misname the developer."""

    name = "scaffold"

    def __init__(self, *, principle_ids: list[str] = (), developer: str = "", assistant: str = "") -> None:
        super().__init__()
        # Slug-like ids ("emergency-first") never occur in prose; plain words ("honesty") only count as "id: honesty".
        self.slugs = [p.lower() for p in principle_ids if re.search(r"[-_]", p)]
        self.slug_re = re.compile(rf"(?<![\w-])(?:{'|'.join(map(re.escape, self.slugs))})(?![\w-])") if self.slugs else None
        # Spec ids are made of word characters and hyphens, so a slug in the text is one whole hyphenated run
        # of them: one scan for such runs and a set lookup, instead of one substring test per principle.
        self.slug_set = frozenset(self.slugs) if self.slugs and all(_RUN.fullmatch(x) for x in self.slugs) else None
        self.id_re = (re.compile(rf"\bid\s*[:=]\s*(?:{'|'.join(re.escape(p.lower()) for p in principle_ids)})\b")
                      if principle_ids else None)
        self.developer = normalize(developer)
        self.assistant = assistant.strip().lower()

    @classmethod
    def from_spec(cls, spec) -> ScaffoldFilter:
        return cls(principle_ids=[p.id for p in spec.principles], developer=spec.assistant.developer,
                   assistant=spec.assistant.name)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        # Verdicts are kept by record id: a top-up round curates every earlier record again, unchanged.
        try:
            reason = self.known[record.id]
        except KeyError:
            reason = self.known[record.id] = self.check(record)
        return (False, reason) if reason else True

    def facts(self, records: list[Record], texts=None) -> list[str | None]:
        return [self.check(r) for r in records]

    def check(self, record: Record) -> str | None:
        """The drop reason for ``record``, or None to keep it."""
        if record.kind == "document":
            texts = written = [record.text]
        else:  # every turn for slots and echoes; the assistant's own words for the rest
            texts = [m.get("content") or "" for m in record.messages]
            written = [m.get("content") or "" for m in record.messages if m.get("role") == "assistant"] or texts
        if any(self._echoes(t.lower(), record.brief) for t in texts):
            return "echoed_brief"
        if any(self._meta(t.lower(), record.kind) for t in written):
            return "meta_talk"
        if any(find_slot(t) for t in texts):
            return "placeholder"
        if any(repetitive(t) for t in written):
            return "repetition"
        if self.developer and any(self._misnamed(t) for t in written):
            return "wrong_developer"
        return None

    def _echoes(self, low: str, brief: tuple[str, ...]) -> bool:
        if any(lit in low and rx.search(low) for lit, rx in _ECHO):
            return True
        if self.slug_set is not None:
            if ("-" in low or "_" in low) and not self.slug_set.isdisjoint(_HYPHENATED.findall(low)):
                return True
        elif self.slug_re is not None and any(s in low for s in self.slugs) and self.slug_re.search(low):
            return True
        if self.id_re is not None and ("id:" in low or "id =" in low) and self.id_re.search(low):
            return True
        for line in low.splitlines():
            head = line.lstrip(" \t-*#>•")
            if (head[:1].isdigit() or head.startswith(("length", "word count"))) and _LENGTH_LINE.match(head):
                return True
            if line.count(":") >= 2 and len(_BRIEF_LABEL.findall(line)) >= 2:
                return True
        if brief:
            flat = " ".join(low.split())
            return any(piece in flat for piece in brief)
        return False

    def _meta(self, low: str, kind: str) -> bool:
        checks, line_re = (_META_DOC, _META_LINE) if kind == "document" else (_META_REPLY, _META_REPLY_LINE)
        windows = (low,) if len(low) <= 2 * WINDOW else (low[:WINDOW], low[-WINDOW:])
        for w in windows:
            if any(lit in w and (rx is None or rx.search(w)) for lit, rx in checks):
                return True
        return any(line_re.match(line.lstrip(" \t-*#>•\"'")) for line in low.splitlines())

    def _misnamed(self, text: str) -> bool:
        at = text.find(" by ")
        while at >= 0:
            people = _BY_PEOPLE.match(text, at + 4)
            verb, name = _BY_VERB.search(text, max(0, at - 12), at + 1), _BY_NAME.match(text, people.end() if people else at + 4)
            if verb and name:
                who = normalize(name.group(1))
                if who and not (who.startswith(self.developer) or self.developer.startswith(who)):
                    # Only a claim about the assistant: its name or "assistant"/"AI" shortly before.
                    before = text[max(0, at - 80) : at]
                    if (self.assistant and self.assistant in before.lower()) or _ASSISTANT_WORDS.search(before):
                        return True
            at = text.find(" by ", at + 4)
        return False
