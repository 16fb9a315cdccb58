"""The examples of an OpenAI Model Spec: pseudo-XML conversations -> spec examples.

A block holds ``<system>``/``<developer>``/``<user>``/``<assistant>``/``<tool>`` messages and
``<comparison>`` groups of replies labelled ``<!-- GOOD -->``, ``<!-- BAD -->`` or ``<!-- OK -->``
(optionally ``BAD[#section]`` and ``: reason`` or ``, reason``). Elisions such as ``[...]`` or
``[... response text]`` stand for text the document does not show: they are removed from what
generation sees, and an example whose replies cannot stand without them is held out.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

ROLES = ("system", "developer", "user", "assistant", "tool")
LABELS = {"GOOD": "good", "BAD": "bad", "OK": "acceptable"}
REPLY_KINDS = ("good", "acceptable", "bad")

OPEN_TAG = re.compile(
    r"^<(?P<tag>[A-Za-z_][\w-]*)(?P<attrs>(?:\s+[\w:-]+(?:=(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>(?P<rest>.*)$"
)
ATTR = re.compile(r"([\w:-]+)(?:=(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+)))?")
MARK = re.compile(r"^\s*<!--\s*(?P<word>\w+)(?P<tail>.*?)-->(?P<rest>.*)$", re.S)
MARK_TAIL = re.compile(r"^\s*(?:\[(?P<ref>[^\]]*)\])?\s*(?:[:,]\s*(?P<reason>.*?))?\s*$", re.S)
EM_DASH = re.compile(r"(?<=\S) --- (?=\S)")  # the spec's source spelling of an em dash
# "[...]", "[... response text]", "[...list of methods...]": text the document leaves out.
ELISION = re.compile(r"\[\s*(?:\.\.\.|…)[^\[\]]*\]|\[[^\[\]]*?(?:\.\.\.|…)\s*\]")
# A line that is one bracketed phrase, "[pauses to listen]": an event or a placeholder, not words said.
DIRECTION = re.compile(r"[ \t]*\[[^\[\]\n]*\s[^\[\]\n]*\][ \t]*")


class ConversationError(Exception):
    """An example block that cannot be converted; carries the line it was found at."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass
class Turn:
    role: str
    content: str
    line: int
    label: str | None = None  # "good" | "bad" | "acceptable"
    ref: str = ""  # BAD[#section]: the section the reply goes against
    reason: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Comparison:
    line: int
    replies: list[Turn] = field(default_factory=list)


@dataclass
class Gap:
    """An elision or a stage direction between messages: part of the conversation is not shown."""

    line: int
    description: str = ""


Item = Turn | Comparison | Gap


def _label(text: str, line: int) -> tuple[tuple[str, str, str] | None, str]:
    """A leading ``<!-- GOOD ... -->`` as (label, ref, reason) and the text after it."""
    m = MARK.match(text)
    if not m:
        return None, text
    word = m["word"]
    if word.upper() not in LABELS:
        if word.isupper():
            raise ConversationError(line, f"unknown label <!-- {word} -->: expected GOOD, BAD or OK")
        return None, text  # an ordinary comment, part of the message
    tail = MARK_TAIL.match(m["tail"])
    ref, reason = (tail["ref"] or "", tail["reason"] or "") if tail else ("", m["tail"].strip(" :,"))
    return (LABELS[word.upper()], ref.strip(), reason.strip()), m["rest"]


def _close_index(lines: list[str], start: int, close: str) -> int:
    for j in range(start, len(lines)):
        if lines[j].rstrip().endswith(close):
            return j
    return -1


def parse_conversation(text: str, first_line: int) -> list[Item]:
    """The messages of an example block. Its pseudo-XML holds arbitrary text, so it is read line by line."""
    lines = text.split("\n")
    items: list[Item] = []
    comparison: Comparison | None = None
    i = 0
    while i < len(lines):
        s, ln = lines[i].strip(), first_line + i
        if not s:
            i += 1
            continue
        if s == "<comparison>":
            if comparison:
                raise ConversationError(ln, "<comparison> inside another <comparison>")
            comparison, i = Comparison(ln), i + 1
            continue
        if s == "</comparison>":
            if comparison is None:
                raise ConversationError(ln, "</comparison> without an opening <comparison>")
            if not comparison.replies:
                raise ConversationError(comparison.line, "<comparison> holds no <assistant> reply")
            items.append(comparison)
            comparison, i = None, i + 1
            continue
        if (ELISION.fullmatch(s) or DIRECTION.fullmatch(s)) and comparison is None:
            items.append(Gap(ln, strip_elisions(s, directions=True).descriptions[0] if s.strip("[]. …") else ""))
            i += 1
            continue
        m = OPEN_TAG.match(s)
        if not m:
            if s.startswith("</"):
                raise ConversationError(ln, f"{s.split('>')[0]}> closes a tag that is not open")
            raise ConversationError(ln, f"text outside a message tag: {s[:40]!r} (expected <user>, <assistant>, ...)")
        tag = m["tag"].lower()
        if tag not in ROLES:
            raise ConversationError(
                ln, f"unknown tag <{tag}>: expected <system>, <developer>, <user>, <assistant>, <tool> or <comparison>"
            )
        label, rest = _label(m["rest"], ln)
        close = f"</{m['tag']}>"
        if rest.rstrip().endswith(close):
            body, j = [rest.rstrip()[: -len(close)]], i
        else:
            j = _close_index(lines, i + 1, close)
            if j < 0:
                raise ConversationError(ln, f"<{tag}> is never closed (no {close})")
            body = ([rest] if rest.strip() else []) + lines[i + 1 : j] + [lines[j].rstrip()[: -len(close)]]
        if label is None and body:
            label, first = _label(body[0], ln + 1)
            if label is not None:
                body = ([first] if first.strip() else []) + body[1:]
        if label and tag != "assistant":
            raise ConversationError(ln, f"<{tag}> carries a label; only <assistant> replies are labelled")
        attrs = {a[0]: next((v for v in a[1:] if v), "") for a in ATTR.findall(m["attrs"])}
        content = EM_DASH.sub(" — ", textwrap.dedent("\n".join(body)).strip())
        turn = Turn(tag, content, ln, *(label or (None, "", "")), attrs=attrs)
        if comparison is not None:
            if tag != "assistant":
                raise ConversationError(ln, f"<{tag}> inside <comparison>: only <assistant> replies belong there")
            comparison.replies.append(turn)
        else:
            items.append(turn)
        i = j + 1
    if comparison is not None:
        raise ConversationError(comparison.line, "<comparison> is never closed")
    return items


@dataclass
class Elided:
    """A text with its elisions removed."""

    text: str
    descriptions: list[str]
    cut: bool  # the text is missing part of itself: empty, a bare lead-in, or a gap inside a sentence


def strip_elisions(text: str, directions: bool = False) -> Elided:
    """Remove ``[...]``-style elisions (and with ``directions``, lines like ``[says nothing]``); say what they described.

    A direction in a user or tool message describes input the document cannot show (``[video
    shows ...]``) and stays; in an assistant message it stands for what the assistant does.
    """
    descriptions: list[str] = []
    cut = False
    kept: list[str] = []
    offset = 0
    for line in text.split("\n"):
        spans = [line] if directions and DIRECTION.fullmatch(line) else [m.group(0) for m in ELISION.finditer(line)]
        if not spans:
            kept.append(line)
            offset += len(line) + 1
            continue
        rest, pos = [], 0
        for span in spans:
            start = line.index(span, pos)
            desc = re.sub(r"\s+", " ", span.strip().strip("[]").strip(" .…")).strip()
            if desc:
                descriptions.append(desc)
            before = text[: offset + start].rstrip()
            after = text[offset + start + len(span) :]
            nxt = after.lstrip(" \t")[:1]
            if before[-1:].isalnum() and (nxt in (".", ",", ";") or nxt.islower()):
                cut = True  # words are missing inside a sentence
            if before[-1:] == ":" and not after.strip():
                cut = True  # a lead-in to text that is not there
            rest.append(line[pos:start].rstrip(" \t"))
            pos = start + len(span)
            if before[-1:] in (".", "!", "?", ":") and line[pos : pos + 1] == ".":
                pos += 1  # "approach. [... failed approach]." keeps one full stop
        rest.append(line[pos:])
        new = "".join(rest).rstrip()
        if new.strip():  # a line that held only elisions goes
            kept.append(new)
        offset += len(line) + 1
    clean = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return Elided(clean, descriptions, cut or not clean)


@dataclass
class Built:
    """The spec examples of one block, and replies that could not be kept (line, why)."""

    examples: list[dict] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)


def _a(role: str) -> str:
    return {"assistant": "an assistant"}.get(role, f"a {role}")


class ExampleBuilder:
    """Turns the items of one block into spec examples: one per good/acceptable/bad triple at every reply point."""

    def __init__(self, title: str, text: Callable[[str], str], section: Callable[[str], str]):
        self.title = title
        self.text = text  # inline markdown -> plain text (labels' reasons may hold links)
        self.section = section  # "#anchor" -> the section's title
        self.system: list[str] = []
        self.context: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.built = Built()

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def build(self, items: list[Item]) -> Built:
        last = len(items) - 1
        for idx, item in enumerate(items):
            if isinstance(item, Gap):
                self.note(f"not shown in the conversation: {item.description}" if item.description
                          else "part of the conversation is elided")
            elif isinstance(item, Comparison):
                self.emit(item.replies, item.line)
            elif item.role in ("system", "developer"):
                self.operator(item)
            elif item.role == "assistant" and (item.label or idx == last):
                self.emit([item], item.line)
            else:
                self.add_context(item)
        return self.built

    def operator(self, turn: Turn) -> None:
        if self.context or self.built.examples:
            raise ConversationError(
                turn.line, f"a <{turn.role}> message after the conversation began: an example has one operator "
                "prompt (`system`), before its first message"
            )
        el = strip_elisions(turn.content)
        for d in el.descriptions:
            self.note(f"elided from the {turn.role} message: {d}")
        if el.text:
            self.system.append(el.text)
        if len(self.system) == 2:
            self.note("the system and developer messages are joined into one operator prompt")

    def add_context(self, turn: Turn) -> None:
        el = strip_elisions(turn.content, directions=turn.role == "assistant")
        if turn.role == "assistant" and turn.attrs.get("recipient"):
            self.note(f"an assistant turn calls the {turn.attrs['recipient']} tool")
        if turn.attrs.get("comment"):
            self.note(f"the {turn.role} message: {self.text(turn.attrs['comment'])}")
        if not el.text:
            what = "; ".join(el.descriptions)
            self.note(f"{_a(turn.role)} turn not shown: {what}" if what else f"{_a(turn.role)} turn is elided")
            return
        for d in el.descriptions:
            self.note(f"elided from {_a(turn.role)} turn: {d}")
        self.context.append({"role": turn.role, "content": el.text})

    def emit(self, replies: list[Turn], line: int) -> None:
        if self.context and self.context[-1]["role"] == "assistant":
            raise ConversationError(line, "replies that follow an assistant turn with no user or tool turn between")
        if not self.context and not self.system:
            raise ConversationError(line, "a reply with no message before it")
        by_kind: dict[str, list[Turn]] = {k: [] for k in REPLY_KINDS}
        for r in replies:
            by_kind[r.label or "acceptable"].append(r)
        for k in range(max(len(v) for v in by_kind.values())):
            self.one({kind: v[k] for kind, v in by_kind.items() if k < len(v)}, line)
        chosen = (by_kind["good"] or by_kind["acceptable"] or replies)[0]
        self.add_context(Turn("assistant", chosen.content, chosen.line))

    def one(self, replies: dict[str, Turn], line: int) -> None:
        ex: dict = {}
        if self.system:
            ex["system"] = "\n\n".join(self.system)
        if len(self.context) == 1 and self.context[0]["role"] == "user":
            ex["user"] = self.context[0]["content"]
        elif self.context:
            ex["turns"] = [dict(t) for t in self.context]
        notes = [self.title, *self.notes]
        held = False
        for kind, reply in replies.items():
            el = strip_elisions(reply.content, directions=True)
            held |= el.cut
            if el.text:
                ex[kind] = el.text
            if reply.label is None:
                notes.append("the acceptable reply has no label in the source")
            if reply.attrs.get("recipient"):
                notes.append(f"the {kind} reply calls the {reply.attrs['recipient']} tool")
            see = f" (see {self.section(reply.ref)})" if reply.ref else ""
            if reply.reason or see:
                notes.append(f"{kind} reply{see}" + (f": {self.text(reply.reason)}" if reply.reason else ""))
            notes += [f"elided from the {kind} reply: {d}" for d in el.descriptions]
        if not any(k in ex for k in REPLY_KINDS):
            self.built.dropped.append((line, "nothing is left of its replies once the elisions are removed"))
            return
        note = "; ".join(n.rstrip(" .") for n in notes if n.rstrip(" ."))
        if note:
            ex["note"] = note
        if held:
            # Seeding generation with a reply that is missing its substance would teach the gap.
            ex["holdout"] = True
        self.built.examples.append(ex)


def build_examples(
    items: list[Item],
    title: str,
    text: Callable[[str], str] = lambda s: s,
    section: Callable[[str], str] = lambda ref: ref.lstrip("#").replace("_", " "),
) -> Built:
    """Spec examples for one block (see ``ExampleBuilder``)."""
    return ExampleBuilder(title, text, section).build(items)
