"""The generate pass: tasks through an LLM, as one async DAG, via a content-addressed cache.

``base`` is the provider protocol (one async method) and the errors a provider raises;
``engine`` schedules, retries and accounts; ``batch`` runs the same DAG in waves of batch
files (``batchapi``, ``batchfiles``, ``batchstore``), and ``executor`` picks one of the two;
``cache`` stores every result before it is used; ``openai`` and ``local`` are the
providers, ``factory`` picks one from a spec; ``accounting``, ``pricing`` and ``progress``
are what both executors report with.
"""

from specc.generate.base import LLM, Generation, Message, SamplingParams, TaskError, TransientError

__all__ = ["LLM", "Generation", "Message", "SamplingParams", "TaskError", "TransientError"]
