"""Wire formats. Every module here exposes the same names (the codec contract), pure and
synchronous: no I/O, no Tornado, no clock reads.

- ``NAME``: the format's name, a key of ``FORMATS``; ``ID_PREFIX`` for ids the relay makes up.
- ``decode_request(body: dict, route: Route) -> ChatRequest``: client body to the neutral model;
  raises ``GatewayError`` (400) for a malformed request. Unknown fields go to ``req.extra``.
- ``encode_request(req: ChatRequest, policy: Policy) -> (path, body)``: neutral model to the
  upstream body; ``path`` is relative to the provider's base URL, with query string if any.
- ``patch_request(body: dict, policy: Policy, route: Route) -> (path, body)``: the same-format
  fast path; patches model, system prompt and max-tokens in place so unknown fields survive.
- ``decode_response(body: dict) -> ChatResponse`` / ``encode_response(resp, req) -> dict``.
- ``StreamDecoder()``: ``feed(bytes) -> list[Event]``, ``close() -> list[Event]``, and
  ``frames(bytes) -> list[(SSEFrame, list[Event])]`` for the fast path's tap.
- ``StreamEncoder(req, route)``: ``encode(event) -> bytes``, ``close() -> bytes``,
  ``relay(frame, events) -> bytes`` (fast path: the upstream frame as the client should see it),
  and ``content_type``.
- ``encode_error(err) -> (status, headers, body)`` / ``decode_error(status, body) -> GatewayError``.
- ``decode_models(body) -> list[str]`` / ``encode_models(ids) -> dict``; ``MODELS_PATH``, and
  ``next_models_path(body) -> str | None``, the next page of a paged listing.
"""

from __future__ import annotations

from types import ModuleType

from aigateway.formats import anthropic, gemini, openai

FORMATS: dict[str, ModuleType] = {"openai": openai, "anthropic": anthropic, "gemini": gemini}
