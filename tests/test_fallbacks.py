"""Routing, fallbacks, retries and key pools end to end: a gateway in front of three fake upstreams
(one per wire format, each a process of its own) and a port where nothing listens. Instance knobs
(``PUT /_fake/knobs``) make one upstream, or one key of a pool, fail in each way a provider can:
before the first byte (refused, 5xx, 429, timeout, a stream failing before its first content event)
a request moves on to the next target; after a byte reached the client, never. Limits count a
request once, whatever its attempts; the log names the target that answered."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import anthropic
import httpx2 as httpx
import openai
import pytest
from conftest import GatewayServer, start_process
from faults import Answer, clean_error, free_port, sse_data
from google import genai

TIMEOUT = 3  # the providers' timeout_seconds: a stall longer than this is a timeout
CLAUDE = "claude-sonnet-4-20250514"


class Fakes:
    """Three fake upstream processes, by name."""

    def __init__(self) -> None:
        self.procs = {name: start_process(["fake-upstream", "--port", "0", "--host", "127.0.0.1"])
                      for name in ("a", "b", "c")}
        self.url = {name: proc.url for name, proc in self.procs.items()}

    def fail(self, name: str, key: str | None = None, times: int | None = None, **knobs: object) -> None:
        rule: dict = {"knobs": knobs}
        if key is not None:
            rule["key"] = key
        if times is not None:
            rule["times"] = times
        assert httpx.put(self.url[name] + "/_fake/knobs", json=rule).status_code == 204

    def heal(self) -> None:
        for url in self.url.values():
            httpx.delete(url + "/_fake/knobs")
            httpx.delete(url + "/_fake/requests")

    def chat_keys(self, name: str) -> list[str]:
        """The API key of each chat request upstream ``name`` received, in order."""
        keys = []
        for r in httpx.get(self.url[name] + "/_fake/requests").json():
            if r["method"] == "POST":
                h = r["headers"]
                keys.append(h.get("authorization", "").removeprefix("Bearer ") or h.get("x-api-key")
                            or h.get("x-goog-api-key"))
        return keys

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    fakes = Fakes()
    yield fakes
    fakes.stop()


@pytest.fixture(autouse=True)
def healed(fakes: Fakes) -> Iterator[None]:
    fakes.heal()
    yield
    fakes.heal()


@pytest.fixture(scope="module")
def routed(fakes: Fakes, fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    down = f"http://127.0.0.1:{free_port()}/v1"
    providers = {
        "a-openai": {"type": "openai", "base_url": fakes.url["a"] + "/v1", "default_model": "gpt-4o",
                     "timeout_seconds": TIMEOUT, "api_keys": [{"key": "sk-a-light", "weight": 1, "label": "light"},
                                                              {"key": "sk-a-heavy", "weight": 3, "label": "heavy"}]},
        "b-anthropic": {"type": "anthropic", "base_url": fakes.url["b"], "api_key": "sk-ant-b",
                        "default_model": CLAUDE, "timeout_seconds": TIMEOUT},
        "c-gemini": {"type": "gemini", "base_url": fakes.url["c"], "api_key": "gm-c",
                     "default_model": "gemini-2.0-flash", "timeout_seconds": TIMEOUT},
        "down": {"type": "openai", "base_url": down, "api_key": "sk-down", "timeout_seconds": TIMEOUT},
        "a2-openai": {"type": "openai", "base_url": fakes.url["a"] + "/v1", "api_key": "sk-a2-only",
                      "timeout_seconds": TIMEOUT},  # a pool of one, for a key the upstream refuses
    }
    routes = {
        "smart": {"targets": [{"provider": "a-openai", "model": "gpt-4o"}, {"provider": "b-anthropic", "model": CLAUDE},
                              {"provider": "c-gemini", "model": "gemini-2.0-flash"}]},
        "resilient": {"targets": [{"provider": "down", "model": "gpt-4o"},
                                  {"provider": "b-anthropic", "model": CLAUDE}]},
        "patient": {"targets": [{"provider": "b-anthropic", "model": CLAUDE}], "retries": 2, "retry_max_seconds": 5},
        "strict": {"targets": [{"provider": "a-openai", "model": "gpt-4o"}, {"provider": "c-gemini"}],
                   "fallback_on": [503]},
        "guarded": {"targets": [{"provider": "a2-openai", "model": "gpt-4o"},
                                {"provider": "b-anthropic", "model": CLAUDE}]},
    }
    server = GatewayServer(tmp_path_factory.mktemp("routed"), fake_upstream,
                           **{f"providers.{n}": p for n, p in providers.items()}, routes=routes)
    yield server
    server.stop()


_made: dict[str, str] = {}


ROUTES = ("smart", "resilient", "patient", "strict", "guarded")


def client(server: GatewayServer, name: str, **fields: object) -> str:
    """A client whose default provider is a-openai, allowed every route and provider."""
    if name not in _made:
        _made[name] = server.add_client(name, provider="a-openai", allowed_routes=list(ROUTES),
                                        allowed_providers=["b-anthropic", "c-gemini"], **fields)
    return _made[name]


def chat(server: GatewayServer, key: str, model: str, text: str = "hello", stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


def last_row(server: GatewayServer, name: str, count: int) -> dict:
    return server.wait_log_rows(name, count)[count - 1]


FAILURES_BEFORE_THE_FIRST_BYTE = [  # knobs making upstream "a" fail before anything reached the client
    pytest.param({"status": 500}, id="500"), pytest.param({"status": 503}, id="503"),
    pytest.param({"status": 429, "retry_after": 1}, id="429"), pytest.param({"wait": TIMEOUT + 2}, id="timeout"),
    pytest.param({"html": 1}, id="html-page"), pytest.param({"drop_after": 0}, id="reset"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("knobs", FAILURES_BEFORE_THE_FIRST_BYTE)
def test_a_failure_before_the_first_byte_falls_back(routed, fakes, knobs, stream):
    name = f"fb-{'-'.join(f'{k}{v}' for k, v in knobs.items())}-{stream}"
    key = client(routed, name)
    fakes.fail("a", **knobs)
    r = chat(routed, key, "smart", "hello fallback", stream)
    assert r.status_code == 200 and content(r) == "Echo: hello fallback" and clean_error("openai", _answer(r)) is None
    row = last_row(routed, name, 1)
    assert (row["status"], row["provider"], row["model"]) == (200, "b-anthropic", CLAUDE)
    # a 429 rests the key that got it and tries the pool's other key first: three attempts then
    assert row["attempts"] == (3 if knobs.get("status") == 429 else 2), row
    if knobs.get("status") == 429:
        time.sleep(1.1)  # until both keys are back from their rest


def test_a_port_where_nothing_listens_falls_back(routed):
    key = client(routed, "fb-refused")
    r = chat(routed, key, "resilient", "anyone there")
    assert r.status_code == 200 and "Echo: anyone there" in r.text
    row = last_row(routed, "fb-refused", 1)
    assert (row["provider"], row["attempts"]) == ("b-anthropic", 2)


def test_a_stream_failing_before_its_first_content_falls_back_after_it_never(routed, fakes):
    key = client(routed, "fb-stream")
    fakes.fail("a", fail_after=0)  # an in-band error before the first content chunk
    r = chat(routed, key, "smart", "one two three", stream=True)
    assert r.status_code == 200 and content(r) == "Echo: one two three" and clean_error("openai", _answer(r)) is None
    assert last_row(routed, "fb-stream", 1)["provider"] == "b-anthropic"
    fakes.heal()
    fakes.fail("a", fail_after=2)  # after two content chunks: the client has bytes, the error goes in-band
    r = chat(routed, key, "smart", "one two three four five", stream=True)
    assert r.status_code == 200 and clean_error("openai", _answer(r)), r.text
    row = last_row(routed, "fb-stream", 2)
    assert (row["provider"], row["attempts"], row["status"]) == ("a-openai", 1, 500)
    assert fakes.chat_keys("b") == []  # not asked: the client already had part of the answer


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_an_error_the_next_target_would_repeat_does_not_fall_back(routed, fakes, status):
    name = f"fb-no-{status}"
    key = client(routed, name)
    fakes.fail("a", status=status)
    r = chat(routed, key, "smart")
    assert r.status_code == status, r.text
    row = last_row(routed, name, 1)
    assert (row["provider"], row["attempts"]) == ("a-openai", 1) and fakes.chat_keys("b") == [], row


def test_a_key_the_upstream_refuses_is_failed_and_the_route_moves_on(routed, fakes):
    """401 from the upstream is the gateway's provider key refused, not the client's request: the key
    is marked failed (skipped from then on) and the next target answers."""
    key = client(routed, "fb-refused-key")
    fakes.fail("a", key="sk-a2-only", status=401)
    for i in range(3):
        r = chat(routed, key, "guarded", f"guarded {i}")
        assert r.status_code == 200 and content(r) == f"Echo: guarded {i}"
    rows = routed.wait_log_rows("fb-refused-key", 3)
    assert [(r["provider"], r["attempts"]) for r in rows] == [("b-anthropic", 2), ("b-anthropic", 1),
                                                              ("b-anthropic", 1)]
    assert fakes.chat_keys("a").count("sk-a2-only") == 1  # asked once, then skipped


def test_a_route_s_own_fallback_statuses_are_honoured(routed, fakes):
    key = client(routed, "fb-strict")
    fakes.fail("a", status=500)
    assert chat(routed, key, "strict").status_code == 500  # 500 is not in this route's fallback_on
    fakes.heal()
    fakes.fail("a", status=503)
    r = chat(routed, key, "strict", "served by c")
    assert r.status_code == 200 and "Echo: served by c" in r.text
    assert last_row(routed, "fb-strict", 2)["provider"] == "c-gemini"


def test_three_targets_the_third_answers_and_limits_count_once(routed, fakes):
    key = client(routed, "fb-three", rpm=2)
    fakes.fail("a", status=500)
    fakes.fail("b", status=529)  # Anthropic overloaded
    for i in range(2):
        r = chat(routed, key, "smart", f"third {i}")
        assert r.status_code == 200 and f"Echo: third {i}" in r.text
    rows = routed.wait_log_rows("fb-three", 2)
    assert [(r["provider"], r["attempts"]) for r in rows] == [("c-gemini", 3)] * 2
    limited = chat(routed, key, "smart")  # two requests of six attempts: the rpm of 2 is reached, not passed
    assert limited.status_code == 429 and "requests-per-minute" in limited.text


def test_retries_on_the_same_target_honour_retry_after(routed, fakes):
    key = client(routed, "fb-patient")
    fakes.fail("b", times=2, status=503, retry_after=1)
    started = time.monotonic()
    r = chat(routed, key, "patient", "third time lucky")
    took = time.monotonic() - started
    assert r.status_code == 200 and "Echo: third time lucky" in r.text
    assert 2 <= took < 5  # two waits of the upstream's Retry-After (1 s), within retry_max_seconds
    assert last_row(routed, "fb-patient", 1)["attempts"] == 3


def test_key_weights_are_respected_over_1000_requests(routed, fakes):
    key = client(routed, "fb-weights")
    with httpx.Client(timeout=30) as http:
        for _ in range(1000):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "w"}], "max_tokens": 1}
            assert http.post(routed.url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}).status_code == 200
    counts = Counter(fakes.chat_keys("a")[-200:])  # the fake remembers the last 200 requests
    stats = httpx.get(fakes.url["a"] + "/_fake/stats").json()
    assert stats["requests"] >= 1000
    # weights 1 and 3: a quarter and three quarters, within 5 points over the last 200 requests
    assert abs(counts["sk-a-heavy"] / 200 - 0.75) <= 0.05, counts


def test_a_rate_limited_key_rests_for_its_retry_after_and_comes_back(routed, fakes):
    key = client(routed, "fb-rest")
    fakes.fail("a", key="sk-a-heavy", times=1, status=429, retry_after=2)
    assert chat(routed, key, "gpt-4o").status_code == 200  # heavy got 429, light answered
    keys = fakes.chat_keys("a")
    assert "sk-a-heavy" in keys and keys[-1] == "sk-a-light"
    httpx.delete(fakes.url["a"] + "/_fake/requests")
    for _ in range(8):  # while it rests, only the light key is used
        assert chat(routed, key, "gpt-4o").status_code == 200
    assert set(fakes.chat_keys("a")) == {"sk-a-light"}
    time.sleep(2.2)
    httpx.delete(fakes.url["a"] + "/_fake/requests")
    for _ in range(12):
        assert chat(routed, key, "gpt-4o").status_code == 200
    assert "sk-a-heavy" in fakes.chat_keys("a")  # back by itself


def test_when_every_key_rests_the_client_gets_429_with_the_soonest_retry_after(routed, fakes):
    key = client(routed, "fb-all-rest")
    fakes.fail("a", key="sk-a-heavy", status=429, retry_after=30)
    fakes.fail("a", key="sk-a-light", status=429, retry_after=7)
    r = chat(routed, key, "gpt-4o")  # the default provider, no route: nowhere else to go
    assert r.status_code == 429 and 6 <= int(r.headers["retry-after"]) <= 7, (r.status_code, r.headers, r.text)
    again = chat(routed, key, "gpt-4o")  # both keys rest: refused without asking the upstream
    assert again.status_code == 429 and "resting" in again.json()["error"]["message"]


# -- the official SDKs of all four inbound formats, through a route whose first target is down


def test_every_sdk_through_a_route_whose_first_target_is_down(routed):
    key = client(routed, "fb-sdks")
    oai = openai.OpenAI(base_url=routed.url + "/v1", api_key=key, max_retries=0)
    assert oai.chat.completions.create(model="resilient", messages=[{"role": "user", "content": "chat"}]
                                       ).choices[0].message.content == "Echo: chat"
    with oai.chat.completions.create(model="resilient", messages=[{"role": "user", "content": "chat stream"}],
                                     stream=True) as chunks:
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: chat stream"
    assert oai.responses.create(model="resilient", input="responses").output_text == "Echo: responses"
    with oai.responses.stream(model="resilient", input="responses stream") as events:
        assert events.get_final_response().output_text == "Echo: responses stream"
    ant = anthropic.Anthropic(base_url=routed.url, api_key=key, max_retries=0)
    msg = ant.messages.create(model="resilient", max_tokens=50, messages=[{"role": "user", "content": "messages"}])
    assert msg.content[0].text == "Echo: messages"
    with ant.messages.stream(model="resilient", max_tokens=50, messages=[{"role": "user", "content": "ms"}]) as s:
        assert s.get_final_message().content[0].text == "Echo: ms"
    gem = genai.Client(api_key=key, http_options={"base_url": routed.url})
    assert gem.models.generate_content(model="resilient", contents="gemini").text == "Echo: gemini"
    assert "".join(c.text or "" for c in gem.models.generate_content_stream(model="resilient", contents="gs")) \
        == "Echo: gs"
    rows = routed.wait_log_rows("fb-sdks", 8)
    assert {(r["provider"], r["attempts"], r["status"]) for r in rows} == {("b-anthropic", 2, 200)}
    assert sorted(Counter(r["inbound"] for r in rows).items()) == [
        ("anthropic", 2), ("gemini", 2), ("openai", 2), ("responses", 2)]


# -- helpers


def _answer(r: httpx.Response) -> Answer:
    return Answer(r.status_code, r.headers, r.content)


def content(r: httpx.Response) -> str:
    """The answer's text, streamed or not."""
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return r.json()["choices"][0]["message"]["content"]
    return "".join(d["choices"][0]["delta"].get("content") or "" for _, d in sse_data(r.content)
                   if isinstance(d, dict) and d.get("choices"))

