"""Tolerant parsing of model output: small models wrap JSON in prose and fences, leave
trailing commas, stop mid-list, or answer with a bulleted list. Everything here returns
validated pydantic objects or raises ParseFailure with a reason that is counted."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from specc.curate.filters import find_placeholder


class ParseFailure(Exception):
    """An output that cannot be used; ``reason`` becomes the drop reason ``parse:<reason>``."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail or reason
        super().__init__(self.detail)


# ---------------------------------------------------------------- JSON extraction

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_DECODER = json.JSONDecoder()


def _partial_list(s: str, start: int) -> list | None:
    """The complete items of the first JSON list at or after ``start``, when the text is cut off."""
    j = s.find("[", start)
    if j < 0:
        return None
    items: list = []
    pos = j + 1
    n = len(s)
    while True:
        while pos < n and s[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or s[pos] == "]":
            break
        try:
            value, pos = _DECODER.raw_decode(s, pos)
        except json.JSONDecodeError:
            break
        items.append(value)
    return items


def find_json(text: str, accept: Callable[[Any], bool]) -> tuple[Any, bool]:
    """The first JSON value in ``text`` that ``accept`` likes, and whether it was cut short.

    Looks inside code fences first, then the whole text; tolerates prose around the
    JSON and trailing commas; for a truncated list, returns its complete items.
    """
    texts = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for t in texts:
        for variant in dict.fromkeys((_TRAILING_COMMA.sub(r"\1", t), t)):
            for i, ch in enumerate(variant):
                if ch not in "{[":
                    continue
                try:
                    value, _ = _DECODER.raw_decode(variant, i)
                except json.JSONDecodeError:
                    partial = _partial_list(variant, i)
                    if partial and accept(partial):
                        return partial, True
                    continue
                if accept(value):
                    return value, False
    raise ParseFailure("unparseable", "no JSON of the requested shape found")


def as_items(value: Any, keys: tuple[str, ...]) -> list:
    """A list of items from a list, an object wrapping one (``{"ideas": [...]}``) or a single item."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for k in keys:
            if isinstance(lowered.get(k), list):
                return lowered[k]
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1:
            return lists[0]
        if value and all(isinstance(v, dict) for v in value.values()):  # {"idea1": {...}, "idea2": {...}}
            return list(value.values())
        return [value]
    return []


_BULLET = re.compile(r"^\s*(?:\d{1,3}\s*[.):]|[-*•])\s+(.*\S)\s*$")
_LABEL = re.compile(r"^\W*(title|angle|audience|setting|user|system|operator)\W*\s*[:\-–—]\s*(.*)$", re.I)
_MD = re.compile(r"\*\*|__|`")


def bullet_blocks(text: str) -> list[list[str]]:
    """Numbered or bulleted items, each with its continuation lines (the fallback for non-JSON answers)."""
    blocks: list[list[str]] = []
    for raw in text.splitlines():
        line = _MD.sub("", raw).rstrip()
        m = _BULLET.match(line)
        if m:
            blocks.append([m.group(1).strip()])
        elif blocks and line.strip():
            blocks[-1].append(line.strip())
    return blocks


# The prompt's framing written before a question: 'A user could ask: "..."', "Question 2: ...".
_ASKER = re.compile(
    r"^(?:an? )?(?:user|customer|person|someone|question)(?: \d+)?(?: (?:could|might|would|may|can) ask| asks)?"
    r"\s*[:\-–—]\s*",
    re.I,
)
_CHATTER = re.compile(r"^(i|i'm|i am|i'll|sorry|sure|okay|ok|here|certainly|of course)\b", re.I)


def plain_lines(text: str, *, max_words: int, question: bool = False) -> list[list[str]]:
    """Short unmarked lines as items: what very small models give instead of a list (last resort)."""
    lines = [_MD.sub("", ln).strip().strip('"“”') for ln in text.splitlines()]
    keep = [
        ln for ln in lines
        if ln and len(ln.split()) <= max_words and not ln.endswith(":") and not _CHATTER.match(ln)
    ]
    if question:
        keep = [ln for ln in keep if ln.endswith("?")]
    return [[ln] for ln in keep]


def _labelled(block: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block:
        m = _LABEL.match(line)
        if m:
            out.setdefault(m.group(1).lower(), m.group(2).strip().strip('"“”'))
    return out


# ---------------------------------------------------------------- ideas

def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_text(x)}" for k, x in v.items())
    return str(v).strip()


class Idea(BaseModel):
    """One document idea."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=3, max_length=300)
    angle: str = ""
    audience: str = ""
    setting: str = ""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"title": v}
        if not isinstance(v, dict):
            return v
        d = {str(k).lower(): x for k, x in v.items()}
        for alias in ("headline", "name", "idea", "topic"):
            if "title" not in d and alias in d:
                d["title"] = d[alias]
        if "angle" not in d:
            d["angle"] = d.get("description") or d.get("summary") or d.get("premise") or ""
        return {k: _text(d.get(k)) for k in ("title", "angle", "audience", "setting")}

    @field_validator("title")
    @classmethod
    def _clean_title(cls, v: str) -> str:
        return v.strip().strip('"“”\'').strip()

    def normalised_title(self) -> str:
        return normalise(self.title)


_WORDS = re.compile(r"\w+")


@lru_cache(maxsize=1 << 14)
def normalise(text: str) -> str:
    """Lowercase words only: the identity used to drop duplicate ideas and scenarios.

    Remembered: an idea's title is normalised for its dedup, its document's seed and brief, and its row.
    """
    return " ".join(_WORDS.findall(text.lower()))


def _validate_items(items: list, model: type[BaseModel]) -> tuple[list, int]:
    good, bad = [], 0
    for item in items:
        try:
            good.append(model.model_validate(item))
        except ValidationError:
            bad += 1
    return good, bad


def _idea_from_block(block: list[str]) -> dict:
    fields = _labelled(block)
    if "title" in fields:
        return fields
    first = block[0].strip().strip('"“”')
    parts = re.split(r"\s[-–—]\s|:\s", first, maxsplit=1)
    title, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    angle = " ".join([rest.strip()] + [b for b in block[1:] if not _LABEL.match(b)]).strip()
    return {"title": title, "angle": angle, **fields}


def parse_ideas(text: str) -> tuple[list[Idea], bool, int]:
    """Ideas from an answer: (ideas, truncated, invalid item count)."""
    if not text.strip():
        raise ParseFailure("empty", "the answer was empty")

    def ok(v: Any) -> bool:
        return any(isinstance(x, (dict, str)) for x in as_items(v, ("ideas", "items", "documents")))

    try:
        value, truncated = find_json(text, ok)
        ideas, bad = _validate_items(as_items(value, ("ideas", "items", "documents")), Idea)
    except ParseFailure:
        truncated = False
        blocks = bullet_blocks(text) or plain_lines(text, max_words=25)
        ideas, bad = _validate_items([_idea_from_block(b) for b in blocks], Idea)
    if not ideas:
        raise ParseFailure("unparseable", 'expected {"ideas": [{"title": ..., "angle": ..., "audience": ..., "setting": ...}]}')
    return ideas, truncated, bad


# ---------------------------------------------------------------- scenarios

_ROLES = {"user": "user", "human": "user", "customer": "user", "assistant": "assistant", "ai": "assistant",
          "bot": "assistant", "model": "assistant", "system": "system", "operator": "system"}


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _words(cls, v: str) -> str:
        # A bare list number ("2.") left by a small model's nested list is not something a user says.
        if not any(ch.isalpha() for ch in v):
            raise ValueError("a turn with no words")
        return v


class Scenario(BaseModel):
    """A conversation up to the user's last turn, with an optional operator system prompt."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    system: str | None = None
    turns: list[Turn] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"turns": [{"role": "user", "content": v}]}
        if not isinstance(v, dict):
            return v
        d = {str(k).lower(): x for k, x in v.items()}
        system = next((d[k] for k in ("system", "operator", "system_prompt", "operator_prompt") if d.get(k)), None)
        turns = next((d[k] for k in ("turns", "messages", "conversation", "dialogue") if isinstance(d.get(k), list)), None)
        if turns is None:
            user = next((d[k] for k in ("user", "user_message", "prompt", "request", "message", "content", "text") if d.get(k)), None)
            turns = [{"role": "user", "content": user}] if isinstance(user, str) else []
        out: list[dict] = []
        for t in turns:
            if isinstance(t, str):
                t = {"role": "user" if not out or out[-1]["role"] == "assistant" else "assistant", "content": t}
            if not isinstance(t, dict):
                continue
            role = _ROLES.get(str(t.get("role", "user")).lower().strip(), "user")
            content = _text(t.get("content") if "content" in t else t.get("text"))
            if role == "system":
                system = system or content
                continue
            if out and out[-1]["role"] == role:  # merge, so roles alternate
                out[-1]["content"] += "\n\n" + content
            else:
                out.append({"role": role, "content": content})
        while out and out[0]["role"] == "assistant":
            out.pop(0)
        while out and out[-1]["role"] == "assistant":  # the writer answered itself: drop its reply
            out.pop()
        system = _text(system)
        return {"system": None if system.lower() in ("", "null", "none") else system, "turns": out}

    def messages(self) -> list[dict[str, str]]:
        """The stored conversation: operator prompt (if any) and turns, no teacher prompt."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [t.model_dump() for t in self.turns]

    def identity(self) -> str:
        return normalise(" ".join(t.content for t in self.turns))


def parse_scenarios(text: str, kind: str) -> tuple[list[Scenario], bool, int]:
    """Scenarios from an answer: (scenarios, truncated, invalid item count)."""
    if not text.strip():
        raise ParseFailure("empty", "the answer was empty")
    keys = ("scenarios", "situations", "items", "conversations")

    def ok(v: Any) -> bool:
        return any(isinstance(x, (dict, str)) for x in as_items(v, keys))

    try:
        value, truncated = find_json(text, ok)
        items = as_items(value, keys)
    except ParseFailure:
        truncated = False
        items = []
        for block in bullet_blocks(text) or plain_lines(text, max_words=60, question=True):
            f = _labelled(block)
            lines = [b for b in block if not _LABEL.match(b)]
            # A question on the item's first line is the item; what follows it is the model's answer or noise.
            if lines and lines[0].rstrip('"“” ').endswith("?"):
                lines = lines[:1]
            user = f.get("user") or " ".join(lines).strip().strip('"“”')
            user = _ASKER.sub("", user).strip().strip('"“”')
            items.append({"system": f.get("system") or f.get("operator"), "user": user})
    scenarios, bad = _validate_items(items, Scenario)
    if kind == "multi_turn":
        before = len(scenarios)
        scenarios = [s for s in scenarios if len(s.turns) >= 3]
        bad += before - len(scenarios)
    if not scenarios:
        raise ParseFailure(
            "unparseable",
            'expected {"scenarios": [{"system": null, "turns": [{"role": "user", "content": ...}]}]}'
            + (" with earlier user and assistant turns before the last user turn" if kind == "multi_turn" else ""),
        )
    return scenarios, truncated, bad


# ---------------------------------------------------------------- documents and replies

# What "<document>(.*?)(?:</document>|\Z)" matches, without trying the closing alternatives at every
# character (20x faster on a long document): runs of anything but "<", or a "<" that opens no closing tag.
_DOC = re.compile(r"<document>((?:[^<]+|<(?!/document>))*)(?:</document>)?", re.S | re.I)
_PLAN = re.compile(r"<plan>.*?(?:</plan>|\Z)", re.S | re.I)
_TAG = re.compile(r"</?(?:document|plan|notes?|thinking|draft|article)>", re.I)
_PREAMBLE = re.compile(
    r"^\W*(sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are)|below is|i(?:'ve| have) (?:written|drafted)"
    r"|(?:the )?document\s*:|(?:the )?plan\s*:)",
    re.I,
)
_OUTRO = re.compile(r"^\W*(i hope|let me know|note\s*:|notes\s*:|word count|\(word count|feel free to)", re.I)


def parse_document(text: str, finish_reason: str = "stop") -> str:
    """The document alone: the text between <document> markers, or the answer minus preamble, plan and notes."""
    if finish_reason == "length":
        raise ParseFailure("truncated", "the answer hit the token limit")
    matches = _DOC.findall(text)
    if matches:
        body = max(matches, key=len)
    else:
        body = _PLAN.sub("", text)
    body = _TAG.sub("", body).strip()
    fence = re.fullmatch(r"```[a-z]*\n(.*?)\n?```", body, re.S)
    if fence:
        body = fence.group(1).strip()
    lines = body.splitlines()
    while lines and (not lines[0].strip() or _PREAMBLE.match(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _OUTRO.match(lines[-1])):
        lines.pop()
    body = "\n".join(lines).strip()
    if not body:
        raise ParseFailure("empty", "no document between <document> and </document>")
    found = find_placeholder(body)
    if found:
        raise ParseFailure("placeholder", f"the document contains the placeholder {found!r}")
    return body


def parse_reply(text: str, finish_reason: str = "stop", name: str = "") -> str:
    """The assistant's reply, without a speaker label."""
    if finish_reason == "length":
        raise ParseFailure("truncated", "the reply hit the token limit")
    body = text.strip()
    labels = ["assistant"] + ([name.lower()] if name else [])
    m = re.match(r"^\**\s*([\w .-]{1,40}?)\s*(?::\s*\**|\**\s*:)\s*", body)
    if m and m.group(1).strip().lower() in labels:
        body = body[m.end():].strip()
    if not body:
        raise ParseFailure("empty", "the reply was empty")
    return body
