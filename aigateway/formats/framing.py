"""Stream framing with no I/O: bytes in, frames out (the h11 / httpx-sse way).

Lines are split on bytes and decoded per complete line: ``\\n`` never occurs inside a multi-byte
UTF-8 sequence, so characters split across network chunks arrive intact without decoder state.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class SSEFrame:
    """One server-sent event: its ``event`` name (or None), joined ``data`` and its raw bytes."""

    event: str | None
    data: str
    raw: bytes


class SSEDecoder:
    """Splits a text/event-stream into events; accepts LF, CRLF and CR line ends and comments."""

    def __init__(self) -> None:
        self._buf = b""
        self._raw: list[bytes] = []
        self._event: str | None = None
        self._data: list[str] = []

    # Whole events at a time when the stream uses LF line ends only (the usual case); a subclass
    # that must see every line (Gemini's bare JSON lines) turns this off.
    whole_events = True

    def feed(self, data: bytes) -> list[SSEFrame]:
        """Add bytes; return the events completed by them."""
        if (data[:6] == b"data: " and data.find(b"\n") == len(data) - 2 and data[-1:] == b"\n"
                and not self._buf and not self._raw and self.whole_events and b"\r" not in data):
            # the usual chunk, when nothing is under way: exactly one event of one data line
            return [SSEFrame(None, data[6:-2].decode("utf-8", "replace"), data)]
        buf = self._buf + data
        frames: list[SSEFrame] = []
        if not self.whole_events or b"\r" in buf:
            self._buf = buf[self._lines(buf, 0, frames):]
            return frames
        start = self._lines(buf, 0, frames, to_event_end=True) if self._raw else 0
        while True:
            while buf[start : start + 1] == b"\n":  # blank lines between events: nothing to end
                start += 1
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._event_block(buf[start:end].split(b"\n"), buf[start : end + 2], frames)
            start = end + 2
        self._buf = buf[self._lines(buf, start, frames):] if start < len(buf) else b""
        return frames

    def _lines(self, buf: bytes, start: int, frames: list[SSEFrame], to_event_end: bool = False) -> int:
        """Consume the complete lines of ``buf`` from ``start`` (only up to the end of the event
        under way when ``to_event_end``); returns where the unconsumed rest begins."""
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl >= 0 else n)
            if cr >= 0:
                if cr == n - 1:  # a CR at the very end may be the first half of CRLF
                    break
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif nl >= 0:
                end, nxt = nl, nl + 1
            else:
                break
            self._line(buf[start:end], buf[start:nxt], frames)
            start = nxt
            if to_event_end and not self._raw:
                break
        return start

    def _event_block(self, lines: list[bytes], raw: bytes, frames: list[SSEFrame]) -> None:
        """One whole event (its lines, none blank, and its raw bytes), as ``_line`` would see it line
        by line with nothing under way."""
        if len(lines) == 1 and lines[0][:6] == b"data: ":  # the usual event: one data line
            frames.append(SSEFrame(None, lines[0][6:].decode("utf-8", "replace"), raw))
            return
        event: str | None = None
        data: list[bytes] = []
        for line in lines:
            if line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
        if data or event is not None:
            frames.append(SSEFrame(event, b"\n".join(data).decode("utf-8", "replace"), raw))

    def close(self) -> list[SSEFrame]:
        """End of stream: a final event without its blank line still counts."""
        frames: list[SSEFrame] = []
        if self._buf:
            # a CR held back as a possible CRLF half is a line end after all, not data
            line = self._buf[:-1] if self._buf.endswith(b"\r") else self._buf
            self._line(line, self._buf, frames)
            self._buf = b""
        if self._data or self._event:
            self._line(b"", b"", frames)
        return frames

    def _line(self, line: bytes, raw: bytes, frames: list[SSEFrame]) -> None:
        if not line:
            if self._data or self._event is not None:
                self._raw.append(raw)
                frames.append(SSEFrame(self._event, "\n".join(self._data), b"".join(self._raw)))
            self._raw, self._event, self._data = [], None, []
            return
        self._raw.append(raw)
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE event from already-encoded JSON data."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def sse_json(obj: object, event: str | None = None) -> bytes:
    return sse(orjson.dumps(obj), event)


class JSONArrayEncoder:
    """Writes elements as one JSON array, the way Gemini streams without ``alt=sse``."""

    def __init__(self) -> None:
        self._count = 0

    def encode(self, data: bytes) -> bytes:
        self._count += 1
        return (b"[" if self._count == 1 else b",\r\n") + data

    def close(self) -> bytes:
        return b"]" if self._count else b"[]"


class FrameDecoder:
    """Base of every format's StreamDecoder: framing here, ``_decode(frame) -> events`` in the format.
    ``frames`` serves the fast path's tap (raw frame plus its events); ``feed``/``close`` the rest."""

    def __init__(self, lines: SSEDecoder | None = None) -> None:
        self._lines = lines or SSEDecoder()

    def _decode(self, frame: SSEFrame) -> list:
        raise NotImplementedError

    def frames(self, data: bytes) -> list[tuple[SSEFrame, list]]:
        return [(f, self._decode(f)) for f in self._lines.feed(data)]

    def feed(self, data: bytes) -> list:
        return [ev for f in self._lines.feed(data) for ev in self._decode(f)]

    def close(self) -> list:
        return [ev for f in self._lines.close() for ev in self._decode(f)]
