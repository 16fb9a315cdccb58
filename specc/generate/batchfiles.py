"""The OpenAI batch file format both ways: request lines for a wave, and result lines back into Generations.

One JSONL format serves every batch path: OpenAI's Batch API reads and writes it, vLLM's ``run_batch``
reads the request lines and writes the result lines, and a Ray Data job reads and writes the same rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from specc.errors import InputError
from specc.generate.base import Generation, Message, TransientError
from specc.generate.openai import to_generation

ENDPOINT = "/v1/chat/completions"
# The provider's codes for a request the batch never ran: it goes into a later batch, as no attempt.
NOT_RUN = ("batch_expired", "batch_cancelled")


def request_line(key: str, body: dict) -> bytes:
    """One request of a batch file; ``custom_id`` is the task key, so a result finds its task anywhere."""
    line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split(lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int) -> tuple[list[list[tuple[str, bytes]]], list[str]]:
    """The lines as files of at most ``max_requests`` lines and ``max_bytes`` bytes, in order.

    Returns the files and the keys of lines larger than ``max_bytes`` on their own, which no file can hold.
    """
    files: list[list[tuple[str, bytes]]] = []
    too_big: list[str] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for key, line in lines:
        if len(line) > max_bytes:
            too_big.append(key)
            continue
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append((key, line))
        size += len(line)
    if current:
        files.append(current)
    return files, too_big


@dataclass(frozen=True)
class LineFailure:
    """Why a request in a batch produced no result."""

    reason: str
    retry: bool  # another attempt could succeed (5xx, 429, timeouts), unlike a 400 on the request itself
    tried: bool = True  # False: the batch ended (expired, cancelled) before this request ran
    message: str = ""
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class LineResult:
    """One result line: the chat.completion body, or why there is none."""

    key: str
    body: dict | None
    failure: LineFailure | None

    def generation(self, messages: list[Message], model: str, extra: dict) -> Generation | LineFailure:
        """The result as a Generation, or the failure (a 200 whose body has no choices is one, worth a retry)."""
        if self.failure is not None:
            return self.failure
        try:
            gen = to_generation(self.body, messages, 0.0, model)
        except TransientError as e:
            return LineFailure(e.reason, retry=True)
        return Generation(gen.text, gen.finish_reason, gen.input_tokens, gen.output_tokens, gen.model, extra=extra)


def parse_result(obj: dict) -> LineResult:
    """A result line of OpenAI's output or error file (or vLLM's output file)."""
    key = str(obj.get("custom_id") or "")
    response = obj.get("response") or {}
    error = obj.get("error")
    status = response.get("status_code") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    if status == 200 and isinstance(body, dict) and not error:
        return LineResult(key, body, None)
    if isinstance(error, dict) and error.get("code") in NOT_RUN:
        reason = f"{error['code']}: {error.get('message') or ''}".strip()
        return LineResult(key, None, LineFailure(reason, True, False, code=error["code"]))
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = str((inner or {}).get("message") or "") if isinstance(inner, dict) else str(body or "")
    param = (inner or {}).get("param") if isinstance(inner, dict) else None
    if status is not None:
        retry = status >= 500 or status in (200, 408, 409, 429)  # a 200 without a body is a glitch
        return LineResult(key, None, LineFailure(f"HTTP {status}: {message}".rstrip(": "), retry, True, message, param))
    if isinstance(error, dict):
        message, code = str(error.get("message") or ""), error.get("code")
        return LineResult(key, None, LineFailure(f"{code or 'error'}: {message}".rstrip(": "), True, True, message, code=code))
    return LineResult(key, None, LineFailure("malformed result line: no response and no error", True))


def read_results(data: bytes | str, source: str) -> Iterator[LineResult]:
    """The result lines of a file's content; a line that is not JSON is an InputError naming file and line."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InputError(f"{source}:{n}: not a JSON result line ({e.msg})") from None
        if not isinstance(obj, dict) or "custom_id" not in obj:
            raise InputError(f"{source}:{n}: a result line needs a custom_id (the OpenAI batch output format)")
        yield parse_result(obj)


def write_file(path: Path, lines: Iterable[bytes]) -> None:
    """Write a batch file whole or not at all: a partial wave file must never be run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for line in lines:
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
