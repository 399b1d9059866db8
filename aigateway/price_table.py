"""The prices the gateway ships: USD per million tokens, per provider type's price table.

Checked 2026-12-03 against the providers' pricing pages (below); standard tier, no batch or
priority discounts, prompts up to the first long-context tier (Gemini 2.5 Pro: 200k tokens). Cache
writes are Anthropic's 5-minute writes. An admin overrides or adds prices per provider with the
provider's ``prices`` setting; local servers (Ollama, LM Studio) cost nothing; an unknown
OpenAI-compatible server has no table: its models are unpriced unless configured.
"""

from __future__ import annotations

from aigateway.pricing import Price

CHECKED = "2026-12-03"
SOURCES = {
    "openai": "https://platform.openai.com/docs/pricing",
    "anthropic": "https://docs.anthropic.com/en/docs/about-claude/pricing",
    "gemini": "https://ai.google.dev/gemini-api/docs/pricing",
    "mistral": "https://mistral.ai/pricing#api-pricing",
}

TABLES: dict[str, dict[str, Price]] = {
    "openai": {
        "gpt-5": Price(1.25, 10.0, cached_input=0.125),
        "gpt-5-mini": Price(0.25, 2.0, cached_input=0.025),
        "gpt-5-nano": Price(0.05, 0.40, cached_input=0.005),
        "gpt-4.1": Price(2.0, 8.0, cached_input=0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, cached_input=0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, cached_input=0.025),
        "gpt-4o": Price(2.50, 10.0, cached_input=1.25),
        "gpt-4o-mini": Price(0.15, 0.60, cached_input=0.075),
        "o3": Price(2.0, 8.0, cached_input=0.50),
        "o3-mini": Price(1.10, 4.40, cached_input=0.55),
        "o4-mini": Price(1.10, 4.40, cached_input=0.275),
        "text-embedding-3-small": Price(0.02, 0.0),
        "text-embedding-3-large": Price(0.13, 0.0),
        "text-embedding-ada-002": Price(0.10, 0.0),
    },
    "anthropic": {  # cache reads 0.1x the input price, 5-minute cache writes 1.25x
        "claude-opus-4-1": Price(15.0, 75.0, cached_input=1.50, cache_write=18.75),
        "claude-opus-4": Price(15.0, 75.0, cached_input=1.50, cache_write=18.75),
        "claude-sonnet-4-5": Price(3.0, 15.0, cached_input=0.30, cache_write=3.75),
        "claude-sonnet-4": Price(3.0, 15.0, cached_input=0.30, cache_write=3.75),
        "claude-3-7-sonnet": Price(3.0, 15.0, cached_input=0.30, cache_write=3.75),
        "claude-haiku-4-5": Price(1.0, 5.0, cached_input=0.10, cache_write=1.25),
        "claude-3-5-haiku": Price(0.80, 4.0, cached_input=0.08, cache_write=1.0),
    },
    "gemini": {  # thinking tokens are output tokens; cached_input is context caching's price
        "gemini-2.5-pro": Price(1.25, 10.0, cached_input=0.31),
        "gemini-2.5-flash": Price(0.30, 2.50, cached_input=0.075),
        "gemini-2.5-flash-lite": Price(0.10, 0.40, cached_input=0.025),
        "gemini-2.0-flash": Price(0.10, 0.40, cached_input=0.025),
        "gemini-2.0-flash-lite": Price(0.075, 0.30),
        "gemini-embedding-001": Price(0.15, 0.0),
    },
    "mistral": {
        "mistral-large": Price(2.0, 6.0),
        "mistral-medium": Price(0.40, 2.0),
        "mistral-small": Price(0.10, 0.30),
        "codestral": Price(0.30, 0.90),
        "open-mistral-nemo": Price(0.15, 0.15),
        "mistral-embed": Price(0.10, 0.0),
    },
}
