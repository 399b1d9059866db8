"""What a request costs, in US dollars, from its exact usage and the model's price.

Prices are USD per million tokens (``price_table.py`` ships them, with their sources; a provider's
``prices`` setting overrides or adds models for that provider, as one model may cost differently
on two accounts). Usage is normalised the OpenAI way (``neutral.Usage``: input includes cache reads
and writes, output includes reasoning), so one formula prices every provider:

    fresh input   x input        (input - cache reads - cache writes)
    cache reads   x cached_input (default: input)
    cache writes  x cache_write  (default: input)
    output        x output       (reasoning tokens at ``reasoning`` where priced apart)

A model is found by its name, then without a date or version suffix (``-20250929``,
``-2024-08-06``, ``-latest``, ``-001``), then by the longest known name it starts with
(``gpt-4o-mini-search`` is priced as ``gpt-4o-mini``), except variants billed at their own rates
(``-pro``, ``-audio``, ``-realtime``...). Local providers cost nothing; a model with
no price costs 0 and is flagged unpriced, never refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aigateway.neutral import Usage

MILLION = 1_000_000
# Variants billed at other rates than the name they start with (gpt-5-pro, o3-pro, gpt-4o-audio,
# gpt-4o-realtime): never priced by that prefix, so they are unpriced until configured.
_OTHER_RATES = re.compile(r"-(pro|audio|realtime|transcribe|tts|image)(-|$)")
_SUFFIX = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest|-\d{3}|-preview(-\d{2}-\d{2})?|-exp(-\d{4})?)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; None: priced like ``input`` (cache) or ``output`` (reasoning)."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    source: str | None = field(default=None, compare=False)  # where a shipped price was read

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Price:
        def value(name: str) -> float | None:
            v = raw.get(name)
            return None if v is None else float(v)
        return cls(float(raw.get("input") or 0), float(raw.get("output") or 0), value("cached_input"),
                   value("cache_write"), value("reasoning"))

    def cost(self, usage: Usage) -> float:
        read, write = usage.cached_tokens, usage.cache_write_tokens
        fresh = max(0, usage.input_tokens - read - write)
        reasoning = min(usage.reasoning_tokens, usage.output_tokens) if self.reasoning is not None else 0
        total = (fresh * self.input + read * _or(self.cached_input, self.input)
                 + write * _or(self.cache_write, self.input)
                 + (usage.output_tokens - reasoning) * self.output + reasoning * _or(self.reasoning, self.output))
        return total / MILLION


FREE = Price(0.0, 0.0)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class PriceBook:
    """One provider's prices: its type's table with the provider's own overrides on top. Look-ups
    are cached per model name (the matching rules run once per name), the cache bounded."""

    def __init__(self, table: Mapping[str, Price], free: bool = False) -> None:
        self._table = {name.lower(): price for name, price in table.items()}
        self._free = free  # a local server: everything it serves costs nothing
        self._cache: dict[str, Price | None] = {}

    def find(self, model: str) -> Price | None:
        """The price of ``model`` (see the module docstring for how names match); None: unpriced."""
        if self._free:
            return FREE
        found = self._cache.get(model, _MISSING)
        if found is _MISSING:
            if len(self._cache) >= 4096:
                self._cache.clear()
            found = self._cache[model] = self._match(model)
        return found  # type: ignore[return-value]

    def _match(self, model: str) -> Price | None:
        table, name = self._table, model.removeprefix("models/").lower()
        while True:
            if name in table:
                return table[name]
            bare = _SUFFIX.sub("", name)
            if bare == name:
                break
            name = bare
        prefixes = [known for known in table if name.startswith(known + "-")
                    and not _OTHER_RATES.match(name, len(known))]
        return table[max(prefixes, key=len)] if prefixes else None


_MISSING = object()


def worst_rates(prices: Iterable[Price | None]) -> tuple[float, float]:
    """The dearest input and output rates among a request's possible targets (USD per million
    tokens, which is micro-dollars per token), for the budget's worst-case reservation: cache
    writes may cost more than input, reasoning more than output. Unpriced targets cost 0."""
    rates_in, rates_out = [0.0], [0.0]
    for p in prices:
        if p is not None:
            rates_in.append(max(p.input, p.cache_write or 0.0))
            rates_out.append(max(p.output, p.reasoning or 0.0))
    return max(rates_in), max(rates_out)


def cost_of(book: PriceBook, model: str, usage: Usage) -> tuple[float, bool]:
    """(USD, priced): what ``usage`` of ``model`` costs; an unpriced model costs 0."""
    price = book.find(model)
    return (price.cost(usage), True) if price is not None else (0.0, False)
