"""An endpoint's Files and Batches APIs through the ``openai`` SDK, retried while a failure is transient."""

from __future__ import annotations

import asyncio
import random

import openai

from specc.errors import EndpointError
from specc.generate.base import TaskError, TransientError
from specc.generate.batchfiles import ENDPOINT
from specc.generate.openai import public_url


class BatchClient:
    """Upload, create, poll, cancel, find and download batches; fatal errors are specc errors."""

    def __init__(self, llm, *, max_retries: int = 6, retry_base_delay: float = 0.5, retry_max_delay: float = 30.0):
        self.llm = llm
        self.endpoint = public_url(llm.base_url)
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.reached = False  # the endpoint has answered at least once

    async def upload(self, name: str, data: bytes):
        return await self._call("uploading a batch file", self.llm.client.files.create,
                                file=(name, data, "application/jsonl"), purpose="batch")

    async def create(self, input_file_id: str, metadata: dict[str, str]):
        return await self._call("creating a batch", self.llm.client.batches.create, input_file_id=input_file_id,
                                endpoint=ENDPOINT, completion_window="24h", metadata=metadata)

    async def retrieve(self, batch_id: str):
        """The batch, or None when the endpoint no longer knows it."""
        return await self._call("checking a batch", self.llm.client.batches.retrieve, batch_id, missing=True)

    async def cancel(self, batch_id: str):
        """The batch as cancelling, or None when the endpoint no longer knows it."""
        return await self._call("cancelling a batch", self.llm.client.batches.cancel, batch_id, missing=True)

    async def content(self, file_id: str) -> bytes:
        out = await self._call("downloading batch results", self.llm.client.files.content, file_id)
        return out.content

    async def find(self, local_id: str, since: float):
        """The batch whose metadata carries ``local_id``, or None; looks back (newest first) to ``since``."""
        page = await self._call("listing batches", self.llm.client.batches.list, limit=100)
        while True:
            for b in page.data:
                if (b.metadata or {}).get("specc_batch") == local_id:
                    return b
                if b.created_at < since - 3600:  # an hour of clock skew between us and the provider
                    return None
            if not page.has_next_page():
                return None
            page = await self._call("listing batches", page.get_next_page)

    async def _call(self, what: str, call, *args, missing: bool = False, **kwargs):
        attempt = 0
        while True:
            try:
                out = await call(*args, **kwargs)
                self.reached = True
                return out
            except openai.NotFoundError:
                if missing:
                    return None
                raise EndpointError(
                    f"{self.endpoint} has no Batch API ({what} answered HTTP 404). vLLM, llama.cpp and Ollama "
                    "servers have none: write the waves as files with `specc build --batch-export DIR` and run "
                    "them with the engine's batch runner, or build without --batch"
                ) from None
            except Exception as e:  # noqa: BLE001 - sorted by the provider's own classification
                err = self.llm.classify(e)
            if isinstance(err, TransientError) and not (err.unreachable and not self.reached):
                if attempt < self.max_retries:
                    await asyncio.sleep(self._backoff(attempt, err.retry_after))
                    attempt += 1
                    continue
            if isinstance(err, (TransientError, TaskError)):
                raise EndpointError(f"{self.endpoint}: {what} failed: {err}") from None
            raise err from None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 600.0) * random.uniform(1.0, 1.1)
        ceiling = min(self.retry_max_delay, self.retry_base_delay * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)
