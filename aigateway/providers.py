"""Provider types as data: which wire format each speaks, where, and how it authenticates.

A new OpenAI-compatible provider is one row of ``PROVIDER_TYPES``; a vendor's quirks are fields
of its row, never code in a format module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ProviderType:
    format: str  # key of formats.FORMATS
    base_url: str  # official endpoint; "" means the user must give one
    auth: str | None  # header that carries the key: "bearer", "x-api-key", "x-goog-api-key"
    headers: tuple[tuple[str, str], ...] = ()
    stream_usage: bool = True  # accepts stream_options.include_usage (Mistral rejects it: protocols §9.2)
    max_tokens_field: str = "max_tokens"


PROVIDER_TYPES: dict[str, ProviderType] = {
    "openai": ProviderType("openai", "https://api.openai.com/v1", "bearer", max_tokens_field="max_completion_tokens"),
    "mistral": ProviderType("openai", "https://api.mistral.ai/v1", "bearer", stream_usage=False),
    "ollama": ProviderType("openai", "http://localhost:11434/v1", "bearer"),
    "lmstudio": ProviderType("openai", "http://localhost:1234/v1", "bearer"),
    "openai_compatible": ProviderType("openai", "", "bearer"),
    "anthropic": ProviderType("anthropic", "https://api.anthropic.com", "x-api-key",
                              (("anthropic-version", "2023-06-01"),)),
    "gemini": ProviderType("gemini", "https://generativelanguage.googleapis.com", "x-goog-api-key"),
}


@dataclass(frozen=True, slots=True)
class Provider:
    """One named provider from config.yaml. Immutable: editing one builds a new object."""

    name: str
    type: str
    api_key: str = field(repr=False)
    base_url: str
    default_model: str
    allowed_models: tuple[str, ...]
    timeout_seconds: float

    @classmethod
    def from_config(cls, name: str, raw: dict[str, Any]) -> Provider:
        ptype = raw.get("type") or "openai"
        base_url = (raw.get("base_url") or PROVIDER_TYPES[ptype].base_url).rstrip("/")
        if not base_url:
            raise ValueError(f"type {ptype} needs a base_url")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        return cls(
            name=name,
            type=ptype,
            api_key=raw.get("api_key") or "",
            base_url=base_url,
            default_model=raw.get("default_model") or "",
            allowed_models=tuple(raw.get("allowed_models") or ()),
            timeout_seconds=float(raw.get("timeout_seconds") or 120),
        )

    @property
    def kind(self) -> ProviderType:
        return PROVIDER_TYPES[self.type]

    def headers(self) -> dict[str, str]:
        """Upstream request headers: rebuilt from config, never copied from the client."""
        kind = self.kind
        out = {"Content-Type": "application/json", **dict(kind.headers)}
        if self.api_key:
            if kind.auth == "bearer":
                out["Authorization"] = f"Bearer {self.api_key}"
            elif kind.auth:
                out[kind.auth] = self.api_key
        return out
