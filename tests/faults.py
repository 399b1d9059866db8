"""Helpers shared by the fault tests: one chat request in any inbound wire format, and the check
that an answer is a well-formed error in that format (a JSON error body, or a stream whose last
event is an error event)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import orjson

from aigateway.formats import FORMATS as REGISTRY

Request = tuple[str, dict, dict]  # path, headers, body


def _openai(key: str, text: str, stream: bool, model: str) -> Request:
    return ("/v1/chat/completions", {"Authorization": f"Bearer {key}"},
            {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})


def _anthropic(key: str, text: str, stream: bool, model: str) -> Request:
    return ("/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"},
            {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}], "stream": stream})


def _gemini(key: str, text: str, stream: bool, model: str) -> Request:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return (f"/v1beta/models/{model}:{action}", {"x-goog-api-key": key},
            {"contents": [{"role": "user", "parts": [{"text": text}]}]})


def _responses(key: str, text: str, stream: bool, model: str) -> Request:
    return ("/v1/responses", {"Authorization": f"Bearer {key}"}, {"model": model, "input": text, "stream": stream})


# One chat request per inbound format, written by hand in that format's wire shape (not with our
# codecs). Every registered format must have one: a new codec fails here until its request is added.
CHAT_REQUESTS: dict[str, Callable[[str, str, bool, str], Request]] = {
    "openai": _openai, "anthropic": _anthropic, "gemini": _gemini, "responses": _responses}
assert set(CHAT_REQUESTS) == set(REGISTRY), f"add a chat request for {set(REGISTRY) - set(CHAT_REQUESTS)}"
FORMATS = tuple(REGISTRY)
# How a provider speaking each format upstream is configured: its settings, and the fake's path for it.
UPSTREAM_SETTINGS: dict[str, tuple[dict, str]] = {
    "openai": ({"type": "openai"}, "/v1"), "responses": ({"type": "openai", "api": "responses"}, "/v1"),
    "anthropic": ({"type": "anthropic"}, ""), "gemini": ({"type": "gemini"}, "")}
assert set(UPSTREAM_SETTINGS) == set(REGISTRY), f"add upstream settings for {set(REGISTRY) - set(UPSTREAM_SETTINGS)}"


def upstream_provider(fmt: str, fake_url: str, **settings: Any) -> dict:
    """A provider speaking ``fmt`` to the fake upstream at ``fake_url``."""
    fields, suffix = UPSTREAM_SETTINGS[fmt]
    return {**fields, "base_url": fake_url + suffix, **settings}


def chat_request(fmt: str, key: str, text: str, stream: bool, model: str = "gpt-4o") -> Request:
    """(path, headers, body) of a one-message chat request in the inbound format ``fmt``."""
    return CHAT_REQUESTS[fmt](key, text, stream, model)


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes


def send(url: str, fmt: str, key: str, text: str, stream: bool, timeout: float = 30) -> Answer:
    path, headers, body = chat_request(fmt, key, text, stream)
    r = httpx.post(url + path, headers=headers, json=body, timeout=timeout)
    return Answer(r.status_code, r.headers, r.content)


def sse_data(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE event; data that is not JSON is kept as text."""
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        event, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                event = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if data:
            raw = b"\n".join(data)
            try:
                out.append((event, orjson.loads(raw)))
            except orjson.JSONDecodeError:
                out.append((event, raw.decode("utf-8", "replace")))
    return out


def error_object(fmt: str, obj: Any) -> str | None:
    """The message of ``obj`` if it is an error in ``fmt``'s shape, else None."""
    if not isinstance(obj, dict):
        return None
    if fmt == "anthropic":
        err = obj.get("error") if obj.get("type") == "error" else None
        ok = isinstance(err, dict) and isinstance(err.get("type"), str)
    elif fmt == "gemini":
        err = obj.get("error")
        ok = isinstance(err, dict) and isinstance(err.get("code"), int) and isinstance(err.get("status"), str)
    elif fmt == "responses" and obj.get("type") == "response.failed":  # in-band: the failed response
        err = (obj.get("response") or {}).get("error")
        ok = isinstance(err, dict) and isinstance(err.get("code"), str)
    else:
        err = obj.get("error")
        ok = isinstance(err, dict) and "type" in err and "code" in err and "param" in err
    return err["message"] if ok and isinstance(err.get("message"), str) else None


def clean_error(fmt: str, answer: Answer) -> str | None:
    """The error message when ``answer`` is a well-formed error for a ``fmt`` client: a 4xx/5xx
    JSON body in the format's shape, or a 200 stream that ends with an error event and carries
    nothing malformed. None otherwise."""
    if answer.status >= 400:
        try:
            return error_object(fmt, orjson.loads(answer.body))
        except orjson.JSONDecodeError:
            return None
    events = [data for _, data in sse_data(answer.body) if data != "[DONE]"]
    if not events or any(isinstance(data, str) for data in events):
        return None
    return error_object(fmt, events[-1])


class Silent:
    """A TCP server that accepts connections and reads, but never answers (with ``reply``: answers
    every connection with that fixed reply, then closes)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                finally:
                    conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
