"""Import a spec written in the OpenAI Model Spec markdown format.

A heading with ``{#id authority=LEVEL}`` is a principle; a heading without one is a section
whose prose is kept as a comment above the principles that follow it and whose id tags them.
``**Example**: title`` paragraphs followed by an ``xml`` fence become examples
(``import_openai_examples.py``). What cannot be converted is skipped with a located warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from specc.errors import SpecError, SpecIssue
from specc.spec.import_openai_examples import ConversationError, build_examples, parse_conversation
from specc.spec.importers import IdAllocator, Imported, first_sentences, read_source, slugify, spec_name

AUTHORITY = {"root": 0, "platform": 0, "system": 1, "developer": 2, "user": 3, "guideline": 4}

HEADING_ATTRS = re.compile(r"\s*\{([^{}]*)\}\s*$")
ATTR = re.compile(r"^(#[^\s]+|\.[^\s]+|[\w-]+=(?:\"[^\"]*\"|\S+))$")
EXAMPLE = re.compile(r"^\s*\*\*Example(?:\*\*\s*:|:\*\*)\s*", re.I)
EXAMPLE_PLAIN = re.compile(r"^Example\s*:\s*", re.I)
ADMONITION = re.compile(r"^!!!\s*[\w-]+(?:\s+\"[^\"]*\")?\s*")
FOOTNOTE_REF = re.compile(r"\s?\[\^[^\]\s]+\]")
FOOTNOTE_DEF = re.compile(r"^\s*\[\^[^\]\s]+\]:")


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
        self.errors: list[SpecIssue] = []
        self.warnings: list[SpecIssue] = []
        self.anchors: dict[str, str] = {}
        self.stack: list[_Node] = []
        self.principles: list[_Node] = []
        self.sections_before: dict[int, list[_Node]] = {}  # principle index -> the sections just above it
        self.pending_sections: list[_Node] = []
        self.description = ""
        self.pending_example: tuple[str, int] | None = None
        self.in_admonition = False
        self.authority_headings = 0
        self.example_blocks = 0
        self.converted_blocks = 0

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(SpecIssue(self.file, line, None, "", message))

    def warn(self, line: int | None, message: str) -> None:
        self.warnings.append(SpecIssue(self.file, line, None, "", message))

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
                    out[start:] = [self.section_title(href)]
                elif label.startswith("^"):
                    del out[start:]
        return tidy("".join(out))

    def plain_md(self, text: str) -> str:
        return " ".join(self.plain(t) for t in self.md.parseInline(text) if t.type == "inline").strip()

    def section_title(self, ref: str) -> str:
        """``#some_id`` -> the title of the heading with that id."""
        anchor = ref.strip().lstrip("#")
        return self.anchors.get(anchor, anchor.replace("_", " "))

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
                self.error(t.map[0] + 1 if t.map else None, f"code block opened with {t.markup} is never closed")
        if self.errors:
            return
        toks, i = self.tokens, 0
        while i < len(toks):
            t = toks[i]
            if t.type in ("heading_open", "paragraph_open", "fence", "bullet_list_open", "ordered_list_open",
                          "code_block", "html_block"):
                if self.pending_example and t.type != "fence":
                    if not (t.type == "paragraph_open" and self.example_title_follows(toks[i + 1])):
                        title, line = self.pending_example
                        self.warn(line, f"example {title!r} is not followed by an ```xml block")
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
        if self.pending_example:
            title, line = self.pending_example
            self.warn(line, f"example {title!r} is not followed by an ```xml block")

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
        if authority:
            self.authority_headings += 1
        if authority and authority not in AUTHORITY:
            self.warn(line, f"unknown authority {authority!r} (expected one of {', '.join(AUTHORITY)}): "
                            f"{title!r} is imported as a section, not a principle")
            authority = ""
        while self.stack and self.stack[-1].level >= level:
            self.stack.pop()
        if authority:
            tags = [slugify(n.anchor, keep="_-") or slugify(n.title) for n in self.stack if n.kind == "section"]
            tags += [slugify(x, keep="_-") for x in re.split(r"[,\s]+", attrs.get("tags", ""))]
            node = _Node("principle", level, title, anchor, line, authority, list(dict.fromkeys(t for t in tags if t)))
            if self.pending_sections:
                self.sections_before[len(self.principles)] = self.pending_sections
                self.pending_sections = []
            self.principles.append(node)
        elif self.principle():
            node = _Node("sub", level, title, anchor, line)
        else:
            node = _Node("section", level, title, anchor, line)
            self.pending_sections.append(node)
        self.stack.append(node)

    def add_paragraph(self, text: str) -> None:
        if not text:
            return
        if not self.description:
            self.description = first_sentences(text, 1000)[0]
        node = self.owner()
        if node is not None:
            node.paragraphs.append(text)

    def paragraph(self, inline: Token, line: int) -> None:
        raw = inline.content
        if FOOTNOTE_DEF.match(raw):
            return
        if EXAMPLE.match(raw):
            title = EXAMPLE_PLAIN.sub("", self.plain(inline)).rstrip(":").strip()
            self.pending_example = (title, line)
            self.example_blocks += 1
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
        """Top-level items become subrules of a principle (a section keeps them as text); nested items join their parent."""
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
        joined = [p[0] + (" (" + "; ".join(p[1:]) + ")" if p[1:] else "") for p in ([x for x in it if x] for it in items) if p]
        node = self.principle()
        if node is None:
            if joined:
                self.add_paragraph("\n".join(f"- {x}" for x in joined))
            return j + 1
        lead_in = node.paragraphs[-1] if node.paragraphs else ""
        if i and self.tokens[i - 1].type == "paragraph_close" and lead_in.endswith(":"):
            # The items move to subrules, so the sentence that introduced them points there.
            node.paragraphs[-1] = lead_in[:-1].rstrip() + " (see the subrules)."
        node.subrules.extend(joined)
        return j + 1

    def fence(self, t: Token) -> None:
        if not self.pending_example:
            return
        title, line = self.pending_example
        self.pending_example = None
        node = self.principle()
        if node is None:
            where = self.owner()
            under = f"under {where.title!r}, a section without an authority" if where else "before any heading"
            self.warn(line, f"example {title!r} is {under}: only principles hold examples")
            return
        try:
            items = parse_conversation(t.content, t.map[0] + 2)
            built = build_examples(items, title, self.plain_md, self.section_title)
        except ConversationError as e:
            self.warn(e.line, f"example {title!r}: {e}")
            return
        for at, why in built.dropped:
            self.warn(at, f"example {title!r}: {why}")
        if not built.examples:
            if not built.dropped:
                self.warn(line, f"example {title!r} shows no assistant reply")
            return
        self.converted_blocks += 1
        node.examples.extend(built.examples)


def tidy(text: str) -> str:
    text = FOOTNOTE_REF.sub("", text)
    text = re.sub(r"\s*---\s*", " — ", text)
    text = re.sub(r"[ \t]+", " ", text)
    return text.strip()


def _section_comment(node: _Node) -> str:
    return "\n\n".join([f"Section: {node.title}", *node.paragraphs])


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
    if not parser.principles and not parser.errors:
        parser.error(1, "no heading carries an authority; principles are headings such as "
                        "`## Be honest {#be_honest authority=user}`")
    if parser.errors:
        raise SpecError(parser.errors)

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

    n_examples = sum(len(n.examples) for n in parser.principles)
    n_held = sum(bool(e.get("holdout")) for n in parser.principles for e in n.examples)
    return Imported(
        source=path,
        fmt="OpenAI Model Spec markdown",
        command="openai-model-spec",
        name=spec_name(name, path),
        assistant=assistant,
        developer=developer,
        principles=principles,
        description=parser.description,
        notes={i: [_section_comment(n) for n in nodes] for i, nodes in parser.sections_before.items()},
        tail=[_section_comment(n) for n in parser.pending_sections],
        warnings=parser.warnings,
        summary=(
            f"{len(principles)} principles from {parser.authority_headings} sections with an authority; "
            f"{n_examples} examples ({n_held} held out) from {parser.converted_blocks} of "
            f"{parser.example_blocks} example blocks"
        ),
    )
