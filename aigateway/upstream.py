"""Provider I/O, and the only module that does it: Tornado's CurlAsyncHTTPClient (pycurl), whose
keep-alive connection reuse is what makes a Python relay fast (stack-notes.md)."""

from __future__ import annotations

from collections.abc import Callable

import pycurl
from tornado.curl_httpclient import CurlError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders

from aigateway.model import ErrorKind, GatewayError
from aigateway.providers import Provider

USER_AGENT = "aigateway"
CONNECT_TIMEOUT = 10.0

# libcurl error numbers (curl/curl.h) worth a specific message.
_CURL_ERRORS = {
    6: (502, ErrorKind.UPSTREAM, "could not resolve the upstream host"),
    7: (502, ErrorKind.UPSTREAM, "could not connect to the upstream"),
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

    def __init__(self, provider: Provider, base_url: str, path: str, body: bytes, *, stream: bool) -> None:
        self.provider = provider
        self.url = base_url.rstrip("/") + path
        self.body = body
        self.stream = stream
        self.status = 0
        self.headers = HTTPHeaders()
        self.cancelled = False
        self.reason: GatewayError | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._pending: list[bytes] | None = []  # chunks that overtook the header lines (None: headers seen)

    def cancel(self, reason: GatewayError | None = None) -> None:
        """Abort the transfer (libcurl checks within ~50 ms). Without a reason the client left
        (``run`` raises ClientGone); with one, ``run`` raises it so the client is told why."""
        self.cancelled = True
        self.reason = self.reason or reason

    def _on_header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.headers = HTTPHeaders()
            parts = line.split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        elif line.strip():
            self.headers.parse_line(line.rstrip("\r\n"))
        elif self.status >= 200:  # the blank line ending the final (not 100 Continue) header block
            self._release()

    def _on_chunk(self, chunk: bytes) -> None:
        # Tornado queues header lines and body chunks on the IOLoop separately, and a response that
        # arrives whole can deliver its body first: hold chunks until the status is known.
        if self._pending is None:
            self._sink(chunk)
        else:
            self._pending.append(chunk)

    def _release(self) -> None:
        pending, self._pending = self._pending, None
        for chunk in pending or ():
            self._sink(chunk)

    def _prepare(self, curl: pycurl.Curl) -> None:
        curl.setopt(pycurl.NOPROGRESS, 0)
        curl.setopt(pycurl.XFERINFOFUNCTION, lambda *_: 1 if self.cancelled else 0)
        if self.stream:  # a stream may last long; what must not last is silence
            curl.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            curl.setopt(pycurl.LOW_SPEED_TIME, max(1, int(self.provider.timeout_seconds)))

    async def run(self, on_chunk: Callable[[bytes], None] | None = None) -> bytes:
        """Send the request; chunks go to ``on_chunk`` when given, else the body is returned.
        Network failures raise GatewayError (502/504) with the reason."""
        request = HTTPRequest(
            self.url,
            method="POST" if self.body is not None else "GET",
            headers=self.provider.headers(),
            body=self.body,
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=0 if self.stream else self.provider.timeout_seconds,
            streaming_callback=self._on_chunk if on_chunk else None,
            header_callback=self._on_header,
            prepare_curl_callback=self._prepare,
            user_agent=USER_AGENT,
            decompress_response=True,
        )
        self._sink = on_chunk
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except CurlError as exc:
            if self.cancelled:
                if self.reason is not None:
                    raise self.reason from None
                raise ClientGone() from None
            status, kind, message = _CURL_ERRORS.get(exc.errno, (502, ErrorKind.UPSTREAM, "upstream failure"))
            if exc.errno == 28 and self.stream and self.status:
                message = "the upstream stream stalled"
            raise GatewayError(status, kind, f"{message} ({self.provider.name}: {exc.message})") from None
        self.status = response.code
        self._release()
        return response.body if on_chunk is None else b""


class ClientGone(Exception):
    """The client went away and the transfer was aborted on its behalf."""
