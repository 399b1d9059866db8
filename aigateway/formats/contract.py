"""The codec contract: what every wire-format module in ``aigateway/formats/`` provides.

A codec is a module of pure, synchronous functions and two small stream classes: no I/O, no Tornado,
no clock reads (ids and timestamps come in on ``Start``). ``Codec`` is a ``typing.Protocol`` that
modules satisfy structurally; ``FORMATS`` is typed with it, so mypy checks every codec against it,
and ``tests/test_codec_contract.py`` checks the same at run time (names, signatures, declarations).

Besides translating, a codec declares how its clients reach the gateway (``ENDPOINTS``, ``route``),
how they send their key (``CLIENT_KEYS``), how a shared model listing recognises them
(``LISTING_HINTS``) and how an upstream of its format takes a provider key (``UPSTREAM_AUTH``,
``UPSTREAM_HEADERS``). The route table, key lookup, listing choice and provider headers derive from
those declarations, so a new wire format is one new module registered in ``formats/__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aigateway import neutral
from aigateway.formats.framing import SSEFrame

# Operations an endpoint can serve (``aigateway/api.py`` has one handler class per operation).
CHAT = "chat"
COUNT_TOKENS = "count_tokens"
EMBED = "embed"  # embeddings: a codec with an EMBED endpoint also embeds upstream (``Embedding``)
MODELS = "models"  # GET a listing, or one model when the pattern captures its id
OPERATIONS = (CHAT, COUNT_TOKENS, EMBED, MODELS)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One URL a client of this format calls: a Tornado URL pattern and what it does. Path groups
    of a ``CHAT`` or ``COUNT_TOKENS`` pattern go to the codec's ``route``; a ``MODELS`` pattern may
    capture a model id. ``shared`` marks a listing path several formats answer (``GET /v1/models``):
    the caller's format is then told by its ``LISTING_HINTS``."""

    pattern: str
    operation: str
    shared: bool = False


class StreamDecoding(Protocol):
    """Upstream stream bytes to neutral events (and, on the same-format path, to raw frames too)."""

    def feed(self, data: bytes) -> list[neutral.Event]: ...
    def close(self) -> list[neutral.Event]: ...
    def frames(self, data: bytes) -> list[tuple[SSEFrame, list[neutral.Event]]]: ...


class StreamEncoding(Protocol):
    """Neutral events to the client's stream bytes; ``relay`` re-emits an upstream frame of the
    same format as the client should see it (model name, usage chunk dropped...)."""

    content_type: str

    def encode(self, event: neutral.Event) -> bytes: ...
    def close(self) -> bytes: ...
    def relay(self, frame: SSEFrame, events: list[neutral.Event]) -> bytes: ...


class Codec(Protocol):
    """A wire format, as a module (see the module docstring). The constants are read-only
    properties here so that a module's tuples of any length satisfy them."""

    @property
    def NAME(self) -> str: ...  # the key in FORMATS
    @property
    def ID_PREFIX(self) -> str: ...  # prefix of ids the relay makes up when an upstream gives none
    @property
    def MODELS_PATH(self) -> str: ...  # an upstream's model listing, relative to the provider's base URL
    @property
    def ENDPOINTS(self) -> tuple[Endpoint, ...]: ...
    @property
    def CLIENT_KEYS(self) -> tuple[str, ...]: ...  # "bearer", a header name, or "?name" (query parameter)
    @property
    def LISTING_HINTS(self) -> tuple[str, ...]: ...  # request headers (or "?name") marking a client of it
    @property
    def UPSTREAM_AUTH(self) -> str: ...  # how an upstream takes the provider key: "bearer" or a header
    @property
    def UPSTREAM_HEADERS(self) -> tuple[tuple[str, str], ...]: ...  # fixed headers of every upstream request

    def route(self, path_args: tuple[str, ...], query: Mapping[str, list[bytes]]) -> neutral.Route: ...

    # requests
    def decode_request(self, body: dict, route: neutral.Route) -> neutral.ChatRequest: ...
    def encode_request(self, req: neutral.ChatRequest, policy: neutral.Policy) -> tuple[str, dict]: ...
    def patch_request(self, body: dict, policy: neutral.Policy, route: neutral.Route) -> tuple[str, dict]: ...

    # responses and streams
    def decode_response(self, body: dict) -> neutral.ChatResponse: ...
    def encode_response(self, resp: neutral.ChatResponse, req: neutral.ChatRequest) -> dict: ...
    @property
    def StreamDecoder(self) -> Callable[[], StreamDecoding]: ...  # noqa: N802 -- a class in the module
    @property
    def StreamEncoder(self) -> Callable[[neutral.ChatRequest, neutral.Route], StreamEncoding]: ...  # noqa: N802

    # errors
    def encode_error(self, err: neutral.GatewayError) -> tuple[int, dict[str, str], bytes]: ...
    def decode_error(self, status: int, body: bytes) -> neutral.GatewayError: ...

    # model listings
    def decode_models(self, body: dict) -> list[str]: ...
    def next_models_path(self, body: dict) -> str | None: ...
    def encode_models(self, ids: list[str]) -> dict: ...
    def encode_model(self, model_id: str) -> dict: ...


class Counting(Protocol):
    """What a codec with a ``COUNT_TOKENS`` endpoint provides besides ``Codec``."""

    def decode_count(self, body: dict, route: neutral.Route) -> neutral.ChatRequest: ...
    def encode_count(self, tokens: int) -> dict: ...


class Embedding(Protocol):
    """What a codec with an ``EMBED`` endpoint provides besides ``Codec``: both sides of embeddings,
    so an upstream of its format embeds too (a format without it has no embeddings API)."""

    def decode_embed_request(self, body: dict, route: neutral.Route) -> neutral.EmbedRequest: ...
    def encode_embed_request(self, req: neutral.EmbedRequest, model: str) -> tuple[str, dict]: ...
    def decode_embed_response(self, body: dict) -> neutral.Embeddings: ...
    def encode_embed_response(self, resp: neutral.Embeddings, req: neutral.EmbedRequest) -> dict: ...
