"""Cost: the shipped price table, model-name matching, the one formula against a usage shape of each
provider type computed by hand (cached, cache-write and reasoning tokens included), and the cost of
real requests through a gateway in the request log, the daily totals and the CSV."""

from __future__ import annotations

import csv
import io

import openai
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, AdminClient, GatewayServer, admin_overrides

from aigateway.formats import anthropic, gemini
from aigateway.formats import openai as openai_codec
from aigateway.price_table import TABLES
from aigateway.pricing import FREE, Price
from aigateway.providers import Provider

M = 1_000_000


def provider(type_: str, **raw: object) -> Provider:
    return Provider.from_config("p", {"type": type_, "base_url": "http://127.0.0.1:1/v1", **raw})


def test_openai_usage_cached_inside_prompt_tokens():
    usage = openai_codec.read_usage({"prompt_tokens": 1000, "completion_tokens": 500,
                                 "prompt_tokens_details": {"cached_tokens": 400},
                                 "completion_tokens_details": {"reasoning_tokens": 200}})
    price = provider("openai").prices.find("gpt-4o")
    assert price == Price(2.50, 10.0, cached_input=1.25)
    # cached tokens are part of the 1,000 prompt tokens; reasoning is billed as output
    assert price.cost(usage) == pytest.approx((600 * 2.50 + 400 * 1.25 + 500 * 10.0) / M)


def test_anthropic_usage_cache_reads_and_writes_apart_from_input_tokens():
    usage = anthropic._usage({"input_tokens": 100, "cache_read_input_tokens": 1000,
                              "cache_creation_input_tokens": 200, "output_tokens": 300})
    price = provider("anthropic").prices.find("claude-sonnet-4-5-20250929")  # a dated variant
    assert price == TABLES["anthropic"]["claude-sonnet-4-5"]
    assert price.cost(usage) == pytest.approx((100 * 3.0 + 1000 * 0.30 + 200 * 3.75 + 300 * 15.0) / M)


def test_gemini_usage_thoughts_are_output():
    usage = gemini._usage({"promptTokenCount": 1000, "cachedContentTokenCount": 600, "candidatesTokenCount": 100,
                           "thoughtsTokenCount": 50, "totalTokenCount": 1150})
    price = provider("gemini").prices.find("models/gemini-2.5-flash-preview-05-20")
    assert price == TABLES["gemini"]["gemini-2.5-flash"]
    assert price.cost(usage) == pytest.approx((400 * 0.30 + 600 * 0.03 + 150 * 2.50) / M)


def test_reasoning_priced_apart_when_the_table_says_so():
    price = Price(1.0, 4.0, reasoning=8.0)
    from aigateway.neutral import Usage
    assert price.cost(Usage(input_tokens=10, output_tokens=100, reasoning_tokens=60)) == pytest.approx(
        (10 * 1.0 + 40 * 4.0 + 60 * 8.0) / M)


@pytest.mark.parametrize(("type_", "model", "wanted"), [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longer name wins
    ("openai", "gpt-4o-mini-search-preview", "gpt-4o-mini"),
    ("openai", "o3-2025-04-16", "o3"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("mistral", "mistral-large-latest", "mistral-large"),
    ("gemini", "gemini-3.1-pro-preview", "gemini-3.1-pro"),
    ("openai", "gpt-5.6-luna", "gpt-5.6-luna"),
    ("openai", "gpt-5.4-mini-2026-03-17", "gpt-5.4-mini"),
    ("openai", "gpt-5-codex", "gpt-5"),
])
def test_dated_and_versioned_names_find_their_model(type_, model, wanted):
    table = TABLES[{"mistral": "mistral"}.get(type_, type_)]
    assert provider(type_).prices.find(model) == table[wanted]


@pytest.mark.parametrize("model", ["gpt-5-pro", "o3-pro-2025-06-10", "gpt-4o-audio-preview", "gpt-4o-realtime"])
def test_variants_billed_at_their_own_rates_are_not_priced_by_their_prefix(model):
    """gpt-5-pro costs 12x gpt-5: priced as gpt-5 it would be undercharged, so it stays unpriced (flagged)."""
    assert provider("openai").prices.find(model) is None


def test_every_shipped_price_says_where_it_was_read():
    assert all(price.source and price.source.startswith("https://") for table in TABLES.values()
               for price in table.values())


def test_local_servers_are_free_unknown_models_unpriced_and_overrides_win():
    assert provider("ollama").prices.find("llama3.2") == FREE
    assert provider("openai_compatible").prices.find("llama3.2") is None  # an unknown server: unpriced
    assert provider("openai").prices.find("gpt-nonexistent") is None
    own = provider("openai", prices={"gpt-4o": {"input": 1, "output": 2}, "house-model": {"input": 0.5, "output": 1}})
    assert own.prices.find("gpt-4o-2024-08-06") == Price(1.0, 2.0)
    assert own.prices.find("house-model") == Price(0.5, 1.0)
    assert own.prices.find("gpt-4o-mini") == TABLES["openai"]["gpt-4o-mini"]  # the rest of the table stays


@pytest.fixture(scope="module")
def priced(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory):
    """A gateway whose fake OpenAI provider is priced by the shipped table (type openai)."""
    server = GatewayServer(tmp_path_factory.mktemp("priced"), fake_upstream, **admin_overrides())
    yield server
    server.stop()


def test_every_request_is_priced_and_the_totals_add_up(priced):
    key = priced.add_client("spender")
    oai = openai.OpenAI(base_url=priced.url + "/v1", api_key=key, max_retries=0)
    price = TABLES["openai"]["gpt-4o"]
    a = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one two three"}])
    text = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "four five"}], stream=True,
        stream_options={"include_usage": True}) if c.choices)
    assert text == "Echo: four five"
    unpriced = oai.chat.completions.create(model="mystery-model", messages=[{"role": "user", "content": "hi"}])
    rows = priced.wait_log_rows("spender", 3)
    expected = [(a.usage.prompt_tokens * price.input + a.usage.completion_tokens * price.output) / M]
    expected.append((rows[1]["input_tokens"] * price.input + rows[1]["output_tokens"] * price.output) / M)
    assert [r["cost_usd"] for r in rows[:2]] == pytest.approx(expected) and all(r["priced"] for r in rows[:2])
    assert unpriced.choices[0].message.content and (rows[2]["cost_usd"], rows[2]["priced"]) == (0, 0)
    admin = AdminClient(priced.url)
    admin.login(ADMIN_USER, ADMIN_PASSWORD)
    report = admin.call("GET", "/admin/api/usage").json()
    spender = next(c for c in report["clients"] if c["client_name"] == "spender")
    assert spender["cost_usd"] == pytest.approx(sum(expected), abs=1e-6)
    assert {"provider": "fake-openai", "model": "mystery-model", "requests": 1} in report["unpriced"]
    text = admin.call("GET", "/admin/api/usage.csv").text
    rows_csv = [r for r in csv.DictReader(io.StringIO(text)) if r["client_name"] == "spender"]
    assert sum(float(r["cost_usd"]) for r in rows_csv) == pytest.approx(sum(expected), abs=1e-6)
    admin.close()


def test_prices_in_config_yaml_are_checked():
    from aigateway.config import check, default_data

    data = default_data()
    data["providers"]["openai"]["prices"] = {"gpt-4o": {"input": 1, "output": 2, "cached_input": 0.5}}
    checked = check(data)
    assert not checked.errors and checked.providers["openai"].prices.find("gpt-4o") == Price(1, 2, cached_input=0.5)
    for bad in ({"gpt-4o": {"input": 1}}, {"gpt-4o": {"input": "cheap", "output": 1}}, ["gpt-4o"],
                {"gpt-4o": {"input": 1, "output": 2, "colour": 3}}):
        data["providers"]["openai"]["prices"] = bad
        assert list(check(data).errors) == ["providers.openai.prices"], bad
