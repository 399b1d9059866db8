"""The admin JSON API on a real server: sessions, XSRF, throttling, validation (every bad field
named, nothing saved), changes applied at once, and provider keys never sent back."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import httpx2 as httpx
import openai
import pytest
import yaml
from conftest import ADMIN_PASSWORD, ADMIN_USER, AdminClient, GatewayServer, admin_overrides, eventually

from aigateway import usage
from aigateway.admin import handlers as admin_handlers
from aigateway.admin import login, service
from aigateway.db import connect

SECRET = "sk-admin-test-provider-key-never-shown-4242"
CONFTEST_KEYS = ("sk-upstream-openai-secret", "sk-ant-upstream-secret", "gemini-upstream-secret")


@pytest.fixture(scope="module")
def admin_gateway(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("admin-api"), fake_upstream, **admin_overrides())
    yield server
    server.stop()


@pytest.fixture
def own_gateway(fake_upstream: str, tmp_path) -> Iterator[GatewayServer]:
    """For tests that lock out 127.0.0.1 or change the password."""
    server = GatewayServer(tmp_path, fake_upstream, **admin_overrides())
    yield server
    server.stop()


@pytest.fixture
def admin(admin_gateway: GatewayServer) -> Iterator[AdminClient]:
    client = AdminClient(admin_gateway.url)
    assert client.login().status_code == 200
    yield client
    client.close()


def api_routes() -> list[tuple[str, str]]:
    """Every (method, path) of /admin/api/*, with sample path arguments."""
    out = []
    for pattern, handler in admin_handlers.routes:
        if not pattern.startswith("/admin/api/"):
            continue
        path = pattern.replace(r"(\d+)", "1").replace("([^/]+)", "fake-openai").replace("\\.", ".")
        for method in ("get", "post", "patch", "delete"):
            if method in vars(handler):
                out.append((method.upper(), path))
    return out


def error(response: httpx.Response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def chat(url: str, key: str, text: str = "hi", **kwargs) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], **kwargs)
    return reply.choices[0].message.content


# -- sessions and XSRF


def test_every_api_route_needs_a_session(admin_gateway: GatewayServer):
    routes = api_routes()
    assert len(routes) >= 20
    for cookies in ({}, {"aigw_session": "2|1:0|10:1700000000|12:aigw_session|8:Zm9vfGJhcg==|deadbeef"}):
        http = httpx.Client(base_url=admin_gateway.url, cookies=cookies)
        for method, path in routes:
            if path == "/admin/api/login":
                continue
            r = http.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert error(r)["type"] == "authentication" and "log in" in error(r)["message"].lower()
        http.close()


def test_pages_redirect_to_the_login_page(admin_gateway: GatewayServer):
    for page in admin_handlers.PAGES:
        r = httpx.get(f"{admin_gateway.url}/admin/{page}")
        assert r.status_code == 302 and r.headers["Location"] == f"/admin?next=%2Fadmin%2F{page}"
    login = httpx.get(admin_gateway.url + "/admin")
    assert login.status_code == 200 and 'id="login-form"' in login.text
    assert "_xsrf" in login.cookies


def test_login_sets_a_strict_http_only_session_cookie_and_logout_ends_it(admin_gateway: GatewayServer):
    client = AdminClient(admin_gateway.url)
    r = client.login()
    assert r.status_code == 200 and r.json() == {"username": "admin"}
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("aigw_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie and "expires=" in cookie.lower() and "Secure" not in cookie  # plain HTTP here
    assert client.call("GET", "/admin/api/meta").json()["username"] == "admin"
    page = client.http.get("/admin/clients")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in page.text and " style=" not in page.text  # no inline script or style
    assert client.http.get("/admin").status_code == 302  # logged in: straight to the clients page
    assert client.call("POST", "/admin/api/logout").status_code == 200
    assert client.call("GET", "/admin/api/meta").status_code == 401
    bad = client.login(password="wrong password")
    assert bad.status_code == 401 and error(bad)["message"] == "Wrong user name or password."
    client.close()


def test_state_changing_calls_need_the_xsrf_token(admin: AdminClient):
    for method, path in api_routes():
        if method == "GET":
            continue
        for headers in ({}, {"X-XSRFToken": "2|00000000|00000000000000000000000000000000|1700000000"}):
            r = admin.http.request(method, path, json={}, headers=headers)
            assert r.status_code == 403, (method, path, headers)
            assert "XSRF" in error(r)["message"]
    assert admin.call("GET", "/admin/api/clients").status_code == 200  # reads need no token
    forged = admin.call("POST", "/admin/api/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403 and "another site" in error(forged)["message"]


def test_static_files_carry_the_security_headers(admin_gateway: GatewayServer):
    r = httpx.get(admin_gateway.url + "/static/api.js")
    assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


# -- login throttling and the password


def test_login_throttle_counts_per_ip_and_per_user():
    throttle = login.LoginThrottle()
    for i in range(5):
        throttle.failed(("ip:10.0.0.1", "user:admin"), 1000.0 + i)
    assert throttle.retry_after(("ip:10.0.0.9", "user:admin"), 1010.0) == pytest.approx(50.0)  # the user, any IP
    assert throttle.retry_after(("ip:10.0.0.1", "user:bob"), 1010.0) == pytest.approx(50.0)  # the IP, any user
    assert throttle.retry_after(("ip:10.0.0.9", "user:bob"), 1010.0) is None
    assert throttle.retry_after(("ip:10.0.0.1", "user:admin"), 1061.0) is None  # a minute later


def test_five_failed_logins_a_minute_get_429_with_retry_after(own_gateway: GatewayServer):
    client = AdminClient(own_gateway.url)
    for _ in range(5):
        assert client.login(password="not it").status_code == 401
    r = client.login()  # even the right password: the check is not made while throttled
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert error(r)["type"] == "rate_limited" and "Try again in" in error(r)["message"]
    client.close()


def test_concurrent_logins_cannot_race_the_throttle(fake_upstream: str, tmp_path):
    """Each attempt is counted before its password is checked, so however many arrive at once, at
    most five are checked (401) and the rest refused unchecked (429) — the right password among
    them included. (A real bcrypt cost, so the checks overlap as they do in production.)"""
    slow_hash = bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    own_gateway = GatewayServer(tmp_path, fake_upstream, **{**admin_overrides(), "admin.password_hash": slow_hash})
    client = AdminClient(own_gateway.url)
    xsrf = client.xsrf

    def attempt(password: str) -> int:
        with httpx.Client(base_url=own_gateway.url, cookies={"_xsrf": xsrf}, timeout=30) as http:
            return http.post("/admin/api/login", json={"username": ADMIN_USER, "password": password},
                             headers={"X-XSRFToken": xsrf}).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(attempt, ["wrong"] * 59 + [ADMIN_PASSWORD]))
    assert statuses.count(401) <= 5 and statuses.count(200) <= 1
    assert statuses.count(429) >= 54
    if statuses.count(200) == 0:  # the right one came after the slots were used: it is refused too
        assert client.login().status_code == 429
    client.close()
    own_gateway.stop()


def test_login_input_and_the_throttle_table_are_bounded(own_gateway: GatewayServer):
    """User names and passwords have a size limit (a 400 before any work), and the throttle forgets
    entries past their window and keeps at most a fixed number of them."""
    client = AdminClient(own_gateway.url)
    huge = client.login(username="u" * 100_000, password="p")
    assert huge.status_code == 400 and set(error(huge)["fields"]) == {"username"}
    long_password = client.login(password="p" * 5000)
    assert long_password.status_code == 400 and set(error(long_password)["fields"]) == {"password"}
    client.close()
    throttle = login.LoginThrottle()
    for i in range(login.LoginThrottle.MAX_KEYS + 500):
        throttle.failed((f"ip:10.{i}", f"user:name-{i}"), 1000.0)
    assert len(throttle) <= login.LoginThrottle.MAX_KEYS
    assert throttle.retry_after(("ip:new", "user:new"), 1000.0) is None
    throttle.failed(("ip:late",), 2000.0)  # a minute on: the old entries have expired
    assert len(throttle) == 1


def test_logout_ends_the_session_on_the_server(own_gateway: GatewayServer):
    """A cookie saved before logging out is refused afterwards, also after a restart; other
    sessions of the same admin go on."""
    mine, other = AdminClient(own_gateway.url), AdminClient(own_gateway.url)
    assert mine.login().status_code == 200 and other.login().status_code == 200
    saved = dict(mine.http.cookies)
    assert mine.call("POST", "/admin/api/logout").json() == {"logged_out": True}
    replay = httpx.Client(base_url=own_gateway.url, cookies=saved)
    assert replay.get("/admin/api/meta").status_code == 401
    assert other.call("GET", "/admin/api/meta").status_code == 200
    own_gateway.restart()
    replay = httpx.Client(base_url=own_gateway.url, cookies=saved)
    assert replay.get("/admin/api/meta").status_code == 401
    other.http.base_url = own_gateway.url
    assert other.call("GET", "/admin/api/meta").status_code == 200
    for client in (mine, other):
        client.close()


def test_password_change_ends_other_sessions(own_gateway: GatewayServer):
    mine, other = AdminClient(own_gateway.url), AdminClient(own_gateway.url)
    assert mine.login().status_code == 200 and other.login().status_code == 200
    before = own_gateway.config.read_text()

    bad = mine.call("POST", "/admin/api/password", {"current_password": "wrong", "new_password": "short"})
    assert bad.status_code == 400 and set(error(bad)["fields"]) == {"new_password"}
    bad = mine.call("POST", "/admin/api/password", {"current_password": "wrong", "new_password": "long enough"})
    assert bad.status_code == 400
    assert error(bad)["fields"] == {"current_password": "this is not the current password"}
    assert own_gateway.config.read_text() == before

    ok = mine.call("POST", "/admin/api/password", {"current_password": ADMIN_PASSWORD,
                                                   "new_password": "a new long password"})
    assert ok.status_code == 200
    assert mine.call("GET", "/admin/api/meta").status_code == 200  # this browser got a fresh cookie
    assert other.call("GET", "/admin/api/meta").status_code == 401  # every other session ended
    assert other.login().status_code == 401
    assert other.login(password="a new long password").status_code == 200
    text = own_gateway.config.read_text()
    assert "a new long password" not in text and "$2b$" in text
    assert stat.S_IMODE(own_gateway.config.stat().st_mode) == 0o600
    mine.close()
    other.close()


# -- clients


def test_client_fields_are_validated_and_nothing_is_saved(admin: AdminClient):
    r = admin.call("POST", "/admin/api/clients", {
        "name": " ", "provider": "nope", "rpm": -1, "daily_input_tokens": "lots", "max_output_tokens": 1.5,
        "base_url": "ftp://example", "key_type": "xx-", "system_prompt": 5, "colour": "red"})
    assert r.status_code == 400
    fields = error(r)["fields"]
    assert set(fields) == {"name", "provider", "rpm", "daily_input_tokens", "max_output_tokens", "base_url",
                           "key_type", "system_prompt", "colour"}
    assert fields["rpm"].startswith("must be a whole number >= 0")
    assert "unknown provider 'nope'" in fields["provider"] and "fake-openai" in fields["provider"]
    assert fields["base_url"] == "must start with http:// or https://"
    assert fields["colour"] == "unknown field"
    names = [c["name"] for c in admin.call("GET", "/admin/api/clients").json()["clients"]]
    assert names == [] or " " not in names

    created = admin.call("POST", "/admin/api/clients", {"name": "validated", "provider": "fake-openai", "rpm": 5})
    assert created.status_code == 201
    client = created.json()
    bad = admin.call("PATCH", f"/admin/api/clients/{client['id']}", {"rpm": "ten", "name": "", "enabled": "yes"})
    assert bad.status_code == 400 and set(error(bad)["fields"]) == {"rpm", "name", "enabled"}
    same = admin.call("GET", f"/admin/api/clients/{client['id']}").json()
    assert same["rpm"] == 5 and same["name"] == "validated" and same["enabled"] is True
    dup = admin.call("POST", "/admin/api/clients", {"name": "validated", "provider": "fake-openai"})
    assert dup.status_code == 400 and "already exists" in error(dup)["fields"]["name"]
    assert admin.call("GET", "/admin/api/clients/99999").status_code == 404
    assert admin.call("DELETE", f"/admin/api/clients/{client['id']}").status_code == 200


def test_client_lifecycle_applies_at_once(admin: AdminClient, admin_gateway: GatewayServer):
    url = admin_gateway.url
    created = admin.call("POST", "/admin/api/clients", {"name": "lifecycle", "provider": "fake-openai",
                                                         "key_type": "gm_", "system_prompt": "Be terse."})
    body = created.json()
    key, cid = body["api_key"], body["id"]
    assert key.startswith("gm_") and body["key_prefix"] == key[:12] + "…"
    assert chat(url, key) == "[system: Be terse.] Echo: hi"  # no wait: the key index was reloaded
    assert "api_key" not in admin.call("GET", f"/admin/api/clients/{cid}").json()

    # A daily quota (a day rarely ends mid-test, unlike a minute): one request used, one left.
    patched = admin.call("PATCH", f"/admin/api/clients/{cid}", {"system_prompt": "", "daily_requests": 2,
                                                                "rph": None})
    assert patched.status_code == 200 and patched.json()["daily_requests"] == 2 and patched.json()["rph"] is None
    assert chat(url, key) == "Echo: hi"
    with pytest.raises(openai.RateLimitError):
        chat(url, key)
    reset = admin.call("POST", f"/admin/api/clients/{cid}/reset-usage")
    assert reset.status_code == 200 and reset.json()["usage_reset_at"] > 0
    assert chat(url, key) == "Echo: hi"
    assert admin.call("PATCH", f"/admin/api/clients/{cid}", {"daily_requests": ""}).json()["daily_requests"] is None

    assert admin.call("PATCH", f"/admin/api/clients/{cid}", {"enabled": False}).json()["enabled"] is False
    with pytest.raises(openai.PermissionDeniedError):
        chat(url, key)
    admin.call("PATCH", f"/admin/api/clients/{cid}", {"enabled": True})

    rotated = admin.call("POST", f"/admin/api/clients/{cid}/rotate-key", {"key_type": "sk-ant-"}).json()
    assert rotated["api_key"].startswith("sk-ant-") and rotated["key_type"] == "sk-ant-"
    with pytest.raises(openai.AuthenticationError):
        chat(url, key)
    assert chat(url, rotated["api_key"]) == "Echo: hi"

    listed = admin.call("GET", "/admin/api/clients").json()["clients"]
    mine = next(c for c in listed if c["id"] == cid)
    assert "key_hash" not in mine and "api_key" not in mine
    assert eventually(lambda: admin.call("GET", "/admin/api/clients").json()["clients"],
                      lambda cs: next(c for c in cs if c["id"] == cid)["today"]["requests"] >= 4)

    assert admin.call("DELETE", f"/admin/api/clients/{cid}").json() == {"id": cid, "name": "lifecycle",
                                                                          "deleted": True}
    with pytest.raises(openai.AuthenticationError):
        chat(url, rotated["api_key"])


# -- providers


def test_provider_fields_are_validated_and_nothing_is_saved(admin: AdminClient, admin_gateway: GatewayServer):
    before = admin_gateway.config.read_text()
    cases = [
        ({"name": "bad name!", "type": "openai"}, {"name"}),
        ({"name": "x1", "type": "telepathy", "timeout_seconds": 0, "allowed_models": 5, "colour": 1},
         {"type", "timeout_seconds", "allowed_models", "colour"}),
        ({"name": "x2", "type": "openai_compatible"}, {"base_url"}),
        ({"name": "x3", "type": "openai", "base_url": "localhost:1234/v1", "api_key": 7}, {"base_url", "api_key"}),
        ({"name": "fake-openai", "type": "openai"}, {"name"}),
        ({"name": "x4", "type": "anthropic", "api": "responses"}, {"api"}),  # one API: Messages
        ({"name": "x5", "type": "openai", "api": "telepathy"}, {"api"}),
    ]
    for body, fields in cases:
        r = admin.call("POST", "/admin/api/providers", body)
        assert r.status_code == 400 and set(error(r)["fields"]) == fields, (body, r.text)
    r = admin.call("POST", "/admin/api/providers", {"name": "x2", "type": "openai_compatible"})
    assert error(r)["fields"]["base_url"] == "type openai_compatible needs a base_url"
    r = admin.call("PATCH", "/admin/api/providers/fake-openai", {"base_url": "ftp://x", "timeout_seconds": "slow"})
    assert r.status_code == 400 and set(error(r)["fields"]) == {"base_url", "timeout_seconds"}
    r = admin.call("PATCH", "/admin/api/providers/fake-openai", {"name": "renamed"})
    assert r.status_code == 400 and "cannot be renamed" in error(r)["fields"]["name"]
    assert admin.call("PATCH", "/admin/api/providers/nowhere", {}).status_code == 404
    assert admin_gateway.config.read_text() == before

    key = admin_gateway.add_client("keeps-provider")
    r = admin.call("DELETE", "/admin/api/providers/fake-openai")
    assert r.status_code == 409 and "keeps-provider" in error(r)["message"]
    assert chat(admin_gateway.url, key) == "Echo: hi"


def test_a_provider_can_speak_the_responses_api_upstream(admin: AdminClient, admin_gateway: GatewayServer,
                                                         fake_upstream: str, fake_requests):
    made = admin.call("POST", "/admin/api/providers", {"name": "via-responses", "type": "openai", "api": "responses",
                                                       "base_url": fake_upstream + "/v1", "api_key": "sk-r-123456"})
    assert made.status_code == 201 and made.json()["api"] == "responses", made.text
    assert yaml.safe_load(admin_gateway.config.read_text())["providers"]["via-responses"]["api"] == "responses"
    key = admin_gateway.add_client("uses-responses", provider="via-responses")
    assert chat(admin_gateway.url, key) == "Echo: hi"  # a chat client, answered through POST /v1/responses
    assert [r["path"] for r in fake_requests() if r["method"] == "POST"][-1] == "/v1/responses"
    back = admin.call("PATCH", "/admin/api/providers/via-responses", {"api": "chat"}).json()
    assert back["api"] == "chat" and "api" not in yaml.safe_load(admin_gateway.config.read_text())["providers"][
        "via-responses"]  # the default is not written


def test_provider_prices_are_set_validated_and_used(admin: AdminClient, admin_gateway: GatewayServer):
    bad = admin.call("PATCH", "/admin/api/providers/fake-openai", {"prices": {"gpt-4o": {"input": -1, "output": 2}}})
    assert bad.status_code == 400 and "prices" in error(bad)["fields"]
    ok = admin.call("PATCH", "/admin/api/providers/fake-openai", {"prices": {"gpt-4o": {"input": 1, "output": 2}}})
    assert ok.status_code == 200 and ok.json()["prices"] == {"gpt-4o": {"input": 1, "output": 2}}
    assert yaml.safe_load(admin_gateway.config.read_text())["providers"]["fake-openai"]["prices"]["gpt-4o"] == {
        "input": 1, "output": 2}
    key = admin_gateway.add_client("priced-by-admin")
    assert chat(admin_gateway.url, key) == "Echo: hi"
    [row] = admin_gateway.wait_log_rows("priced-by-admin", 1)
    assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 1 + row["output_tokens"] * 2) / 1e6)
    cleared = admin.call("PATCH", "/admin/api/providers/fake-openai", {"prices": None})
    assert cleared.json()["prices"] == {}


def test_routes_are_created_validated_edited_and_deleted(admin: AdminClient, admin_gateway: GatewayServer):
    bad = admin.call("POST", "/admin/api/routes", {"name": "smart", "targets": [{"provider": "nope", "model": "x"}],
                                                   "retries": 99, "colour": "red"})
    assert bad.status_code == 400
    assert set(error(bad)["fields"]) == {"targets", "retries", "colour"}
    assert "nope" in error(bad)["fields"]["targets"]
    assert admin.call("GET", "/admin/api/routes").json() == {"routes": []}  # nothing saved
    made = admin.call("POST", "/admin/api/routes", {"name": "smart", "targets": [
        {"provider": "fake-anthropic", "model": "claude-sonnet-4-20250514"}, {"provider": "fake-openai"}]})
    assert made.status_code == 201
    assert made.json() == {"name": "smart", "targets": [{"provider": "fake-anthropic",
                                                         "model": "claude-sonnet-4-20250514"},
                                                        {"provider": "fake-openai", "model": ""}],
                           "fallback_on": [429, 500, 502, 503, 504, 529], "retries": 0, "retry_max_seconds": 10.0,
                           "clients": 0}
    assert admin.call("POST", "/admin/api/routes", {"name": "smart", "targets": []}).status_code == 400
    changed = admin.call("PATCH", "/admin/api/routes/smart", {"fallback_on": [503], "retries": 1}).json()
    assert changed["fallback_on"] == [503] and changed["retries"] == 1 and len(changed["targets"]) == 2
    assert "smart" in yaml.safe_load(admin_gateway.config.read_text())["routes"]
    assert admin.call("PATCH", "/admin/api/routes/smart", {"name": "clever"}).status_code == 400
    assert admin.call("GET", "/admin/api/routes/nope").status_code == 404
    assert admin.call("DELETE", "/admin/api/routes/smart").json() == {"name": "smart", "deleted": True}
    assert "smart" not in (yaml.safe_load(admin_gateway.config.read_text()).get("routes") or {})


def test_provider_test_lists_models_or_tells_the_upstream_error(admin: AdminClient, fake_upstream: str):
    ok = admin.call("POST", "/admin/api/providers/fake-openai/test", {}).json()
    assert ok["ok"] is True and "gpt-4o" in ok["models"]
    dead = admin.call("POST", "/admin/api/providers/fake-openai/test", {"base_url": "http://127.0.0.1:9/v1"}).json()
    assert dead["ok"] is False and dead["status"] == 502 and "connect" in dead["error"]
    unsaved = admin.call("POST", "/admin/api/providers/brand-new/test",
                         {"type": "anthropic", "base_url": fake_upstream})
    assert unsaved.status_code == 200 and unsaved.json()["ok"] is True  # tested without saving anything
    assert "brand-new" not in [p["name"] for p in admin.call("GET", "/admin/api/providers").json()["providers"]]
    assert admin.call("POST", "/admin/api/providers/brand-new/test", {}).status_code == 404


def test_provider_changes_apply_at_once_without_dropping_streams(admin: AdminClient, admin_gateway: GatewayServer,
                                                                  fake_upstream: str):
    r = admin.call("POST", "/admin/api/providers", {"name": "swappable", "type": "openai_compatible",
                                                     "base_url": fake_upstream + "/v1", "default_model": "gpt-4o"})
    assert r.status_code == 201
    key = admin.call("POST", "/admin/api/clients", {"name": "swapper", "provider": "swappable"}).json()["api_key"]
    client = openai.OpenAI(base_url=admin_gateway.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o", stream=True,
        messages=[{"role": "user", "content": "one two three four five six #fake:chunks=6 #fake:delay=0.15"}])
    first = next(iter(stream))  # the stream has started with the old provider object
    edited = admin.call("PATCH", "/admin/api/providers/swappable", {"base_url": "http://127.0.0.1:9/v1"})
    assert edited.status_code == 200 and edited.json()["endpoint"] == "http://127.0.0.1:9/v1"
    text = "".join((c.choices[0].delta.content or "") for c in [first, *stream] if c.choices)
    assert text == "Echo: one two three four five six"
    with pytest.raises(openai.APIStatusError) as failed:  # the next request uses the new settings
        chat(admin_gateway.url, key)
    assert failed.value.status_code == 502
    assert admin.call("PATCH", "/admin/api/providers/swappable",
                      {"base_url": fake_upstream + "/v1"}).status_code == 200
    assert chat(admin_gateway.url, key) == "Echo: hi"
    assert "swappable:" in admin_gateway.config.read_text()


def test_provider_keys_never_appear_in_admin_responses(admin: AdminClient, admin_gateway: GatewayServer,
                                                       fake_upstream: str):
    seen: list[httpx.Response] = []

    def call(method: str, path: str, body=None) -> httpx.Response:
        r = admin.call(method, path, body)
        seen.append(r)
        return r

    made = call("POST", "/admin/api/providers", {"name": "secretive", "type": "openai", "api_key": SECRET,
                                                 "base_url": fake_upstream + "/v1", "default_model": "gpt-4o"})
    assert made.status_code == 201 and made.json()["api_key_set"] is True
    key = call("POST", "/admin/api/clients", {"name": "secret-user", "provider": "secretive"}).json()["api_key"]
    chat(admin_gateway.url, key)
    call("PATCH", "/admin/api/providers/secretive", {"default_model": "gpt-4o-mini"})  # key kept
    call("PATCH", "/admin/api/providers/secretive", {"api_key": ""})  # empty: key kept
    assert call("GET", "/admin/api/providers/secretive").json()["api_key_set"] is True
    call("POST", "/admin/api/providers/secretive/test", {})
    call("POST", "/admin/api/providers/secretive/test", {"base_url": "http://127.0.0.1:9/v1"})
    call("POST", "/admin/api/providers", {"name": "secretive", "api_key": SECRET})  # an error answer
    time.sleep(1.2)  # let the usage records land
    for path in ("/admin/api/providers", "/admin/api/meta", "/admin/api/settings", "/admin/api/clients",
                 "/admin/api/usage", "/admin/api/usage.csv", "/admin/api/requests"):
        assert call("GET", path).status_code == 200
    assert SECRET in admin_gateway.config.read_text()  # saved (0600) ...
    assert stat.S_IMODE(admin_gateway.config.stat().st_mode) == 0o600
    for r in seen:  # ... and never sent back
        for secret in (SECRET, *CONFTEST_KEYS):
            assert secret not in r.text and secret not in str(r.headers), (r.request.url, secret)
    cleared = call("PATCH", "/admin/api/providers/secretive", {"api_key": None})
    assert cleared.json()["api_key_set"] is False and SECRET not in admin_gateway.config.read_text()


def test_scrub_removes_configured_keys_from_any_text(admin_gateway: GatewayServer):
    from aigateway.config import load

    cfg = load(admin_gateway.config, announce=False)
    text = 'upstream said: "Incorrect API key provided: sk-upstream-openai-secret"'
    assert service.scrub(text, cfg) == 'upstream said: "Incorrect API key provided: ••••"'


# -- settings


def test_settings_are_validated_and_applied_at_once(admin: AdminClient, admin_gateway: GatewayServer):
    before = admin_gateway.config.read_text()
    bad = admin.call("PATCH", "/admin/api/settings", {
        "defaults.rate_limit.requests_per_minute": -1, "defaults.quota.max_output_tokens": "lots",
        "defaults.timezone": "Mars/Olympus", "logging.level": "loud", "server.port": 1})
    assert bad.status_code == 400
    assert error(bad)["fields"] == {"server.port": "not an editable setting"}
    bad = admin.call("PATCH", "/admin/api/settings", {
        "defaults.rate_limit.requests_per_minute": -1, "defaults.quota.max_output_tokens": "lots",
        "defaults.timezone": "Mars/Olympus", "logging.level": "loud"})
    assert set(error(bad)["fields"]) == {"defaults.rate_limit.requests_per_minute",
                                         "defaults.quota.max_output_tokens", "defaults.timezone", "logging.level"}
    assert error(bad)["fields"]["defaults.timezone"] == "unknown time zone 'Mars/Olympus'"
    assert admin_gateway.config.read_text() == before

    key = admin_gateway.add_client("uses-defaults")
    ok = admin.call("PATCH", "/admin/api/settings", {"defaults.quota.max_requests_per_day": 1,
                                                     "defaults.timezone": "Europe/Paris", "logging.level": "info"})
    assert ok.status_code == 200
    assert ok.json()["settings"]["defaults.quota.max_requests_per_day"] == 1
    assert admin.call("GET", "/admin/api/meta").json()["limits"][5] == {
        "field": "daily_requests", "label": "requests per day (quota)",
        "setting": "defaults.quota.max_requests_per_day", "default": 1, "usd": False}
    assert chat(admin_gateway.url, key) == "Echo: hi"
    with pytest.raises(openai.RateLimitError):  # the new default applies to the next request
        chat(admin_gateway.url, key)
    text = admin_gateway.config.read_text()
    assert "max_requests_per_day: 1" in text and "timezone: Europe/Paris" in text and "level: info" in text
    facts = ok.json()["server"]
    assert facts["version"] and facts["config_path"] == str(admin_gateway.config) and facts["database_bytes"] > 0
    restored = admin.call("PATCH", "/admin/api/settings", {"defaults.quota.max_requests_per_day": 0,
                                                           "defaults.timezone": "UTC", "logging.level": "debug"})
    assert restored.status_code == 200
    assert chat(admin_gateway.url, key) == "Echo: hi"


# -- usage


def test_usage_report_csv_and_request_log_paging(admin: AdminClient, admin_gateway: GatewayServer):
    cid = admin.call("POST", "/admin/api/clients", {"name": "=counted", "provider": "fake-openai"}).json()
    key, cid = cid["api_key"], cid["id"]
    for i in range(5):
        chat(admin_gateway.url, key, f"n{i}")
    with pytest.raises(openai.InternalServerError):
        chat(admin_gateway.url, key, "#fake:status=500")
    assert len(admin_gateway.wait_log_rows("=counted", 6)) == 6

    report = admin.call("GET", "/admin/api/usage").json()
    mine = next(c for c in report["clients"] if c["client_id"] == cid)
    assert mine["requests"] == 6 and mine["errors"] == 1 and mine["client_name"] == "=counted"
    assert report["days"] and report["models"] and report["from"] <= report["to"]
    csv_text = admin.call("GET", "/admin/api/usage.csv").text
    assert csv_text.startswith("day,client_id,client_name,model,requests")
    assert ",'=counted," in csv_text  # a spreadsheet would run "=counted" as a formula
    bad = admin.call("GET", "/admin/api/usage?from=2024-13-01&to=yesterday")
    assert bad.status_code == 400 and set(error(bad)["fields"]) == {"from", "to"}
    bad = admin.call("GET", "/admin/api/usage?from=2030-01-02&to=2030-01-01")
    assert error(bad)["fields"] == {"from": "must not be after 'to'"}

    first = admin.call("GET", f"/admin/api/requests?client={cid}&limit=4").json()
    assert len(first["requests"]) == 4 and first["next_before_id"] == first["requests"][-1]["id"]
    second = admin.call("GET", f"/admin/api/requests?client={cid}&limit=4&before={first['next_before_id']}").json()
    assert len(second["requests"]) == 2 and second["next_before_id"] is None
    ids = [r["id"] for r in first["requests"] + second["requests"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6
    errors = admin.call("GET", f"/admin/api/requests?client={cid}&status=error").json()["requests"]
    assert [r["status"] for r in errors] == [500]
    since = first["requests"][0]["ts"]
    assert len(admin.call("GET", f"/admin/api/requests?client={cid}&since={since}").json()["requests"]) >= 1
    assert admin.call("GET", f"/admin/api/requests?client={cid}&until=0").json()["requests"] == []
    bad = admin.call("GET", "/admin/api/requests?status=teapot&limit=9999&client=me")
    assert set(error(bad)["fields"]) == {"status", "limit", "client"}


def test_request_log_pages_stay_fast_over_100k_rows(tmp_path):
    """Keyset paging with the m002 indexes: any page, with any one filter, costs a few ms."""
    conn = connect(tmp_path / "big.db")
    rows = [(1.7e9 + i, i % 50 + 1, f"c{i % 50}", "p", "rare" if i % 997 == 0 else "gpt-4o", "openai",
             500 if i % 101 == 0 else 200) for i in range(120_000)]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO request_log (ts, client_id, client_name, provider, model, inbound, status)"
                     " VALUES (?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    for filters in ({}, {"client_id": 7}, {"model": "rare"}, {"status": (500, 599)},
                    {"since": 1.7e9 + 1000, "until": 1.7e9 + 2000}, {"client_id": 3, "model": "rare"}):
        started = time.perf_counter()
        page = usage.log_page(conn, **filters)
        for _ in range(3):
            if page["next_before_id"] is None:
                break
            page = usage.log_page(conn, before_id=page["next_before_id"], **filters)
        assert time.perf_counter() - started < 0.5, filters
    plan = " ".join(str(tuple(r)) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM request_log WHERE client_id = 7 ORDER BY id DESC LIMIT 101"))
    assert "TEMP B-TREE" not in plan, plan  # no sort of the client's whole history
    conn.close()


def test_migration_adds_the_request_log_indexes(tmp_path):
    conn = connect(tmp_path / "m.db")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"request_log_client_id", "request_log_model_id"} <= names
    assert "m002_request_log_filters" in {r[0] for r in conn.execute("SELECT name FROM migrations")}
    conn.close()


def test_concurrent_config_edits_all_land(admin: AdminClient, admin_gateway: GatewayServer, fake_upstream: str):
    """Edits are applied between two awaits on the event loop: none overwrites another."""
    def add(i: int) -> None:
        c = AdminClient(admin_gateway.url)
        c.login()
        assert c.call("POST", "/admin/api/providers", {"name": f"par-{i}", "type": "ollama",
                                                       "base_url": fake_upstream + "/v1"}).status_code == 201
        c.close()

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {p["name"] for p in admin.call("GET", "/admin/api/providers").json()["providers"]}
    assert {f"par-{i}" for i in range(6)} <= names
    text = admin_gateway.config.read_text()
    assert all(f"par-{i}:" in text for i in range(6))
    for i in range(6):
        assert admin.call("DELETE", f"/admin/api/providers/par-{i}").status_code == 200


def test_under_https_the_cookies_are_secure_and_hsts_is_sent(tmp_path, fake_upstream: str):
    """Without a certificate at hand: the handlers' behaviour for a request that came over TLS."""
    from unittest import mock

    from conftest import write_config
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    from aigateway.app import Gateway, make_app
    from aigateway.config import load

    config = load(write_config(tmp_path, fake_upstream, **admin_overrides()), announce=False)
    gateway = Gateway(config)
    try:
        app = make_app(gateway)
        connection = mock.Mock()
        connection.context.protocol = "https"
        connection.context.remote_ip = "127.0.0.1"
        request = HTTPServerRequest(connection=connection, headers=HTTPHeaders({"Host": "gw.example"}),
                                    start_line=RequestStartLine("POST", "/admin/api/login", "HTTP/1.1"))
        assert request.protocol == "https"
        handler = admin_handlers.LoginHandler(app, request)
        handler.start_session()
        cookie = handler._new_cookie["aigw_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
        assert handler._headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        gateway.close()


def test_teams_budgets_and_key_governance_through_the_api(admin: AdminClient, admin_gateway: GatewayServer):
    """A team with a budget; a client in it with its own budget (in dollars), an expiry, allowed
    models and networks; bad values named field by field; a rotation whose old key works on."""
    bad = admin.call("POST", "/admin/api/teams", {"name": "", "daily_budget_usd": -1, "rpm": 1.5})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"name", "daily_budget_usd", "rpm"}
    team = admin.call("POST", "/admin/api/teams", {"name": "api-team", "daily_budget_usd": 2.5, "rpm": 100}).json()
    assert (team["daily_budget_usd"], team["rpm"], team["members"]) == (2.5, 100, 0)
    assert {"id": team["id"], "name": "api-team"} in admin.call("GET", "/admin/api/meta").json()["teams"]
    bad = admin.call("POST", "/admin/api/clients", {"name": "gov", "provider": "fake-openai", "team_id": "x",
                                                    "allowed_networks": ["not-a-net"], "daily_budget_usd": "5"})
    assert set(bad.json()["error"]["fields"]) == {"team_id", "allowed_networks", "daily_budget_usd"}
    created = admin.call("POST", "/admin/api/clients", {
        "name": "gov", "provider": "fake-openai", "team_id": team["id"], "daily_budget_usd": 0.75,
        "expires_at": time.time() + 3600, "allowed_models": ["gpt-4o*"], "allowed_networks": ["127.0.0.0/8"]})
    assert created.status_code == 201, created.text
    client = created.json()
    assert client["team_id"] == team["id"] and client["daily_budget_usd"] == 0.75
    admin_gateway.wait_for_key(client["api_key"])
    ok = httpx.post(admin_gateway.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {client['api_key']}"})
    assert ok.status_code == 200 and 0 < float(ok.headers["x-gateway-budget-remaining-usd"]) <= 0.75
    rotated = admin.call("POST", f"/admin/api/clients/{client['id']}/rotate-key", {"grace_seconds": 60}).json()
    assert rotated["previous_key_until"] > time.time() + 50
    for key in (client["api_key"], rotated["api_key"]):
        models = httpx.get(admin_gateway.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200
    cleared = admin.call("PATCH", f"/admin/api/clients/{client['id']}", {"team_id": None, "expires_at": None}).json()
    assert cleared["team_id"] is None and cleared["expires_at"] is None
    assert admin.call("DELETE", f"/admin/api/teams/{team['id']}").json()["deleted"] is True
    assert admin.call("PATCH", f"/admin/api/teams/{team['id']}", {"rpm": 1}).status_code == 404
