"""Provider types as data: which wire format each speaks and where (how it takes its key is the
format's: ``UPSTREAM_AUTH`` and ``UPSTREAM_HEADERS`` of its codec).

A new OpenAI-compatible provider is one row of ``PROVIDER_TYPES``; a vendor's quirks are fields
of its row, never code in a format module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aigateway.formats import FORMATS
from aigateway.formats.contract import Codec
from aigateway.price_table import TABLES
from aigateway.pricing import Price, PriceBook


@dataclass(frozen=True, slots=True)
class ProviderType:
    format: str  # key of formats.FORMATS
    base_url: str  # official endpoint; "" means the user must give one
    stream_usage: bool = True  # accepts stream_options.include_usage (Mistral's API rejects the field)
    max_tokens_field: str = "max_tokens"
    prices: str = ""  # its table in price_table.TABLES; "free": a local server; "": none (unpriced)


PROVIDER_TYPES: dict[str, ProviderType] = {
    "openai": ProviderType("openai", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens",
                           prices="openai"),
    "mistral": ProviderType("openai", "https://api.mistral.ai/v1", stream_usage=False, prices="mistral"),
    "ollama": ProviderType("openai", "http://localhost:11434/v1", prices="free"),
    "lmstudio": ProviderType("openai", "http://localhost:1234/v1", prices="free"),
    "openai_compatible": ProviderType("openai", ""),
    "anthropic": ProviderType("anthropic", "https://api.anthropic.com", prices="anthropic"),
    "gemini": ProviderType("gemini", "https://generativelanguage.googleapis.com", prices="gemini"),
}

# What an OpenAI-compatible provider's ``api`` setting names: the codec it speaks upstream.
PROVIDER_APIS = {"chat": "openai", "responses": "responses"}


def price_book(kind: ProviderType, overrides: dict[str, Any]) -> PriceBook:
    """The type's shipped prices with the provider's own (``prices`` in its config) on top; an
    override of a local server's model prices it after all."""
    own = {str(model): Price.from_config(raw) for model, raw in overrides.items()}
    return PriceBook({**TABLES.get(kind.prices, {}), **own}, free=kind.prices == "free" and not own)


@dataclass(frozen=True, slots=True)
class Provider:
    """One named provider from config.yaml. Immutable: editing one builds a new object."""

    name: str
    type: str
    api_key: str = field(repr=False)  # the first of ``keys``: what a single-key call (a listing) uses
    base_url: str
    default_model: str
    allowed_models: tuple[str, ...]
    timeout_seconds: float
    keys: tuple[tuple[str, int, str], ...] = field(default=(), repr=False)  # (key, weight, label) of its pool
    api: str = "chat"  # OpenAI-compatible types: "chat" or "responses" (PROVIDER_APIS)
    prices: PriceBook = field(default_factory=lambda: PriceBook({}), compare=False, repr=False)

    @classmethod
    def from_config(cls, name: str, raw: dict[str, Any]) -> Provider:
        ptype = raw.get("type") or "openai"
        base_url = (raw.get("base_url") or PROVIDER_TYPES[ptype].base_url).rstrip("/")
        if not base_url:
            raise ValueError(f"type {ptype} needs a base_url")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        keys = tuple((str(k["key"]).strip(), int(k.get("weight") or 1), str(k.get("label") or ""))
                     for k in raw.get("api_keys") or ()) or ((str(raw.get("api_key") or ""), 1, ""),)
        return cls(
            name=name,
            type=ptype,
            api_key=keys[0][0],
            keys=keys,
            base_url=base_url,
            default_model=raw.get("default_model") or "",
            allowed_models=tuple(raw.get("allowed_models") or ()),
            timeout_seconds=float(raw.get("timeout_seconds") or 120),
            api=str(raw.get("api") or "chat"),
            prices=price_book(PROVIDER_TYPES[ptype], raw.get("prices") or {}),
        )

    @property
    def kind(self) -> ProviderType:
        return PROVIDER_TYPES[self.type]

    @property
    def codec(self) -> Codec:
        """The wire format this provider speaks."""
        return FORMATS[PROVIDER_APIS[self.api] if self.kind.format == "openai" else self.kind.format]

    def headers(self, api_key: str | None = None) -> dict[str, str]:
        """Upstream request headers with ``api_key`` (default: the first key): rebuilt from config,
        never copied from the client."""
        codec = self.codec
        out = {"Content-Type": "application/json", **dict(codec.UPSTREAM_HEADERS)}
        key = self.api_key if api_key is None else api_key
        if key:
            if codec.UPSTREAM_AUTH == "bearer":
                out["Authorization"] = f"Bearer {key}"
            else:
                out[codec.UPSTREAM_AUTH] = key
        return out
