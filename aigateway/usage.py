"""Usage accounting: the request-log record every request ends as, the daily counters it adds
to, and the reports read from them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from aigateway.limits import MICRO, Limiter, configured_defaults, effective_limits, shown


def day_of(ts: float) -> str:
    """The UTC day a timestamp counts toward."""
    return _day_name(int(ts // 86400))


@lru_cache(maxsize=4)
def _day_name(day: int) -> str:
    # the writer names the day of every record it stores: format each day once
    return datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")


@dataclass(slots=True)
class UsageRecord:
    """One finished request, as it goes to the request log and the daily counters."""

    client_id: int | None
    client_name: str
    inbound: str
    ts: float = field(default_factory=time.time)
    provider: str = ""
    model: str = ""
    status: int = 200
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    stream: bool = False
    admitted: bool = False  # passed authentication, validation and limits: counts toward limits
    estimated: bool = False
    error: str = ""
    attempts: int = 0  # upstream calls made (more than one: fallbacks or retries)
    endpoint: str = "chat"  # what was asked: "chat" or "embeddings"
    cost_usd: float = 0.0  # from the exact usage at the model's price (pricing.py)
    priced: bool = True  # False: the model has no price, so it cost 0 (the admin UI lists such models)
    flight_id: int | None = None  # its mark in the in-flight table (flights.py), deleted as it is stored

    @classmethod
    def write(cls, conn: sqlite3.Connection, records: list[UsageRecord]) -> None:
        """Store a batch: one log row each, daily counters summed per (day, client, model)."""
        conn.executemany(
            "INSERT INTO request_log (ts, client_id, client_name, provider, model, inbound, status, latency_ms,"
            " ttft_ms, input_tokens, output_tokens, cached_tokens, stream, admitted, estimated, error, attempts,"
            " endpoint, cost_usd, priced) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(r.ts, r.client_id, r.client_name, r.provider, r.model, r.inbound, r.status, r.latency_ms,
              r.ttft_ms, r.input_tokens, r.output_tokens, r.cached_tokens, int(r.stream), int(r.admitted),
              int(r.estimated), r.error, r.attempts, r.endpoint, r.cost_usd, int(r.priced)) for r in records],
        )
        daily: dict[tuple[str, int, str], list[float]] = {}
        last_used: dict[int, float] = {}
        for r in records:
            if r.client_id is None:
                continue
            row = daily.setdefault((day_of(r.ts), r.client_id, r.model), [0, 0, 0, 0, 0, 0.0])
            row[0] += r.admitted
            row[1] += r.admitted and r.status >= 400
            row[2] += not r.admitted
            row[3] += r.input_tokens
            row[4] += r.output_tokens
            row[5] += r.cost_usd
            last_used[r.client_id] = max(r.ts, last_used.get(r.client_id, 0))
        conn.executemany(
            "INSERT INTO daily_usage (day, client_id, model, requests, errors, rejected, input_tokens, output_tokens,"
            " cost_usd) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (day, client_id, model) DO UPDATE SET"
            " requests = requests + excluded.requests, errors = errors + excluded.errors,"
            " rejected = rejected + excluded.rejected,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd",
            [(*key, *vals) for key, vals in daily.items()],
        )
        conn.executemany("DELETE FROM in_flight WHERE id = ?", [(r.flight_id,) for r in records if r.flight_id])
        conn.executemany("UPDATE clients SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
                         [(ts, cid) for cid, ts in last_used.items()])


def client_usage(conn: sqlite3.Connection, client_id: int, days: int = 1) -> list[dict]:
    """Daily totals for one client over the last ``days`` UTC days, newest first."""
    since = day_of(time.time() - 86400 * (days - 1))
    rows = conn.execute(
        "SELECT day, SUM(requests) AS requests, SUM(errors) AS errors, SUM(rejected) AS rejected,"
        " SUM(input_tokens) AS input_tokens,"
        " SUM(output_tokens) AS output_tokens, ROUND(SUM(cost_usd), 6) AS cost_usd"
        " FROM daily_usage WHERE client_id = ? AND day >= ?"
        " GROUP BY day ORDER BY day DESC",
        (client_id, since),
    ).fetchall()
    return [dict(r) for r in rows]


WindowCounts = tuple[int, int, int, int, int, int, float, float]
NO_COUNTS: WindowCounts = (0, 0, 0, 0, 0, 0, 0.0, 0.0)


def window_counts(conn: sqlite3.Connection, minute: float, hour: float, day: float,
                  month: float | None = None) -> dict[int, WindowCounts]:
    """Per client: admitted requests since each window start, tokens since the day start, tokens
    this minute, and what it spent (USD) today and this month, counting only what came after the
    client's last usage reset. Read once at start-up and after a reset, so the limiter never hands
    out a fresh allowance."""
    month = day if month is None else month
    rows = conn.execute(
        "SELECT r.client_id, SUM(r.ts >= :m), SUM(r.ts >= :h), SUM(r.ts >= :d),"
        " SUM(CASE WHEN r.ts >= :d THEN r.input_tokens END), SUM(CASE WHEN r.ts >= :d THEN r.output_tokens END),"
        " SUM(CASE WHEN r.ts >= :m THEN r.input_tokens + r.output_tokens END),"
        " SUM(CASE WHEN r.ts >= :d THEN r.cost_usd END), SUM(r.cost_usd)"
        " FROM request_log r JOIN clients c ON c.id = r.client_id"
        " WHERE r.ts >= :month AND r.admitted = 1 AND r.ts > c.usage_reset_at GROUP BY r.client_id",
        {"m": minute, "h": hour, "d": day, "month": min(month, day)},
    ).fetchall()
    return {row[0]: (*(int(v or 0) for v in row[1:7]), float(row[7] or 0), float(row[8] or 0))  # type: ignore
            for row in rows}


def report(conn: sqlite3.Connection, client: Mapping[str, Any] | sqlite3.Row, config: Any, days: int = 1) -> dict:
    """A client's counters, limits and remaining quota as stored (what ``client usage`` prints)."""
    limiter = Limiter(config.timezone)
    now = time.time()
    minute, hour, day = limiter.window_starts(now)
    counts = window_counts(conn, minute, hour, day, limiter.month_bounds(day)[0]).get(client["id"], NO_COUNTS)
    limits = effective_limits(dict(client), configured_defaults(config.get))
    used = {"rpm": counts[0], "rph": counts[1], "rpd": counts[2], "daily_requests": counts[2],
            "daily_input_tokens": counts[3], "daily_output_tokens": counts[4], "tpm": counts[5],
            "daily_budget_usd": round(counts[6] * MICRO), "monthly_budget_usd": round(counts[7] * MICRO)}
    out = {name: {"limit": shown(name, limits[name]), "used": shown(name, value),
                  "remaining": shown(name, max(0, limits[name] - value)) if limits[name] else None}
           for name, value in used.items()}
    for name in ("max_input_tokens", "max_output_tokens", "max_concurrent"):
        out[name] = {"limit": limits[name], "used": None, "remaining": None}
    return {"client": client["name"], "today": datetime.fromtimestamp(day, config.timezone).strftime("%Y-%m-%d"),
            "limits": out, "days": client_usage(conn, client["id"], days)}


def today_by_client(conn: sqlite3.Connection) -> dict[int, dict]:
    """Each client's requests and tokens so far today (UTC day), for the admin clients table."""
    rows = conn.execute(
        "SELECT client_id, SUM(requests) AS requests, SUM(rejected) AS rejected, SUM(input_tokens) AS input_tokens,"
        " SUM(output_tokens) AS output_tokens FROM daily_usage WHERE day = ? GROUP BY client_id",
        (day_of(time.time()),),
    ).fetchall()
    return {r["client_id"]: {k: r[k] for k in ("requests", "rejected", "input_tokens", "output_tokens")}
            for r in rows}


_TOTALS = ("SUM(d.requests) AS requests, SUM(d.errors) AS errors, SUM(d.rejected) AS rejected,"
           " SUM(d.input_tokens) AS input_tokens, SUM(d.output_tokens) AS output_tokens,"
           " ROUND(SUM(d.cost_usd), 6) AS cost_usd")


def unpriced_models(conn: sqlite3.Connection, since: float) -> list[dict]:
    """Models used since ``since`` that had no price (charged 0), with how many requests each."""
    rows = conn.execute("SELECT provider, model, COUNT(*) AS requests FROM request_log WHERE priced = 0"
                        " AND ts >= ? AND model != '' GROUP BY provider, model ORDER BY requests DESC", (since,))
    return [dict(r) for r in rows]


def daily_report(conn: sqlite3.Connection, first_day: str, last_day: str) -> dict[str, list[dict]]:
    """Usage between two UTC days (inclusive, ``YYYY-MM-DD``): totals per day, per client and per
    model, plus the raw (day, client, model) rows the CSV export writes. Reads ``daily_usage`` only,
    whose primary key starts with the day, so a range costs what it returns."""
    where = " FROM daily_usage d LEFT JOIN clients c ON c.id = d.client_id WHERE d.day BETWEEN ? AND ?"
    args = (first_day, last_day)
    name = "COALESCE(c.name, '#' || d.client_id || ' (deleted)') AS client_name"

    def query(sql: str) -> list[dict]:
        return [dict(r) for r in conn.execute(sql, args)]

    return {
        "days": query(f"SELECT d.day, {_TOTALS}{where} GROUP BY d.day ORDER BY d.day"),
        "clients": query(f"SELECT d.client_id, {name}, {_TOTALS}{where} GROUP BY d.client_id"
                         " ORDER BY requests DESC, d.client_id"),
        "models": query(f"SELECT d.model, {_TOTALS}{where} GROUP BY d.model ORDER BY requests DESC, d.model"),
        "rows": query(f"SELECT d.day, d.client_id, {name}, d.model, d.requests, d.errors, d.rejected,"
                      f" d.input_tokens, d.output_tokens, ROUND(d.cost_usd, 6) AS cost_usd{where}"
                      " ORDER BY d.day, client_name, d.model"),
    }


LOG_COLUMNS = ("id", "ts", "client_id", "client_name", "provider", "model", "inbound", "status", "latency_ms",
               "ttft_ms", "input_tokens", "output_tokens", "cached_tokens", "stream", "admitted", "estimated",
               "error", "attempts", "endpoint", "cost_usd", "priced")


def log_page(conn: sqlite3.Connection, *, client_id: int | None = None, model: str | None = None,
             status: tuple[int, int] | None = None, since: float | None = None, until: float | None = None,
             before_id: int | None = None, limit: int = 100) -> dict:
    """One page of the request log, newest first, with filters. Keyset pagination on ``id``: the
    next page starts below the last id shown, so page 1,000 costs what page 1 does (no OFFSET).
    ``status`` is an inclusive range; ``since``/``until`` are epoch seconds (until exclusive)."""
    filters = (("id < ?", (before_id,)), ("client_id = ?", (client_id,)), ("model = ?", (model or None,)),
               ("status BETWEEN ? AND ?", status or (None,)), ("ts >= ?", (since,)), ("ts < ?", (until,)))
    used = [(clause, values) for clause, values in filters if values[0] is not None]
    where = [clause for clause, _ in used]
    args = [value for _, values in used for value in values]
    sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM request_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = [dict(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        for flag in ("stream", "admitted", "estimated"):
            r[flag] = bool(r[flag])
    return {"requests": rows, "next_before_id": rows[-1]["id"] if more else None}
