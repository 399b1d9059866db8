"""Wire formats: one codec module per format, each satisfying ``contract.Codec`` (pure and
synchronous: no I/O, no Tornado, no clock reads). A new format is a new module added here."""

from __future__ import annotations

from aigateway.formats import anthropic, gemini, openai, responses
from aigateway.formats.contract import Codec

FORMATS: dict[str, Codec] = {
    "openai": openai, "anthropic": anthropic, "gemini": gemini, "responses": responses}  # key: the codec's NAME
