"""The Gateway object that owns all state, and the factory that builds the Tornado app from it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import tornado.web
from tornado.ioloop import PeriodicCallback

from aigateway import clients, upstream, usage
from aigateway.config import Config
from aigateway.db import Database
from aigateway.keys import KeyIndex
from aigateway.limits import Limiter, configured_defaults
from aigateway.logs import log_request
from aigateway.usage import UsageRecord

log = logging.getLogger("aigateway")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
RELOAD_SECONDS = 1.0


class Gateway:
    """Composes the parts (config, db, key index, upstream client) and owns their life cycle.
    Reloads swap immutable objects, so in-flight requests keep what they started with."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.resolve("database.path"))
        self.keys = KeyIndex()
        self.limiter = Limiter(config.timezone)
        self.limit_defaults = configured_defaults(config.get)
        self.started_at = time.time()
        self._data_version: int | None = None
        self._watcher: PeriodicCallback | None = None
        self.active: set = set()  # relay.Exchange objects in flight
        self.model_lists: dict[tuple[str, str, str], tuple[float, list[str]]] = {}  # models.py's cache
        upstream.configure(int(config.get("server.max_upstream_connections")))

    async def start(self) -> None:
        """Load the key index and start watching the database for CLI changes. Idempotent."""
        await self.reload_clients()
        if self._watcher is None:
            self._watcher = PeriodicCallback(self._check_changes, RELOAD_SECONDS * 1000)
            self._watcher.start()

    async def reload_clients(self) -> None:
        """Rebuild the key index; restore limit counters of new clients and of clients whose
        usage was reset (at start-up: all), so a restart never hands out a fresh allowance."""
        self._data_version = await self.db.data_version()
        rows = [dict(r) for r in await self.db.read(clients.all_clients)]
        before = {c["id"]: c["usage_reset_at"] for c in self.keys.clients()}
        changed = {c["id"] for c in rows if before.get(c["id"]) != c["usage_reset_at"]}
        if changed:
            now = time.time()
            starts = self.limiter.window_starts(now)
            counts = await self.db.read(lambda conn: usage.window_counts(conn, *starts))
            for client_id in changed:
                self.limiter.restore(client_id, now, *counts.get(client_id, (0, 0, 0, 0, 0)))
        for client_id in before.keys() - {c["id"] for c in rows}:
            self.limiter.forget(client_id)
        self.keys = KeyIndex(rows)

    async def _check_changes(self) -> None:
        """Another connection (the CLI) committed: rebuild the key index. One cheap PRAGMA a second."""
        try:
            if await self.db.data_version() != self._data_version:
                await self.reload_clients()
        except Exception:  # keep watching whatever one check hit
            log.exception("reloading clients failed")

    def record(self, rec: UsageRecord) -> None:
        """Hand a finished request to the writer thread; never blocks the request path."""
        self.db.put(rec)

    def close(self) -> None:
        """Stop watching and flush every queued write. Idempotent."""
        if self._watcher is not None:
            self._watcher.stop()
        self.db.close()


def make_app(gateway: Gateway) -> tornado.web.Application:
    from aigateway.handlers import api
    from aigateway.handlers.base import NotFoundHandler

    return tornado.web.Application(
        api.routes,
        gateway=gateway,
        log_function=log_request,
        default_handler_class=NotFoundHandler,
        static_path=str(STATIC_DIR),
        compress_response=False,
    )
