"""YAML -> Spec, with every problem located as ``FILE:LINE:COL: field.path: message``.

ruamel.yaml's round-trip loader keeps the position of every key and item (and
constructs no Python objects from tags), so pydantic's error locations can be
mapped back to the line and column a user has to fix.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, SequenceNode

from specc.errors import SpecError, SpecIssue
from specc.spec.schema import Fragment, Spec

Loc = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

# Only these two variables exist; anything else in braces is left exactly as written.
_VARS = re.compile(r"\{\{\s*assistant\.(name|developer)\s*\}\}")
_RENDERED_SECTIONS = ("description", "principles")

# Limits that keep hostile input cheap to reject. A large real spec (the whole OpenAI Model Spec
# imported) is under 1 MB, nests 8 levels deep and uses no aliases.
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIAS_NODES = 10_000  # values that aliases add when expanded ("billion laughs" adds ~10^9)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Doc:
    """One parsed YAML file: plain data plus a position for every key, value and item."""

    def __init__(self, path: Path, display: str):
        self.path = path
        self.display = display
        self.data: Any = None
        self.key_pos: dict[Loc, Pos] = {}
        self.val_pos: dict[Loc, Pos] = {}

    def __eq__(self, other: object) -> bool:
        # A loaded Spec keeps its _Doc; two loads of one file must still compare equal.
        if not isinstance(other, _Doc):
            return NotImplemented
        return (self.display, self.key_pos, self.val_pos) == (other.display, other.key_pos, other.val_pos)

    __hash__ = None  # type: ignore[assignment]

    def issue(self, loc: Loc, message: str, *, at_key: bool = False) -> SpecIssue:
        line, col = self.where(loc, at_key=at_key)
        return SpecIssue(self.display, line, col, format_loc(loc), message)

    def where(self, loc: Loc, *, at_key: bool = False) -> tuple[int | None, int | None]:
        for n in range(len(loc), 0, -1):
            prefix = loc[:n]
            table = self.key_pos if (at_key or n < len(loc)) else self.val_pos
            if prefix in table:
                return table[prefix]
            if prefix in self.key_pos:
                return self.key_pos[prefix]
        return (1, 1)

    def plain(self, node: Any, loc: Loc = ()) -> Any:
        if isinstance(node, CommentedMap):
            out = {}
            for k in node:
                key_loc = loc + (str(k),)
                try:
                    kl, kc = node.lc.key(k)
                    vl, vc = node.lc.value(k)
                    self.key_pos[key_loc] = (kl + 1, kc + 1)
                    self.val_pos[key_loc] = (vl + 1, vc + 1)
                except (KeyError, TypeError):
                    pass
                out[str(k) if not isinstance(k, (int, float, bool)) else k] = self.plain(node[k], key_loc)
            return out
        if isinstance(node, CommentedSeq):
            out_list = []
            for i, item in enumerate(node):
                try:
                    il, ic = node.lc.item(i)
                    self.key_pos[loc + (i,)] = self.val_pos[loc + (i,)] = (il + 1, ic + 1)
                except (KeyError, TypeError, IndexError):
                    pass
                out_list.append(self.plain(item, loc + (i,)))
            return out_list
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        # Dates, tagged scalars and anything else YAML can express: keep a readable string
        # so the schema reports a type error at the right place instead of crashing.
        return node if isinstance(node, (list, dict)) else str(node)


class _LimitExceeded(Exception):
    """Input past one of the loader's limits, at a 0-based YAML mark."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


class _LimitedComposer(Composer):
    """ruamel.yaml's composer with a nesting limit and a budget for alias expansion.

    The data it builds shares aliased nodes, but everything downstream (plain data, the
    schema) expands them: a few hundred bytes of nested aliases would expand to 10^9 nodes.
    The composer recurses once per level, so the depth limit also keeps it off Python's stack limit.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._level = 0
        self._expanded = 0
        self._open: set[str] = set()  # anchors of the nodes being composed
        self._sizes: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        self._level += 1
        if self._level > MAX_DEPTH:
            raise _LimitExceeded(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._level -= 1
            self._open.discard(anchor)

    def _count_alias(self, event: Any) -> None:
        if event.anchor in self._open:
            raise _LimitExceeded(event.start_mark, f"alias *{event.anchor} refers to a node that contains it (a recursive structure)")
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # ruamel reports the undefined alias
        size, depth = self._measure(node)
        if self._level + depth > MAX_DEPTH:
            raise _LimitExceeded(event.start_mark, f"nested more than {MAX_DEPTH} levels deep once alias *{event.anchor} is expanded")
        self._expanded += size
        if self._expanded > MAX_ALIAS_NODES:
            raise _LimitExceeded(
                event.start_mark,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} values (a YAML alias bomb?); write the values out",
            )

    def _measure(self, root: Any) -> tuple[int, int]:
        """(nodes, depth) of ``root`` with every alias expanded; memoised, since aliases share their nodes."""
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if id(node) in self._sizes:
                continue
            kids = self._children(node)
            if done or not kids:
                measured = [self._sizes[id(k)] for k in kids]
                self._sizes[id(node)] = (1 + sum(n for n, _ in measured), 1 + max((d for _, d in measured), default=0))
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if id(k) not in self._sizes)
        return self._sizes[id(root)]

    @staticmethod
    def _children(node: Any) -> list:
        if isinstance(node, SequenceNode):
            return list(node.value)
        if isinstance(node, MappingNode):
            return [x for pair in node.value for x in pair]
        return []


def _read_text(path: Path, display: str) -> str:
    if not path.exists():
        raise SpecError([SpecIssue(display, None, None, "", "no such file")])
    if path.is_dir():
        raise SpecError([SpecIssue(display, None, None, "", "is a directory, expected a YAML spec file")])
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SpecError([SpecIssue(display, 1, 1, "", (
            f"file is {size / 2**20:.1f} MB; a spec may be at most {MAX_BYTES // 2**20} MB "
            "(put eval data in corpus.decontamination.files, not in the spec)"
        ))])
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise SpecError([SpecIssue(display, 1, 1, "", "not a text file (binary content); expected a YAML spec")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError([SpecIssue(display, line, None, "", f"not valid UTF-8 (byte {e.start}); save the spec as UTF-8")]) from None
    if not text.strip() or all(ln.strip().startswith("#") or not ln.strip() for ln in text.splitlines()):
        raise SpecError(
            [SpecIssue(display, 1, 1, "", "file is empty; a spec needs at least `specc`, `name`, `assistant` and `principles`")]
        )
    return text


def _parse(path: Path, display: str) -> _Doc:
    text = _read_text(path, display)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Composer = _LimitedComposer
    doc = _Doc(path, display)
    try:
        node = yaml.load(text)
    except _LimitExceeded as e:
        raise SpecError([SpecIssue(display, e.mark.line + 1, e.mark.column + 1, "", e.message)]) from None
    except RecursionError:
        # The depth limit should make this unreachable; a located message is still better than a traceback.
        raise SpecError([SpecIssue(display, 1, 1, "", "nested too deeply to read")]) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or str(e)).strip()
        if "\\t" in problem or "'\\t'" in problem or "\t" in problem:
            problem = "tab character: YAML indentation must use spaces, not tabs"
        elif "duplicate key" in problem.lower() or type(e).__name__ == "DuplicateKeyError":
            problem = problem.replace("found duplicate key", "duplicate key").split(" with value")[0]
        else:
            problem = f"YAML syntax error: {problem}"
            if e.context and e.context.strip() not in problem:
                ctx = e.context.strip()
                if e.context_mark is not None and e.problem_mark is not None and e.context_mark.line != e.problem_mark.line:
                    ctx += f" started at line {e.context_mark.line + 1}"
                problem += f" ({ctx})"
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise SpecError([SpecIssue(display, line, col, "", problem)]) from None
    except YAMLError as e:
        raise SpecError([SpecIssue(display, None, None, "", f"YAML error: {e}")]) from None
    if not isinstance(node, CommentedMap):
        kind = "a list" if isinstance(node, CommentedSeq) else f"a {type(node).__name__}"
        raise SpecError([SpecIssue(display, 1, 1, "", f"the top level must be a mapping of keys, found {kind}")])
    doc.data = doc.plain(node)
    return doc


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that owns the mapping at ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(ann: Any) -> Any:
    origin = get_origin(ann)
    if origin is typing.Annotated:
        return _unwrap(get_args(ann)[0])
    if origin in (list, tuple, set, Union, types.UnionType):
        for arg in get_args(ann):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
        return None
    return ann


def _message(err: dict, model: type[BaseModel]) -> tuple[Loc, str, bool]:
    loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
    typ = err["type"]
    msg = err["msg"]
    if typ == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(model, loc[:-1])
        if key in {"api_key", "key", "token", "hf_token", "openai_api_key", "secret"}:
            return loc, (
                "unknown key; a credential is never accepted in a spec: put the NAME of an environment "
                "variable in generator.api_key_env (or HF_TOKEN for the Hub) and set the variable"
            ), True
        hint = ""
        if owner is not None:
            close = difflib.get_close_matches(key, list(owner.model_fields), n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean `{close[0]}`?"
            else:
                hint = f"; expected one of: {', '.join(owner.model_fields)}"
        return loc, f"unknown key{hint}", True
    if typ == "missing":
        return loc, "required field is missing", True
    if typ == "string_pattern_mismatch" and loc and loc[-1] in ("id", "name") and len(loc) <= 3:
        return loc, "must be a slug: lowercase letters, digits, '-' or '_', starting with a letter or digit", False
    if typ == "too_short" and loc == ("principles",):
        return loc, "a spec needs at least one principle", False
    if typ == "literal_error" and loc == ("specc",):
        return loc, f"unsupported spec schema version {err.get('input')!r}; this specc reads `specc: 1`", False
    msg = msg.removeprefix("Value error, ")
    return loc, msg[0].lower() + msg[1:] if msg else msg, False


def _validate(doc: _Doc, model: type[BaseModel], data: dict, skip: typing.Callable[[Loc], bool]) -> tuple[Any, list[SpecIssue]]:
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        issues = []
        for err in e.errors(include_url=False):
            loc, msg, at_key = _message(err, model)
            if skip(loc):
                continue
            issues.append(doc.issue(loc, msg, at_key=at_key))
        return None, issues


def _render(value: Any, assistant: dict) -> Any:
    if isinstance(value, str):
        return _VARS.sub(lambda m: str(assistant.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [_render(v, assistant) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, assistant) for k, v in value.items()}
    return value


class _Includes:
    """Resolves ``include:`` recursively: each file once, loops and missing files reported."""

    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []
        self.principles: list[tuple[dict, _Doc, Loc]] = []
        self.seen: set[Path] = set()

    def walk(self, doc: _Doc, stack: list[Path]) -> None:
        includes = doc.data.get("include", [])
        if not isinstance(includes, list):
            return  # the schema reports the type error
        for i, rel in enumerate(includes):
            if not isinstance(rel, str):
                continue
            target = (doc.path.parent / rel).resolve()
            display = _display(target)
            if target in stack:
                chain = " -> ".join(_display(p) for p in [*stack[stack.index(target):], target])
                self.issues.append(doc.issue(("include", i), f"include loop: {chain}"))
                continue
            if target in self.seen:
                continue
            if not target.is_file():
                what = "is a directory" if target.is_dir() else "not found"
                self.issues.append(doc.issue(("include", i), f"included file {rel!r} {what} (looked for {target})"))
                continue
            self.seen.add(target)
            line, _ = doc.where(("include", i))
            via = f" (included from {doc.display}:{line})"
            try:
                sub = _parse(target, display)
            except SpecError as e:
                self.issues.extend(replace(x, message=x.message + via) for x in e.issues)
                continue
            frag, errs = _validate(sub, Fragment, sub.data, lambda loc: False)
            self.issues.extend(replace(x, message=x.message + via) for x in errs)
            if frag is not None:
                for j, p in enumerate(sub.data.get("principles", [])):
                    self.principles.append((p, sub, ("principles", j)))
            self.walk(sub, [*stack, target])


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_spec(path: str | Path) -> Spec:
    """Load, merge includes, validate and render a spec; raise SpecError with every problem found."""
    path = Path(path)
    display = str(path)
    doc = _parse(path, display)
    data = dict(doc.data)
    inc = _Includes()
    inc.walk(doc, [path.resolve()])
    issues = list(inc.issues)

    own = data.get("principles")
    own_list = own if isinstance(own, list) else []
    if inc.principles and isinstance(own, (list, type(None))):
        data["principles"] = [*own_list, *(p for p, _, _ in inc.principles)]
    n_own = len(own_list)

    # Principles from included files were validated (and reported) in their own file.
    def skip(loc: Loc) -> bool:
        return len(loc) >= 2 and loc[0] == "principles" and isinstance(loc[1], int) and loc[1] >= n_own

    assistant = data.get("assistant") if isinstance(data.get("assistant"), dict) else {}
    for section in _RENDERED_SECTIONS:
        if section in data:
            data[section] = _render(data[section], assistant)

    spec, errs = _validate(doc, Spec, data, skip)
    issues.extend(errs)
    issues.extend(_duplicate_ids(doc, own_list, inc.principles))
    if issues:
        raise SpecError(issues)
    assert spec is not None
    spec._source = path.resolve()
    doc.data = None  # only the positions are kept
    spec._where = doc
    return spec


def issue_at(spec: Spec, loc: Loc, message: str) -> SpecIssue:
    """A problem found after loading, located at the line and column where ``loc`` is written."""
    if isinstance(spec._where, _Doc):
        return spec._where.issue(loc, message)
    return SpecIssue(str(spec.source or "spec"), None, None, format_loc(loc), message)


def _duplicate_ids(doc: _Doc, own: list, included: list[tuple[dict, _Doc, Loc]]) -> list[SpecIssue]:
    entries = [(p, doc, ("principles", i)) for i, p in enumerate(own)] + included
    first: dict[str, tuple[_Doc, Loc]] = {}
    issues = []
    for p, d, loc in entries:
        pid = p.get("id") if isinstance(p, dict) else None
        if not isinstance(pid, str):
            continue
        if pid in first:
            fd, floc = first[pid]
            line, _ = fd.where(floc + ("id",))
            issues.append(d.issue(loc + ("id",), f"duplicate principle id {pid!r} (first defined at {fd.display}:{line})"))
        else:
            first[pid] = (d, loc)
    return issues
