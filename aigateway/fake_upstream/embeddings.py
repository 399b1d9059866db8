"""Embeddings: OpenAI ``POST /v1/embeddings`` and Gemini ``embedContent``/``batchEmbedContents``.

Vectors are deterministic: the first values of SHAKE-256 of the text, scaled to [-1, 1), then
normalised to length 1 and rounded to float32 (what the APIs send). So the same text gives the same
vector through any path, and a shorter vector is the start of the full one: OpenAI's ``dimensions``
renormalises it, Gemini's ``outputDimensionality`` does not (Google: only the full 3072-value
embedding is normalised). ``taskType`` and ``title`` are checked, not used. Request shapes:
platform.openai.com/docs/api-reference/embeddings, ai.google.dev/api/embeddings.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from aigateway.fake_upstream.gemini import g
from aigateway.fake_upstream.plan import FakeError, split_knobs, tokens

SIZES = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536,
         "gemini-embedding-001": 3072, "text-embedding-004": 768}
DEFAULT_SIZE = 1536
MAX_INPUTS = 2048  # OpenAI: items in one request
MAX_INPUT_TOKENS = 8192  # OpenAI: tokens in one item
MAX_BATCH = 100  # Gemini: requests in one batchEmbedContents
TASK_TYPES = {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
              "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


def float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def vector(text: str, size: int) -> list[float]:
    """The fake embedding of ``text``: ``size`` values, length 1, float32."""
    raw = hashlib.shake_256(text.encode()).digest(2 * size)
    values = [v / 32768 - 1 for v in struct.unpack(f"<{size}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return float32([v / norm for v in values])


def merged_knobs(texts: list[str]) -> tuple[list[str], dict[str, str]]:
    """Each text without its ``#fake:`` directives, and the directives of all of them."""
    knobs: dict[str, str] = {}
    cleaned = []
    for text in texts:
        clean, found = split_knobs(text)
        cleaned.append(clean)
        knobs.update(found)
    return cleaned, knobs


def openai_inputs(value: Any) -> list[str | list[int]]:
    """``input`` as a list of items: strings or token arrays; empty or mixed input is rejected."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(t, int) for t in value)):
        value = [value]
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise FakeError(400, INVALID_INPUT)
    for item in value:
        is_tokens = isinstance(item, list) and item and all(isinstance(t, int) and t >= 0 for t in item)
        if not (is_tokens or (isinstance(item, str) and item)):
            raise FakeError(400, INVALID_INPUT)
    return value


def openai_embeddings(body: dict) -> tuple[dict, int, dict[str, str]]:
    """An embeddings request → (response, prompt tokens, knobs). A token array embeds as its numbers
    joined by spaces; ``encoding_format: base64`` packs little-endian float32."""
    model = body.get("model")
    if not model:
        raise FakeError(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if body.get("input") is None:
        raise FakeError(400, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
    items = openai_inputs(body["input"])
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise FakeError(400, f"Invalid value for 'encoding_format' = {encoding}. Supported values: "
                             "['float', 'base64'].", "encoding_format", "invalid_value")
    size = SIZES.get(model, DEFAULT_SIZE)
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not model.startswith("text-embedding-3"):
            raise FakeError(400, "This model does not support specifying dimensions.", "dimensions")
        if not isinstance(dimensions, int) or not 1 <= dimensions <= size:
            raise FakeError(400, f"Invalid value for 'dimensions' = {dimensions}. Must be between 1 and {size}.",
                            "dimensions", "invalid_value")
        size = dimensions
    texts, knobs = merged_knobs([i if isinstance(i, str) else " ".join(map(str, i)) for i in items])
    counts = [len(i) if isinstance(i, list) else len(tokens(i)) for i in items]
    longest = max(counts)
    if longest > MAX_INPUT_TOKENS:
        raise FakeError(400, f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you "
                             f"requested {longest} tokens ({longest} in your prompt; 0 for the completion). "
                             "Please reduce your prompt; or completion length.")
    data = []
    for index, text in enumerate(texts):
        values = vector(text, size)
        embedding: Any = base64.b64encode(struct.pack(f"<{size}f", *values)).decode() \
            if encoding == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    used = sum(counts)
    return ({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": used, "total_tokens": used}},
            used, knobs)


def gemini_request(request: Any, where: str, model: str) -> tuple[str, int]:
    """One EmbedContentRequest → (text, size); ``where`` names it in errors as Google does."""
    parts = g(g(request, "content"), "parts") or []
    text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    if not text:
        raise FakeError(400, f"* {where}.content: content is not specified")
    task = g(request, "taskType")
    if task is not None and task not in TASK_TYPES:
        raise FakeError(400, f"Invalid value at '{where}.task_type' "
                             f'(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), "{task}"')
    size = full = SIZES.get(model, DEFAULT_SIZE)
    wanted = g(request, "outputDimensionality")
    if wanted is not None:
        if not isinstance(wanted, int) or not 1 <= wanted <= full:
            raise FakeError(400, f"* {where}.output_dimensionality: must be between 1 and {full}")
        size = wanted
    return text, size


def gemini_embeddings(body: dict, model: str, batch: bool) -> tuple[dict, int, dict[str, str]]:
    """embedContent (``batch`` false) or batchEmbedContents → (response, input tokens, knobs)."""
    if batch:
        requests = g(body, "requests")
        if not isinstance(requests, list) or not requests:
            raise FakeError(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(requests) > MAX_BATCH:
            raise FakeError(400, f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in "
                                 "one batch")
        asked = [gemini_request(r, f"BatchEmbedContentsRequest.requests[{i}]", model) for i, r in enumerate(requests)]
    else:
        asked = [gemini_request(body, "EmbedContentRequest", model)]
    texts, knobs = merged_knobs([text for text, _ in asked])
    full = SIZES.get(model, DEFAULT_SIZE)
    embeddings = [{"values": vector(text, full)[:size]} for text, (_, size) in zip(texts, asked, strict=True)]
    used = sum(len(tokens(text)) for text, _ in asked)
    return ({"embeddings": embeddings} if batch else {"embedding": embeddings[0]}), used, knobs
