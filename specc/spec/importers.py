"""Import specs written in other formats: the shared pieces (ids, YAML output, validation).

Each format has its own parser (``import_openai.py``, ``import_rules.py``) that returns an
``Imported``; this module turns one into a commented YAML spec that validates as a ``Spec``.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import textwrap
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from specc.errors import InputError, OutputError, SpecIssue
from specc.spec.schema import SLUG, Spec

MAX_ID = 64
SLUG_RE = re.compile(SLUG)
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"“(\[]?[A-Z0-9])")


def slugify(text: str, sep: str = "_", max_len: int = MAX_ID, keep: str = "") -> str:
    """A valid spec slug (``^[a-z0-9][a-z0-9_-]*$``) from any text; "" when nothing usable is left.

    ``keep`` lists separators to leave alone (``"_-"`` keeps an existing id such as ``avoid-errors``).
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(f"[^a-z0-9{re.escape(keep)}]+", sep, ascii_text.lower()).strip("_-")
    if not keep:
        slug = re.sub(r"[_-]{2,}", sep, slug)
    return slug[:max_len].rstrip("_-")


class IdAllocator:
    """Hands out unique slugs; a repeat gets ``_2``, ``_3``... so every id stays stable and valid."""

    def __init__(self, fallback: str = "principle"):
        self.used: set[str] = set()
        self.fallback = fallback

    def __call__(self, wanted: str, keep: str = "") -> str:
        base = slugify(wanted, keep=keep) or self.fallback
        candidate, n = base, 1
        while candidate in self.used:
            n += 1
            suffix = f"_{n}"
            candidate = base[: MAX_ID - len(suffix)].rstrip("_-") + suffix
        self.used.add(candidate)
        return candidate


def first_sentences(text: str, limit: int) -> tuple[str, str]:
    """Split ``text`` after as many whole sentences as fit in ``limit`` chars (at least one)."""
    if len(text) <= limit:
        return text, ""
    parts = SENTENCE_END.split(text)
    head = parts[0]
    i = 1
    while i < len(parts) and len(head) + 1 + len(parts[i]) <= limit:
        head += " " + parts[i]
        i += 1
    return head, " ".join(parts[i:])


TRAILING_WORDS = frozenset(
    "a an the and or but nor of to in on at by for with from as than rather unless that which who "
    "when if they it its their be is are".split()
)


def short_title(text: str, limit: int = 60) -> str:
    """The first sentence, shortened to a clause or whole words within ``limit`` chars."""
    sentence = first_sentences(text.strip(), 0)[0].strip().rstrip(".!?:;, ")
    if len(sentence) <= limit:
        return sentence or text.strip()[:limit]
    clause = re.split(r"[;:]\s| — | – ", sentence, maxsplit=1)[0].strip()
    if 12 <= len(clause) <= limit:
        return clause
    words = sentence[: limit + 1].split(" ")[:-1] or [sentence[:limit]]
    while len(words) > 2 and words[-1].lower().strip(",;") in TRAILING_WORDS:
        words.pop()
    return " ".join(words).rstrip(".,;:—–- ")


@dataclass
class Imported:
    """What a format parser found, before it becomes YAML."""

    source: Path
    fmt: str
    command: str
    name: str
    assistant: str
    developer: str
    principles: list[dict[str, Any]]
    description: str = ""
    # Comment blocks placed above principles[i]: section prose that has no field of its own.
    notes: dict[int, list[str]] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)  # comment blocks after the last principle
    warnings: list[SpecIssue] = field(default_factory=list)  # what was skipped, FILE:LINE: what and why
    summary: str = ""  # what was converted, for the last lines of the command's output

    @property
    def example_count(self) -> int:
        return sum(len(p.get("examples", [])) for p in self.principles)


def spec_name(name: str | None, source: Path) -> str:
    """The ``--name`` given (checked) or one made from the file name."""
    if name is not None:
        if not SLUG_RE.match(name) or len(name) > 96:
            raise InputError(
                f"--name {name!r} is not a valid spec name: use lowercase letters, digits, '-' and '_' "
                f"(e.g. {slugify(name, '-') or 'my-spec'!r})"
            )
        return name
    return slugify(source.stem, "-", 96) or "imported-spec"


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None


def _folded(text: str, width: int = 88) -> FoldedScalarString:
    """A ``>-`` block folded at single spaces, so long statements read as short lines."""
    folds: list[int] = []
    line_start, last_ok = 0, None
    for i, ch in enumerate(text):
        # Fold only at a lone space: folding next to another space would change the text.
        if ch != " " or text[i - 1] == " " or i + 1 >= len(text) or text[i + 1] == " ":
            continue
        if i - line_start <= width:
            last_ok = i
        elif last_ok is not None:
            folds.append(last_ok)
            line_start = last_ok + 1
            last_ok = i if i - line_start <= width else None
    if len(text) - line_start > width and last_ok is not None and last_ok > line_start:
        folds.append(last_ok)
    out = FoldedScalarString(text)
    out.fold_pos = folds
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        value = "\n".join(line.rstrip() for line in value.strip().splitlines())
        if "\n" in value:
            return LiteralScalarString(value)
        if len(value) > 88:
            return _folded(value)
    return value


def _mapping(d: dict[str, Any]) -> CommentedMap:
    out = CommentedMap()
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _mapping(v)
        elif isinstance(v, list):
            seq = CommentedSeq()
            seq.extend(_mapping(x) if isinstance(x, dict) else _scalar(x) for x in v)
            out[k] = seq
        else:
            out[k] = _scalar(v)
    return out


def _comment(text: str, width: int = 94) -> str:
    lines: list[str] = []
    for para in text.splitlines():
        indent = "  " if para.startswith("- ") else ""  # a list item's continuation lines hang under it
        lines.extend(textwrap.wrap(para, width, subsequent_indent=indent) or [""])
    return "\n".join(lines)


NEXT_STEPS = (
    "Next: choose the model and the corpus size. Until you do, a build uses the spec defaults: the "
    "embedded offline model (generator.provider: local, model: smollm2-135m) and "
    "corpus.budget.tokens: 200000. For example:\n"
    "generator: {provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}\n"
    "corpus: {budget: {tokens: 2000000}}\n"
    "then `specc plan` shows the calls and cost before `specc build` spends them."
)


def build_document(imp: Imported) -> CommentedMap:
    """The spec as a ruamel.yaml document with comments that point the reader at what to review."""
    doc = CommentedMap()
    doc["specc"] = 1
    doc["name"] = imp.name
    if imp.description:
        doc["description"] = _scalar(imp.description)
    assistant = CommentedMap(name=imp.assistant)
    if imp.developer:
        assistant["developer"] = imp.developer
    doc["assistant"] = assistant
    principles = CommentedSeq()
    for p in imp.principles:
        principles.append(_mapping(p))
    for i, blocks in sorted(imp.notes.items()):
        principles.yaml_set_comment_before_after_key(i, before=_comment("\n\n".join(blocks)), indent=2)
    doc["principles"] = principles

    doc.yaml_set_start_comment(
        _comment(
            f"Imported from {imp.source.name} ({imp.fmt}) by `specc import {imp.command}`.\n"
            "Review the principles before a build: the importer keeps the text as written, and "
            "statements, subrules and priorities are its best guess at the structure. The source's "
            "sections without an authority are kept as comments above the principles that follow them."
        )
    )
    doc.yaml_add_eol_comment("the name used in every generated document", "assistant")
    doc.yaml_set_comment_before_after_key(
        "principles",
        before=_comment("\nLower priority wins when two principles conflict."),
    )
    return doc


def render_yaml(imp: Imported) -> str:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # long plain scalars stay on one line; long prose is folded by _folded
    buf = io.StringIO()
    yaml.dump(build_document(imp), buf)
    # The model and the budget are the user's choice (and cost); they are left at the spec defaults.
    tail = "\n\n".join([*imp.tail, NEXT_STEPS])
    return buf.getvalue() + "\n" + "\n".join(f"# {ln}".rstrip() if ln else "" for ln in _comment(tail).splitlines()) + "\n"


def validate(imp: Imported, text: str) -> Spec:
    """Parse the YAML we are about to write and check it against the schema."""
    data = YAML(typ="safe").load(text)
    try:
        return Spec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)
        )
        raise InputError(f"{imp.source}: the imported spec does not validate: {problems}") from None


def write_spec(imp: Imported, out: Path, force: bool = False) -> Spec:
    """Render, validate and write the spec atomically; an existing file needs ``force``."""
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to overwrite it")
    if out.is_dir():
        raise InputError(f"{out} is a directory; give a file name with -o")
    text = render_yaml(imp)
    spec = validate(imp, text)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this is a file to share
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {e.strerror}") from None
    return spec
