"""``/healthz`` (liveness) and ``/readyz`` (readiness) for load balancers, container engines and
service managers: JSON, no API key, the security headers of every answer. Every check is cheap
(no database query, no write per probe), so a load balancer may ask every second."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aigateway.web import BaseHandler

if TYPE_CHECKING:
    from aigateway.app import Gateway

# The oldest usage record still waiting for the writer thread may be this old before the gateway
# reports itself not ready: under load a batch waits up to a fraction of a second, so ten seconds
# means the disk or a lock holds the writer up, and the records of finished requests pile up in memory.
# A failed write keeps the gateway not ready for as long again (each further failure renews it): a
# failure is cleared only by a later successful write, and an instance taken out of rotation gets no
# requests to write, so a failure that never expired would keep it out for good.
WRITER_LAG_LIMIT = 10.0


def _database(path: os.PathLike) -> str:
    """The database file and its folder (SQLite creates its -wal and -shm files there) are writable
    by this process: two access() calls."""
    if not os.access(path, os.W_OK):
        return "the database file is missing or not writable"
    if not os.access(os.path.dirname(path), os.W_OK):
        return "the database folder is not writable"
    return "ok"


def readiness(gateway: Gateway) -> tuple[bool, dict[str, Any]]:
    """``(ready, body)`` for ``GET /readyz``: serving (not draining for shutdown), config loaded,
    database writable, writer keeping up (no batch failed and its oldest queued record waited less
    than WRITER_LAG_LIMIT). ``body["reason"]`` joins the failed checks' reasons."""
    writer = gateway.db.writer_health()
    if not writer.alive:
        writer_check = "the database writer has stopped"
    elif writer.error and writer.error_seconds < WRITER_LAG_LIMIT:
        writer_check = f"the last write failed: {writer.error}"
    elif writer.oldest_seconds > WRITER_LAG_LIMIT:
        writer_check = f"the database writer is {writer.oldest_seconds:.0f}s behind ({writer.queued} queued)"
    else:
        writer_check = "ok"
    checks = {
        "serving": "shutting down" if gateway.stopping else "ok",
        # Always so while the process answers: it listens only once its config has loaded and
        # validated, and a reload swaps in validated configs only. Listed so the answer says it.
        "config": "ok",
        "database": _database(gateway.db.path),
        "writer": writer_check,
    }
    failed = [reason for reason in checks.values() if reason != "ok"]
    body: dict[str, Any] = {"status": "unavailable" if failed else "ready", "checks": checks,
                            "writer": {"queued": writer.queued, "oldest_seconds": round(writer.oldest_seconds, 3)}}
    if failed:
        body["reason"] = "; ".join(failed)
    return not failed, body


class ProbeHandler(BaseHandler):
    """Unlike every other route, answered during the shutdown drain too (on a connection opened
    before it: the listening socket is closed at once), with ``Connection: close`` as the drain's
    refusals carry, so a probe learns the state rather than getting a bare 503. A probe's 503 is
    an answer, not a server error: the access log keeps it at debug level (logs.log_request)."""

    probe = True

    def check_request(self) -> None:
        if self.gateway.stopping:
            self.set_header("Connection", "close")


class LivenessHandler(ProbeHandler):
    def get(self) -> None:
        """200 as long as the process serves, drain included: restarting it would help nothing."""
        self.finish({"status": "ok", "stopping": self.gateway.stopping})


class ReadinessHandler(ProbeHandler):
    def get(self) -> None:
        """200 when the gateway should get traffic, else 503 naming the reason (``readiness``)."""
        ready, body = readiness(self.gateway)
        self.set_status(200 if ready else 503)
        self.finish(body)


routes = [
    (r"/healthz", LivenessHandler),
    (r"/readyz", ReadinessHandler),
]
