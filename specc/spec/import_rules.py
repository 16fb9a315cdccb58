"""Import a plain list of rules: ``SP1: ...`` / ``GP2: ...`` labels or a ``1.`` / ``1)`` numbered list.

Indented ``-``, ``*`` or ``a.`` bullets under a rule are its subrules; a short line ending in
``:`` (or a ``#`` heading) names the group of the rules after it and becomes their tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from specc.errors import SpecError, SpecIssue
from specc.spec.importers import (
    TRAILING_WORDS,
    IdAllocator,
    Imported,
    read_source,
    short_title,
    slugify,
    spec_name,
)

LABELLED = re.compile(r"^(?P<prefix>[A-Za-z]{1,8})[ _-]?(?P<num>\d+)(?P<suffix>[a-z]?)\s*[:.)\]–—-]\s*(?P<text>\S.*)$")
NUMBERED = re.compile(r"^(?P<num>\d+)\s*[.)]\s+(?P<text>\S.*)$")
BULLET = re.compile(r"^(?:[-*•+]|\(?[a-z][.)]|\(?[ivx]+[.)]|\d+[.)])\s+(?P<text>\S.*)$")
HEADING = re.compile(r"^(?:#+\s*(?P<md>.+?)\s*#*|(?P<colon>[^.!?]{1,80}):)$")


@dataclass
class _Rule:
    line: int
    label: str  # "SP1" or "" for a numbered item
    prefix: str
    group: str
    paragraphs: list[list[str]] = field(default_factory=list)
    subrules: list[list[str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return _join(self.paragraphs[0])


def _join(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def _sentences(lines: list[str]) -> str:
    """Joined lines; a title line without a full stop gets one so it does not run into the next."""
    out = [
        line + "." if i + 1 < len(lines) and line[-1] not in ".!?:;," and lines[i + 1][:1].isupper() else line
        for i, line in enumerate(x for x in lines if x)
    ]
    return _join(out)


def parse_rules(path: Path, text: str) -> tuple[list[_Rule], list[str], dict[str, list[str]]]:
    """Rules in file order, the preamble before any group or rule, and the text under each group heading."""
    rules: list[_Rule] = []
    preamble: list[str] = []
    intros: dict[str, list[str]] = {}
    issues: list[SpecIssue] = []
    group = ""
    prev, blank = "", False  # the last non-blank line's kind, and whether a blank line followed it
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        indented = line[:1] in (" ", "\t")
        if not stripped:
            blank = True
            continue
        in_rule = prev in ("rule", "sub")
        m = None if indented else LABELLED.match(stripped) or NUMBERED.match(stripped)
        b = BULLET.match(stripped)
        h = HEADING.match(stripped)
        if m:
            prefix = m.groupdict().get("prefix") or ""
            label = f"{prefix}{m['num']}{m.groupdict().get('suffix') or ''}" if prefix else ""
            rules.append(_Rule(n, label, prefix.upper(), group, [[m["text"]]]))
            prev = "rule"
        elif b and (indented or in_rule):
            if not rules:
                issues.append(SpecIssue(str(path), n, None, "", f"a sub-bullet before any rule: {stripped[:40]!r}"))
                continue
            rules[-1].subrules.append([b["text"]])
            prev = "sub"
        elif in_rule and not blank:
            # A wrapped line: it continues the rule or the sub-bullet above it.
            (rules[-1].subrules[-1] if prev == "sub" else rules[-1].paragraphs[-1]).append(stripped)
        elif h and not indented and len((h["md"] or h["colon"]).split()) <= 6:
            group, prev = (h["md"] or h["colon"]).strip(), "heading"
        elif prev in ("heading", "intro"):
            intros.setdefault(group, []).append(stripped)
            prev = "intro"
        elif not rules:
            preamble.append(stripped)
            prev = "preamble"
        else:
            # A paragraph after a blank line belongs to the rule above as rationale.
            rules[-1].paragraphs.append([stripped])
            prev = "rule"
        blank = False
    if issues:
        raise SpecError(issues)
    if not rules:
        raise SpecError(
            [SpecIssue(str(path), 1, None, "", "no rules found; expected lines such as 'SP1: …', '1. …' or '1) …'")]
        )
    return rules, preamble, intros


def _words_id(text: str, n: int = 4) -> str:
    words = slugify(text).split("_")[:n]
    while len(words) > 1 and words[-1] in TRAILING_WORDS:
        words.pop()
    return "_".join(words)


def import_rules(
    path: Path, *, name: str | None = None, assistant: str = "Assistant", developer: str = ""
) -> Imported:
    """Turn a numbered or labelled rule list into principles, one per rule."""
    rules, preamble, intros = parse_rules(path, read_source(path))
    notes: dict[int, list[str]] = {}
    for index, r in enumerate(rules):
        if r.group and (index == 0 or rules[index - 1].group != r.group):
            notes[index] = [r.group + (f": {_join(intros[r.group])}" if r.group in intros else "")]
    ruleless = [g for g in intros if all(r.group != g for r in rules)]
    description = _sentences(preamble + [line for g in ruleless for line in intros[g]])
    if len({r.group for r in rules}) == 1 and not any(r.label for r in rules):
        # One heading over every rule is the document's title, not a group: it tags nothing.
        title = rules[0].group
        description = _sentences([title] + intros.get(title, []) + ([description] if description else []))
        for r in rules:
            r.group = ""
        notes = {}
    labelled = any(r.label for r in rules)
    grouped = labelled or any(r.group for r in rules)
    # Priority follows the order groups first appear in: SP before GP, or the first heading's rules first.
    groups: list[str] = []
    for r in rules:
        key = (r.prefix or "#") if labelled else r.group
        if key not in groups:
            groups.append(key)
    ids = IdAllocator("rule")
    principles = []
    warnings: list[SpecIssue] = []
    for index, r in enumerate(rules):
        statement = r.text
        pid = ids(r.label) if r.label else ids(_words_id(statement))
        if r.label and pid != slugify(r.label):
            warnings.append(SpecIssue(str(path), r.line, None, "", f"label {r.label} repeats an earlier one; its id is {pid}"))
        priority = groups.index((r.prefix or "#") if labelled else r.group) if grouped else index
        p: dict = {"id": pid, "title": short_title(statement), "priority": priority}
        tag = slugify(r.group)
        if tag:
            p["tags"] = [tag]
        p["statement"] = statement
        rationale = "\n\n".join(_join(para) for para in r.paragraphs[1:])
        if rationale:
            p["rationale"] = rationale
        if r.subrules:
            p["subrules"] = [_join(s) for s in r.subrules]
        principles.append(p)
    return Imported(
        source=path,
        fmt="rule list",
        command="rules",
        name=spec_name(name, path),
        assistant=assistant,
        developer=developer,
        principles=principles,
        description=description,
        notes=notes,
        warnings=warnings,
        summary=f"{len(principles)} principles from {len(rules)} rules",
    )
