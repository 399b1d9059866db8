"""Durable marks of admitted requests still in flight, so that a crash loses none of their usage.

Once a second the gateway writes, for each admitted request older than a second, what it has
reserved and what it has streamed so far (``FlightMark``, batched by the writer thread like the
usage records). The request's usage record deletes its mark in the same batch it is written. A
mark still there at start-up belonged to a process that died (SIGKILL, a crash, power): ``recover``
turns it into a request-log row counted at what had streamed by the last mark or, with no output
yet, at the reservation, so the limits restored next can never hand out that allowance again.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from aigateway.neutral import Usage
from aigateway.pricing import cost_of
from aigateway.usage import UsageRecord

if TYPE_CHECKING:
    from aigateway.providers import Provider

log = logging.getLogger("aigateway.flights")

MARK_AFTER_SECONDS = 1.0  # requests shorter than this are never marked (their record lands as fast)
RECOVERED_STATUS = 500
RECOVERED_ERROR = "the gateway stopped while this request was in flight (counted at restart)"


def new_flight_id() -> int:
    """A random id, unique across processes and restarts in practice (62 bits)."""
    return random.getrandbits(62)


@dataclass(slots=True)
class FlightMark:
    """Where one admitted request in flight stands: upserted by id, deleted by its UsageRecord."""

    BATCH_ORDER: ClassVar[int] = -1  # written before the usage records of its batch, which end flights

    flight_id: int
    client_id: int
    client_name: str
    inbound: str
    provider: str
    model: str
    stream: bool
    started_at: float
    input_tokens: int  # reserved (or the upstream's own count, once it sent one)
    output_tokens: int  # reserved
    streamed: int | None  # output tokens delivered so far (None: no output yet)
    marked_at: float

    @classmethod
    def write(cls, conn: sqlite3.Connection, marks: list[FlightMark]) -> None:
        conn.executemany(
            "INSERT INTO in_flight (id, client_id, client_name, inbound, provider, model, stream, started_at,"
            " input_tokens, output_tokens, streamed, marked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET input_tokens = excluded.input_tokens,"
            " streamed = excluded.streamed, marked_at = excluded.marked_at",
            [(m.flight_id, m.client_id, m.client_name, m.inbound, m.provider, m.model, int(m.stream),
              m.started_at, m.input_tokens, m.output_tokens, m.streamed, m.marked_at) for m in marks])


def recover(conn: sqlite3.Connection, providers: Mapping[str, Provider]) -> int:
    """Count the requests a dead process left in flight (see the module docstring), priced as any
    request is; returns how many. Runs at start-up, before the limit counters are restored."""
    rows = conn.execute("SELECT * FROM in_flight").fetchall()
    records = [UsageRecord(
        r["client_id"], r["client_name"], r["inbound"], ts=r["started_at"], provider=r["provider"],
        model=r["model"], status=RECOVERED_STATUS, latency_ms=(r["marked_at"] - r["started_at"]) * 1000,
        input_tokens=r["input_tokens"], output_tokens=r["output_tokens"] if r["streamed"] is None else r["streamed"],
        stream=bool(r["stream"]), admitted=True, estimated=True, error=RECOVERED_ERROR, flight_id=r["id"],
    ) for r in rows]
    for rec in records:
        if rec.provider in providers:
            rec.cost_usd, rec.priced = cost_of(providers[rec.provider].prices, rec.model,
                                               Usage(rec.input_tokens, rec.output_tokens))
    if records:
        UsageRecord.write(conn, records)
        log.warning("counted %d requests that were in flight when the gateway last stopped (%d output tokens)",
                    len(records), sum(r.output_tokens for r in records))
    return len(records)
