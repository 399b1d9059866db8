"""Embeddings through the gateway with the official SDKs, unmodified: openai ``embeddings.create``
and google-genai ``embed_content`` on every backend type. The fake upstream's vectors depend on the
text alone, so a vector fetched through the gateway is compared with one fetched straight from it.
An Anthropic backend has no embeddings API: a clear 400, nothing charged. Limits and the request
log apply as for chat."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest
from conftest import GatewayServer
from google import genai
from google.genai import errors, types

BACKENDS = ("openai", "responses", "gemini", "anthropic")
MODEL = "text-embedding-3-small"
GEMINI_MODEL = "gemini-embedding-001"


@pytest.fixture(scope="module")
def keys(gateway: GatewayServer) -> dict[str, str]:
    return {b: gateway.add_client(f"embed-{b}", provider=f"fake-{b}") for b in BACKENDS}


def same(got: list[list[float]], wanted: list[list[float]]) -> bool:
    """The same vectors, to float32 precision (the gateway relays the values; base64 is float32)."""
    return len(got) == len(wanted) and all(len(g) == len(w) and all(
        abs(x - y) < 1e-6 for x, y in zip(g, w, strict=True)) for g, w in zip(got, wanted, strict=True))


def direct_openai(fake_upstream: str, texts: list[str], **extra) -> list[list[float]]:
    r = httpx.post(fake_upstream + "/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "float",
                                                           **extra}, headers={"Authorization": "Bearer x"})
    return [d["embedding"] for d in r.json()["data"]]


def direct_gemini(fake_upstream: str, model: str, texts: list[str], **extra) -> list[list[float]]:
    body = {"requests": [{"model": f"models/{model}", "content": {"parts": [{"text": t}]}, **extra} for t in texts]}
    r = httpx.post(f"{fake_upstream}/v1beta/models/{model}:batchEmbedContents", json=body,
                   headers={"x-goog-api-key": "x"})
    return [e["values"] for e in r.json()["embeddings"]]


def direct(fake_upstream: str, backend: str, model: str, texts: list[str], dimensions: int | None = None):
    if backend == "gemini":
        extra = {"outputDimensionality": dimensions} if dimensions else {}
        return direct_gemini(fake_upstream, model, texts, **extra)
    return direct_openai(fake_upstream, texts, **({"dimensions": dimensions} if dimensions else {}))


@pytest.mark.parametrize("backend", ["openai", "responses", "gemini"])
def test_openai_sdk_embeddings_on_every_backend_with_embeddings(gateway, keys, fake_upstream, backend):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=keys[backend], max_retries=0)
    before = len(gateway.log_rows(f"embed-{backend}"))
    texts = ["the quick brown fox", "jumps over the lazy dog", "ünïcödé 文字"]
    default = oai.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 and decodes it
    floats = oai.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]  # order kept
    wanted = direct(fake_upstream, backend, MODEL, texts)
    assert same([d.embedding for d in floats.data], wanted)
    assert same([d.embedding for d in default.data], wanted)
    short = oai.embeddings.create(model=MODEL, input="the quick brown fox", dimensions=8, encoding_format="float")
    assert same([short.data[0].embedding], direct(fake_upstream, backend, MODEL, [texts[0]], 8))
    rows = gateway.wait_log_rows(f"embed-{backend}", before + 3)[before:]
    assert [(r["status"], r["endpoint"], r["inbound"], r["output_tokens"]) for r in rows] == [
        (200, "embeddings", "openai", 0)] * 3
    assert rows[1]["input_tokens"] == floats.usage.prompt_tokens > 0
    assert all(r["estimated"] == (backend == "gemini") for r in rows)  # Gemini reports no embedding usage


def test_token_arrays_reach_openai_compatible_backends_only(gateway, keys):
    ok = openai.OpenAI(base_url=gateway.url + "/v1", api_key=keys["openai"], max_retries=0)
    assert len(ok.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]]).data) == 2
    refused = openai.OpenAI(base_url=gateway.url + "/v1", api_key=keys["gemini"], max_retries=0)
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        refused.embeddings.create(model=MODEL, input=[[1, 2, 3]])


def test_an_anthropic_backend_has_no_embeddings_api_and_charges_nothing(gateway, keys):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=keys["anthropic"], max_retries=0)
    before = len(gateway.log_rows("embed-anthropic"))
    with pytest.raises(openai.BadRequestError, match="has no embeddings API"):
        oai.embeddings.create(model=MODEL, input="hello")
    [row] = gateway.wait_log_rows("embed-anthropic", before + 1)[before:]
    assert (row["status"], row["admitted"], row["input_tokens"], row["endpoint"]) == (400, 0, 0, "embeddings")
    gem = genai.Client(api_key=keys["anthropic"], http_options={"base_url": gateway.url})
    with pytest.raises(errors.ClientError) as caught:
        gem.models.embed_content(model=GEMINI_MODEL, contents="hello")
    assert caught.value.code == 400 and "no embeddings API" in caught.value.message


@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_google_genai_embed_content(gateway, keys, fake_upstream, backend):
    gem = genai.Client(api_key=keys[backend], http_options={"base_url": gateway.url})
    texts = ["first document", "second document"]
    model = GEMINI_MODEL if backend == "gemini" else MODEL  # a model the backend has
    result = gem.models.embed_content(model=model, contents=texts,
                                      config=types.EmbedContentConfig(output_dimensionality=16))
    got = [e.values for e in result.embeddings]
    assert len(got) == 2 and all(len(v) == 16 for v in got)
    wanted = direct(fake_upstream, backend, model, texts, 16)
    assert same(got, wanted)


def test_embeddings_count_against_limits_and_say_which(gateway):
    key = gateway.add_client("embed-limited", provider="fake-openai", rpm=2, daily_input_tokens=10)
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    oai.embeddings.create(model=MODEL, input="one two")
    with pytest.raises(openai.RateLimitError) as caught:  # the 12-token bound of this text exceeds what is left
        oai.embeddings.create(model=MODEL, input="a much longer text than the quota leaves room for")
    assert "daily input token quota" in caught.value.message and "resets in" in caught.value.message
    oai.embeddings.create(model=MODEL, input="three")
    with pytest.raises(openai.RateLimitError) as caught:
        oai.embeddings.create(model=MODEL, input="four")
    assert "requests-per-minute" in caught.value.message
