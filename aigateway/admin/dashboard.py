"""The live dashboard: its page and its WebSocket. Thin: the hub (hub.py) does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tornado.web
import tornado.websocket

from aigateway import web
from aigateway.admin.handlers import AdminHandler, current_admin

if TYPE_CHECKING:
    from aigateway.app import Gateway

PING_SECONDS = 20  # a browser that vanished without closing is dropped after one missed pong


class DashboardHandler(AdminHandler):
    """``/admin/dashboard``; the login page first (and back here after) when not logged in."""

    page = True

    def get(self) -> None:
        """static/dashboard.html, whose script connects to /admin/ws."""
        self.send_page("dashboard")


class DashboardSocket(tornado.websocket.WebSocketHandler):
    """``/admin/ws``: pushes the hub's snapshot and deltas. The session is checked in ``prepare``,
    before the upgrade; tornado's default ``check_origin`` refuses other origins (403)."""

    @property
    def gateway(self) -> Gateway:
        return web.gateway_of(self)

    @property
    def ping_interval(self) -> float:
        return PING_SECONDS

    def set_default_headers(self) -> None:
        """A refused upgrade is an ordinary response: it carries every response's headers."""
        web.security_headers(self)

    def prepare(self) -> None:
        """Refuse the upgrade (401) without a valid admin session."""
        if current_admin(self) is None:
            raise tornado.web.HTTPError(401)

    def open(self) -> None:
        """Register with the hub: a snapshot follows, then deltas."""
        self.gateway.hub.add(self)

    def on_message(self, message: str | bytes) -> None:
        """The dashboard only listens."""

    def on_close(self) -> None:
        """Unregister: the hub stops its timer and drops its state with the last dashboard."""
        self.gateway.hub.remove(self)


routes = [
    (r"/admin/dashboard", DashboardHandler),
    (r"/admin/ws", DashboardSocket),
]
