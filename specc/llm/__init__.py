"""LLM providers: one protocol, one async method."""

from specc.llm.base import LLM, Generation, Message, SamplingParams

__all__ = ["LLM", "Generation", "Message", "SamplingParams"]
