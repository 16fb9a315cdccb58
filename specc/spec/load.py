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
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from specc.errors import SpecError, SpecIssue
from specc.spec.schema import Fragment, Spec

Loc = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

# Only these two variables exist; anything else in braces is left exactly as written.
_VARS = re.compile(r"\{\{\s*assistant\.(name|developer)\s*\}\}")
_RENDERED_SECTIONS = ("description", "principles")


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


def _read_text(path: Path, display: str) -> str:
    if not path.exists():
        raise SpecError([SpecIssue(display, None, None, "", "no such file")])
    if path.is_dir():
        raise SpecError([SpecIssue(display, None, None, "", "is a directory, expected a YAML spec file")])
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
    doc = _Doc(path, display)
    try:
        node = yaml.load(text)
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
                self.issues.append(doc.issue(("include", i), f"included file {rel!r} {what}"))
                continue
            self.seen.add(target)
            try:
                sub = _parse(target, display)
            except SpecError as e:
                self.issues.extend(e.issues)
                continue
            frag, errs = _validate(sub, Fragment, sub.data, lambda loc: False)
            self.issues.extend(errs)
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
    return spec


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
