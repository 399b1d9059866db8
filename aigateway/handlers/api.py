"""Client-facing API handlers: one ChatHandler for every wire format (the ``fmt`` route kwarg),
so authentication, policy and accounting run through one code path (relay.py)."""

from __future__ import annotations

from aigateway import models, relay
from aigateway.handlers.base import BaseHandler
from aigateway.model import ErrorKind, GatewayError, Route


class ApiHandler(BaseHandler):
    """Shared by the API routes: size limit and the upstream call to cancel on disconnect."""

    exchange: relay.Exchange | None = None

    def prepare(self) -> None:
        limit = int(self.gateway.config.get("server.max_body_mb")) * 1024 * 1024
        length = self.request.headers.get("Content-Length")
        if (length and length.isdigit() and int(length) > limit) or len(self.request.body) > limit:
            self.write_gateway_error(GatewayError(413, ErrorKind.REQUEST_TOO_LARGE,
                                                  f"The request body is larger than {limit // 1048576} MB."))

    def on_connection_close(self) -> None:
        """The client left: stop the upstream transfer at once (no paying for unread tokens)."""
        if self.exchange is not None and self.exchange.call is not None:
            self.exchange.call.cancel()


class ChatHandler(ApiHandler):
    async def post(self) -> None:
        """A chat request in this route's format, streamed or not."""
        self.exchange = relay.Exchange(self.gateway, self, self.fmt, Route())
        await self.exchange.run(self.request.body)


class ModelsHandler(ApiHandler):
    async def get(self, model_id: str | None = None) -> None:
        """The models the calling client may use, in this route's list format."""
        client = relay.authenticate(self.gateway, self.request)
        ids = await models.for_client(self.gateway, client)
        if model_id is None:
            self.finish(self.fmt.encode_models(ids))
        elif model_id in ids:
            self.finish(self.fmt.encode_model(model_id))
        else:
            raise GatewayError(404, ErrorKind.NOT_FOUND, f"The model '{model_id}' does not exist.")


class HealthHandler(BaseHandler):
    def get(self) -> None:
        """Liveness for load balancers and service managers."""
        self.finish({"status": "ok"})


routes = [
    (r"/(?:v1/)?chat/completions", ChatHandler, {"fmt": "openai"}),
    (r"/(?:v1/)?models", ModelsHandler, {"fmt": "openai"}),
    (r"/(?:v1/)?models/(.+)", ModelsHandler, {"fmt": "openai"}),
    (r"/health", HealthHandler),
]
