"""Usage accounting: the request-log record every request ends as, the daily counters it adds
to, and the token estimate used when an upstream reports no usage."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aigateway.limits import Limiter, configured_defaults, effective_limits
from aigateway.model import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 85


def tokens_for_chars(chars: int) -> int:
    """A fast, provider-independent estimate: one token per four characters, rounded up.
    Real tokenizers average 3.5-4.5 characters per token on English text."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


def estimate_input(req: ChatRequest) -> int:
    """Input tokens of a request by the same rule, plus a small overhead per message and image."""
    chars = sum(len(s) for s in req.system)
    images = 0
    for msg in req.messages:
        for p in msg.parts:
            if isinstance(p, TextPart):
                chars += len(p.text)
            elif isinstance(p, ToolResultPart):
                chars += len(p.content)
            elif isinstance(p, ToolCallPart):
                chars += len(p.name) + len(p.arguments)
            elif isinstance(p, ImagePart):
                images += 1
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.parameters or ""))
    return (tokens_for_chars(chars) + TOKENS_PER_MESSAGE * (len(req.messages) + len(req.system))
            + TOKENS_PER_IMAGE * images)


def day_of(ts: float) -> str:
    """The UTC day a timestamp counts toward."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


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

    @classmethod
    def write(cls, conn: sqlite3.Connection, records: list[UsageRecord]) -> None:
        """Store a batch: one log row each, daily counters summed per (day, client, model)."""
        conn.executemany(
            "INSERT INTO request_log (ts, client_id, client_name, provider, model, inbound, status, latency_ms,"
            " ttft_ms, input_tokens, output_tokens, cached_tokens, stream, admitted, estimated, error)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(r.ts, r.client_id, r.client_name, r.provider, r.model, r.inbound, r.status, r.latency_ms,
              r.ttft_ms, r.input_tokens, r.output_tokens, r.cached_tokens, int(r.stream), int(r.admitted),
              int(r.estimated), r.error) for r in records],
        )
        daily: dict[tuple[str, int, str], list[int]] = {}
        last_used: dict[int, float] = {}
        for r in records:
            if r.client_id is None:
                continue
            row = daily.setdefault((day_of(r.ts), r.client_id, r.model), [0, 0, 0, 0, 0])
            row[0] += r.admitted
            row[1] += r.admitted and r.status >= 400
            row[2] += not r.admitted
            row[3] += r.input_tokens
            row[4] += r.output_tokens
            last_used[r.client_id] = max(r.ts, last_used.get(r.client_id, 0))
        conn.executemany(
            "INSERT INTO daily_usage (day, client_id, model, requests, errors, rejected, input_tokens, output_tokens)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (day, client_id, model) DO UPDATE SET"
            " requests = requests + excluded.requests, errors = errors + excluded.errors,"
            " rejected = rejected + excluded.rejected,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens",
            [(*key, *vals) for key, vals in daily.items()],
        )
        conn.executemany("UPDATE clients SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
                         [(ts, cid) for cid, ts in last_used.items()])


def client_usage(conn: sqlite3.Connection, client_id: int, days: int = 1) -> list[dict]:
    """Daily totals for one client over the last ``days`` UTC days, newest first."""
    since = day_of(time.time() - 86400 * (days - 1))
    rows = conn.execute(
        "SELECT day, SUM(requests) AS requests, SUM(errors) AS errors, SUM(rejected) AS rejected,"
        " SUM(input_tokens) AS input_tokens,"
        " SUM(output_tokens) AS output_tokens FROM daily_usage WHERE client_id = ? AND day >= ?"
        " GROUP BY day ORDER BY day DESC",
        (client_id, since),
    ).fetchall()
    return [dict(r) for r in rows]


def window_counts(conn: sqlite3.Connection, minute: float, hour: float, day: float) -> dict[int, tuple]:
    """Per client: admitted requests since each window start, and tokens since the day start,
    counting only what came after the client's last usage reset. Read once at start-up and after
    a reset, so the limiter never hands out a fresh allowance."""
    rows = conn.execute(
        "SELECT r.client_id, SUM(r.ts >= ?), SUM(r.ts >= ?), COUNT(*), SUM(r.input_tokens), SUM(r.output_tokens)"
        " FROM request_log r JOIN clients c ON c.id = r.client_id"
        " WHERE r.ts >= ? AND r.admitted = 1 AND r.ts > c.usage_reset_at GROUP BY r.client_id",
        (minute, hour, day),
    ).fetchall()
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in rows}


def report(conn: sqlite3.Connection, client: Mapping[str, Any], config: Any, days: int = 1) -> dict:
    """A client's counters, limits and remaining quota as stored (what ``client usage`` prints)."""
    limiter = Limiter(config.timezone)
    now = time.time()
    minute, hour, day = limiter.window_starts(now)
    counts = window_counts(conn, minute, hour, day).get(client["id"], (0, 0, 0, 0, 0))
    limits = effective_limits(client, configured_defaults(config.get))
    used = {"rpm": counts[0], "rph": counts[1], "rpd": counts[2], "daily_requests": counts[2],
            "daily_input_tokens": counts[3], "daily_output_tokens": counts[4]}
    out = {name: {"limit": limits[name], "used": value,
                  "remaining": max(0, limits[name] - value) if limits[name] else None}
           for name, value in used.items()}
    for name in ("max_input_tokens", "max_output_tokens"):
        out[name] = {"limit": limits[name], "used": None, "remaining": None}
    return {"client": client["name"], "today": datetime.fromtimestamp(day, config.timezone).strftime("%Y-%m-%d"),
            "limits": out, "days": client_usage(conn, client["id"], days)}
