"""Every registered codec satisfies the codec contract (``aigateway/formats/contract.py``) at run
time, as mypy checks it statically, and the places that enumerate formats derive from the codecs'
declarations: the route table, where clients put their key, and which listing a caller gets."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from aigateway import api, neutral, relay
from aigateway.formats import FORMATS, contract
from aigateway.formats.contract import (
    COUNT_TOKENS,
    EMBED,
    MODELS,
    OPERATIONS,
    Codec,
    Counting,
    Embedding,
    StreamDecoding,
    StreamEncoding,
)

CODECS = sorted(FORMATS.items())


def members(protocol: type) -> dict[str, object]:
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def check_against(protocol: type, target: object) -> None:
    """Every member of ``protocol`` is on ``target``: functions with the same parameters (less
    ``self``), constants of the declared type."""
    for name, member in members(protocol).items():
        assert hasattr(target, name), f"missing {name}"
        value = getattr(target, name)
        if isinstance(member, property):
            declared = typing.get_type_hints(member.fget, vars(contract))["return"]
            origin = typing.get_origin(declared) or declared  # tuple[str, ...] -> tuple, Callable[..] -> Callable
            assert isinstance(value, origin), f"{name}: {value!r} is not {declared}"
        else:
            wanted = list(inspect.signature(member).parameters)[1:]
            got = list(inspect.signature(value).parameters)
            assert got == wanted, f"{name}{tuple(got)}: the contract says {name}{tuple(wanted)}"


@pytest.mark.parametrize(("name", "codec"), CODECS)
def test_codec_satisfies_the_contract(name: str, codec: Codec) -> None:
    check_against(Codec, codec)
    assert name == codec.NAME
    assert {e.operation for e in codec.ENDPOINTS} <= set(OPERATIONS)
    for endpoint in codec.ENDPOINTS:
        re.compile(endpoint.pattern)
    if any(e.operation == COUNT_TOKENS for e in codec.ENDPOINTS):
        check_against(Counting, codec)
    if any(e.operation == EMBED for e in codec.ENDPOINTS):
        check_against(Embedding, codec)
    req = neutral.ChatRequest(model="m", messages=[neutral.Message("user", [neutral.TextPart("hi")])], stream=True)
    check_against(StreamDecoding, codec.StreamDecoder())
    check_against(StreamEncoding, codec.StreamEncoder(req, neutral.Route()))
    assert isinstance(codec.StreamEncoder(req, neutral.Route()).content_type, str)


@pytest.mark.parametrize(("name", "codec"), CODECS)
def test_codec_imports_the_neutral_model_as_a_module(name: str, codec: Codec) -> None:
    source = Path(inspect.getfile(codec)).read_text()  # type: ignore[arg-type]
    assert "from aigateway.neutral import" not in source
    assert "noqa: F401" not in source  # its own definitions, no re-exports


def request(headers: dict[str, str], uri: str = "/v1/models") -> HTTPServerRequest:
    return HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"),
                             headers=HTTPHeaders({"Host": "gateway.test", **headers}))


def sent_by(source: str, key: str) -> HTTPServerRequest:
    if source == "bearer":
        return request({"Authorization": f"Bearer {key}"})
    if source.startswith("?"):
        return request({}, f"/v1/models?{source[1:]}={key}")
    return request({source: key})


@pytest.mark.parametrize(("name", "codec"), CODECS)
def test_every_declared_key_source_is_read(name: str, codec: Codec) -> None:
    for source in codec.CLIENT_KEYS:
        assert relay.client_key(sent_by(source, "sk-abc")) == "sk-abc", source


def test_bearer_wins_over_other_sources_and_headers_over_the_query() -> None:
    both = request({"Authorization": "Bearer sk-first", "x-api-key": "sk-second"}, "/v1/models?key=sk-third")
    assert relay.client_key(both) == "sk-first"
    assert relay.client_key(request({"x-goog-api-key": "sk-2"}, "/v1/models?key=sk-3")) == "sk-2"


@pytest.mark.parametrize(("name", "codec"), CODECS)
def test_shared_listing_answers_each_format_by_its_hints(name: str, codec: Codec) -> None:
    if codec not in api.SHARED_LISTING:
        return
    for hint in codec.LISTING_HINTS:
        handler = SimpleNamespace(request=sent_by(hint, "x") if hint.startswith("?") else request({hint: "x"}))
        assert api.listing_codec(handler) is codec, hint  # type: ignore[arg-type]
    plain = SimpleNamespace(request=request({"Authorization": "Bearer x"}))
    assert api.listing_codec(plain) is api.DEFAULT_LISTING  # type: ignore[arg-type]


def test_route_table_is_every_codecs_endpoints() -> None:
    routed = {pattern: (handler, kwargs.get("fmt")) for pattern, handler, kwargs in api.routes}
    for name, codec in CODECS:
        for endpoint in codec.ENDPOINTS:
            handler, fmt = routed[endpoint.pattern]
            assert fmt == ("auto" if endpoint.shared else name)
            handlers = {MODELS: api.ModelsHandler, COUNT_TOKENS: api.CountTokensHandler, EMBED: api.EmbedHandler}
            assert handler is handlers.get(endpoint.operation, api.ChatHandler)
    patterns = [p for p, _, _ in api.routes]
    first_listing = min(i for i, (_, h, _) in enumerate(api.routes) if h is api.ModelsHandler)
    assert all(h is not api.ChatHandler for _, h, _ in api.routes[first_listing:]), "requests must route first"
    assert len(patterns) == len(set(patterns))
