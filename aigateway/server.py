"""Process life cycle: bind (HTTP or HTTPS), serve, and shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import stat
import sys
import time
from pathlib import Path
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from aigateway import logs
from aigateway.app import Gateway, make_app
from aigateway.config import Config, ConfigError, load

log = logging.getLogger("aigateway")
HEADER_LIMIT = 64 * 1024  # request line + headers; larger: Tornado closes the connection
UNBOUNDED_BODY = 2 ** 62  # for Tornado; the real limit is web.BaseHandler's
CLOSE_SECONDS = 5  # after the grace period: how long aborted streams get to send their error event


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context when ``server.https.enabled``; a missing, unreadable or
    mismatched certificate/key is a ConfigError (one line, exit 2) before anything starts."""
    if not config.get("server.https.enabled"):
        return None
    names = {}
    for field in ("cert_file", "key_file"):
        if not config.get(f"server.https.{field}"):
            raise ConfigError(f"{config.path}: server.https.{field}: HTTPS is enabled but no {field} is set")
        path = config.resolve(f"server.https.{field}")
        if not path.is_file():
            raise ConfigError(f"{config.path}: server.https.{field}: no such file: {path}")
        names[field] = path
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> bytes:
        raise ConfigError(f"{config.path}: server.https.key_file: the key is encrypted; give an unencrypted PEM key")

    try:
        context.load_cert_chain(names["cert_file"], names["key_file"], password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problem = f"the key in {names['key_file']} does not match the certificate in {names['cert_file']}"
        else:
            problem = f"cannot load the certificate and key as PEM ({exc.reason or exc.strerror or exc})"
        raise ConfigError(f"{config.path}: server.https: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{config.path}: server.https: cannot read the certificate or key: {exc.strerror}") from None
    return context


class SweepingHTTPServer(HTTPServer):
    """An HTTPServer whose slowloris timeouts (request headers within ``header_timeout`` of waiting
    for them, a body within ``body_timeout`` of its headers) are enforced by one periodic sweep over
    the open connections. Tornado's own arms and cancels two IOLoop timers per request (a
    ``gen.with_timeout`` around each read), which under load cost more than the check itself.
    A deadline is noticed within a quarter of the shorter timeout (at most a second) of passing."""

    def initialize(self, *args: Any, header_timeout: float | None = None, body_timeout: float | None = None,
                   **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.conn_params.header_timeout = self.conn_params.body_timeout = None  # ours, not Tornado's
        self._header_timeout, self._body_timeout = header_timeout, body_timeout
        # per open connection: [its current request's HTTP1Connection, reading since, body since]
        self._reading: dict[object, list] = {}
        shortest = min(t for t in (header_timeout, body_timeout, 4.0) if t)
        self._sweeper = PeriodicCallback(self._sweep, min(1.0, shortest / 4) * 1000)
        self._sweeper.start()

    def start_request(self, server_conn: object, request_conn: Any) -> Any:
        self._reading[server_conn] = [request_conn, time.monotonic(), None]
        return super().start_request(server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._reading.pop(server_conn, None)
        super().on_close(server_conn)

    async def close_all_connections(self) -> None:
        await super().close_all_connections()
        self._sweeper.stop()

    def _sweep(self) -> None:
        now = time.monotonic()
        for entry in list(self._reading.values()):
            conn: HTTP1Connection = entry[0]
            # Tornado's own state: request line parsed once headers are in, body read once complete.
            if conn.stream is None or conn._read_finished:
                continue
            if conn._request_start_line is None:
                if self._header_timeout and now - entry[1] > self._header_timeout:
                    conn.close()
            elif self._body_timeout:
                if entry[2] is None:
                    entry[2] = now
                elif now - entry[2] > self._body_timeout:
                    log.info("timeout reading a request body from %s", conn.context)
                    conn.close()


def settle_heap() -> None:
    """Once started: keep the cyclic garbage collector off the start-up heap, which lives as long as
    the process (gc.freeze), and let it run less often. A request's objects are freed by reference
    counting (the relay leaves no reference cycles behind), so frequent passes over the objects of
    requests in flight found nothing and cost ~20 µs a request under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _warn_if_readable(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s holds provider keys but is readable by others (mode %o): chmod 600 it", path, mode)


async def serve(config_path: str, port: int | None, host: str | None) -> None:
    config = load(config_path)
    tls = tls_context(config)  # before anything starts: a bad certificate must not half-start the server
    logs.configure(config)
    _warn_if_readable(config.path)
    gateway = Gateway(config)
    await gateway.start()
    app = make_app(gateway)
    settle_heap()
    server = SweepingHTTPServer(
        app,
        ssl_options=tls,
        # Every handler streams its body and enforces server.max_body_mb itself (web.BaseHandler), so
        # an oversized body, however large, gets the 413 in the client's format, not Tornado's bare 400.
        max_body_size=UNBOUNDED_BODY,
        max_header_size=HEADER_LIMIT,
        # Slowloris: headers must arrive within the idle timeout, a body within the body timeout.
        header_timeout=float(config.get("server.idle_timeout_seconds")) or 3600.0,  # Tornado's when unset
        body_timeout=float(config.get("server.body_timeout_seconds")) or None,
    )
    host = host or config.get("server.host")
    sockets = bind_sockets(config.get("server.port") if port is None else port, host)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    scheme = "https" if tls else "http"
    log.info("aigateway listening on %s://%s:%s (config %s)", scheme, shown, bound, config.path)
    # For scripts and service managers; a terminal already shows the log line above, unless the
    # log level hides it.
    if not sys.stdout.isatty() or not log.isEnabledFor(logging.INFO):
        print(f"aigateway listening on {scheme}://{shown}:{bound}", flush=True)

    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:  # the first signal starts the grace period, a second one ends it
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    await shut_down(gateway, server, float(config.get("server.shutdown_grace_seconds")), hurry)


async def shut_down(gateway: Gateway, server: HTTPServer, grace: float, hurry: asyncio.Event) -> None:
    """Stop accepting; refuse new requests on open connections (503); let requests and streams in
    flight finish for up to ``grace`` seconds; end the rest cleanly (an in-band error, still
    accounted); close every connection; flush usage records to the database."""
    loop = asyncio.get_running_loop()
    server.stop()
    gateway.stop_accepting()
    log.info("shutting down: no new connections; waiting up to %gs for %d requests", grace, len(gateway.in_flight))
    deadline = loop.time() + grace
    while gateway.in_flight and loop.time() < deadline and not hurry.is_set():
        await asyncio.sleep(0.05)
    cut = list(gateway.in_flight)
    for exchange in cut:  # past the grace period: end them cleanly, still accounted
        exchange.abort()
    deadline = loop.time() + CLOSE_SECONDS
    # Let the last bytes (an answer's end, or the "shutting down" error event) reach the clients.
    while (gateway.in_flight or _writing(server)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(server.close_all_connections(), CLOSE_SECONDS)
    except asyncio.TimeoutError:
        log.warning("some connections did not close in %ss", CLOSE_SECONDS)
    gateway.close()
    log.info("stopped (%d requests ended at the end of the grace period)", len(cut))


def _writing(server: HTTPServer) -> bool:
    """Whether any connection still has response bytes to send (Tornado's connection set)."""
    return any(conn.stream is not None and not conn.stream.closed() and conn.stream.writing()
               for conn in getattr(server, "_connections", ()))


def run(config_path: str, port: int | None = None, host: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then flush usage and exit 0."""
    asyncio.run(serve(config_path, port, host))
