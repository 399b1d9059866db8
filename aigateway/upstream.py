"""Provider I/O, and the only module that does it: Tornado's CurlAsyncHTTPClient (pycurl), whose
keep-alive connection reuse is what makes a Python relay fast (Tornado's own simple client sends
``Connection: close``, so every request would pay a new TCP and TLS handshake)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pycurl
from tornado.curl_httpclient import CurlError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders

from aigateway.neutral import ErrorKind, GatewayError
from aigateway.providers import Provider

USER_AGENT = "aigateway"
CONNECT_TIMEOUT = 10.0

# libcurl error numbers (curl/curl.h) worth a specific message.
_CURL_ERRORS = {
    6: (502, ErrorKind.UPSTREAM, "could not resolve the upstream host"),
    7: (502, ErrorKind.UPSTREAM, "could not connect to the upstream"),
    18: (502, ErrorKind.UPSTREAM, "the upstream closed the connection before the response was complete"),
    28: (504, ErrorKind.TIMEOUT, "the upstream timed out"),
    35: (502, ErrorKind.UPSTREAM, "TLS handshake with the upstream failed"),
    52: (502, ErrorKind.UPSTREAM, "the upstream closed the connection without answering"),
    56: (502, ErrorKind.UPSTREAM, "the upstream connection was reset"),
    60: (502, ErrorKind.UPSTREAM, "the upstream's TLS certificate was not trusted"),
}


def configure(max_clients: int) -> None:
    """Use pycurl with a pool large enough that streams never queue behind one another."""
    AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient", max_clients=max_clients)


class Call:
    """One upstream request. ``status`` and ``headers`` are known before the first body chunk
    arrives, so the relay can tell a stream to pass on from an error to translate."""

    def __init__(self, provider: Provider, base_url: str, path: str, body: bytes | None, *, stream: bool,
                 api_key: str | None = None) -> None:
        self.provider = provider
        self.api_key = api_key  # the pool's choice; None: the provider's first key
        self.url = base_url.rstrip("/") + path
        self.body = body
        self.stream = stream
        self.status = 0
        self._header_lines: list[bytes] = []  # the final response's, raw: parsed only when asked for
        self.cancelled = False
        self.reason: GatewayError | None = None
        self.paused = False
        self._curl: pycurl.Curl | None = None  # the handle, while it runs this transfer
        self._info: object = None  # Tornado's per-transfer dict on the handle: tells our transfer from a reuse
        self._received = 0  # body bytes so far, and when that number last changed (stream idle timeout)
        self._last = 0.0

    def cancel(self, reason: GatewayError | None = None) -> None:
        """Abort the transfer, at once even while the upstream is silent. Without a reason the client
        left (``run`` raises ClientGone); with one, ``run`` raises it so the client is told why."""
        self.cancelled = True
        self.reason = self.reason or reason
        self._kick()  # libcurl aborts at the progress check this run makes

    def check_silence(self, now: float) -> None:
        """Cut a stream whose upstream has sent nothing for longer than ``timeout_seconds`` (a stream
        may last long; what must not last is silence). libcurl calls the progress function only
        while the transfer moves, so the gateway calls this for every running stream about once a
        second: one timer for all streams, where libcurl's LOW_SPEED options would re-arm a timer
        per transfer on every chunk (~35K instructions an event) and average over a window besides."""
        if not self.stream or self.paused or self.cancelled or not self._ours():
            return
        if now - self._last > self.provider.timeout_seconds:
            what = "stalled" if self._received else "sent nothing"
            self.cancel(GatewayError(504, ErrorKind.TIMEOUT,
                                     f"the upstream {what} for {self.provider.timeout_seconds:g}s "
                                     f"({self.provider.name}: no data in the longest silence allowed)"))

    def pause(self) -> None:
        """Stop reading from the upstream until ``resume`` (backpressure from a slow client): the
        upstream's TCP window closes and it waits. Safe to repeat."""
        curl = self._ours()
        if curl is not None:
            self.paused = True
            # Tornado's streaming buffer pauses the same transfer when its own queue is full and
            # resumes it once drained, which would undo this pause: our resume() covers both.
            buffer = self._info.get("streaming_buffer") if isinstance(self._info, dict) else None
            if buffer is not None:
                buffer.paused = False
            try:
                curl.pause(pycurl.PAUSE_RECV)
            except pycurl.error:  # the transfer already failed; run() reports it
                pass

    def resume(self) -> None:
        """Read from the upstream again. Time spent paused is not upstream silence."""
        if not self.paused:
            return
        self._last = time.monotonic()
        self._kick()

    def _kick(self) -> None:
        """Unpause the transfer and make libcurl run it now, so its progress function (which ends
        every run) sees a cancel even while the upstream is silent: libcurl runs a transfer again
        when it is unpaused, and only then (8.23 ignores unpausing a transfer that was not paused)."""
        self.paused = False
        curl = self._ours()
        if curl is not None:
            try:
                curl.pause(pycurl.PAUSE_RECV)
                curl.pause(pycurl.PAUSE_CONT)
            except pycurl.error:  # the transfer already failed; run() reports it
                pass

    def _ours(self) -> pycurl.Curl | None:
        """The handle if it still runs this transfer: Tornado returns a finished handle to its pool
        and may start another transfer on it."""
        curl = self._curl
        return curl if curl is not None and getattr(curl, "info", None) is self._info else None

    def _on_header(self, line: bytes) -> None:
        # libcurl's HEADERFUNCTION, called synchronously as each line is read, so the status is
        # known before the first body chunk is even queued. (Tornado's header_callback would cost
        # one IOLoop callback per header line on every request, and parse them all.)
        if line[:5] == b"HTTP/":  # a new response: a redirect's or 100 Continue's came before
            parts = line.split(None, 2)  # b"HTTP/1.1 200 OK\r\n", b"HTTP/2 200\r\n"
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self._header_lines = []
        else:
            self._header_lines.append(line)

    @property
    def headers(self) -> HTTPHeaders:
        """The response headers (read on errors only, so parsed on demand)."""
        headers = HTTPHeaders()
        for line in self._header_lines:
            text = line.decode("latin1").rstrip("\r\n")
            if text:
                headers.parse_line(text)
        return headers

    def _prepare(self, curl: pycurl.Curl) -> None:
        self._curl, self._info = curl, getattr(curl, "info", None)
        self._last = time.monotonic()
        curl.setopt(pycurl.HEADERFUNCTION, self._on_header)  # replaces Tornado's, see _on_header
        curl.setopt(pycurl.NOPROGRESS, 0)
        curl.setopt(pycurl.XFERINFOFUNCTION, self._progress)

    def _progress(self, _dltotal: int, dlnow: int, *_: int) -> int:
        """libcurl's progress function, called on every run of the transfer: abort when cancelled;
        note when body bytes last arrived (``check_silence``)."""
        if self.cancelled:
            return 1
        if dlnow != self._received:
            self._received, self._last = dlnow, time.monotonic()
        return 0

    async def run(self, on_chunk: Callable[[bytes], None] | None = None) -> bytes:
        """Send the request; chunks go to ``on_chunk`` when given, else the body is returned.
        Network failures raise GatewayError (502/504) with the reason."""
        request = HTTPRequest(
            self.url,
            method="POST" if self.body is not None else "GET",
            headers=self.provider.headers(self.api_key),
            body=self.body,
            connect_timeout=min(CONNECT_TIMEOUT, self.provider.timeout_seconds),
            request_timeout=0 if self.stream else self.provider.timeout_seconds,
            streaming_callback=on_chunk,
            prepare_curl_callback=self._prepare,
            user_agent=USER_AGENT,
            decompress_response=True,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except CurlError as exc:
            if self.reason is not None:  # cancelled with a reason, or the stream went silent
                raise self.reason from None
            if self.cancelled:
                raise ClientGone() from None
            status, kind, message = _CURL_ERRORS.get(exc.errno, (502, ErrorKind.UPSTREAM, "upstream failure"))
            if exc.errno == 28 and exc.message.startswith("Connection timed out"):
                # connect phase: TCP or TLS handshake (an https:// base_url on a plain-HTTP server ends here)
                message = "could not connect to the upstream in time (TCP or TLS handshake)"
            raise GatewayError(status, kind, f"{message} ({self.provider.name}: {exc.message})") from None
        finally:
            # Tornado's info dict holds the request, whose prepare callback holds this Call: drop it,
            # so the request is freed by reference counting rather than by the cyclic collector.
            self._curl = self._info = None
        self.status = response.code
        return response.body if on_chunk is None else b""


class ClientGone(Exception):
    """The client went away and the transfer was aborted on its behalf."""
