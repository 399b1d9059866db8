"""The prices the gateway ships: USD per million tokens, per provider type's price table.

Checked 2026-12-03; each price names where it was read (``source``): the provider's pricing or model
page where one was found, else a public table that quotes it (models.dev, GitHub's Copilot model
table). Standard tier: no batch (half price everywhere) or priority rates; prompts up to the first
long-context tier (Gemini Pro above 200k prompt tokens costs more, for the whole request). Cache
writes are Anthropic's 5-minute writes (1.25x input; 1-hour writes are 2x) and OpenAI's GPT-5.6
writes; cache reads are 0.1x input at Anthropic, Mistral and GPT-5.x. Thinking and reasoning tokens
are output tokens at every provider here. Retired models keep their last price, to price old rows.
An admin overrides or adds prices per provider with the provider's ``prices`` setting; local
servers (Ollama, LM Studio) cost nothing; an unknown OpenAI-compatible server has no table: its
models are unpriced unless configured.
"""

from __future__ import annotations

from aigateway.pricing import Price

_CLAUDE = "https://platform.claude.com/docs/en/about-claude/pricing"
_GEMINI = "https://ai.google.dev/gemini-api/docs/pricing"
_MODELS_DEV = "https://github.com/anomalyco/models.dev/blob/f3fc692299671838c7c65fd8126bf84d81a2e817/providers/"
_MODELS_DEV_MISTRAL = ("https://raw.githubusercontent.com/anomalyco/models.dev/"
                       "3f2765a58f8466f6d96dade1b4843189eeb6360b/providers/")
_COPILOT = ("https://github.com/github/docs/blob/024f6b0f8c266054134f13dd7d122d8b80d25315/"
            "data/tables/copilot/models-and-pricing.yml")
_EVANGELIST_GEMINI = ("https://github.com/api-evangelist/gemini/blob/3a1090a4ad91e16a9f699089bb900a5d134f8c41/"
                      "plans/gemini-plans-pricing.yml")
_EVANGELIST_DEEPMIND = ("https://github.com/api-evangelist/deepmind/blob/47a9772bdb46163b5e5560285bbc88bb11b86073/"
                        "plans/deepmind-plans-pricing.yml")

TABLES: dict[str, dict[str, Price]] = {
    "openai": {
        "gpt-5": Price(1.25, 10.0, cached_input=0.125, source=_MODELS_DEV + "openai/models/gpt-5.toml"),
        "gpt-5-mini": Price(0.25, 2.0, cached_input=0.025,
                 source="https://developers.openai.com/ko-KR/api/docs/models/gpt-5-mini"),
        "gpt-5-nano": Price(0.05, 0.4, cached_input=0.005,
                 source="https://developers.openai.com/api/docs/models/gpt-5-nano.md"),
        "gpt-5.1": Price(1.25, 10.0, cached_input=0.125,
                 source="https://developers.openai.com/api/docs/models/gpt-5.1"),
        "gpt-5.2": Price(1.75, 14.0, cached_input=0.175, source=_MODELS_DEV + "openai/models/gpt-5.2.toml"),
        "gpt-5.4": Price(2.5, 15.0, cached_input=0.25, source="https://developers.openai.com/docs/models"),
        "gpt-5.4-mini": Price(0.75, 4.5, cached_input=0.075, source="https://developers.openai.com/docs/models"),
        "gpt-5.4-nano": Price(0.2, 1.25, cached_input=0.02,
                 source="https://developers.openai.com/api/docs/models/gpt-5.4-nano"),
        "gpt-5.5": Price(5.0, 30.0, cached_input=0.5, source="https://developers.openai.com/docs/models"),
        "gpt-5.6-sol": Price(5.0, 30.0, cached_input=0.5, cache_write=6.25, source=_COPILOT),
        "gpt-5.6-terra": Price(2.0, 12.0, cached_input=0.2, cache_write=2.5, source=_COPILOT),
        "gpt-5.6-luna": Price(0.2, 1.2, cached_input=0.02, cache_write=0.25,
                 source="https://developers.openai.com/api/docs/models/gpt-5.6-luna"),
        "gpt-4.1": Price(2.0, 8.0, cached_input=0.5, source=_COPILOT),
        "gpt-4.1-mini": Price(0.4, 1.6, cached_input=0.1, source=_MODELS_DEV + "openai/models/gpt-4.1-mini.toml"),
        "gpt-4.1-nano": Price(0.1, 0.4, cached_input=0.025,
                 source=_MODELS_DEV + "openai/models/gpt-4.1-nano.toml"),  # retired
        "gpt-4o": Price(2.5, 10.0, cached_input=1.25, source=_MODELS_DEV + "openai/models/gpt-4o.toml"),
        "gpt-4o-mini": Price(0.15, 0.6, cached_input=0.075, source=_MODELS_DEV + "openai/models/gpt-4o-mini.toml"),
        "o3": Price(2.0, 8.0, cached_input=0.5, source=_MODELS_DEV + "openai/models/o3.toml"),
        "o3-mini": Price(1.1, 4.4, cached_input=0.55,
                 source=_MODELS_DEV + "openai/models/o3-mini.toml"),  # retired
        "o4-mini": Price(1.1, 4.4, cached_input=0.275,
                 source=_MODELS_DEV + "openai/models/o4-mini.toml"),  # retired
        "text-embedding-3-small": Price(0.02, 0.0, source=_MODELS_DEV + "openai/models/text-embedding-3-small.toml"),
        "text-embedding-3-large": Price(0.13, 0.0, source=_MODELS_DEV + "openai/models/text-embedding-3-large.toml"),
    },
    "anthropic": {
        "claude-opus-4-8": Price(5.0, 25.0, cached_input=0.5, cache_write=6.25, source=_CLAUDE),
        "claude-opus-4-7": Price(5.0, 25.0, cached_input=0.5, cache_write=6.25, source=_CLAUDE),
        "claude-opus-4-6": Price(5.0, 25.0, cached_input=0.5, cache_write=6.25, source=_CLAUDE),
        "claude-opus-4-5": Price(5.0, 25.0, cached_input=0.5, cache_write=6.25,
                 source="https://platform.claude.com/docs/zh-TW/models/opus-4-5/overview"),
        "claude-opus-4-1": Price(15.0, 75.0, cached_input=1.5, cache_write=18.75,
                 source=_CLAUDE),  # retired
        "claude-opus-4": Price(15.0, 75.0, cached_input=1.5, cache_write=18.75,
                 source=_CLAUDE),  # retired
        "claude-sonnet-4-6": Price(3.0, 15.0, cached_input=0.3, cache_write=3.75, source=_CLAUDE),
        "claude-sonnet-4-5": Price(3.0, 15.0, cached_input=0.3, cache_write=3.75,
                 source=_CLAUDE),  # retired
        "claude-sonnet-4": Price(3.0, 15.0, cached_input=0.3, cache_write=3.75,
                 source=_CLAUDE),  # retired
        "claude-haiku-4-5": Price(1.0, 5.0, cached_input=0.1, cache_write=1.25, source=_CLAUDE),
        "claude-3-5-haiku": Price(0.8, 4.0, cached_input=0.08, cache_write=1.0,
                 source=_CLAUDE),  # retired
    },
    "gemini": {
        "gemini-2.5-pro": Price(1.25, 10.0, cached_input=0.125, source=_GEMINI),
        "gemini-2.5-flash": Price(0.3, 2.5, cached_input=0.03, source=_GEMINI),
        "gemini-2.5-flash-lite": Price(0.1, 0.4, cached_input=0.01, source=_GEMINI),
        "gemini-2.0-flash": Price(0.1, 0.4, cached_input=0.025,
                 source=_GEMINI),  # retired
        "gemini-2.0-flash-lite": Price(0.075, 0.3, source=_GEMINI),  # retired
        "gemini-3.1-pro": Price(2.0, 12.0, cached_input=0.2, source=_GEMINI),
        "gemini-3-flash": Price(0.5, 3.0, cached_input=0.05, source=_GEMINI),
        "gemini-3.1-flash-lite": Price(0.25, 1.5, cached_input=0.025, source=_GEMINI),
        "gemini-3.5-flash": Price(1.5, 9.0, cached_input=0.15, source=_EVANGELIST_GEMINI),
        "gemini-3.5-flash-lite": Price(0.3, 2.5, source=_EVANGELIST_DEEPMIND),
        "gemini-3.8-flash": Price(0.75, 3.75, cached_input=0.075, source=_EVANGELIST_DEEPMIND),
        "gemini-3.7-flash": Price(0.75, 3.75, cached_input=0.075, source=_COPILOT),
        "gemini-3.6-flash": Price(0.75, 3.75, cached_input=0.075, source=_COPILOT),
        "gemini-embedding-001": Price(0.15, 0.0, source=_GEMINI),
    },
    "mistral": {
        "mistral-large": Price(0.5, 1.5, cached_input=0.05,
                 source=_MODELS_DEV_MISTRAL + "mistral/models/mistral-large-latest.toml"),
        "mistral-medium": Price(1.5, 7.5, cached_input=0.15,
                 source=_MODELS_DEV_MISTRAL + "mistral/models/mistral-medium-latest.toml"),
        "mistral-small": Price(0.15, 0.6, cached_input=0.015,
                 source=_MODELS_DEV_MISTRAL + "mistral/models/mistral-small-latest.toml"),
        "codestral": Price(0.3, 0.9, cached_input=0.03,
                 source=_MODELS_DEV_MISTRAL + "mistral/models/codestral-latest.toml"),
        "open-mistral-nemo": Price(0.15, 0.15,
                 source="https://docs.mistral.ai/models/mistral-nemo-12b-24-07.md"),  # retired
        "mistral-embed": Price(0.1, 0.0, source="https://docs.mistral.ai/models/mistral-embed-23-12.md"),
    },
}
