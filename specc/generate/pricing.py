"""USD per million tokens for well-known hosted models; local and unknown models cost 0."""

from __future__ import annotations

from specc.errors import InputError

# (input, output) USD per million tokens, list prices. A spec's `generator.prices` overrides these.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
}


def price_for(model: str, spec_prices=None) -> tuple[float, float]:
    """(input, output) USD per million tokens: the spec's prices, else the table, else (0, 0).

    Dated or namespaced names (``gpt-4o-2024-08-06``, ``openai/gpt-4o-mini``) match
    the longest table entry they start with.
    """
    if spec_prices is not None:
        if isinstance(spec_prices, (tuple, list)):
            return float(spec_prices[0]), float(spec_prices[1])
        return float(spec_prices.input_per_mtok), float(spec_prices.output_per_mtok)
    return table_price(model) or (0.0, 0.0)


def table_price(model: str) -> tuple[float, float] | None:
    """The built-in price of ``model``, or None when the table does not know it."""
    name = model.rsplit("/", 1)[-1].lower()
    if name in PRICES:
        return PRICES[name]
    best = max((k for k in PRICES if name.startswith(k + "-")), key=len, default=None)
    return PRICES[best] if best else None


def run_prices(llm_id: str, model: str, spec_prices=None, max_usd: float | None = None) -> tuple[float, float]:
    """The prices a run is charged at; refuses a spending cap that could never fire.

    The embedded model is free. An endpoint model the table does not know would price at 0, and a
    ``max_usd`` cap would then be ignored without a word, so the spec must say what it costs.
    """
    if spec_prices is not None:
        return price_for(model, spec_prices)
    if llm_id.startswith("local:"):
        return (0.0, 0.0)
    known = table_price(model)
    if known is not None:
        return known
    if max_usd is not None:
        raise InputError(
            f"a spending cap is set (generator.max_usd or --max-usd: ${max_usd:g}) but specc has no price for "
            f"model {model!r}, so the cap could never fire; give its prices in the spec, e.g. "
            "`generator: {prices: {input_per_mtok: 0.5, output_per_mtok: 1.5}}` (USD per million tokens; "
            "0 and 0 for a free endpoint)"
        )
    return (0.0, 0.0)


def cost_usd(prices: tuple[float, float], input_tokens: int, output_tokens: int) -> float:
    """What a call with these token counts costs."""
    return (input_tokens * prices[0] + output_tokens * prices[1]) / 1_000_000


# Providers' batch interfaces (OpenAI's Batch API, Anthropic's Message Batches) charge half the list price.
BATCH_DISCOUNT = 0.5


def batch_prices(prices: tuple[float, float]) -> tuple[float, float]:
    """What calls through a provider's batch interface cost: half of ``prices`` (list or ``generator.prices``)."""
    return (prices[0] * BATCH_DISCOUNT, prices[1] * BATCH_DISCOUNT)


def build_prices(gen, model: str) -> tuple[float, float]:
    """What a build by ``gen`` (``spec.generator``) pays for ``model``: list or ``prices``, halved for batches."""
    prices = price_for(model, gen.prices)
    return batch_prices(prices) if gen.batch else prices
