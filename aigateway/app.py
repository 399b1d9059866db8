"""The Gateway object that owns all state, and the factory that builds the Tornado app from it."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import tornado.web
from tornado.ioloop import PeriodicCallback

from aigateway import api, clients, flights, health, teams, upstream, usage
from aigateway.admin import dashboard, handlers, sessions
from aigateway.admin.handlers import StaticHandler
from aigateway.admin.login import LoginThrottle
from aigateway.admission import Team
from aigateway.config import Config
from aigateway.db import Database
from aigateway.hub import Hub
from aigateway.keys import KeyIndex
from aigateway.limits import Limiter, configured_defaults
from aigateway.listing import ListingCache
from aigateway.logs import log_request
from aigateway.refusals import SUMMARY_SECONDS, Refusals
from aigateway.routing import KeyPool, pools_for
from aigateway.usage import UsageRecord
from aigateway.web import NotFoundHandler

if TYPE_CHECKING:
    from aigateway.relay import Exchange

log = logging.getLogger("aigateway")


PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"  # the admin UI's scripts, styles and icon, served at /static/
TEMPLATE_DIR = PACKAGE_DIR / "templates"  # its pages (Tornado templates), rendered, never served raw
RELOAD_SECONDS = 0.25  # CLI changes reach the running server this fast: one cheap PRAGMA each time


class Gateway:
    """Composes the parts (config, db, key index, upstream client) and owns their life cycle.
    Reloads swap immutable objects, so in-flight requests keep what they started with."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.resolve("database.path"))
        self.keys = KeyIndex()
        self.limiter = Limiter(config.timezone)
        self.team_limiter = Limiter(config.timezone)  # teams' counters, summed over their clients
        self.teams: dict[int, Team] = {}
        self.limit_defaults = configured_defaults(config.get)
        self.started_at = time.time()
        self._data_version: int | None = None
        self._timers: list[PeriodicCallback] = []  # CLI-change polling, silence checks and flight marks
        self._in_flight: set[Exchange] = set()
        self._stopping = False
        self.login_throttle = LoginThrottle()  # failed admin logins per IP and user
        self.hub = Hub(self)  # live dashboards
        self.listings = ListingCache()  # upstream model lists
        self.refusals = Refusals()  # requests refused before authentication, counted not logged
        self.revoked_sessions: set[str] = set()  # admin sessions ended by logging out (admin/sessions.py)
        self.pools: dict[str, KeyPool] = pools_for(config.providers, {})  # each provider's keys and their state
        upstream.configure(int(config.get("server.max_upstream_connections")))

    async def start(self) -> None:
        """Count what a dead process left in flight, load the key index (restoring the limit
        counters) and start watching the database for CLI changes. Idempotent."""
        if not self._timers:
            await self.db.write(lambda conn: flights.recover(conn, self.config.providers))
        await self.reload_clients()
        if not self._timers:
            self._timers = [PeriodicCallback(self._check_changes, RELOAD_SECONDS * 1000),
                            PeriodicCallback(self._each_second, 1000),
                            PeriodicCallback(self.refusals.summarize, SUMMARY_SECONDS * 1000)]
            for timer in self._timers:
                timer.start()

    # -- requests in flight
    def track(self, exchange: Exchange) -> None:
        """A request began (the relay calls this): it counts as in flight until ``untrack``."""
        self._in_flight.add(exchange)
        self.hub.request_started(exchange)

    def untrack(self, exchange: Exchange) -> None:
        self._in_flight.discard(exchange)

    @property
    def in_flight(self) -> Collection[Exchange]:
        """The requests under way (a view: change it with ``track`` and ``untrack``)."""
        return self._in_flight

    @property
    def stopping(self) -> bool:
        """Shutdown has begun: new requests get 503 (``stop_accepting``)."""
        return self._stopping

    def stop_accepting(self) -> None:
        """Begin the shutdown drain (server.py): requests in flight go on, new ones are refused."""
        self._stopping = True

    def _each_second(self) -> None:
        """Cut the streams whose upstream has been silent too long (upstream.Call.check_silence);
        queue a mark of where each long request stands (flights.py)."""
        now, wall = time.monotonic(), time.time()
        for exchange in list(self._in_flight):
            if exchange.call is not None:
                exchange.call.check_silence(now)
            if (mark := exchange.flight_mark(wall)) is not None:
                self.db.put(mark)

    async def reload_clients(self) -> None:
        """Rebuild the key index; restore limit counters of new clients and of clients whose
        usage was reset (at start-up: all), so a restart never hands out a fresh allowance."""
        self._data_version = await self.db.data_version()
        rows = [clients.loaded(r) for r in await self.db.read(clients.all_clients)]
        before = {c["id"]: (c["usage_reset_at"], c["team_id"]) for c in self.keys.clients()}
        changed = {c["id"] for c in rows if before.get(c["id"], (None, None))[0] != c["usage_reset_at"]}
        for client_id in before.keys() - {c["id"] for c in rows}:
            self.limiter.forget(client_id)
        teams_before, self.teams = self.teams, teams.as_teams(await self.db.read(teams.all_teams))
        self.keys = KeyIndex(rows)
        moved = changed or set(self.teams) != set(teams_before) or any(
            before.get(c["id"], (None, None))[1] != c["team_id"] for c in rows)
        if changed or moved:
            await self._restore_counters(changed, teams_too=bool(moved))
        self.revoked_sessions = await self.db.read(sessions.load_revoked)

    async def revoke_session(self, sid: str) -> None:
        """End an admin session everywhere (logout): refused here at once, recorded for restarts."""
        self.revoked_sessions.add(sid)
        await self.db.write(lambda conn: sessions.revoke(conn, sid))

    async def _restore_counters(self, client_ids: set[int], teams_too: bool = True) -> None:
        """Counters from the request log: of ``client_ids``, and of every team (the sums of its
        clients' counts) when membership or usage may have changed."""
        now = time.time()
        minute, hour, day = self.limiter.window_starts(now)
        month = self.limiter.month_bounds(day)[0]
        counts = await self.db.read(lambda conn: usage.window_counts(conn, minute, hour, day, month))
        for client_id in client_ids:
            self.limiter.restore(client_id, now, *counts.get(client_id, usage.NO_COUNTS))
        if teams_too:
            members: dict[int, list[usage.WindowCounts]] = {team_id: [] for team_id in self.teams}
            for c in self.keys.clients():
                if c["team_id"] in members:
                    members[c["team_id"]].append(counts.get(c["id"], usage.NO_COUNTS))
            for team_id, rows in members.items():
                self.team_limiter.restore(team_id, now, *(sum(col) for col in zip(usage.NO_COUNTS, *rows, strict=True)))

    async def apply_config(self, config: Config) -> None:
        """Swap in a new, validated Config (the admin UI saved config.yaml): the next request sees
        the new providers, limit defaults and logging level; a request in flight keeps the provider
        object it started with. A new time zone moves the day boundary, so today's counters are
        rebuilt from the request log rather than started afresh."""
        old, self.config = self.config, config
        self.limit_defaults = configured_defaults(config.get)
        self.listings.clear()
        self.pools = pools_for(config.providers, self.pools)
        logging.getLogger().setLevel(str(config.get("logging.level")).upper())
        if config.get("defaults.timezone") != old.get("defaults.timezone"):
            self.limiter.tz = self.team_limiter.tz = config.timezone
            await self._restore_counters({c["id"] for c in self.keys.clients()})

    async def _check_changes(self) -> None:
        """Another connection (the CLI) committed: rebuild the key index."""
        try:
            if await self.db.data_version() != self._data_version:
                await self.reload_clients()
        except Exception:  # keep watching whatever one check hit
            log.exception("reloading clients failed")

    def record(self, rec: UsageRecord) -> None:
        """Hand a finished request to the writer thread and the dashboards; never blocks."""
        self.db.put(rec)
        self.hub.request_finished(rec)

    def close(self) -> None:
        """Stop watching and flush every queued write. Idempotent."""
        for timer in self._timers:
            timer.stop()
        self.refusals.summarize()
        self.hub.close()
        self.db.close()


class GatewayApp(tornado.web.Application):
    """The Tornado application, carrying the Gateway that handlers reach through a typed property."""

    def __init__(self, gateway: Gateway, handlers: list) -> None:
        super().__init__(handlers, **_settings(gateway))
        self.gateway = gateway


def _settings(gateway: Gateway) -> dict:
    return {
        "log_function": log_request,
        "default_handler_class": NotFoundHandler,
        "static_path": str(STATIC_DIR),
        "static_handler_class": StaticHandler,
        "template_path": str(TEMPLATE_DIR),
        # The admin UI's XSRF cookie (checked by AdminHandler.prepare only: the client API is cookie-free).
        "xsrf_cookie_kwargs": {"path": "/admin", "samesite": "Strict",
                               "secure": bool(gateway.config.get("server.https.enabled"))},
        "compress_response": False,
    }


def make_app(gateway: Gateway) -> GatewayApp:
    """The application: the client API's routes, the probes, then the admin UI's (each module's
    route table)."""
    return GatewayApp(gateway, api.routes + health.routes + handlers.routes + dashboard.routes)
