"""Routing on its own: model resolution order, key pools (weights, rests, failures), the fallback
rule and retry backoff. The pipeline's use of them is tested end to end in test_fallbacks.py."""

from __future__ import annotations

from collections import Counter

import pytest

from aigateway.neutral import GatewayError
from aigateway.providers import Provider
from aigateway.routing import (
    DEFAULT_FALLBACK_STATUSES,
    KeyPool,
    ModelRoute,
    PoolKey,
    Target,
    backoff,
    moves_on,
    pool_of,
    reachable_models,
    resolve,
)

PROVIDERS = {
    "oa": Provider.from_config("oa", {"type": "openai", "default_model": "gpt-4o"}),
    "an": Provider.from_config("an", {"type": "anthropic", "allowed_models": ["claude-x", "claude-y"]}),
    "ge": Provider.from_config("ge", {"type": "gemini", "allowed_models": ["gemini-z"]}),
}
ROUTES = {"smart": ModelRoute.from_config("smart", {"targets": [{"provider": "an", "model": "claude-x"},
                                                                {"provider": "oa", "model": "gpt-4o"}]}),
          "gpt-4o": ModelRoute.from_config("gpt-4o", {"targets": [{"provider": "oa"}, {"provider": "ge",
                                                                                      "model": "gemini-z"}]})}


def client(provider: str = "oa", providers: tuple = (), routes: tuple = (), default_model: str = "") -> dict:
    return {"name": "c", "provider": provider, "allowed_providers": list(providers), "allowed_routes": list(routes),
            "default_model": default_model}


def test_a_route_the_client_may_use_comes_first() -> None:
    plan = resolve("smart", client(routes=("smart",)), ROUTES, PROVIDERS)
    assert plan.targets == (Target("an", "claude-x"), Target("oa", "gpt-4o")) and plan.route is ROUTES["smart"]
    # a route named like a model, with a target that keeps the name
    plan = resolve("gpt-4o", client(routes=("gpt-4o",)), ROUTES, PROVIDERS)
    assert plan.targets == (Target("oa", "gpt-4o"), Target("ge", "gemini-z"))


def test_a_route_the_client_may_not_use_is_just_a_model_name() -> None:
    assert resolve("gpt-4o", client(), ROUTES, PROVIDERS).targets == (Target("oa", "gpt-4o"),)
    with pytest.raises(GatewayError) as err:
        resolve("smart", client(provider="an"), ROUTES, PROVIDERS)
    assert err.value.status == 404 and "not available" in err.value.message


def test_provider_slash_model_needs_an_allowed_provider() -> None:
    assert resolve("ge/gemini-z", client(providers=("ge",)), ROUTES, PROVIDERS).targets == (Target("ge", "gemini-z"),)
    # not allowed: the whole name goes to the default provider, which allows any model
    assert resolve("ge/gemini-z", client(), ROUTES, PROVIDERS).targets == (Target("oa", "ge/gemini-z"),)


def test_allowed_models_of_any_allowed_provider_then_the_default() -> None:
    assert resolve("claude-y", client(providers=("an",)), ROUTES, PROVIDERS).targets == (Target("an", "claude-y"),)
    assert resolve(None, client(), ROUTES, PROVIDERS).targets == (Target("oa", "gpt-4o"),)
    assert resolve(None, client(default_model="mine"), ROUTES, PROVIDERS).targets == (Target("oa", "mine"),)
    with pytest.raises(GatewayError) as err:
        resolve("gpt-4o", client(provider="an", providers=("ge",)), ROUTES, PROVIDERS)
    assert err.value.status == 404 and "claude-x, claude-y, gemini-z" in err.value.message


def test_reachable_models_lists_routes_and_allowed_models() -> None:
    c = client(provider="an", providers=("ge",), routes=("smart", "gone"))
    assert reachable_models(c, ROUTES, PROVIDERS) == ["smart", "claude-x", "claude-y", "gemini-z"]


def test_weights_are_respected_exactly() -> None:
    pool = KeyPool([PoolKey("a", 3), PoolKey("b", 1), PoolKey("c", 6)])
    picks = Counter(pool.choose("m", 0.0).key for _ in range(1000))  # type: ignore[union-attr]
    assert picks == {"a": 300, "b": 100, "c": 600}  # smooth weighted round robin: exact per 10


def test_resting_key_is_skipped_then_comes_back_by_itself() -> None:
    a, b = PoolKey("a"), PoolKey("b")
    pool = KeyPool([a, b])
    pool.rest(a, "m", 5.0, 100.0, "rate limited")
    assert {pool.choose("m", 101.0).key for _ in range(10)} == {"b"}  # type: ignore[union-attr]
    assert {pool.choose("other", 101.0).key for _ in range(10)} == {"a", "b"}  # rests are per model
    assert a.state(101.0) == "resting" and pool.soonest("m", 101.0) == 0.0
    pool.rest(b, "m", 2.0, 101.0, "rate limited")
    assert pool.choose("m", 101.5) is None and pool.soonest("m", 101.5) == pytest.approx(1.5)
    assert {pool.choose("m", 105.5).key for _ in range(4)} == {"a", "b"}  # type: ignore[union-attr]


def test_failed_key_stays_failed_until_its_value_changes() -> None:
    old = KeyPool([PoolKey("a"), PoolKey("b")])
    old.fail(old.keys[0], 3600.0, 0.0, "invalid key")
    new = pool_of(Provider.from_config("p", {"api_keys": [{"key": "a"}, {"key": "b2"}]}))
    new.carry_state(old)
    assert new.keys[0].state(10.0) == "failed" and new.keys[0].error == "invalid key"
    assert new.keys[1].state(10.0) == "ok"
    assert pool_of(Provider.from_config("p", {"api_key": "sk-single-key-value"})).keys[0].tail == "alue"


def test_fallback_rule() -> None:
    statuses = frozenset(DEFAULT_FALLBACK_STATUSES)
    for status in (0, 429, 500, 502, 503, 504, 529):
        assert moves_on(status, statuses), status
    for status in (400, 401, 403, 404, 413, 422):
        assert not moves_on(status, statuses), status
    assert not moves_on(500, frozenset({503}))


def test_backoff_honours_retry_after_and_is_bounded() -> None:
    assert backoff(1, 2.5) == 2.5
    assert all(0 <= backoff(n, None) <= 8.0 for n in range(1, 20))
