"""A fake LLM provider speaking the OpenAI (chat completions, Responses, embeddings), Anthropic and Gemini
(generateContent, embeddings) wire formats, for tests.

It is the only stand-in our tests use, so it aims to be exact enough that the official SDKs and the agent
CLIs (Claude Code, Gemini CLI, Codex), pointed straight at it, accept everything. Each request is read
into a format-neutral ``Ask`` (``plan.py``), answered by one ``Reply`` and rendered by the format's module
(``openai.py``, ``anthropic.py``, ``gemini.py``, ``responses.py``). Replies are deterministic:

* Text: ``"[system: S1 | S2] "`` (only when the request has a system prompt) + ``"Echo: "`` + the text
  of the last user message, with knob directives removed; each inline image adds
  ``" [image: <mime>, <decoded bytes> bytes]"``, each URL image ``" [image url: <url>]"``.
* Tool result as the last turn: the same system prefix + ``"Tool <name or id> returned: <content>"``
  (several results joined by ``" | "``).
* Tool call: when the request has tools, tool choice is not none and the last turn is user text, the
  reply is one call to the forced tool (else the first), arguments built from its JSON schema
  (string → "test", or "Oslo" for ``city``; number/integer → 1; boolean → true; array → []; object → {};
  an ``enum`` → its first value), or the ``args`` knob's. No text comes with it. Responses API: tools
  inside a ``namespace`` count (the call names its namespace); hosted tools (``web_search``...) and
  ``custom`` tools are accepted and never called; a forced hosted tool means a text answer.
* Thinking (Anthropic ``thinking`` enabled/adaptive, Gemini ``includeThoughts``, OpenAI
  ``reasoning_effort``, Responses ``reasoning.effort`` other than none or a ``reasoning.summary``): the
  thought "Let me think about this." comes first and counts as output (Responses: a ``reasoning`` item
  whose summary is the thought, with an opaque ``encrypted_content`` when ``include`` names
  ``reasoning.encrypted_content``; replayed reasoning items are accepted and ignored).
* JSON mode (OpenAI ``response_format``, Responses ``text.format``, Gemini ``responseMimeType``,
  Anthropic ``output_config.format``): the reply is ``{"echo": "<last user text>"}``.
* Tokens: the reply splits on ``\\S+\\s*``; output = text tokens + thought tokens + a tool call's
  ``ceil(len(args JSON) / 4)`` (at least 1). Input = ``ceil(chars of system, message text, tool
  arguments/results and tools JSON / 4) + 3 per message``. The max-tokens cap truncates text (finish
  length / max_tokens / MAX_TOKENS; Responses: status ``incomplete``, and ``max_output_tokens`` below 16
  is a 400 as on the real API); a stop sequence cuts before itself. Tool calls are never truncated.
* Streams send one token per chunk; tool arguments come in at least two fragments (Gemini: whole).
* Embeddings (OpenAI ``/v1/embeddings``; Gemini ``:embedContent``, ``:batchEmbedContents``): the vector
  of a text depends on the text alone (see ``embeddings.py``), so one fetched through a gateway can be
  compared with one fetched directly; usage counts the fake tokens of each input (a token array: its
  length).

Knobs, written ``#fake:key=value`` anywhere in the last user text (taken from the latest user message
that has text, so they also apply to the turn after a tool call):
``chunks=N`` (N text chunks), ``delay=S`` (sleep between content chunks), ``stall=S`` (sleep after the
first content chunk; non-streaming: before answering), ``wait=S`` (sleep before the response starts,
streams included: no status line, no byte, as an upstream that times out before answering),
``status=CODE`` (that HTTP error in the format's
shape), ``retry_after=S`` (``retry-after`` header, Gemini RetryInfo), ``fail_after=N`` (in-band stream
error before content chunk N+1, for Responses a ``response.failed`` event; non-streaming: a 500, 529
for Anthropic), ``drop_after=N`` (close the TCP connection before content chunk N+1; non-streaming:
after half the body), ``tool=NAME`` (force a call; ``tool=none``: answer with text whatever the tools),
``args=JSON`` (the call's arguments: a JSON object written without spaces, a space inside a string
spelled ``\\u0020``, or the object's base64url, e.g. to make an agent CLI read a real file),
``utf8split=1`` (split a multi-byte character across two writes), ``html=1`` (200 text/html page),
``malformed=1`` (invalid JSON body, or one invalid SSE data line and then the end), ``stamp=1`` (SSE
streams: each event is preceded by the comment ``: t=<seconds>``, the system-wide monotonic clock
as the event is written, so a client on the same machine can measure each event's latency),
``linger=S`` (streams: keep the response open S seconds after the last event, as a real upstream may
before it ends the chunked body; SDKs that stop at ``[DONE]`` or an error event hang up first).
``fail_after``/``drop_after`` with N at or above the number of content chunks have no effect. Knobs
apply to chat and embedding requests (found in any input text; the non-streaming ones), not to
count-tokens or model listing.

Knobs can also be set on the instance, for requests that do not say them: ``PUT /_fake/knobs`` with
``{"knobs": {"status": "503"}, "key": "sk-...", "times": 2}`` (``key``: only requests made with that API
key; ``times``: only the next N; both optional), ``DELETE /_fake/knobs`` to clear; so one upstream of
several, or one key of a pool, can be made to fail in any of the ways above.

Control: ``GET/DELETE /_fake/requests`` (recent API requests, header names lowercased) and
``GET /_fake/stats`` (TCP connections, API requests, and tokens in usage actually delivered).
"""

from __future__ import annotations

from aigateway.fake_upstream.server import make_app, serve

__all__ = ["make_app", "serve"]
