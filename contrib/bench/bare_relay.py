"""The ceiling of our stack: Tornado + CurlAsyncHTTPClient relaying POST bodies to one upstream,
with no features at all (no auth, limits, translation, accounting or logging).

    python contrib/bench/bare_relay.py UPSTREAM_BASE_URL [PORT]

Prints ``bare-relay listening on http://127.0.0.1:PORT`` once bound (PORT 0 picks a free one).
"""

from __future__ import annotations

import asyncio
import sys

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-upstream"}


class RelayHandler(tornado.web.RequestHandler):
    async def post(self, path: str) -> None:
        """Send the body upstream as is; stream the answer back chunk by chunk, or whole."""
        stream = b'"stream":true' in self.request.body.replace(b" ", b"")

        def on_chunk(chunk: bytes) -> None:
            self.write(chunk)
            self.flush()

        if stream:
            self.set_header("Content-Type", "text/event-stream")
            self.request.connection.stream.set_nodelay(True)  # small events must not wait for ACKs
        request = HTTPRequest(self.settings["upstream"] + path, method="POST", headers=HEADERS,
                              body=self.request.body, request_timeout=0 if stream else 120,
                              streaming_callback=on_chunk if stream else None)
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if not stream:
            self.set_status(response.code if response.code != 599 else 502)
            self.set_header("Content-Type", "application/json")
            self.write(response.body or b"")
        self.finish()


async def main(upstream: str, port: int) -> None:
    AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient", max_clients=4000)
    app = tornado.web.Application([(r"/v1(/.*)", RelayHandler)], upstream=upstream.rstrip("/"),
                                  log_function=lambda handler: None)
    sockets = bind_sockets(port, "127.0.0.1")
    HTTPServer(app).add_sockets(sockets)
    print(f"bare-relay listening on http://127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] + "/v1", int(sys.argv[2]) if len(sys.argv) > 2 else 0))
