"""A request's admission: its client's limits and, for a client in a team, its team's, which hold
across all the team's clients at once. A request must fit both; both reserve, and both settle when
it ends (limits.py does the counting). Also the one place limit answers are worded: the 429 that
names the limit and when it resets, and the headers that say what is left.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aigateway import neutral
from aigateway.limits import MICRO, USD_FIELDS, Headroom, LimitExceeded, Reservation, duration

if TYPE_CHECKING:
    from aigateway.app import Gateway


@dataclass(frozen=True, slots=True)
class Team:
    """A team as the limiter sees it: its id, its name for messages, its own limits."""

    id: int
    name: str
    limits: dict[str, int]


@dataclass(slots=True)
class Admission:
    client: Reservation
    team: Team | None = None
    team_reservation: Reservation | None = None

    @property
    def max_output(self) -> int | None:
        """The output cap to send upstream: the team was admitted with the client's cap, so its
        reservation's cap is the smaller of the two."""
        return (self.team_reservation or self.client).max_output


def admit(gw: Gateway, client: Mapping[str, Any], limits: dict[str, int], input_estimate: int,
          asked_output: int | None, choices: int = 1, input_bound: int | None = None, output: bool = True,
          rates: tuple[float, float] = (0.0, 0.0)) -> Admission:
    """Reserve with the client, then with its team; a 429 (the client's format renders it) when
    either says no, and then nothing stays reserved."""
    now = time.time()
    try:
        res = gw.limiter.admit(client["id"], limits, input_estimate, asked_output, now, choices, input_bound, output,
                               rates)
    except LimitExceeded as exc:
        raise limit_error(exc, gw.limiter.headroom(client["id"], limits, now)) from None
    team = gw.teams.get(client["team_id"]) if client["team_id"] else None
    if team is None:
        return Admission(res)
    try:
        team_res = gw.team_limiter.admit(team.id, team.limits, input_estimate, res.max_output, now, choices,
                                         input_bound, output, rates)
    except LimitExceeded as exc:
        gw.limiter.release(res, now)
        exc.message = f"team {team.name!r}: {exc.message}"
        raise limit_error(exc, gw.team_limiter.headroom(team.id, team.limits, now)) from None
    return Admission(res, team, team_res)


def settle(gw: Gateway, adm: Admission, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
    now = time.time()
    gw.limiter.settle(adm.client, input_tokens, output_tokens, now, cost_usd)
    if adm.team_reservation is not None:
        gw.team_limiter.settle(adm.team_reservation, input_tokens, output_tokens, now, cost_usd)


def release(gw: Gateway, adm: Admission) -> None:
    """Undo the admission of a request the gateway refused after all (never sent upstream)."""
    now = time.time()
    gw.limiter.release(adm.client, now)
    if adm.team_reservation is not None:
        gw.team_limiter.release(adm.team_reservation, now)


def headroom(gw: Gateway, client_id: int, limits: Mapping[str, int], adm: Admission | None) -> Headroom:
    """The client's headroom, with the tighter budget of client and team."""
    now = time.time()
    room = gw.limiter.headroom(client_id, limits, now)
    if adm is not None and adm.team is not None:
        team = gw.team_limiter.headroom(adm.team.id, adm.team.limits, now)
        if team.remaining_budget is not None and (room.remaining_budget is None
                                                  or team.remaining_budget < room.remaining_budget):
            room.remaining_budget, room.reset_budget = team.remaining_budget, team.reset_budget
    return room


_RATE_LIMITS = ("rpm", "rph", "rpd", "tpm", "max_concurrent")


def limit_error(exc: LimitExceeded, room: Headroom) -> neutral.GatewayError:
    """A 429 naming the limit hit and when it resets. The per-request caps never reset, so
    retrying is pointless: ``x-should-retry: false`` stops the SDKs' automatic retries."""
    rate = exc.limit in _RATE_LIMITS
    headers = ratelimit_headers(room)
    if exc.retry_after:
        kind = "Rate limit" if rate else "Budget" if exc.limit in USD_FIELDS else "Quota"
        message = f"{kind} exceeded: {exc.message}; resets in {duration(exc.retry_after)}."
    else:
        message = f"Request too large for this client: {exc.message}."
        headers["x-should-retry"] = "false"
    return neutral.GatewayError(429, neutral.ErrorKind.RATE_LIMIT if rate else neutral.ErrorKind.QUOTA, message,
                                param=exc.limit, retry_after=exc.retry_after or None, limit=exc.limit,
                                headers=headers)


def ratelimit_headers(room: Headroom) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest request window and token limit, and the
    gateway's own for the tighter budget (what is left once requests in flight spent their worst case)."""
    out = {}
    if room.limit_requests is not None:
        out["x-ratelimit-limit-requests"] = str(room.limit_requests)
        out["x-ratelimit-remaining-requests"] = str(room.remaining_requests)
        out["x-ratelimit-reset-requests"] = duration(room.reset_requests)
    if room.limit_tokens is not None:
        out["x-ratelimit-limit-tokens"] = str(room.limit_tokens)
        out["x-ratelimit-remaining-tokens"] = str(room.remaining_tokens)
        out["x-ratelimit-reset-tokens"] = duration(room.reset_tokens)
    if room.remaining_budget is not None:
        out["x-gateway-budget-remaining-usd"] = f"{room.remaining_budget / MICRO:.6f}"
        out["x-gateway-budget-reset"] = duration(room.reset_budget)
    return out
