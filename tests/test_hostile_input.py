"""Hostile input, generated (hypothesis) and thrown at every public endpoint of a real gateway in
each wire format: random and malformed bodies, wrong types, huge numbers, deep nesting, odd
unicode, strange headers and path tricks. Never a 500, never a traceback, never a hang, never a
charge for a refused request, and the gateway serves on."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

EXAMPLES = 60
# Derandomized: CI runs the same examples every time (and fails the same way when a guard is removed).
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAKE_PROVIDERS = {"openai": "fake-openai", "anthropic": "fake-anthropic", "gemini": "fake-gemini",
                  "responses": "fake-responses"}

CHAT_ROUTES = {
    "openai": ["/v1/chat/completions", "/chat/completions"],
    "anthropic": ["/v1/messages", "/v1/messages/count_tokens"],
    "gemini": ["/v1beta/models/gemini-2.0-flash:generateContent",
               "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
               "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
               "/v1/models/gemini-2.0-flash:countTokens"],
    "responses": ["/v1/responses", "/responses"],
    "openai-embeddings": ["/v1/embeddings", "/embeddings"],
    "gemini-embeddings": ["/v1beta/models/gemini-embedding-001:embedContent",
                          "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                          "/v1/models/gemini-embedding-001:batchEmbedContents"],
}
KEY_FORMAT = {"openai-embeddings": "openai", "gemini-embeddings": "gemini"}  # how each route's client sends its key
VALID = {
    "openai": {"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
               "max_tokens": 20, "temperature": 0.5, "stream": False, "stop": ["x"],
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
               "tool_choice": "auto", "response_format": {"type": "text"}, "stream_options": {"include_usage": True}},
    "anthropic": {"model": "claude-sonnet-4-20250514", "max_tokens": 20, "system": "be brief",
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                  "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"},
                  "stop_sequences": ["x"], "thinking": {"type": "disabled"}, "stream": False},
    "gemini": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
               "systemInstruction": {"parts": [{"text": "be brief"}]},
               "generationConfig": {"maxOutputTokens": 20, "temperature": 0.5, "stopSequences": ["x"]},
               "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
               "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
    "responses": {"model": "gpt-4o", "instructions": "be brief", "max_output_tokens": 20, "stream": False,
                  "input": [{"role": "developer", "content": "x"},
                            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                            {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
                  "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]}],
                  "tool_choice": "auto", "text": {"format": {"type": "text"}}, "reasoning": {"effort": "low"}},
    "openai-embeddings": {"model": "text-embedding-3-small", "input": ["hi", "there"], "dimensions": 8,
                          "encoding_format": "base64"},
    "gemini-embeddings": {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hi"}]},
                                        "outputDimensionality": 8, "taskType": "RETRIEVAL_QUERY"}]},
}

# -- strategies

huge = st.sampled_from([2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(2**63) - 1, -1, 0, 1e308, -1e308, 5e-324])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), huge,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "🙂" * 50, "a" * 5000, "user", "assistant",
                                     "system", "tool", "model", "text", "image_url", "function", "Bearer"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c,
                                                                                        max_size=4), max_leaves=24)


# Deep nesting is spliced into the JSON text (a placeholder string stands for it while the test
# handles the body), so the test itself never recurses that deep.
deep_values = st.builds("DEEP:{}:{}".format, st.sampled_from(["list", "dict"]),
                        st.sampled_from([64, 400, 900, 1100, 3000]))
DEEP = re.compile(r'"DEEP:(list|dict):(\d+)"')


def deep_json(match: re.Match) -> str:
    depth = int(match.group(2))
    return ("[" * depth + '"x"' + "]" * depth if match.group(1) == "list"
            else '{"a":' * depth + '"x"' + "}" * depth)


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``obj`` (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out += paths(v, (*prefix, k))
    return out


def replaced(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = list(obj) if isinstance(obj, list) else dict(obj)
    copy[path[0]] = replaced(copy[path[0]], path[1:], value)
    return copy


@st.composite
def mutated_bodies(draw: Any, fmt: str) -> Any:
    """A valid body with one to three values replaced by random, huge, deep or wrong-typed ones,
    extra keys mixed in, or a whole random value instead."""
    body: Any = VALID[fmt]
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(body) or [()]))
        body = replaced(body, where, draw(st.one_of(json_values, deep_values, huge)))
    if isinstance(body, dict) and draw(st.booleans()):
        body = {**body, **draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3))}
    return body


def encode(body: Any, surrogates: bool) -> bytes:
    """JSON text for ``body`` (stdlib json keeps huge integers exact); optionally with a lone
    UTF-16 surrogate escape spliced into the first string."""
    text = DEEP.sub(deep_json, json.dumps(body))
    if surrogates and '"' in text:
        text = text.replace('"', '"\\ud800', 1) if text.startswith('"') else text.replace(': "', ': "\\udfff', 1)
    return text.encode()


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[]", b"null", b"0", b'"x"', b"{}" * 1000, b"[" * 5000 + b"]" * 5000,
                     b'{"messages": [' + b"{}," * 20000 + b"{}]}", b'{"a": 1e999999}', b'{"a": -}', b"\xff\xfe{}",
                     b'{"model": "\\ud800"}', b'{"a":' + b"9" * 5000 + b"}", b'{"a": "\x00"}', b"{\"a\": 1,}"]),
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
path_tricks = st.sampled_from([
    "../../admin", "..%2F..%2Fadmin", "%2e%2e%2f%2e%2e%2fv1%2fmessages", "gemini-2.0-flash%00", "a%0d%0aX-Injected:1",
    "x?key=abc", "x#frag", "gemini/../../../v1/chat/completions", "%E2%80%AE", "🙂", "a" * 3000, "%", "%zz", ".",
    "models%2Fgemini-2.0-flash", "gemini-2.0-flash:generateContent", " ", "\\..\\..\\", "%25%32%65%25%32%65",
])


# -- the gateway under attack


@pytest.fixture(scope="module")
def target(gateway, fake_upstream) -> dict:
    log = gateway.folder / "logs" / "gateway.log"
    keys = {fmt: gateway.add_client(f"hostile-{fmt}", provider) for fmt, provider in FAKE_PROVIDERS.items()}
    keys |= {route: keys[fmt] for route, fmt in KEY_FORMAT.items()}
    state = {"server": gateway, "fake": fake_upstream, "keys": keys, "log": log, "log_start": len(log.read_text()),
             "http": httpx.Client(base_url=gateway.url, timeout=httpx.Timeout(20.0))}
    yield state
    state["http"].close()


def auth(fmt: str, key: str) -> dict[str, str]:
    fmt = KEY_FORMAT.get(fmt, fmt)
    return {"openai": {"Authorization": f"Bearer {key}"}, "anthropic": {"x-api-key": key,
                                                                           "anthropic-version": "2023-06-01"},
            "gemini": {"x-goog-api-key": key}, "responses": {"Authorization": f"Bearer {key}"}}[fmt]


def check(r: httpx.Response, started: float) -> None:
    """Never a 500, never a traceback or Python detail, always a JSON error body when it fails."""
    assert time.monotonic() - started < 15, "too slow: close to a hang"
    assert r.status_code != 500 and r.status_code < 502 or r.status_code in (502, 503, 504), (r.status_code, r.text)
    assert r.status_code != 500, r.text
    text = r.text
    assert "Traceback" not in text and 'File "' not in text and "Error(" not in text, text[:500]
    if r.status_code == 400 and r.content == b"":  # Tornado's HTTP layer refusing a malformed request
        return
    api = r.request.url.path.startswith(("/v1", "/chat", "/models"))
    if r.status_code >= 400 and r.request.method != "HEAD" and api:
        assert isinstance(json.loads(r.content), dict), r.content[:200]


def with_tool(fmt: str, **function: Any) -> tuple[str, dict]:
    body = VALID[fmt]
    if fmt == "gemini":
        return fmt, {**body, "tools": [{"functionDeclarations": [{"name": "f", **function}]}]}
    return fmt, {**body, "tools": [{"type": "function", "function": {"name": "f", **function}}]}


@SETTINGS
@given(case=st.sampled_from(list(CHAT_ROUTES)).flatmap(lambda fmt: st.tuples(st.just(fmt), mutated_bodies(fmt))),
       route=st.integers(0, 3), upstream=st.sampled_from(list(FAKE_PROVIDERS)),
       surrogates=st.integers(0, 9).map(lambda n: n == 0))
# Inputs that once crashed the gateway (a 500), kept as fixed examples.
@example(case=with_tool("openai", name=1.5), route=0, upstream="openai", surrogates=False)  # the token estimate
@example(case=with_tool("openai", parameters=7), route=0, upstream="anthropic", surrogates=False)  # translation
@example(case=with_tool("gemini", parameters=[None]), route=0, upstream="anthropic", surrogates=False)
@example(case=("gemini", {**VALID["gemini"], "contents": [{"role": "user", "parts": ["DEEP:dict:400"]}]}),
         route=0, upstream="gemini", surrogates=False)  # parses (orjson reads 1024 levels), cannot be re-sent (254)
def test_mutated_bodies_on_every_chat_route(target, case, route, upstream, surrogates):
    fmt, body = case
    path = CHAT_ROUTES[fmt][route % len(CHAT_ROUTES[fmt])]
    payload = encode(body, surrogates)
    started = time.monotonic()
    r = target["http"].post(path, content=payload, headers={**auth(fmt, target["keys"][upstream]),
                                                            "Content-Type": "application/json"})
    check(r, started)


@SETTINGS
@given(fmt=st.sampled_from(list(CHAT_ROUTES)), route=st.integers(0, 3), raw=raw_bodies,
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1",
                                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]))
def test_raw_and_malformed_bytes_on_every_chat_route(target, fmt, route, raw, content_type):
    path = CHAT_ROUTES[fmt][route % len(CHAT_ROUTES[fmt])]
    headers = {**auth(fmt, target["keys"][fmt]), "Content-Type": content_type}
    started = time.monotonic()
    check(target["http"].post(path, content=raw, headers=headers), started)


@SETTINGS
@given(fmt=st.sampled_from(list(CHAT_ROUTES)), name=st.sampled_from(["Authorization", "x-api-key", "x-goog-api-key",
                                                                       "anthropic-version", "Content-Type",
                                                                       "Content-Encoding", "Transfer-Encoding",
                                                                       "X-Forwarded-For", "Origin", "Cookie",
                                                                       "Accept", "Expect", "Host"]),
       value=header_values, prefix=st.sampled_from(["", "Bearer ", "bearer  ", "Basic ", "Bearer sk-"]))
def test_strange_headers(target, fmt, name, value, prefix):
    path = CHAT_ROUTES[fmt][0]
    headers = {**auth(fmt, target["keys"][fmt]), name: prefix + value}
    started = time.monotonic()
    try:
        r = target["http"].post(path, json=VALID[fmt], headers=headers)
    except httpx.LocalProtocolError:  # the client library would not even send it
        return
    except (httpx.RemoteProtocolError, httpx.ReadError):  # Tornado dropping a malformed request is fine
        assert httpx.get(target["server"].url + "/health").status_code == 200
        return
    check(r, started)


@SETTINGS
@given(trick=path_tricks, template=st.sampled_from([
    "/v1beta/models/{}:generateContent", "/v1/models/{}:streamGenerateContent", "/v1beta/models/{}:countTokens",
    "/v1/models/{}", "/v1beta/models/{}", "/models/{}", "/{}", "/v1/{}", "/admin/{}", "/static/{}",
    "/v1/chat/completions/{}", "/v1/chat/completions?{}", "/v1beta/models?key={}&key=x"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"]),
    fmt=st.sampled_from(list(CHAT_ROUTES)))
def test_path_tricks_and_methods(target, trick, template, method, fmt):
    httpx.delete(target["fake"] + "/_fake/requests")  # the fake is shared: judge only what this example sent
    started = time.monotonic()
    url = httpx.URL(target["server"].url + template.format(trick))
    r = target["http"].request(method, url, json=VALID["gemini"] if method == "POST" else None,
                               headers=auth(fmt, target["keys"][fmt]))
    check(r, started)
    model = urllib.parse.unquote(trick)
    if method == "POST" and ":" in template and not re.fullmatch(r"[A-Za-z0-9][\w.:@+\-]*", model, re.ASCII):
        assert "upstream" not in r.text.lower(), r.text  # refused by the gateway, never forwarded
    reached = httpx.get(target["fake"] + "/_fake/requests").json()
    assert all(UPSTREAM_PATHS.fullmatch(req["path"]) for req in reached), [req["path"] for req in reached][-3:]


# Everything the fake upstream may be asked for: a path trick must never reach anything else.
UPSTREAM_PATHS = re.compile(r"/v1/chat/completions|/v1/responses|/v1/embeddings|/v1/messages(/count_tokens)?|"
                            r"/v1(beta)?/models/?|/v1(beta)?/models/[A-Za-z0-9][A-Za-z0-9._:@+\-]*:"
                            r"(generateContent|streamGenerateContent|batchEmbedContents)")


def test_models_listing_and_count_tokens_with_wrong_keys(target):
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer " + "x" * 10000},
                    {"x-goog-api-key": "\u00e9"}, {"x-api-key": ""}):
        for path in ("/v1/models", "/v1beta/models", "/models", "/v1/models/gpt-4o", "/v1/messages/count_tokens"):
            started = time.monotonic()
            try:
                r = target["http"].request("POST" if "count" in path else "GET", path,
                                           headers=headers, json=VALID["anthropic"])
            except (httpx.RemoteProtocolError, UnicodeEncodeError):
                continue
            check(r, started)
            assert r.status_code == 401


def test_nothing_refused_was_charged_and_the_gateway_serves_on(target):
    """Runs last in this module: the request log and the gateway log over everything above."""
    server = target["server"]
    time.sleep(1.2)  # the writer flushes within a second
    rows = [r for fmt in FAKE_PROVIDERS for r in server.log_rows(f"hostile-{fmt}")]
    rows += [r for r in server.log_rows() if r["client_id"] is None]
    assert len(rows) > EXAMPLES
    failed = [r for r in rows if r["status"] >= 400]
    assert failed and all(r["input_tokens"] == r["output_tokens"] == 0 for r in failed), failed[:3]
    # Refused before a model was even resolved (bad JSON, wrong shapes, no key): never admitted.
    refused = [r for r in failed if r["model"] == ""]
    assert len(refused) > EXAMPLES // 2 and all(r["admitted"] == 0 for r in refused), refused[:3]
    assert all(r["admitted"] for r in rows if r["input_tokens"] or r["output_tokens"])
    new_log = target["log"].read_text()[target["log_start"]:]
    assert "Traceback" not in new_log and "Uncaught exception" not in new_log
    assert httpx.get(server.url + "/health").status_code == 200


def test_an_unauthenticated_flood_is_counted_not_logged_row_by_row(fake_upstream, tmp_path):
    """300 requests with bad keys on every inbound API: a bounded sample of request-log rows, no
    log line each, and a summary line (at shutdown at the latest) that counts all of them."""
    from conftest import GatewayServer

    from aigateway.refusals import SAMPLE_PER_MINUTE

    server = GatewayServer(tmp_path, fake_upstream, **{"logging.level": "info"})
    requests = [("/v1/chat/completions", {"Authorization": "Bearer sk-wrong"}, VALID["openai"]),
                ("/v1/messages", {"x-api-key": "sk-ant-wrong"}, VALID["anthropic"]),
                ("/v1beta/models/gemini-2.0-flash:generateContent", {}, VALID["gemini"])]
    started = time.time()
    with httpx.Client(base_url=server.url) as http:
        for i in range(300):
            path, headers, body = requests[i % 3]
            assert http.post(path, headers=headers, json=body).status_code == 401
    minutes = int(time.time() // 60) - int(started // 60) + 1
    server.stop()
    rows = [r for r in server.log_rows() if r["client_id"] is None]
    assert 0 < len(rows) <= SAMPLE_PER_MINUTE * minutes, len(rows)
    assert {r["inbound"] for r in rows} == {"openai", "anthropic", "gemini"} or len(rows) == SAMPLE_PER_MINUTE
    text = (tmp_path / "logs" / "gateway.log").read_text()
    assert text.count("Invalid API key") + text.count("Missing API key") == 0
    counted = sum(int(n) for n in re.findall(r"refused (\d+) requests before authentication", text))
    assert counted == 300, text[-2000:]
    assert len(text.splitlines()) < 50
