"""Token counts known before a request goes upstream: an estimate (what per-request caps, count
endpoints and requests the upstream reports no usage for use) and an upper bound (what the daily
input quota reserves, so concurrent requests can never overshoot it). One rule for every provider,
so a client's limits do not depend on which backend serves it; the upstream's exact count replaces
both when the answer arrives.

The bound: every tokenizer the gateway's providers use is byte-level (OpenAI's BPE) or falls back
to bytes (SentencePiece), so a text never has more tokens than its UTF-8 bytes. On top come the
per-message and per-tool tokens the chat templates add (a few each), and a fixed allowance per
image, which cannot be bounded without decoding it: ``IMAGE_BOUND`` covers the largest per-image
cost the providers document for images they accept at full resolution (OpenAI's patch-based
models: 1,536 patches times up to 2.46; Anthropic: about 1,600 for a 1,568-pixel image; Gemini:
258 per 768-pixel tile).
"""

from __future__ import annotations

from typing import NamedTuple

from aigateway.neutral import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 85
# Upper-bound allowances (see the module docstring).
BOUND_PER_MESSAGE = 8  # role and separators of a chat template, generously
BOUND_PER_TOOL = 32  # a function definition's framing around its name, description and schema
IMAGE_BOUND = 4_000


def tokens_for_chars(chars: int) -> int:
    """A fast, provider-independent estimate: one token per four characters, rounded up.
    Real tokenizers average 3.5-4.5 characters per token on English text (far fewer for CJK)."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


class InputSize(NamedTuple):
    estimate: int  # typical: per-request caps, count endpoints, requests without usage
    bound: int  # never below the real count (images: see IMAGE_BOUND): quota reservations


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def measure_input(req: ChatRequest, system: str = "") -> InputSize:
    """The request's input tokens, estimated and bounded, the client's system prompt included."""
    texts = list(req.system)
    images = 0
    for msg in req.messages:
        for p in msg.parts:
            if isinstance(p, TextPart):
                texts.append(p.text)
            elif isinstance(p, ToolResultPart):
                texts.append(p.content)
            elif isinstance(p, ToolCallPart):
                texts += (p.name, p.arguments)
            elif isinstance(p, ImagePart):
                images += 1
    for tool in req.tools:
        texts += (tool.name, tool.description or "", str(tool.parameters or ""))
    messages = len(req.messages) + len(req.system)
    estimate = (tokens_for_chars(sum(map(len, texts))) + TOKENS_PER_MESSAGE * messages
                + TOKENS_PER_IMAGE * images + estimate_tokens(system))
    bound = (sum(map(_utf8, texts)) + _utf8(system) + BOUND_PER_MESSAGE * (messages + 2)
             + BOUND_PER_TOOL * len(req.tools) + IMAGE_BOUND * images)
    return InputSize(estimate, bound)


def measure_embed_input(inputs: list[str | list[int]]) -> InputSize:
    """An embeddings request's input tokens: a token array is its length; a text as in chat (its
    UTF-8 bytes bound it), with no per-message framing."""
    estimate = bound = 0
    for item in inputs:
        if isinstance(item, str):
            estimate, bound = estimate + estimate_tokens(item), bound + _utf8(item)
        else:
            estimate, bound = estimate + len(item), bound + len(item)
    return InputSize(estimate, bound)
