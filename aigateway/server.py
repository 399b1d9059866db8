"""Process life cycle: bind, serve, and shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from aigateway import logs
from aigateway.app import Gateway, make_app
from aigateway.config import load

log = logging.getLogger("aigateway")


async def serve(config_path: str, port: int | None, host: str | None) -> None:
    config = load(config_path)
    logs.configure(config)
    gateway = Gateway(config)
    await gateway.start()
    app = make_app(gateway)
    limit = int(config.get("server.max_body_mb")) * 1024 * 1024
    # Above our own limit, so an oversized body gets our 413 JSON rather than Tornado's bare 400.
    server = HTTPServer(app, max_body_size=limit * 2 + 1024, idle_connection_timeout=60)
    host = host or config.get("server.host")
    sockets = bind_sockets(config.get("server.port") if port is None else port, host)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    log.info("aigateway listening on http://%s:%s (config %s)", shown, bound, config.path)
    print(f"aigateway listening on http://{shown}:{bound}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    grace = float(config.get("server.shutdown_grace_seconds"))
    log.info("shutting down: no new connections; waiting up to %.0fs for %d requests", grace, len(gateway.active))
    server.stop()
    deadline = loop.time() + grace
    while gateway.active and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for exchange in list(gateway.active):  # past the grace period: end them cleanly, still accounted
        exchange.abort()
    while gateway.active and loop.time() < deadline + 5:
        await asyncio.sleep(0.05)
    await server.close_all_connections()
    gateway.close()
    log.info("stopped")


def run(config_path: str, port: int | None = None, host: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then flush usage and exit 0."""
    asyncio.run(serve(config_path, port, host))
