"""Model routing, fallbacks and key pools: pure, in memory, no I/O.

A request's model resolves, in this order, to: a route the client may use (a name mapped to an
ordered list of targets, each a provider and the model to ask it for); ``provider/model`` naming a
provider the client may use; a model one of the client's providers lists in ``allowed_models``
(its default provider first); else the client's default provider, as before routes existed.

A route's targets are tried in order: the next one when an attempt fails before anything reached
the client (connection failures, timeouts before the first byte, 429, the route's 5xx statuses, a
stream that fails before its first content event). Each provider holds a pool of keys chosen by
smooth weighted round robin; a key that gets 429 rests for the upstream's Retry-After (or
``routing.key_rest_seconds``), one refused with 401/403 fails for ``routing.key_failed_seconds``
or until an admin changes it. Resolving and choosing are dictionary look-ups and a few
comparisons: nothing here allocates per request beyond the plan's tuple, already built.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aigateway.governance import model_allowed, not_allowed
from aigateway.neutral import ErrorKind, GatewayError, invalid
from aigateway.providers import Provider

DEFAULT_FALLBACK_STATUSES = (429, 500, 502, 503, 504, 529)
# A target-independent refusal: the next target would answer the same, so it is not retried.
_FINAL_STATUSES = frozenset({400, 404, 413, 422})


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request can go: a provider, and the model to ask it for ("" keeps the
    request's own model)."""

    provider: str
    model: str = ""


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model name clients ask for, mapped to the targets that serve it, in order."""

    name: str
    targets: tuple[Target, ...]
    fallback_statuses: frozenset[int] = frozenset(DEFAULT_FALLBACK_STATUSES)
    retries: int = 0  # extra attempts on the same target before moving on
    retry_max_seconds: float = 10.0  # all retries of one request, waits included

    @classmethod
    def from_config(cls, name: str, raw: Mapping[str, Any]) -> ModelRoute:
        targets = tuple(Target(str(t["provider"]), str(t.get("model") or "")) for t in raw["targets"])
        statuses = raw.get("fallback_on")
        return cls(name, targets,
                   frozenset(DEFAULT_FALLBACK_STATUSES if statuses is None else (int(s) for s in statuses)),
                   int(raw.get("retries") or 0), float(raw.get("retry_max_seconds") or 10.0))


@dataclass(frozen=True, slots=True)
class Plan:
    """Where one request may go: its targets in order, with the route's fallback rules. A request
    keeps the plan it started with, whatever a config change does meanwhile."""

    targets: tuple[Target, ...]
    route: ModelRoute | None = None  # None: a single target, no fallback

    @property
    def fallback_statuses(self) -> frozenset[int]:
        return self.route.fallback_statuses if self.route else frozenset()

    @property
    def retries(self) -> int:
        return self.route.retries if self.route else 0


def allowed_providers(client: Mapping[str, Any]) -> tuple[str, ...]:
    """The providers a client may reach: its default first, then those it was allowed besides."""
    return tuple(dict.fromkeys((client["provider"], *(client.get("allowed_providers") or ()))))


def resolve(model: str | None, client: Mapping[str, Any], routes: Mapping[str, ModelRoute],
            providers: Mapping[str, Provider]) -> Plan:
    """Where a request for ``model`` goes (the order is the module docstring's). Raises a 404 in
    the neutral shape when the client may not reach it; a key limited to some models keeps only
    the targets whose model it may use (checked after routing, on the names sent upstream), and
    gets a 403 when none is left."""
    plan = _resolve(model, client, routes, providers)
    patterns = client.get("allowed_models") or ()
    if not patterns:
        return plan
    kept = tuple(t for t in plan.targets if model_allowed(t.model, patterns))
    if not kept:
        raise not_allowed(plan.targets[0].model)
    return Plan(kept, plan.route)


def _resolve(model: str | None, client: Mapping[str, Any], routes: Mapping[str, ModelRoute],
             providers: Mapping[str, Provider]) -> Plan:
    reachable = allowed_providers(client)
    name = model or client["default_model"] or ""
    route = routes.get(name)
    if route is not None and name in (client.get("allowed_routes") or ()):
        return Plan(tuple(Target(t.provider, t.model or name) for t in route.targets), route)
    head, _, tail = name.partition("/")
    if tail and head in reachable and head in providers:
        return Plan((Target(head, tail),))
    for provider_name in reachable:
        provider = providers.get(provider_name)
        if provider is not None and name in provider.allowed_models:
            return Plan((Target(provider_name, name),))
    default = providers.get(client["provider"])
    if default is None:
        raise GatewayError(500, ErrorKind.SERVER, f"client {client['name']!r} uses provider "
                           f"{client['provider']!r}, which is not configured")
    name = name or default.default_model
    if not name:
        raise invalid("model: no model given and no default configured", "model")
    if default.allowed_models:
        raise GatewayError(404, ErrorKind.NOT_FOUND,
                           f"The model '{name}' is not available to this client. "
                           f"Available: {', '.join(reachable_models(client, routes, providers))}.", param="model")
    return Plan((Target(client["provider"], name),))


def reachable_models(client: Mapping[str, Any], routes: Mapping[str, ModelRoute],
                     providers: Mapping[str, Provider]) -> list[str]:
    """What the client may name without going through its default provider's open list: its
    routes and every allowed model of its providers (what /v1/models lists, with an upstream's own
    list for a provider that allows any model)."""
    names = [r for r in client.get("allowed_routes") or () if r in routes]
    for provider_name in allowed_providers(client):
        provider = providers.get(provider_name)
        if provider is not None:
            names += provider.allowed_models
    patterns = client.get("allowed_models") or ()
    return [n for n in dict.fromkeys(names) if n in routes or model_allowed(n, patterns)]


def moves_on(status: int, statuses: frozenset[int]) -> bool:
    """Whether a failure of this status (0: no HTTP answer at all: refused, reset, TLS, timeout)
    should try the next attempt. A client error the next target would repeat never does."""
    if status == 0:
        return True
    return status not in _FINAL_STATUSES and status in statuses


# -- key pools

@dataclass(slots=True)
class PoolKey:
    """One provider key with its weight and state. ``label`` and ``tail`` are all that is ever
    shown of it. Rests are per model, as the providers' rate limits are (a key rate-limited on one
    model still serves the others)."""

    key: str = field(repr=False)
    weight: int = 1
    label: str = ""
    resting: dict[str, float] = field(default_factory=dict)  # model -> skipped until then (429)
    failed_until: float = 0.0  # 401/403: skipped until then (or until an admin changes the key)
    error: str = ""  # the upstream's message for the last rest or failure
    current: int = 0  # smooth weighted round robin's running weight

    @property
    def tail(self) -> str:
        return self.key[-4:] if len(self.key) >= 12 else ""

    def until(self, model: str) -> float:
        """When this key may serve ``model`` again."""
        return max(self.resting.get(model, 0.0), self.failed_until)

    def state(self, now: float) -> str:
        if self.failed_until > now:
            return "failed"
        return "resting" if any(t > now for t in self.resting.values()) else "ok"


class KeyPool:
    """A provider's keys. ``choose`` spreads requests by weight over the keys that may serve the
    model (nginx's smooth weighted round robin: exact proportions, no randomness, and no key gets
    two turns in a row unless its weight says so)."""

    def __init__(self, keys: Sequence[PoolKey]) -> None:
        self.keys = list(keys)

    def choose(self, model: str, now: float) -> PoolKey | None:
        best: PoolKey | None = None
        total = 0
        for k in self.keys:
            if k.until(model) > now:
                continue
            k.current += k.weight
            total += k.weight
            if best is None or k.current > best.current:
                best = k
        if best is not None:
            best.current -= total
        return best

    def soonest(self, model: str, now: float) -> float:
        """Seconds until some key may serve ``model`` again (0 when one may now)."""
        return max(0.0, min((k.until(model) - now for k in self.keys), default=0.0))

    def rest(self, key: PoolKey, model: str, seconds: float, now: float, error: str) -> None:
        key.resting = {m: t for m, t in key.resting.items() if t > now}  # forget rests that ended
        key.resting[model] = max(key.resting.get(model, 0.0), now + seconds)
        key.error = error

    def fail(self, key: PoolKey, seconds: float, now: float, error: str) -> None:
        key.failed_until = now + seconds
        key.error = error

    def carry_state(self, old: KeyPool) -> None:
        """After a config change, a key that stayed keeps its rests or failure; a new key value (an
        admin changed it) starts afresh."""
        before = {k.key: k for k in old.keys}
        for k in self.keys:
            if k.key in before:
                was = before[k.key]
                k.resting, k.failed_until, k.error = was.resting, was.failed_until, was.error


def pool_of(provider: Provider) -> KeyPool:
    """A provider's pool: its ``api_keys``, or its single ``api_key`` (a pool of one; an empty key
    is a pool of one empty key, for local servers that need none)."""
    return KeyPool([PoolKey(key, weight, label) for key, weight, label in provider.keys])


def pools_for(providers: Mapping[str, Provider], old: Mapping[str, KeyPool]) -> dict[str, KeyPool]:
    """Every provider's pool after a config change, keeping what is known of keys that stayed."""
    pools = {name: pool_of(p) for name, p in providers.items()}
    for name, pool in pools.items():
        if name in old:
            pool.carry_state(old[name])
    return pools


def backoff(attempt: int, retry_after: float | None, base: float = 0.25, cap: float = 8.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): the upstream's Retry-After when
    it gave one, else exponential backoff with full jitter (so retries of many requests spread)."""
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
