"""Token estimates: what limits reserve before a request goes upstream, and what is recorded when an
upstream reports no usage. One rule for every provider, so a client's limits do not depend on which
backend serves it."""

from __future__ import annotations

from aigateway.neutral import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 85


def tokens_for_chars(chars: int) -> int:
    """A fast, provider-independent estimate: one token per four characters, rounded up.
    Real tokenizers average 3.5-4.5 characters per token on English text."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


def estimate_input(req: ChatRequest) -> int:
    """Input tokens of a request by the same rule, plus a small overhead per message and image."""
    chars = sum(len(s) for s in req.system)
    images = 0
    for msg in req.messages:
        for p in msg.parts:
            if isinstance(p, TextPart):
                chars += len(p.text)
            elif isinstance(p, ToolResultPart):
                chars += len(p.content)
            elif isinstance(p, ToolCallPart):
                chars += len(p.name) + len(p.arguments)
            elif isinstance(p, ImagePart):
                images += 1
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.parameters or ""))
    return (tokens_for_chars(chars) + TOKENS_PER_MESSAGE * (len(req.messages) + len(req.system))
            + TOKENS_PER_IMAGE * images)
