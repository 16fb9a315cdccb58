"""Make the LLM a spec (and command-line flags) ask for."""

from __future__ import annotations

from specc.errors import InputError
from specc.generate.base import LLM


def llm_id(gen, *, provider: str | None = None, model: str | None = None, base_url: str | None = None) -> str:
    """The id ``make_llm`` would give, without constructing the provider (which may load a model or need a key).

    ``base_url`` is accepted for symmetry with ``make_llm`` but does not enter the id: a model keeps
    its identity, and so its cached results, when it moves to another host.
    """
    provider = provider or gen.provider
    model = model or gen.model
    if provider == "openai":
        from specc.generate.openai import openai_id

        return openai_id(model, gen.cache_namespace)
    if provider == "local":
        from specc.generate.local import local_id

        return local_id(model, gen.cache_namespace)
    raise InputError(f"unknown provider {provider!r}; use `local` or `openai`")


def make_llm(
    gen,
    *,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    require_key: bool = True,
) -> LLM:
    """The provider for ``gen`` (a ``specc.spec.schema.Generator``); flags override the spec.

    ``require_key=False`` makes an OpenAI provider that will not call the endpoint (batch files).
    """
    provider = provider or gen.provider
    if provider == "openai":
        from specc.generate.openai import OpenAILLM

        return OpenAILLM(
            model or gen.model,
            base_url=base_url or gen.base_url,
            api_key_env=gen.api_key_env,
            timeout=timeout or gen.timeout,
            namespace=gen.cache_namespace,
            require_key=require_key,
        )
    if provider == "local":
        from specc.generate.local import LocalLLM

        # The spec's default model is the local one; a hosted model name makes no sense here.
        return LocalLLM(model or gen.model, namespace=gen.cache_namespace)
    raise InputError(f"unknown provider {provider!r}; use `local` or `openai`")
