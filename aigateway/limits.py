"""Rate limits and token quotas: pure, in memory, no I/O, no Tornado.

Rate limits count requests in fixed clock windows (the current UTC minute, hour and day): exact,
cheap, and the reset time is simply the window's end. The known trade-off of fixed windows is
that a client may send a full window's worth just before a boundary and again just after it.

Quotas use reservations: a request reserves its worst case (input estimate, effective max output
tokens) before going upstream, and settles to its real usage when it ends, however it ends.
Concurrent requests therefore can never overshoot a daily quota. Everything here runs on the
event loop between two awaits, so check-and-reserve is atomic without locks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any


@dataclass(frozen=True, slots=True)
class LimitSetting:
    field: str  # column on clients and key in the admin API
    config: str  # dotted default in config.yaml
    flag: str  # CLI flag
    help: str


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
)
LIMIT_FIELDS = tuple(s.field for s in LIMITS)


def configured_defaults(get: Callable[[str], Any]) -> dict[str, int]:
    """The defaults: section of config.yaml as limit fields (``get`` is Config.get)."""
    return {s.field: int(get(s.config)) for s in LIMITS}


def effective_limits(client: Mapping[str, Any], defaults: Mapping[str, int]) -> dict[str, int]:
    """The client's own value where it has one, else the configured default."""
    return {f: int(client[f]) if client[f] is not None else int(defaults[f]) for f in LIMIT_FIELDS}


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
    day_input: int = 0
    day_output: int = 0
    reserved_input: int = 0
    reserved_output: int = 0


@dataclass(slots=True)
class Reservation:
    client_id: int
    at: float  # when it was admitted
    day_start: float
    input_tokens: int
    output_tokens: int
    max_output: int | None  # the cap to send upstream (None: no cap applies)
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


class Limiter:
    """All clients' counters. ``tz`` sets where days begin (UTC unless the config names a zone)."""

    def __init__(self, tz: tzinfo = timezone.utc) -> None:
        self._tz = tz
        self._day = (0.0, 0.0)  # start and end of the day last computed: its datetime work happens once a day
        self.counters: dict[int, Counters] = {}

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @tz.setter
    def tz(self, tz: tzinfo) -> None:
        self._tz = tz
        self._day = (0.0, 0.0)

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

    def window_starts(self, now: float) -> tuple[float, float, float]:
        """Start of the current minute, hour and day."""
        return now - now % 60, now - now % 3600, self._day_start(now)

    def _counters(self, client_id: int, now: float) -> Counters:
        c = self.counters.get(client_id)
        if c is None:
            c = self.counters[client_id] = Counters(Window(), Window(), Window())
        c.minute.roll(now - now % 60)
        c.hour.roll(now - now % 3600)
        day = self._day_start(now)
        if c.day.start != day:
            c.day.roll(day)
            c.day_input = c.day_output = 0
        return c

    @staticmethod
    def _request_windows(c: Counters, day_end: float) -> tuple[tuple[str, Window, float], ...]:
        return (("rpm", c.minute, c.minute.start + 60), ("rph", c.hour, c.hour.start + 3600),
                ("rpd", c.day, day_end), ("daily_requests", c.day, day_end))

    def restore(self, client_id: int, now: float, minute: int, hour: int, day: int, day_input: int,
                day_output: int) -> None:
        """Counters as stored in sqlite, at start-up or after a usage reset."""
        c = self.counters[client_id] = Counters(Window(), Window(), Window())
        self._counters(client_id, now)
        c.minute.count, c.hour.count, c.day.count = minute, hour, day
        c.day_input, c.day_output = day_input, day_output

    def forget(self, client_id: int) -> None:
        self.counters.pop(client_id, None)

    # -- admission
    def admit(self, client_id: int, limits: Mapping[str, int], input_estimate: int, asked_output: int | None,
              now: float, choices: int = 1, input_bound: int | None = None, output: bool = True) -> Reservation:
        """Check every limit and, only if all pass, count the request and reserve its tokens. A
        request for several ``choices`` (OpenAI ``n``, Gemini ``candidateCount``) may produce its
        output cap once per choice: the output reservation covers them all, and under an output
        quota the per-choice cap shrinks so that all of them fit. The per-request input cap is
        checked against ``input_estimate``; the daily input quota reserves ``input_bound`` (an upper
        bound of the real count, tokens.py), so concurrent requests can never overshoot it. A request
        that makes no output (``output`` False: embeddings) is not held to the output limits."""
        reserve_in = input_estimate if input_bound is None else input_bound
        c = self._counters(client_id, now)
        day_end = self._day_end(c.day.start)
        for field, window, end in self._request_windows(c, day_end):
            limit = limits[field]
            if limit and window.count >= limit:
                raise LimitExceeded(field, limit, f"{_NAMES[field]} limit of {limit} reached", end - now)
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
        c.minute.count += 1
        c.hour.count += 1
        c.day.count += 1
        reserve_out = (max_output or 0) * choices
        c.reserved_input += reserve_in
        c.reserved_output += reserve_out
        return Reservation(client_id, now, c.day.start, reserve_in, reserve_out, max_output)

    def settle(self, res: Reservation, input_tokens: int, output_tokens: int, now: float) -> None:
        """Replace the reservation with what was really used. Idempotent."""
        if res.settled:
            return
        res.settled = True
        c = self._counters(res.client_id, now)
        if c.day.start == res.day_start:  # a reservation from yesterday is gone with yesterday's counters
            c.reserved_input -= res.input_tokens
            c.reserved_output -= res.output_tokens
        c.day_input += input_tokens
        c.day_output += output_tokens

    def release(self, res: Reservation, now: float) -> None:
        """Undo an admission the gateway refused after all (the request was never sent upstream)."""
        if res.settled:
            return
        res.settled = True
        c = self._counters(res.client_id, now)
        at = res.at
        for window, start in ((c.minute, at - at % 60), (c.hour, at - at % 3600), (c.day, res.day_start)):
            if window.start == start:
                window.count -= 1
        if c.day.start == res.day_start:
            c.reserved_input -= res.input_tokens
            c.reserved_output -= res.output_tokens

    def headroom(self, client_id: int, limits: Mapping[str, int], now: float) -> Headroom:
        """The tightest request window and token quota, as OpenAI's x-ratelimit-* headers report."""
        c = self._counters(client_id, now)
        day_end = self._day_end(c.day.start)
        h = Headroom()
        for field, window, end in self._request_windows(c, day_end):
            limit, used = limits[field], window.count
            if limit and (h.remaining_requests is None or limit - used < h.remaining_requests):
                h.limit_requests, h.remaining_requests, h.reset_requests = limit, max(0, limit - used), end - now
        for field, used in (("daily_input_tokens", c.day_input + c.reserved_input),
                            ("daily_output_tokens", c.day_output + c.reserved_output)):
            limit = limits[field]
            if limit and (h.remaining_tokens is None or limit - used < h.remaining_tokens):
                h.limit_tokens, h.remaining_tokens, h.reset_tokens = limit, max(0, limit - used), day_end - now
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
