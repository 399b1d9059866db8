"""Rate limits and token quotas: pure, in memory, no I/O, no Tornado.

Rate limits count requests in fixed clock windows (the current UTC minute, hour and day): exact,
cheap, and the reset time is simply the window's end. The known trade-off of fixed windows is
that a client may send a full window's worth just before a boundary and again just after it.

Quotas, tokens per minute and budgets use reservations: a request reserves its worst case (input
estimate, effective max output tokens, and what those cost at the model's prices) before going
upstream, and settles to its real usage and cost when it ends, however it ends. Concurrent
requests therefore can never overshoot a quota or a budget; when less is left than the worst case,
the output cap shrinks to what fits. Budgets are counted in micro-dollars (whole numbers; a price
in USD per million tokens is micro-dollars per token), days and months in the configured zone.
Everything here runs on the event loop between two awaits, so check-and-reserve is atomic without
locks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any


@dataclass(frozen=True, slots=True)
class LimitSetting:
    field: str  # column on clients and key in the admin API
    config: str  # dotted default in config.yaml
    flag: str  # CLI flag
    help: str
    usd: bool = False  # a budget: set in US dollars (decimals), counted in micro-dollars


# The one table of per-client limits. 0 means unlimited; a client's NULL means "use the default".
LIMITS: tuple[LimitSetting, ...] = (
    LimitSetting("rpm", "defaults.rate_limit.requests_per_minute", "--rpm", "requests per minute"),
    LimitSetting("rph", "defaults.rate_limit.requests_per_hour", "--rph", "requests per hour"),
    LimitSetting("rpd", "defaults.rate_limit.requests_per_day", "--rpd", "requests per day"),
    LimitSetting("daily_input_tokens", "defaults.quota.max_input_tokens_per_day", "--daily-input-tokens",
                 "input tokens per day"),
    LimitSetting("daily_output_tokens", "defaults.quota.max_output_tokens_per_day", "--daily-output-tokens",
                 "output tokens per day"),
    LimitSetting("daily_requests", "defaults.quota.max_requests_per_day", "--daily-requests",
                 "requests per day (quota)"),
    LimitSetting("max_input_tokens", "defaults.quota.max_input_tokens", "--max-input-tokens",
                 "input tokens of one request"),
    LimitSetting("max_output_tokens", "defaults.quota.max_output_tokens", "--max-output-tokens",
                 "output tokens of one request"),
    LimitSetting("tpm", "defaults.rate_limit.tokens_per_minute", "--tpm", "tokens per minute (input and output)"),
    LimitSetting("max_concurrent", "defaults.rate_limit.max_concurrent", "--max-concurrent",
                 "requests at once (a stream counts until it ends)"),
    LimitSetting("daily_budget_usd", "defaults.budget.daily_usd", "--daily-budget", "USD per day", usd=True),
    LimitSetting("monthly_budget_usd", "defaults.budget.monthly_usd", "--monthly-budget", "USD per month", usd=True),
)
LIMIT_FIELDS = tuple(s.field for s in LIMITS)
USD_FIELDS = frozenset(s.field for s in LIMITS if s.usd)
MICRO = 1_000_000  # micro-dollars per dollar


def _counted(field: str, value: Any) -> int:
    """A configured value as the limiter counts it: budgets in micro-dollars, the rest as set."""
    return round(float(value) * MICRO) if field in USD_FIELDS else int(value)


def configured_defaults(get: Callable[[str], Any]) -> dict[str, int]:
    """The defaults: section of config.yaml as limit fields (``get`` is Config.get)."""
    return {s.field: _counted(s.field, get(s.config)) for s in LIMITS}


def effective_limits(client: Mapping[str, Any], defaults: Mapping[str, int]) -> dict[str, int]:
    """The client's own value where it has one, else the configured default."""
    return {f: _counted(f, client[f]) if client[f] is not None else int(defaults[f]) for f in LIMIT_FIELDS}


def own_limits(row: Mapping[str, Any]) -> dict[str, int]:
    """A team's limits: only what it sets (no defaults: a team without a value has no such limit)."""
    return {f: _counted(f, row[f]) if row.get(f) is not None else 0 for f in LIMIT_FIELDS}


def shown(field: str, counted: int) -> float | int:
    """A counted value as people set it (budgets back in dollars)."""
    return counted / MICRO if field in USD_FIELDS else counted


def usd(micros: float) -> str:
    return f"${micros / MICRO:,.2f}" if micros >= MICRO / 100 or not micros else f"${micros / MICRO:.6f}"


class LimitExceeded(Exception):
    """A limit said no: which one, its value, and seconds until it resets."""

    def __init__(self, limit: str, value: int, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class Window:
    start: float = 0.0
    count: int = 0

    def roll(self, start: float) -> None:
        if start != self.start:
            self.start, self.count = start, 0


@dataclass(slots=True)
class Counters:
    """One client's counters for the current windows, plus what in-flight requests reserved."""

    minute: Window
    hour: Window
    day: Window  # requests admitted today
    month_start: float = 0.0
    day_input: int = 0
    day_output: int = 0
    reserved_input: int = 0
    reserved_output: int = 0
    tokens: Window = field(default_factory=Window)  # tokens used and reserved this minute (tpm)
    day_cost: int = 0  # micro-dollars spent today, this month, and reserved by requests in flight
    month_cost: int = 0
    reserved_cost: int = 0
    in_flight: int = 0


@dataclass(slots=True)
class Reservation:
    client_id: int
    at: float  # when it was admitted
    day_start: float
    input_tokens: int
    output_tokens: int
    max_output: int | None  # the cap to send upstream (None: no cap applies)
    cost: int = 0  # micro-dollars reserved
    month_start: float = 0.0
    settled: bool = False


@dataclass(slots=True)
class Headroom:
    """What is left, for the x-ratelimit-* headers: the tightest request and token windows."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float = 0.0
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float = 0.0
    remaining_budget: int | None = None  # micro-dollars, of the tighter budget
    reset_budget: float = 0.0


class Limiter:
    """All clients' counters. ``tz`` sets where days begin (UTC unless the config names a zone)."""

    def __init__(self, tz: tzinfo = timezone.utc) -> None:
        self._tz = tz
        self._day = (0.0, 0.0)  # start and end of the day last computed: its datetime work happens once a day
        self._month: tuple[float, tuple[float, float]] = (-1.0, (0.0, 0.0))
        self.counters: dict[int, Counters] = {}

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @tz.setter
    def tz(self, tz: tzinfo) -> None:
        self._tz = tz
        self._day = (0.0, 0.0)
        self._month = (-1.0, (0.0, 0.0))

    # -- windows
    def _day_start(self, now: float) -> float:
        start, end = self._day
        if start <= now < end:
            return start
        local = datetime.fromtimestamp(now, self._tz)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        self._day = (start, self._compute_day_end(start))
        return start

    def _day_end(self, day_start: float) -> float:
        start, end = self._day
        if day_start == start:
            return end
        return self._compute_day_end(day_start)

    def _compute_day_end(self, day_start: float) -> float:
        start = datetime.fromtimestamp(day_start, self._tz)
        return (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def month_bounds(self, day_start: float) -> tuple[float, float]:
        """Start and end of the calendar month the day starting at ``day_start`` is in (the last
        answer is kept: its datetime work happens once a day)."""
        if self._month[0] == day_start:
            return self._month[1]
        day = datetime.fromtimestamp(day_start, self._tz)
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        bounds = (first.replace(hour=0, minute=0, second=0, microsecond=0).timestamp(),
                  following.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
        self._month = (day_start, bounds)
        return bounds

    def window_starts(self, now: float) -> tuple[float, float, float]:
        """Start of the current minute, hour and day."""
        return now - now % 60, now - now % 3600, self._day_start(now)

    def _counters(self, client_id: int, now: float) -> Counters:
        c = self.counters.get(client_id)
        if c is None:
            c = self.counters[client_id] = Counters(Window(), Window(), Window())
        c.minute.roll(now - now % 60)
        c.hour.roll(now - now % 3600)
        c.tokens.roll(now - now % 60)
        day = self._day_start(now)
        if c.day.start != day:
            c.day.roll(day)
            c.day_input = c.day_output = c.day_cost = 0
            month = self.month_bounds(day)[0]
            if c.month_start != month:
                c.month_start, c.month_cost = month, 0
        return c

    @staticmethod
    def _request_windows(c: Counters, day_end: float) -> tuple[tuple[str, Window, float], ...]:
        return (("rpm", c.minute, c.minute.start + 60), ("rph", c.hour, c.hour.start + 3600),
                ("rpd", c.day, day_end), ("daily_requests", c.day, day_end))

    def restore(self, client_id: int, now: float, minute: int, hour: int, day: int, day_input: int,
                day_output: int, minute_tokens: int = 0, day_cost: float = 0.0, month_cost: float = 0.0) -> None:
        """Counters as stored in sqlite, at start-up or after a usage reset (costs in USD). What
        requests in flight hold is kept: they settle into the restored counters."""
        old = self.counters.get(client_id)
        c = self.counters[client_id] = Counters(Window(), Window(), Window())
        self._counters(client_id, now)
        c.minute.count, c.hour.count, c.day.count = minute, hour, day
        c.day_input, c.day_output, c.tokens.count = day_input, day_output, minute_tokens
        c.day_cost, c.month_cost = round(day_cost * MICRO), round(month_cost * MICRO)
        if old is not None:
            c.in_flight, c.reserved_input, c.reserved_output, c.reserved_cost = (
                old.in_flight, old.reserved_input, old.reserved_output, old.reserved_cost)

    def forget(self, client_id: int) -> None:
        self.counters.pop(client_id, None)

    # -- admission
    def admit(self, client_id: int, limits: Mapping[str, int], input_estimate: int, asked_output: int | None,
              now: float, choices: int = 1, input_bound: int | None = None, output: bool = True,
              rates: tuple[float, float] = (0.0, 0.0)) -> Reservation:
        """Check every limit and, only if all pass, count the request and reserve its tokens and
        cost. A request for several ``choices`` (OpenAI ``n``, Gemini ``candidateCount``) may produce
        its output cap once per choice: the output reservation covers them all, and under an output
        quota, a tokens-per-minute limit or a budget the per-choice cap shrinks so that all of them
        fit. The per-request input cap is checked against ``input_estimate``; the input quota, tpm
        and budgets reserve ``input_bound`` (an upper bound of the real count, tokens.py), so
        concurrent requests can never overshoot them. ``rates``: the worst micro-dollars per input
        and per output token among the request's targets. A request that makes no output
        (``output`` False: embeddings) is not held to the output limits."""
        reserve_in = input_estimate if input_bound is None else input_bound
        c = self._counters(client_id, now)
        day_end = self._day_end(c.day.start)
        for name, window, end in self._request_windows(c, day_end):
            limit = limits[name]
            if limit and window.count >= limit:
                raise LimitExceeded(name, limit, f"{_NAMES[name]} limit of {limit} reached", end - now)
        if limits["max_concurrent"] and c.in_flight >= limits["max_concurrent"]:
            raise LimitExceeded("max_concurrent", limits["max_concurrent"],
                                f"{c.in_flight} requests of this key are in flight, the most allowed at once", 1)
        cap = limits["max_input_tokens"]
        if cap and input_estimate > cap:
            raise LimitExceeded("max_input_tokens", cap,
                                f"this request has about {input_estimate} input tokens; the limit per request is {cap}",
                                0)
        quota = limits["daily_input_tokens"]
        if quota and c.day_input + c.reserved_input + reserve_in > quota:
            raise LimitExceeded("daily_input_tokens", quota,
                                f"daily input token quota of {quota} would be exceeded "
                                f"({c.day_input + c.reserved_input} used or reserved, this request up to "
                                f"{reserve_in})", day_end - now)
        max_output = _smallest(asked_output, limits["max_output_tokens"] or None) if output else None
        quota = limits["daily_output_tokens"] if output else 0
        if quota:
            left = (quota - c.day_output - c.reserved_output) // choices
            if left <= 0:
                raise LimitExceeded("daily_output_tokens", quota, f"daily output token quota of {quota} reached"
                                    + (f" for {choices} choices" if choices > 1 else ""), day_end - now)
            max_output = _smallest(max_output, left)
        if limits["tpm"]:
            left = limits["tpm"] - c.tokens.count - reserve_in
            if left < (1 if output else 0):
                raise LimitExceeded("tpm", limits["tpm"], f"tokens-per-minute limit of {limits['tpm']} reached "
                                    f"({c.tokens.count} used or reserved this minute, this request up to "
                                    f"{reserve_in} input tokens)", c.tokens.start + 60 - now)
            if output:
                max_output = _smallest(max_output, left // choices)
        cost_in = reserve_in * rates[0]
        for name, spent, end in (("daily_budget_usd", c.day_cost, day_end),
                                 ("monthly_budget_usd", c.month_cost, self.month_bounds(c.day.start)[1])):
            budget = limits[name]
            if not budget or not (rates[0] or rates[1]):
                continue
            left_usd = budget - spent - c.reserved_cost - cost_in
            fits = math.floor(left_usd / rates[1] / choices) if output and rates[1] else None
            if left_usd <= 0 or (fits is not None and fits < 1):
                period = "daily" if name.startswith("daily") else "monthly"
                raise LimitExceeded(name, budget, f"{period} budget of {usd(budget)} reached ({usd(spent)} spent, "
                                    f"{usd(c.reserved_cost)} reserved by requests in flight, this request needs "
                                    f"{usd(cost_in + rates[1] * choices)} at least)", end - now)
            max_output = _smallest(max_output, fits)
        reserve_out = (max_output or 0) * choices
        reserve_cost = math.ceil(cost_in + reserve_out * rates[1])
        c.minute.count += 1
        c.hour.count += 1
        c.day.count += 1
        c.in_flight += 1
        c.tokens.count += reserve_in + reserve_out
        c.reserved_input += reserve_in
        c.reserved_output += reserve_out
        c.reserved_cost += reserve_cost
        return Reservation(client_id, now, c.day.start, reserve_in, reserve_out, max_output, reserve_cost,
                           c.month_start)

    def settle(self, res: Reservation, input_tokens: int, output_tokens: int, now: float,
               cost_usd: float = 0.0) -> None:
        """Replace the reservation with what was really used and cost. Idempotent."""
        if res.settled:
            return
        res.settled = True
        c = self._counters(res.client_id, now)
        self._unreserve(c, res)
        if c.tokens.start == res.at - res.at % 60:  # still its minute: the real count replaces the reserved
            c.tokens.count += input_tokens + output_tokens - res.input_tokens - res.output_tokens
        spent = round(cost_usd * MICRO)
        if c.day.start == res.day_start:  # a request from yesterday counts in yesterday's (gone) counters
            c.day_input += input_tokens
            c.day_output += output_tokens
            c.day_cost += spent
        if c.month_start == res.month_start:
            c.month_cost += spent

    @staticmethod
    def _unreserve(c: Counters, res: Reservation) -> None:
        """What an in-flight request held, given back (also across midnight: it was held till now)."""
        c.in_flight -= 1
        c.reserved_input -= res.input_tokens
        c.reserved_output -= res.output_tokens
        c.reserved_cost -= res.cost

    def release(self, res: Reservation, now: float) -> None:
        """Undo an admission the gateway refused after all (the request was never sent upstream)."""
        if res.settled:
            return
        res.settled = True
        c = self._counters(res.client_id, now)
        self._unreserve(c, res)
        at = res.at
        for window, start in ((c.minute, at - at % 60), (c.hour, at - at % 3600), (c.day, res.day_start)):
            if window.start == start:
                window.count -= 1
        if c.tokens.start == at - at % 60:
            c.tokens.count -= res.input_tokens + res.output_tokens

    def headroom(self, client_id: int, limits: Mapping[str, int], now: float) -> Headroom:
        """The tightest request window and token quota, as OpenAI's x-ratelimit-* headers report."""
        c = self._counters(client_id, now)
        day_end = self._day_end(c.day.start)
        h = Headroom()
        for name, window, end in self._request_windows(c, day_end):
            limit, used = limits[name], window.count
            if limit and (h.remaining_requests is None or limit - used < h.remaining_requests):
                h.limit_requests, h.remaining_requests, h.reset_requests = limit, max(0, limit - used), end - now
        for name, used, end in (("daily_input_tokens", c.day_input + c.reserved_input, day_end),
                                ("daily_output_tokens", c.day_output + c.reserved_output, day_end),
                                ("tpm", c.tokens.count, c.tokens.start + 60)):
            limit = limits[name]
            if limit and (h.remaining_tokens is None or limit - used < h.remaining_tokens):
                h.limit_tokens, h.remaining_tokens, h.reset_tokens = limit, max(0, limit - used), end - now
        for name, spent, end in (("daily_budget_usd", c.day_cost, day_end),
                                 ("monthly_budget_usd", c.month_cost, self.month_bounds(c.day.start)[1])):
            budget = limits[name]
            left = max(0, budget - spent - c.reserved_cost)
            if budget and (h.remaining_budget is None or left < h.remaining_budget):
                h.remaining_budget, h.reset_budget = left, end - now
        return h


_NAMES = {"rpm": "requests-per-minute", "rph": "requests-per-hour", "rpd": "requests-per-day",
          "daily_requests": "daily request quota"}


def _smallest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``6m0s``, ``1.5s``, ``20ms``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    seconds = math.ceil(seconds * 10) / 10
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    out += f"{int(minutes)}m" if minutes or hours else ""
    return out + f"{secs:g}s"
