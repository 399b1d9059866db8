"""Client-facing API handlers: one ChatHandler for every wire format (the ``fmt`` route kwarg),
so authentication, policy, limits and accounting run through one code path (relay.py)."""

from __future__ import annotations

from aigateway import models, relay
from aigateway.formats import FORMATS
from aigateway.handlers.base import BaseHandler
from aigateway.model import ErrorKind, GatewayError, Route


class ApiHandler(BaseHandler):
    """Shared by the API routes: body size limit, and the upstream call to cancel on disconnect."""

    exchange: relay.Exchange | None = None

    def prepare(self) -> None:
        super().prepare()
        limit = int(self.gateway.config.get("server.max_body_mb")) * 1024 * 1024
        length = self.request.headers.get("Content-Length")
        if (length and length.isdigit() and int(length) > limit) or len(self.request.body) > limit:
            self.write_gateway_error(GatewayError(413, ErrorKind.REQUEST_TOO_LARGE,
                                                  f"The request body is larger than {limit // 1048576} MB."))

    def on_connection_close(self) -> None:
        """The client left: stop the upstream transfer at once (no paying for unread tokens)."""
        if self.exchange is not None and self.exchange.call is not None:
            self.exchange.call.cancel()


    async def run_exchange(self, route: Route) -> None:
        """Run one chat request through the relay. Handler and exchange point at each other while it
        runs; dropping the handler's side at the end lets reference counting free the whole request
        at once rather than leave ~60 objects a request to the cyclic garbage collector."""
        self.exchange = relay.Exchange(self.gateway, self, self.fmt, route)
        try:
            await self.exchange.run(self.request.body)
        finally:
            self.exchange = None


class ChatHandler(ApiHandler):
    async def post(self) -> None:
        """OpenAI chat completions or Anthropic messages, streamed or not."""
        await self.run_exchange(Route())


class GeminiHandler(ApiHandler):
    async def post(self, version: str, model: str, method: str) -> None:
        """generateContent, streamGenerateContent (SSE with ?alt=sse, else a JSON array) and countTokens."""
        route = Route(model=model, stream=method == "streamGenerateContent",
                      sse=self.get_query_argument("alt", "") == "sse")
        if method == "countTokens":
            await relay.count_tokens(self.gateway, self, self.fmt, route, self.request.body)
            return
        await self.run_exchange(route)


class CountTokensHandler(ApiHandler):
    async def post(self) -> None:
        """Anthropic's count_tokens."""
        await relay.count_tokens(self.gateway, self, self.fmt, Route(), self.request.body)


def listing_format(handler: BaseHandler) -> str:
    """``GET /v1/models`` is shared by three kinds of client: tell them apart by how they
    authenticate (protocols.md §8.4)."""
    headers = handler.request.headers
    if "x-goog-api-key" in headers or "key" in handler.request.query_arguments:
        return "gemini"
    if "anthropic-version" in headers or "x-api-key" in headers:
        return "anthropic"
    return "openai"


class ModelsHandler(ApiHandler):
    def initialize(self, fmt: str = "auto") -> None:
        self.fmt = FORMATS[listing_format(self) if fmt == "auto" else fmt]

    async def get(self, model_id: str | None = None) -> None:
        """The models the calling client may use, in the caller's own list format."""
        client = relay.authenticate(self.gateway, self.request)
        ids = await models.for_client(self.gateway, client)
        model_id = model_id.removeprefix("models/") if model_id else None
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
    (r"/v1/messages", ChatHandler, {"fmt": "anthropic"}),
    (r"/v1/messages/count_tokens", CountTokensHandler, {"fmt": "anthropic"}),
    # Gemini first: its ":method" paths live under /v1/models/ too.
    (r"/(v1beta|v1)/models/([^/:]+?)(?::|%3A)(generateContent|streamGenerateContent|countTokens)",
     GeminiHandler, {"fmt": "gemini"}),
    (r"/v1beta/models", ModelsHandler, {"fmt": "gemini"}),
    (r"/v1beta/models/(.+)", ModelsHandler, {"fmt": "gemini"}),
    (r"/v1/models", ModelsHandler),
    (r"/v1/models/(.+)", ModelsHandler),
    (r"/models", ModelsHandler, {"fmt": "openai"}),
    (r"/models/(.+)", ModelsHandler, {"fmt": "openai"}),
    (r"/health", HealthHandler),
]
