"""SSE framing and the JSON-array writer, fed the way a network delivers bytes: in arbitrary pieces."""

from __future__ import annotations

import orjson
import pytest

from aigateway.formats.framing import JSONArrayEncoder, SSEDecoder, SSEFrame, sse, sse_json

TEXT = "héllo 🌍 日本"

# One event per entry, as the exact bytes an upstream sends for it (comments, names, multi-line data, UTF-8).
EVENTS = [
    b'data: {"n":1}\n\n',
    b": ping\nevent: message_start\ndata: {\"type\":\"message_start\"}\n\n",
    b"data: first line\ndata: second line\n\n",
    b"event: text\ndata:" + TEXT.encode() + b"\n\n",
    b"id: 7\nretry: 100\ndata: [DONE]\n\n",
]
STREAM = b"".join(EVENTS)
EXPECTED = [
    (None, '{"n":1}'),
    ("message_start", '{"type":"message_start"}'),
    (None, "first line\nsecond line"),
    ("text", TEXT),
    (None, "[DONE]"),
]


def decode(*chunks: bytes) -> list[SSEFrame]:
    """Feed each chunk in turn, then close: everything one stream yields."""
    decoder = SSEDecoder()
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    return frames + decoder.close()


def summary(frames: list[SSEFrame]) -> list[tuple[str | None, str]]:
    return [(f.event, f.data) for f in frames]


def with_line_ends(data: bytes, end: bytes) -> bytes:
    return data.replace(b"\n", end)


def test_whole_stream():
    frames = decode(STREAM)
    assert summary(frames) == EXPECTED
    assert [f.raw for f in frames] == EVENTS


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_two_way_split(end):
    stream = with_line_ends(STREAM, end)
    for i in range(len(stream) + 1):
        frames = decode(stream[:i], stream[i:])
        assert summary(frames) == EXPECTED, f"split at {i}"
        assert b"".join(f.raw for f in frames) == stream, f"split at {i}"


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_byte_by_byte(end):
    stream = with_line_ends(STREAM, end)
    frames = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert summary(frames) == EXPECTED
    assert [f.raw for f in frames] == [with_line_ends(e, end) for e in EVENTS]


def test_events_are_delivered_as_soon_as_their_blank_line_arrives():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert summary(decoder.feed(b"\ndata: b")) == [(None, "a")]
    assert summary(decoder.feed(b"\n\n")) == [(None, "b")]
    assert decoder.close() == []


def test_cr_at_chunk_boundary_followed_by_lf_is_one_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the LF completes CRLF; it is not the blank line
    frames = decoder.feed(b"\r\n")
    assert summary(frames) == [(None, "a")]
    assert frames[0].raw == b"data: a\r\n\r\n"
    assert decoder.close() == []


def test_cr_lf_of_the_blank_line_split_across_chunks():
    frames = decode(b"data: a\r\n\r", b"\ndata: b\r\n\r\n")
    assert summary(frames) == [(None, "a"), (None, "b")]
    assert [f.raw for f in frames] == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]


def test_mixed_line_ends_in_one_stream():
    assert summary(decode(b"data: a\r\n\ndata: b\r\rdata: c\n\r\n")) == [(None, "a"), (None, "b"), (None, "c")]


def test_comment_only_blocks_give_no_event():
    assert decode(b": ping\n\n", b":\n\n", b": keep-alive\r\n\r\n") == []


def test_comment_inside_an_event_is_skipped_but_kept_in_raw():
    frames = decode(b"data: a\n: note\ndata: b\n\n")
    assert summary(frames) == [(None, "a\nb")]
    assert frames[0].raw == b"data: a\n: note\ndata: b\n\n"


def test_extra_blank_lines_between_events_are_ignored():
    assert summary(decode(b"\n\ndata: a\n\n\n\n\ndata: b\n\n")) == [(None, "a"), (None, "b")]


def test_only_one_space_after_the_colon_is_dropped():
    assert summary(decode(b"data:x\n\ndata:  y\n\ndata\n\n")) == [(None, "x"), (None, " y"), (None, "")]


def test_event_name_without_data():
    assert summary(decode(b"event: ping\n\n")) == [("ping", "")]


@pytest.mark.parametrize("tail", [b"", b"\n", b"\r\n", b"\r"], ids=["none", "LF", "CRLF", "CR"])
def test_last_event_without_blank_line_is_delivered_by_close(tail):
    decoder = SSEDecoder()
    assert summary(decoder.feed(b"data: a\n\nevent: end\ndata: last" + tail)) == [(None, "a")]
    frames = decoder.close()
    assert summary(frames) == [("end", "last")]
    assert frames[0].raw == b"event: end\ndata: last" + tail
    assert decoder.close() == []


def test_close_on_a_fresh_or_drained_decoder_is_empty():
    assert SSEDecoder().close() == []
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    assert decoder.close() == []


def test_multibyte_utf8_split_inside_a_character():
    payload = orjson.dumps({"text": TEXT})
    stream = b"data: " + payload + b"\n\n"
    start = stream.index(TEXT.encode())
    for i in range(start, start + len(TEXT.encode()) + 1):  # includes every split inside a character
        frames = decode(stream[:i], stream[i:])
        assert len(frames) == 1
        assert orjson.loads(frames[0].data) == {"text": TEXT}, f"split at {i}"
        assert frames[0].raw == stream


def test_multibyte_utf8_byte_by_byte():
    stream = b"data: " + TEXT.encode() + b"\r\n\r\n"
    frames = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert summary(frames) == [(None, TEXT)]


def test_invalid_utf8_does_not_raise():
    frames = decode(b"data: \xff\xfe ok\n\n")
    assert frames[0].data.endswith(" ok")


class LineByLine(SSEDecoder):
    whole_events = False


def test_whole_event_fast_path_matches_line_by_line_decoding_at_every_split():
    stream = (b"\n: ping\n\n" + STREAM + b"data: \xff\ndata: \xe2\x82\n\n\n\nevent: e\n\ndata:x\n: c\n\n"
              + b"data: tail\n")
    for i in range(len(stream) + 1):
        for j in (i, min(len(stream), i + 7)):
            fast, slow = SSEDecoder(), LineByLine()
            chunks = (stream[:i], stream[i:j], stream[j:])
            got = [f for c in chunks for f in fast.feed(c)] + fast.close()
            want = [f for c in chunks for f in slow.feed(c)] + slow.close()
            assert got == want, f"split at {i}, {j}"


def test_a_one_event_chunk_completes_the_event_under_way_rather_than_starting_its_own():
    """A chunk that looks like a whole one-line event ends the event whose first lines came before."""
    assert summary(decode(b"data: first line\n", b"data: second line\n\n")) == [(None, "first line\nsecond line")]
    assert summary(decode(b"event: text\n", b"data: x\n\n")) == [("text", "x")]
    assert summary(decode(b"data: {", b'"n":1}\n\n', b'data: {"n":2}\n\n')) == [(None, '{"n":1}'), (None, '{"n":2}')]


def test_one_event_chunks_decode_as_line_by_line_decoding_does():
    """Chunks that are each one event (the one-event fast path), between chunks that are not."""
    chunks = [b'data: {"n":1}\n\n', b"data: x\n", b"data: y\n\n", b"data: \xff\n\n", b"data: a\r\n\r\n",
              b"data: b\n\n", b"event: e\n", b"data: c\n\n", b"data: d\n\ndata: e\n\n", b"data: f\n\n"]
    for order in (chunks, chunks[::-1]):
        fast, slow = SSEDecoder(), LineByLine()
        got = [f for c in order for f in fast.feed(c)] + fast.close()
        want = [f for c in order for f in slow.feed(c)] + slow.close()
        assert got == want


def test_sse_writers_round_trip_through_the_decoder():
    out = sse(b'{"a":1}') + sse_json({"text": TEXT}, "delta") + sse_json([1, 2])
    assert out.startswith(b'data: {"a":1}\n\nevent: delta\ndata: ')
    frames = decode(out)
    assert [f.event for f in frames] == [None, "delta", None]
    assert [orjson.loads(f.data) for f in frames] == [{"a": 1}, {"text": TEXT}, [1, 2]]
    assert b"".join(f.raw for f in frames) == out


@pytest.mark.parametrize("items", [[], [{"a": 1}], [{"a": 1}, {"text": TEXT}, [1, None]]], ids=["0", "1", "3"])
def test_json_array_encoder_output_parses_as_an_array(items):
    encoder = JSONArrayEncoder()
    out = b"".join(encoder.encode(orjson.dumps(item)) for item in items) + encoder.close()
    assert orjson.loads(out) == items
