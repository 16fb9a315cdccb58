"""The generate pass: tasks through an LLM, as one async DAG, via a content-addressed cache.

``base`` is the provider protocol (one async method) and the errors a provider raises;
``engine`` schedules, retries and accounts; ``cache`` stores every result before it is
used; ``openai`` and ``local`` are the providers, ``factory`` picks one from a spec;
``pricing`` and ``progress`` are what the engine reports with.
"""

from specc.generate.base import LLM, Generation, Message, SamplingParams, TaskError, TransientError

__all__ = ["LLM", "Generation", "Message", "SamplingParams", "TaskError", "TransientError"]
