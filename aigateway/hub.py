"""The live dashboard's hub: the state open dashboards see (today's totals, the last requests,
a per-minute per-model series, live latency figures, requests in flight) and the pushes that
keep them current (mitmweb's ``WebSocketEventBroadcaster``, with a queue and a send task per
socket so a slow browser blocks nobody).

The relay calls two hooks, ``request_started`` and ``request_finished``. While no dashboard is
open they return at once and the hub holds no state at all: nothing is counted, formatted or
sent. The first dashboard to connect warms the state from SQLite (one consistent read); from
then on the hooks only append to a list, and a ``PeriodicCallback`` of a few Hz, running only
while a socket is open, folds what happened into the state and pushes one coalesced frame to
every socket. A frame is a JSON list of messages shaped ``{"type": "requests/add", "payload": ...}``:

- ``snapshot``: everything, sent on connect and to a socket whose queue overflowed;
- ``requests/add``: new request-log rows (at most the newest 50 per frame: counters and series
  still count every request); ``active/add`` / ``active/remove``: requests in flight;
- ``stats/update``: today's totals and the last minute's rate, errors and latency percentiles;
- ``series/update``: changed (minute, model) buckets of the one-hour usage series.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketClosedError

from aigateway.usage import UsageRecord

if TYPE_CHECKING:
    from aigateway.app import Gateway
    from aigateway.relay import Exchange

log = logging.getLogger("aigateway.hub")

TICK_SECONDS = 0.25  # at most four pushes a second per dashboard, whatever the load
QUEUE_MAX = 32  # frames a socket may fall behind (8 s of ticks) before it is resynced
RECENT_MAX = 50  # request-log rows kept and sent in a snapshot
WINDOW_SECONDS = 60.0  # rate, error rate and latency percentiles cover the last minute
SAMPLES_MAX = 2048  # newest successful requests the percentiles are taken over
SERIES_MINUTES = 60  # the usage chart's span
_RESYNC = b"resync"  # queued in place of a dropped backlog: the sender sends a fresh snapshot


class Socket(Protocol):
    """What the hub needs of a dashboard connection (tornado's WebSocketHandler provides it)."""

    def write_message(self, message: bytes) -> Awaitable[None]: ...
    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def _day_bounds(now: float) -> tuple[str, float, float]:
    """The UTC day ``now`` falls in (the daily_usage table's day), with its start and end."""
    start = (now // 86400) * 86400
    return datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d"), start, start + 86400


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of a sorted list."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def _row(rid: int, rec: UsageRecord) -> dict:
    return {"id": rid, "ts": rec.ts, "client": rec.client_name, "provider": rec.provider, "model": rec.model,
            "inbound": rec.inbound, "endpoint": rec.endpoint, "status": rec.status, "stream": rec.stream,
            "input_tokens": rec.input_tokens, "output_tokens": rec.output_tokens,
            "latency_ms": round(rec.latency_ms, 1),
            "ttft_ms": None if rec.ttft_ms is None else round(rec.ttft_ms, 1),
            "estimated": rec.estimated, "error": rec.error[:200]}


def _db_row(r: sqlite3.Row) -> dict:
    return {"id": -r["id"], "ts": r["ts"], "client": r["client_name"], "provider": r["provider"],
            "model": r["model"], "inbound": r["inbound"], "endpoint": r["endpoint"], "status": r["status"],
            "stream": bool(r["stream"]),
            "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
            "latency_ms": round(r["latency_ms"], 1),
            "ttft_ms": None if r["ttft_ms"] is None else round(r["ttft_ms"], 1),
            "estimated": bool(r["estimated"]), "error": r["error"][:200]}


def _load(conn: sqlite3.Connection, now: float, keys_max: int) -> dict:
    """Everything a first snapshot needs, in one read transaction so the parts agree. ``keys``
    are the newest rows' (ts, latency_ms): records the hub already holds and that were committed
    by then, so the hub counts them once."""
    day, _, _ = _day_bounds(now)
    first_minute = int(now // 60) - SERIES_MINUTES + 1
    conn.execute("BEGIN")
    try:
        totals = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), COALESCE(SUM(rejected), 0),"
            " COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0)"
            " FROM daily_usage WHERE day = ?",
            (day,)).fetchone()
        recent = conn.execute("SELECT * FROM request_log ORDER BY id DESC LIMIT ?", (RECENT_MAX,)).fetchall()
        series = conn.execute(
            "SELECT CAST(ts / 60 AS INTEGER) AS minute, model, COUNT(*), SUM(input_tokens), SUM(output_tokens)"
            " FROM request_log WHERE ts >= ? AND model != '' GROUP BY minute, model",
            (first_minute * 60,)).fetchall()
        window = conn.execute(
            "SELECT ts + latency_ms / 1000.0 AS ended, latency_ms, ttft_ms, status FROM request_log"
            " WHERE ts >= ? AND ts + latency_ms / 1000.0 >= ? ORDER BY ended",
            (now - 3600, now - WINDOW_SECONDS)).fetchall()
        keys = conn.execute("SELECT ts, latency_ms FROM request_log ORDER BY id DESC LIMIT ?",
                            (keys_max,)).fetchall()
    finally:
        conn.execute("COMMIT")
    return {"day": day, "totals": list(totals), "recent": [_db_row(r) for r in reversed(recent)],
            "series": [tuple(r) for r in series], "window": [tuple(r) for r in window],
            "keys": {(r[0], r[1]) for r in keys}}


class _Channel:
    """One dashboard: a bounded queue of frames and the task that sends them in order."""

    def __init__(self, hub: Hub, socket: Socket) -> None:
        self.hub = hub
        self.socket = socket
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)
        self.queue.put_nowait(_RESYNC)  # the first frame is a snapshot
        self.task = asyncio.ensure_future(self._send())

    def offer(self, frame: bytes) -> None:
        """Queue a frame; a socket that fell QUEUE_MAX frames behind loses its backlog and gets
        a fresh snapshot instead, so memory stays bounded and the browser catches up in one go."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)
            self.hub.resyncs += 1

    async def _send(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if frame is _RESYNC:
                    await self.hub.ready()
                    while not self.queue.empty():  # older than the snapshot, which shows it all
                        self.queue.get_nowait()
                    frame = self.hub.snapshot_frame()
                await self.socket.write_message(frame)
                self.hub.frames_sent += 1
        except WebSocketClosedError:
            self.hub.remove(self.socket)
        except asyncio.CancelledError:
            pass
        except Exception:  # one broken socket must not take the hub down
            log.exception("dashboard socket failed")
            self.hub.remove(self.socket)
            self.socket.close(1011, "dashboard update failed")


class Hub:
    """Owned by the Gateway (``gateway.hub``); see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.sockets: dict[Socket, _Channel] = {}
        self._ticker: PeriodicCallback | None = None
        self._warm: asyncio.Task | None = None
        self._started: list[Exchange] = []
        self._finished: list[UsageRecord] = []
        self.frames_sent = 0  # for tests and the benchmark
        self.resyncs = 0
        self._reset()

    # -- the relay's hooks: nothing at all while no dashboard is open
    def request_started(self, exchange: Exchange) -> None:
        """A chat request arrived (called by the relay)."""
        if not self.sockets:
            return
        self._started.append(exchange)

    def request_finished(self, rec: UsageRecord) -> None:
        """A chat request ended and was accounted (called by the relay)."""
        if not self.sockets:
            return
        self._finished.append(rec)

    # -- sockets
    def add(self, socket: Socket) -> None:
        """Register an open dashboard; it gets a snapshot, then coalesced deltas."""
        if not self.sockets:
            self._begin()
        self.sockets[socket] = _Channel(self, socket)

    def remove(self, socket: Socket) -> None:
        """Forget a dashboard (closed, or failed to send). Idempotent."""
        channel = self.sockets.pop(socket, None)
        if channel is None:
            return
        if channel.task is not asyncio.current_task():
            channel.task.cancel()
        if not self.sockets:
            self._end()

    def close(self) -> None:
        """Close every dashboard (they reconnect to the next server) and stop. Idempotent."""
        for socket in list(self.sockets):
            self.remove(socket)
            try:
                socket.close(1001, "server shutting down")
            except Exception:  # already gone
                pass

    async def ready(self) -> None:
        """Wait until the state is warm (the first snapshot needs it)."""
        if self._warm is not None:
            await asyncio.shield(self._warm)

    # -- life cycle: state and ticker exist only while a dashboard is open
    def _begin(self) -> None:
        self._reset()
        self._warm = asyncio.ensure_future(self._load())
        self._ticker = PeriodicCallback(self._tick, TICK_SECONDS * 1000)
        self._ticker.start()

    def _end(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self._warm is not None and not self._warm.done():
            self._warm.cancel()
        self._warm = None
        self._reset()

    def _reset(self) -> None:
        self._started.clear()
        self._finished.clear()
        self.day, self._day_start, self._day_end = _day_bounds(time.time())
        self.totals: list[float] = [0, 0, 0, 0, 0, 0.0]  # requests, errors, rejected, tokens in and out, USD
        self.recent: deque[dict] = deque(maxlen=RECENT_MAX)
        self.series: dict[int, dict[str, list[int]]] = {}  # minute -> model -> [requests, in, out]
        self._window: dict[int, list[int]] = {}  # second -> [requests, errors] ended in the last minute
        self._latency: deque[tuple[float, float, float | None]] = deque()  # (ended, latency, ttft)
        self._live: dict[int, tuple[int, Exchange]] = {}  # id(record) -> (live id, exchange)
        self._seq = 0
        self._stats: dict = {}
        self._warming = True

    async def _load(self) -> None:
        """Warm the state from SQLite. Every record finished before the first socket arrived is
        committed first (two writer round trips: the second is a later batch than the first, so
        its records are written); records finished since are held in ``_finished`` and counted
        unless the read already saw them."""
        db = self.gw.db
        await db.write(lambda conn: None, transaction=False)
        await db.write(lambda conn: None, transaction=False)
        held = self._finished
        now = time.time()
        data = await db.read(lambda conn: _load(conn, now, len(held) + 256))
        self.day, self._day_start, self._day_end = _day_bounds(now)
        if data["day"] == self.day:
            self.totals = data["totals"]
        self.recent.extend(data["recent"])
        for minute, model, requests, tokens_in, tokens_out in data["series"]:
            self.series.setdefault(minute, {})[model] = [requests, tokens_in or 0, tokens_out or 0]
        for ended, latency, ttft, status in data["window"]:
            self._count_ended(ended, status >= 400)
            if status < 400:
                self._latency.append((ended, latency, ttft))
        while len(self._latency) > SAMPLES_MAX:
            self._latency.popleft()
        for ex in self.gw.in_flight:  # in flight before the first dashboard came
            self._seq += 1
            self._live[id(ex.record)] = (self._seq, ex)
        keys = data["keys"]
        self._finished = [r for r in held if (r.ts, r.latency_ms) not in keys]
        self._warming = False
        self._tick(initial=True)

    # -- folding and pushing
    def _tick(self, initial: bool = False) -> None:
        """Fold what happened since the last tick into the state and push one frame, if anything
        changed, to every socket. The frame is encoded once, whatever the number of sockets."""
        if self._warming or not self.sockets:
            return
        now = time.time()
        if now >= self._day_end:
            self.day, self._day_start, self._day_end = _day_bounds(now)
            self.totals = [0, 0, 0, 0, 0, 0.0]
        started, self._started = self._started, []
        finished, self._finished = self._finished, []
        done = {id(r) for r in finished}
        added = []
        for ex in started:
            key = id(ex.record)
            if key not in done and key not in self._live:  # seen within one tick: only its log row shows
                self._seq += 1
                self._live[key] = (self._seq, ex)
                added.append(self._active_entry(self._seq, ex))
        removed: list[int] = []
        rows: list[dict] = []
        buckets: set[tuple[int, str]] = set()
        shown = len(finished) - RECENT_MAX  # under heavy load a frame carries only the newest rows
        for i, rec in enumerate(finished):
            live = self._live.pop(id(rec), None)
            if live is not None and not initial:
                removed.append(live[0])
            self._count(rec, buckets)
            if i >= shown:
                self._seq += 1
                row = _row(self._seq, rec)
                self.recent.append(row)
                rows.append(row)
        for key, (live_id, ex) in list(self._live.items()):
            if ex not in self.gw.in_flight:  # ended without its hook (it failed before): do not show it forever
                del self._live[key]
                removed.append(live_id)
        messages: list[dict[str, Any]] = []
        if initial:  # the snapshot each first frame carries already shows all of it
            self._expire(now)
            self._stats = self._compute_stats(now)
            return
        if rows:
            messages.append({"type": "requests/add", "payload": rows})
        if removed:
            messages.append({"type": "active/remove", "payload": removed})
        if added:
            messages.append({"type": "active/add", "payload": added})
        if buckets:
            messages.append({"type": "series/update", "payload": [
                {"minute": m, "model": model, "requests": v[0], "input_tokens": v[1], "output_tokens": v[2]}
                for m, model in sorted(buckets) if (v := self.series.get(m, {}).get(model))]})
        self._expire(now)
        stats = self._compute_stats(now)
        if stats != self._stats:
            self._stats = stats
            messages.append({"type": "stats/update", "payload": stats})
        if messages:
            frame = orjson.dumps(messages)
            for channel in list(self.sockets.values()):
                channel.offer(frame)

    def _count(self, rec: UsageRecord, buckets: set) -> None:
        ended = rec.ts + rec.latency_ms / 1000
        failed = rec.status >= 400
        if rec.client_id is not None and self._day_start <= rec.ts < self._day_end:  # as daily_usage counts
            t = self.totals
            t[0] += rec.admitted
            t[1] += rec.admitted and failed
            t[2] += not rec.admitted
            t[3] += rec.input_tokens
            t[4] += rec.output_tokens
            t[5] += rec.cost_usd
        self._count_ended(ended, failed)
        if not failed:
            self._latency.append((ended, rec.latency_ms, rec.ttft_ms))
            if len(self._latency) > SAMPLES_MAX:
                self._latency.popleft()
        if rec.model:
            minute = int(rec.ts // 60)
            cell = self.series.setdefault(minute, {}).setdefault(rec.model, [0, 0, 0])
            cell[0] += 1
            cell[1] += rec.input_tokens
            cell[2] += rec.output_tokens
            buckets.add((minute, rec.model))

    def _count_ended(self, ended: float, failed: bool) -> None:
        cell = self._window.setdefault(int(ended), [0, 0])
        cell[0] += 1
        cell[1] += failed

    def _expire(self, now: float) -> None:
        """Drop what fell out of the last minute and the last hour."""
        cutoff = now - WINDOW_SECONDS
        for second in [s for s in self._window if s < int(cutoff)]:
            del self._window[second]
        while self._latency and self._latency[0][0] < cutoff:
            self._latency.popleft()
        first = int(now // 60) - SERIES_MINUTES + 1
        for minute in [m for m in self.series if m < first]:
            del self.series[minute]

    def _compute_stats(self, now: float) -> dict:
        latencies = sorted(x[1] for x in self._latency)
        ttfts = sorted(x[2] for x in self._latency if x[2] is not None)
        count = sum(c[0] for c in self._window.values())
        failed = sum(c[1] for c in self._window.values())
        requests, errors, rejected, tokens_in, tokens_out, spend = self.totals
        return {
            "day": self.day, "requests_today": requests, "errors_today": errors, "rejected_today": rejected,
            "input_tokens_today": tokens_in, "output_tokens_today": tokens_out, "cost_usd_today": round(spend, 6),
            "requests_per_minute": count,
            "error_rate": round(failed / count, 4) if count else 0.0,
            "active": len(self.gw.in_flight),
            "active_streams": sum(1 for ex in self.gw.in_flight if ex.record.stream),
            "latency_p50_ms": _percentile(latencies, 0.5), "latency_p95_ms": _percentile(latencies, 0.95),
            "ttft_p50_ms": _percentile(ttfts, 0.5), "ttft_p95_ms": _percentile(ttfts, 0.95),
        }

    @staticmethod
    def _active_entry(live_id: int, ex: Exchange) -> dict:
        rec = ex.record
        return {"id": live_id, "client": rec.client_name, "model": rec.model, "provider": rec.provider,
                "inbound": rec.inbound, "stream": rec.stream, "started": rec.ts}

    def snapshot(self) -> dict:
        """The whole picture, from memory."""
        now = time.time()
        first = int(now // 60) - SERIES_MINUTES + 1
        minutes = sorted(m for m in self.series if m >= first)
        series = [{"minute": m, "model": model, "requests": v[0], "input_tokens": v[1], "output_tokens": v[2]}
                  for m in minutes for model, v in sorted(self.series[m].items())]
        return {"now": now, "series_minutes": SERIES_MINUTES, "stats": self._stats or self._compute_stats(now),
                "requests": list(self.recent), "series": series,
                "active": [self._active_entry(live_id, ex) for live_id, ex in self._live.values()]}

    def snapshot_frame(self) -> bytes:
        return orjson.dumps([{"type": "snapshot", "payload": self.snapshot()}])
