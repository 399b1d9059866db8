"""Which models a client may use: the provider's allowed_models, else the upstream's own list,
fetched once and cached (a listing is slow and rarely changes)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from aigateway.governance import model_allowed
from aigateway.neutral import ErrorKind, GatewayError
from aigateway.providers import Provider
from aigateway.relay import provider_of
from aigateway.upstream import Call

if TYPE_CHECKING:
    from aigateway.app import Gateway

CACHE_SECONDS = 300.0
MAX_PAGES = 20  # a listing that pages on and on is cut here rather than followed forever


class ListingCache:
    """Upstream model lists, kept ``CACHE_SECONDS`` per (provider, endpoint, key); the Gateway owns
    one and clears it when the config changes."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str, str], tuple[float, list[str]]] = {}

    def get(self, key: tuple[str, str, str]) -> list[str] | None:
        hit = self._lists.get(key)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def put(self, key: tuple[str, str, str], ids: list[str]) -> None:
        self._lists[key] = (time.monotonic() + CACHE_SECONDS, ids)

    def clear(self) -> None:
        self._lists.clear()


async def for_client(gw: Gateway, client: Mapping[str, Any]) -> list[str]:
    """Exactly what a client can reach, by the names it would use (routing.resolve's order): its
    routes; its default provider's models (allowed_models, else the upstream's own list); each
    further provider's allowed_models, or its upstream's list as ``provider/model``. A key limited
    to some models lists only those."""
    patterns = client.get("allowed_models") or ()

    def allowed(models: list[str]) -> list[str]:
        return [m for m in models if model_allowed(m, patterns)]

    default = provider_of(gw, client)
    names = [r for r in client.get("allowed_routes") or () if r in gw.config.routes]
    names += allowed(await _models(gw, default, client["base_url"] or default.base_url))
    for name in client.get("allowed_providers") or ():
        provider = gw.config.providers.get(name)
        if provider is not None and provider is not default:
            models = allowed(await _models(gw, provider, provider.base_url))
            names += models if provider.allowed_models else [f"{name}/{m}" for m in models]
    return list(dict.fromkeys(names))


async def _models(gw: Gateway, provider: Provider, base_url: str) -> list[str]:
    if provider.allowed_models:
        return list(provider.allowed_models)
    key = (provider.name, base_url, provider.api_key)
    ids = gw.listings.get(key)
    if ids is None:
        ids = await fetch(provider, base_url)
        gw.listings.put(key, ids)
    return ids


async def fetch(provider: Provider, base_url: str | None = None) -> list[str]:
    """Ask the upstream for its model list (uncached; the admin UI's provider test uses it too).
    Upstream errors raise GatewayError with the upstream's status and message."""
    fmt = provider.codec
    ids: list[str] = []
    path: str | None = fmt.MODELS_PATH
    for _ in range(MAX_PAGES):  # Anthropic and Gemini page their listings: follow the pages
        if path is None:
            break
        call = Call(provider, base_url or provider.base_url, path, None, stream=False)
        body = await call.run()
        if call.status >= 400:
            raise fmt.decode_error(call.status, body)
        try:
            page = orjson.loads(body)
            ids += fmt.decode_models(page)
            path = fmt.next_models_path(page)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise GatewayError(502, ErrorKind.UPSTREAM, "the upstream's model list is not valid JSON") from None
    return ids
