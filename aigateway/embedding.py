"""Embeddings requests (OpenAI ``/v1/embeddings``, Gemini ``:embedContent`` / ``:batchEmbedContents``):
the chat pipeline's rules in a shorter line. Authenticate, decode, resolve the model as for chat
(a model route's first target), count the input tokens against the client's rate limits and input
quotas (embeddings make no output), make one upstream call per key of the provider's pool (a key
that is rate-limited or refused rests and the next is tried), answer in the client's format and
record the request with ``endpoint = "embeddings"``. No fallback to other targets: vectors of
different models are not interchangeable.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import orjson

from aigateway import admission, neutral
from aigateway.admission import ratelimit_headers
from aigateway.formats import FORMATS
from aigateway.formats.contract import EMBED, Codec, Embedding
from aigateway.limits import effective_limits
from aigateway.pricing import cost_of, worst_rates
from aigateway.relay import (
    Sink,
    authenticate,
    decode_guarded,
    model_name,
    parse_body,
    pool_exhausted,
    rest_key,
    scrub,
    upstream_body,
    upstream_json,
)
from aigateway.routing import pool_of, resolve
from aigateway.tokens import measure_embed_input
from aigateway.upstream import Call
from aigateway.usage import UsageRecord

if TYPE_CHECKING:
    from aigateway.app import Gateway
    from aigateway.providers import Provider


def upstream_codec(provider: Provider) -> Codec:
    """The provider's embeddings codec: that of its type's format (a provider speaking the Responses
    API is still an OpenAI-compatible server for ``/embeddings``); a 400 when the format has none."""
    codec = FORMATS[provider.kind.format]
    if not any(e.operation == EMBED for e in codec.ENDPOINTS):
        raise neutral.invalid(f"provider {provider.name} (type {provider.type}) has no embeddings API", "model")
    return codec


async def answer(gw: Gateway, sink: Sink, fmt: Embedding, name: str, route: neutral.Route, raw: bytes) -> None:
    """Answer one embeddings request in format ``name`` and record it (see the module docstring)."""
    rec = UsageRecord(None, "", name, endpoint="embeddings")
    t0 = time.monotonic()
    reservation = None
    try:
        client = authenticate(gw, sink.request)
        rec.client_id, rec.client_name = client["id"], client["name"]
        req = decode_guarded(fmt.decode_embed_request, parse_body(raw), route)
        target = resolve(req.model, client, gw.config.routes, gw.config.providers).targets[0]
        provider, model = gw.config.providers[target.provider], model_name(target.model)
        rec.provider, rec.model = provider.name, model
        upstream = upstream_codec(provider)
        path, out = decode_guarded(cast(Embedding, upstream).encode_embed_request, req, model)
        estimate, bound = measure_embed_input(req.inputs)
        limits = effective_limits(client, gw.limit_defaults)
        reservation = admission.admit(gw, client, limits, estimate, None, input_bound=bound, output=False,
                                      rates=worst_rates([provider.prices.find(model)]))
        rec.admitted = True
        for header, value in ratelimit_headers(admission.headroom(gw, client["id"], limits, reservation)).items():
            sink.set_header(header, value)
        resp = await _call(gw, provider, model, client, path, upstream_body(out), upstream, rec)
        resp.model = resp.model or model
        if resp.input_tokens is None:  # Gemini reports none: the estimate is what is recorded
            resp.input_tokens, rec.estimated = estimate, True
        rec.input_tokens = resp.input_tokens
        rec.cost_usd, rec.priced = cost_of(provider.prices, model, neutral.Usage(input_tokens=resp.input_tokens))
        sink.answer(orjson.dumps(fmt.encode_embed_response(resp, req)))
    except neutral.GatewayError as err:
        rec.status, rec.error = err.status, err.message[:500]
        sink.error(err)
    finally:
        rec.latency_ms = (time.monotonic() - t0) * 1000
        if reservation is not None:
            admission.settle(gw, reservation, rec.input_tokens, 0, rec.cost_usd)
        gw.record(rec)


async def _call(gw: Gateway, provider: Provider, model: str, client: Any, path: str, payload: bytes,
                upstream: Codec, rec: UsageRecord) -> neutral.Embeddings:
    """The upstream call, with each key of the pool until one answers or the failure is not the key's."""
    pool = gw.pools.get(provider.name) or pool_of(provider)
    base_url = client["base_url"] if provider.name == client["provider"] and client["base_url"] else provider.base_url
    while True:
        key = pool.choose(model, time.time()) or (pool.keys[0] if len(pool.keys) == 1 else None)
        if key is None:
            raise pool_exhausted(provider, pool, model)
        rec.attempts += 1
        call = Call(provider, base_url, path, payload, stream=False, api_key=key.key)
        body = await call.run()
        if call.status < 400:
            return cast(Embedding, upstream).decode_embed_response(upstream_json(call, body))
        error = scrub(upstream.decode_error(call.status, body), key.key)
        if not rest_key(gw, pool, key, model, call.status, error) or len(pool.keys) == 1:
            raise error
