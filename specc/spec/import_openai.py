"""Import a spec written in the OpenAI Model Spec markdown format.

A heading with ``{#id authority=LEVEL}`` is a principle; a heading without one is a section
whose text is context and whose id tags the principles under it. ``**Example**: title``
paragraphs followed by an ``xml`` fence become examples.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from specc.errors import SpecError, SpecIssue
from specc.spec.importers import IdAllocator, Imported, first_sentences, read_source, slugify, spec_name

AUTHORITY = {"root": 0, "platform": 0, "system": 1, "developer": 2, "user": 3, "guideline": 4}
ROLES = ("system", "developer", "user", "assistant", "tool")

HEADING_ATTRS = re.compile(r"\s*\{([^{}]*)\}\s*$")
ATTR = re.compile(r"^(#[^\s]+|\.[^\s]+|[\w-]+=(?:\"[^\"]*\"|\S+))$")
EXAMPLE = re.compile(r"^\s*\*\*Example(?:\*\*\s*:|:\*\*)\s*", re.I)
EXAMPLE_PLAIN = re.compile(r"^Example\s*:\s*", re.I)
ADMONITION = re.compile(r"^!!!\s*[\w-]+(?:\s+\"[^\"]*\")?\s*")
EM_DASH = re.compile(r"(?<=\S) --- (?=\S)")  # the spec's source spelling of an em dash
FOOTNOTE_REF = re.compile(r"\s?\[\^[^\]\s]+\]")
FOOTNOTE_DEF = re.compile(r"^\s*\[\^[^\]\s]+\]:")
OPEN_TAG = re.compile(
    r"^<(?P<tag>[A-Za-z_][\w-]*)(?P<attrs>(?:\s+[\w:-]+(?:=(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>(?P<rest>.*)$"
)
MARK = re.compile(r"^\s*<!--\s*(?P<mark>GOOD|BAD)\b(?:\[[^\]]*\])?\s*(?::\s*(?P<reason>.*?))?\s*-->(?P<rest>.*)$", re.I)


@dataclass
class Turn:
    role: str
    content: str
    line: int
    mark: str | None = None  # "good" | "bad"
    reason: str = ""


@dataclass
class Comparison:
    line: int
    replies: list[Turn] = field(default_factory=list)


class ConversationError(Exception):
    """A malformed example block; carries the line it was found at."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _close_index(lines: list[str], start: int, close: str) -> int:
    for j in range(start, len(lines)):
        if lines[j].rstrip().endswith(close):
            return j
    return -1


def parse_conversation(text: str, first_line: int) -> list[Turn | Comparison]:
    """The turns of an example block. Its pseudo-XML holds arbitrary text, so it is read line by line."""
    lines = text.split("\n")
    items: list[Turn | Comparison] = []
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
        rest, mark, reason = m["rest"], None, ""
        mm = MARK.match(rest)
        if mm:
            mark, reason, rest = mm["mark"].lower(), (mm["reason"] or "").strip(), mm["rest"]
        close = f"</{m['tag']}>"
        if rest.rstrip().endswith(close):
            body, j = [rest.rstrip()[: -len(close)]], i
        else:
            j = _close_index(lines, i + 1, close)
            if j < 0:
                raise ConversationError(ln, f"<{tag}> is never closed (no {close})")
            body = ([rest] if rest.strip() else []) + lines[i + 1 : j] + [lines[j].rstrip()[: -len(close)]]
        if mark is None and body and (mm := MARK.match(body[0])) and not mm["rest"].strip():
            mark, reason, body = mm["mark"].lower(), (mm["reason"] or "").strip(), body[1:]
        if mark and tag != "assistant":
            raise ConversationError(ln, f"<{tag}> carries a GOOD/BAD mark; only <assistant> replies are marked")
        content = EM_DASH.sub(" — ", textwrap.dedent("\n".join(body)).strip())
        turn = Turn(tag, content, ln, mark, reason)
        if comparison is not None:
            if tag != "assistant":
                raise ConversationError(ln, f"<{tag}> inside <comparison>: only <assistant> replies belong there")
            if mark is None:
                raise ConversationError(ln, "<assistant> in a <comparison> needs <!-- GOOD --> or <!-- BAD: reason -->")
            comparison.replies.append(turn)
        else:
            items.append(turn)
        i = j + 1
    if comparison is not None:
        raise ConversationError(comparison.line, "<comparison> is never closed")
    last = items[-1] if items else None
    if isinstance(last, Turn) and last.role == "assistant" and last.mark is None:
        raise ConversationError(last.line, "the final <assistant> reply needs <!-- GOOD --> or <!-- BAD: reason -->")
    return items


def _render_context(context: list[tuple[str, str]]) -> str:
    if len(context) == 1 and context[0][0] == "user":
        return context[0][1]
    return "\n\n".join(f"{role.capitalize()}: {content}" for role, content in context)


def _note(title: str, good: Turn | None, bad: Turn | None) -> str:
    parts = [title] if title else []
    if good and good.reason:
        parts.append(f"good reply: {good.reason}")
    if bad and bad.reason:
        parts.append(f"bad reply: {bad.reason}")
    return "; ".join(parts)


def build_examples(items: list[Turn | Comparison], title: str, line: int) -> list[dict]:
    """Spec examples: one per GOOD/BAD pair at every point where the block shows replies.

    Earlier turns of a multi-turn block become a transcript in ``user``; the conversation
    continues with the first GOOD reply of a comparison.
    """
    system: list[str] = []
    context: list[tuple[str, str]] = []
    examples: list[dict] = []

    def emit(replies: list[Turn], at: int) -> None:
        if not any(role == "user" for role, _ in context):
            raise ConversationError(at, "a reply before any <user> turn")
        goods = [r for r in replies if r.mark == "good"]
        bads = [r for r in replies if r.mark == "bad"]
        for k in range(max(len(goods), len(bads))):
            good = goods[k] if k < len(goods) else None
            bad = bads[k] if k < len(bads) else None
            ex: dict = {"user": _render_context(context)}
            if system:
                ex["system"] = "\n\n".join(system)
            if good:
                ex["good"] = good.content
            if bad:
                ex["bad"] = bad.content
            note = _note(title, good, bad)
            if note:
                ex["note"] = note
            examples.append(ex)

    for item in items:
        if isinstance(item, Comparison):
            emit(item.replies, item.line)
            chosen = next((r for r in item.replies if r.mark == "good"), item.replies[0])
            context.append(("assistant", chosen.content))
        elif item.role in ("system", "developer") and not context:
            system.append(item.content)
        elif item.mark:
            emit([item], item.line)
            context.append(("assistant", item.content))
        else:
            context.append((item.role, item.content))
    return examples


@dataclass
class _Node:
    kind: str  # "section" | "principle" | "sub" (a plain heading nested in a principle)
    level: int
    title: str
    anchor: str
    line: int
    authority: str = ""
    tags: list[str] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    subrules: list[str] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)


def split_heading(raw: str) -> tuple[str, dict[str, str]]:
    """``Title {#id authority=root}`` -> ("Title", {"#": "id", "authority": "root"})."""
    m = HEADING_ATTRS.search(raw)
    if not m:
        return raw.strip(), {}
    parts = m.group(1).split()
    if not parts or not all(ATTR.match(p) for p in parts):
        return raw.strip(), {}
    attrs: dict[str, str] = {}
    for p in parts:
        if p.startswith("#"):
            attrs["#"] = p[1:]
        elif "=" in p:
            k, v = p.split("=", 1)
            attrs[k.lower()] = v.strip("\"'")
    return raw[: m.start()].strip(), attrs


class ModelSpecParser:
    """Walks markdown-it's block tokens once, routing text, lists and examples to their heading."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.file = str(path)
        self.lines = text.split("\n")
        self.md = MarkdownIt("commonmark")
        self.tokens = self.md.parse(text)
        self.issues: list[SpecIssue] = []
        self.anchors: dict[str, str] = {}
        self.stack: list[_Node] = []
        self.principles: list[_Node] = []
        self.notes: dict[int, list[str]] = {}
        self.pending_notes: list[list[str]] = []
        self.description = ""
        self.pending_example: tuple[str, int] | None = None
        self.in_admonition = False
        self.skipped_no_reply = 0
        self.skipped_outside = 0

    def issue(self, line: int | None, message: str) -> None:
        self.issues.append(SpecIssue(self.file, line, None, "", message))

    # -- inline text -------------------------------------------------------

    def plain(self, inline: Token) -> str:
        """Inline markdown as plain text: links keep their text, ``[?](#id)`` becomes the heading's title."""
        out: list[str] = []
        links: list[tuple[str, int]] = []
        for ch in inline.children or []:
            if ch.type == "text":
                out.append(ch.content)
            elif ch.type == "code_inline":
                out.append(f"`{ch.content}`")
            elif ch.type == "softbreak":
                out.append(" ")
            elif ch.type == "hardbreak":
                out.append("\n")
            elif ch.type == "image":
                out.append(ch.content)
            elif ch.type == "html_inline" and not ch.content.startswith("<!--"):
                out.append(ch.content)
            elif ch.type == "link_open":
                links.append((str(ch.attrGet("href") or ""), len(out)))
            elif ch.type == "link_close" and links:
                href, start = links.pop()
                label = "".join(out[start:]).strip()
                if label == "?" and href.startswith("#"):
                    out[start:] = [self.anchors.get(href[1:], href[1:].replace("_", " "))]
                elif label.startswith("^"):
                    del out[start:]
        return tidy("".join(out))

    def plain_md(self, text: str) -> str:
        return " ".join(self.plain(t) for t in self.md.parseInline(text) if t.type == "inline").strip()

    # -- walking -----------------------------------------------------------

    def owner(self) -> _Node | None:
        for node in reversed(self.stack):
            if node.kind != "sub":
                return node
        return None

    def principle(self) -> _Node | None:
        node = self.owner()
        return node if node and node.kind == "principle" else None

    def parse(self) -> None:
        headings = [(i, t) for i, t in enumerate(self.tokens) if t.type == "heading_open"]
        for i, _ in headings:
            title, attrs = split_heading(self.tokens[i + 1].content)
            if "#" in attrs:
                self.anchors[attrs["#"]] = self.plain_md(title)
        for t in self.tokens:
            if t.type == "fence" and not self.fence_closed(t):
                self.issue(t.map[0] + 1 if t.map else None, f"code block opened with {t.markup} is never closed")
        if self.issues:
            return
        toks, i = self.tokens, 0
        while i < len(toks):
            t = toks[i]
            if t.type in ("heading_open", "paragraph_open", "fence", "bullet_list_open", "ordered_list_open",
                          "code_block", "html_block"):
                if self.pending_example and t.type != "fence":
                    if not (t.type == "paragraph_open" and self.example_title_follows(toks[i + 1])):
                        title, line = self.pending_example
                        # Outside a principle an example is illustration only, so its shape is not checked.
                        if self.principle():
                            self.issue(line, f"example {title!r} is not followed by an ```xml block")
                        self.pending_example = None
                if t.type != "code_block":
                    self.in_admonition = False
            if t.type == "heading_open":
                self.heading(t, toks[i + 1])
                i += 3
            elif t.type == "paragraph_open":
                self.paragraph(toks[i + 1], t.map[0] + 1)
                i += 3
            elif t.type in ("bullet_list_open", "ordered_list_open"):
                i = self.listing(i)
            elif t.type == "fence":
                self.fence(t)
                i += 1
            elif t.type == "code_block":
                if self.in_admonition:
                    for para in re.split(r"\n\s*\n", t.content):
                        self.add_paragraph(self.plain_md(para))
                i += 1
            else:
                i += 1
        if self.pending_example and self.principle():
            title, line = self.pending_example
            self.issue(line, f"example {title!r} is not followed by an ```xml block")

    def fence_closed(self, t: Token) -> bool:
        start, end = t.map or (0, 0)
        if end - 1 <= start or end - 1 >= len(self.lines):
            return False
        closing = self.lines[end - 1].strip()
        return bool(re.fullmatch(re.escape(t.markup[0]) + "{%d,}" % len(t.markup), closing))

    def example_title_follows(self, inline: Token) -> bool:
        """``**Example**:`` alone, then its title as the next paragraph."""
        return bool(self.pending_example) and not self.pending_example[0] and not EXAMPLE.match(inline.content)

    def heading(self, t: Token, inline: Token) -> None:
        level, line = int(t.tag[1:]), t.map[0] + 1
        raw_title, attrs = split_heading(inline.content)
        title = self.plain_md(raw_title) or raw_title
        anchor = attrs.get("#", "")
        authority = attrs.get("authority", "").lower()
        if authority and authority not in AUTHORITY:
            self.issue(line, f"unknown authority {authority!r}: expected one of {', '.join(AUTHORITY)}")
            authority = ""
        while self.stack and self.stack[-1].level >= level:
            self.stack.pop()
        if authority:
            tags = [slugify(n.anchor, keep="_-") or slugify(n.title) for n in self.stack if n.kind == "section"]
            node = _Node("principle", level, title, anchor, line, authority, [t for t in tags if t])
            if self.pending_notes:
                self.notes[len(self.principles)] = [" ".join(n) for n in self.pending_notes]
                self.pending_notes = []
            self.principles.append(node)
        elif self.principle():
            node = _Node("sub", level, title, anchor, line)
        else:
            node = _Node("section", level, title, anchor, line)
            self.pending_notes.append([f"Section: {title}."])
        self.stack.append(node)

    def add_paragraph(self, text: str) -> None:
        if not text:
            return
        if not self.description:
            self.description = first_sentences(text, 500)[0]
        node = self.owner()
        if node is None:
            return
        if node.kind == "section" and not node.paragraphs and self.pending_notes:
            self.pending_notes[-1].append(first_sentences(text, 240)[0])
        node.paragraphs.append(text)

    def paragraph(self, inline: Token, line: int) -> None:
        raw = inline.content
        if FOOTNOTE_DEF.match(raw):
            return
        if EXAMPLE.match(raw):
            title = EXAMPLE_PLAIN.sub("", self.plain(inline)).rstrip(":").strip()
            self.pending_example = (title, line)
            return
        if self.pending_example and not self.pending_example[0]:
            self.pending_example = (self.plain(inline).rstrip(":").strip(), self.pending_example[1])
            return
        if ADMONITION.match(raw):
            self.in_admonition = True
            self.add_paragraph(ADMONITION.sub("", self.plain(inline)))
            return
        self.add_paragraph(self.plain(inline))

    def listing(self, i: int) -> int:
        """Top-level items become subrules of the principle; nested items join their parent item."""
        depth, j = 0, i
        items: list[list[str]] = []
        while j < len(self.tokens):
            t = self.tokens[j]
            if t.type in ("bullet_list_open", "ordered_list_open"):
                depth += 1
            elif t.type in ("bullet_list_close", "ordered_list_close"):
                depth -= 1
                if depth == 0:
                    break
            elif t.type == "list_item_open" and depth == 1:
                items.append([])
            elif t.type == "inline" and items:
                items[-1].append(self.plain(t))
            j += 1
        node = self.principle()
        if node is not None:
            lead_in = node.paragraphs[-1] if node.paragraphs else ""
            if i and self.tokens[i - 1].type == "paragraph_close" and lead_in.endswith(":"):
                # The items move to subrules, so the sentence that introduced them points there.
                node.paragraphs[-1] = lead_in[:-1].rstrip() + " (see the subrules)."
            for parts in items:
                parts = [p for p in parts if p]
                if parts:
                    node.subrules.append(parts[0] + (" (" + "; ".join(parts[1:]) + ")" if parts[1:] else ""))
        return j + 1

    def fence(self, t: Token) -> None:
        if not self.pending_example:
            return
        title, line = self.pending_example
        self.pending_example = None
        node = self.principle()
        if node is None:
            self.skipped_outside += 1
            return
        try:
            items = parse_conversation(t.content, t.map[0] + 2)
            examples = build_examples(items, title, line)
        except ConversationError as e:
            self.issue(e.line, f"example {title!r}: {e}")
            return
        if not examples:
            self.skipped_no_reply += 1
        node.examples.extend(examples)


def tidy(text: str) -> str:
    text = FOOTNOTE_REF.sub("", text)
    text = re.sub(r"\s*---\s*", " — ", text)
    text = re.sub(r"[ \t]+", " ", text)
    return text.strip()


def import_model_spec(
    path: Path, *, name: str | None = None, assistant: str = "Assistant", developer: str = ""
) -> Imported:
    """Parse a Model Spec markdown file into principles with priorities, tags and examples."""
    text = read_source(path)
    parser = ModelSpecParser(path, text)
    if not any(t.type == "heading_open" for t in parser.tokens):
        raise SpecError([SpecIssue(str(path), 1, None, "", "no markdown headings found; expected Model Spec "
                                   "markdown such as `## Be honest {#be_honest authority=user}`")])
    parser.parse()
    if not parser.principles and not parser.issues:
        parser.issue(1, "no heading carries an authority; principles are headings such as "
                        "`## Be honest {#be_honest authority=user}`")
    if parser.issues:
        raise SpecError(parser.issues)

    ids = IdAllocator()
    principles = []
    for node in parser.principles:
        paragraphs = node.paragraphs
        statement = paragraphs[0] if paragraphs else node.title
        statement, overflow = first_sentences(statement, 600)
        rationale = "\n\n".join(([overflow] if overflow else []) + paragraphs[1:])
        p: dict = {
            "id": ids(node.anchor, keep="_-") if node.anchor else ids(node.title),
            "title": node.title,
            "priority": AUTHORITY[node.authority],
        }
        if node.tags:
            p["tags"] = node.tags
        p["statement"] = statement
        if rationale:
            p["rationale"] = rationale
        if node.subrules:
            p["subrules"] = node.subrules
        if node.examples:
            p["examples"] = node.examples
        principles.append(p)

    warnings = []
    if parser.skipped_no_reply:
        warnings.append(f"skipped {parser.skipped_no_reply} example(s) with no GOOD or BAD reply")
    if parser.skipped_outside:
        warnings.append(f"skipped {parser.skipped_outside} example(s) under headings without an authority")
    return Imported(
        source=path,
        fmt="OpenAI Model Spec markdown",
        command="openai-model-spec",
        name=spec_name(name, path),
        assistant=assistant,
        developer=developer,
        principles=principles,
        description=parser.description,
        notes=parser.notes,
        warnings=warnings,
    )
