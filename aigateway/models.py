"""Which models a client may use: the provider's allowed_models, else the upstream's own list,
fetched once and cached (a listing is slow and rarely changes)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from aigateway.formats import FORMATS
from aigateway.model import ErrorKind, GatewayError
from aigateway.providers import Provider
from aigateway.relay import provider_of
from aigateway.upstream import Call

if TYPE_CHECKING:
    from aigateway.app import Gateway

CACHE_SECONDS = 300.0
MAX_PAGES = 20  # a listing that pages on and on is cut here rather than followed forever


async def for_client(gw: Gateway, client: dict) -> list[str]:
    provider = provider_of(gw, client)
    if provider.allowed_models:
        return list(provider.allowed_models)
    base_url = client["base_url"] or provider.base_url
    key = (provider.name, base_url, provider.api_key)
    hit = gw.model_lists.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    ids = await fetch(provider, base_url)
    gw.model_lists[key] = (time.monotonic() + CACHE_SECONDS, ids)
    return ids


async def fetch(provider: Provider, base_url: str | None = None) -> list[str]:
    """Ask the upstream for its model list (uncached; the admin UI's provider test uses it too).
    Upstream errors raise GatewayError with the upstream's status and message."""
    fmt = FORMATS[provider.kind.format]
    ids: list[str] = []
    path: str | None = fmt.MODELS_PATH
    for _ in range(MAX_PAGES):  # Anthropic and Gemini page their listings: follow the pages
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
        if path is None:
            break
    return ids
