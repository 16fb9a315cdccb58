"""The LLM protocol every provider implements (messages + params -> Generation), and the two errors a provider raises."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    """Every parameter that affects an output; all of them are part of a task key."""

    temperature: float = 0.9
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    json_mode: bool = False  # ask for a JSON object where the endpoint supports it
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Generation:
    """One LLM result."""

    text: str
    finish_reason: str  # "stop" | "length" | other provider values
    input_tokens: int
    output_tokens: int
    model: str
    latency_s: float = 0.0
    cached: bool = False
    extra: dict = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    """A provider. ``id`` names provider and model ("openai:gpt-4o-mini") and enters task keys."""

    id: str

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        """Run one chat completion."""
        ...


class TransientError(Exception):
    """A failure worth retrying: rate limits, 5xx, timeouts, dropped connections, malformed replies."""

    def __init__(self, reason: str, *, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable


class TaskError(Exception):
    """A failure of this one task that a retry would not fix (e.g. HTTP 400 on its prompt)."""
