"""Security headers on every kind of response: API answers and streams, errors and 404s, admin
pages and API, static files, redirects and a refused WebSocket upgrade."""

from __future__ import annotations

import re

import httpx2 as httpx
import pytest
from faults import chat_request

ALWAYS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.add_client("security-headers-probe")


def strict_csp(policy: str) -> bool:
    """No inline script or style, no eval, no third-party origin: every source is 'self', 'none'
    or data: (images), and framing is forbidden."""
    directives = dict((d.split(" ", 1) + [""])[:2] for d in (p.strip() for p in policy.split(";")) if d)
    sources = " ".join(directives.values())
    return ("default-src" in directives and directives.get("frame-ancestors") == "'none'"
            and not re.search(r"'unsafe-|https?:|wss?:|\*|blob:", sources)
            and all(s in ("'self'", "'none'", "data:") for s in sources.split()))


def responses(gateway, key) -> dict[str, httpx.Response]:
    auth = {"Authorization": f"Bearer {key}"}
    path, headers, body = chat_request("openai", key, "hi", False)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        return {
            "api chat": http.post(path, headers=headers, json=body),
            "api stream": http.post(path, headers=headers, json={**body, "stream": True}),
            "api 400": http.post(path, headers=headers, content=b"{not json"),
            "api 401": http.post(path, json=body),
            "api 404 model": http.get("/v1/models/no-such-model", headers=auth),
            "api 405": http.get(path, headers=auth),
            "api models": http.get("/v1/models", headers=auth),
            "api count tokens": http.post("/v1/messages/count_tokens", headers=auth,
                                          json={"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "health": http.get("/health"),
            "healthz": http.get("/healthz"),
            "readyz": http.get("/readyz"),
            "404 route": http.get("/no/such/route"),
            "admin login page": http.get("/admin"),
            "admin page redirect": http.get("/admin/clients"),
            "admin api 401": http.get("/admin/api/clients"),
            "admin 404": http.get("/admin/api/no-such-thing"),
            "dashboard redirect": http.get("/admin/dashboard"),
            "websocket refused": http.get("/admin/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                                "Sec-WebSocket-Version": "13",
                                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}),
            "static file": http.get("/static/dashboard.css"),
            "static 404": http.get("/static/no-such-file.js"),
        }


def test_every_response_carries_the_security_headers(gateway, key):
    missing = {}
    for name, r in responses(gateway, key).items():
        wrong = {h: r.headers.get(h) for h, v in ALWAYS.items() if r.headers.get(h) != v}
        if "content-security-policy" not in r.headers or not strict_csp(r.headers["content-security-policy"]):
            wrong["content-security-policy"] = r.headers.get("content-security-policy")
        if "server" in r.headers or "strict-transport-security" in r.headers:  # plain HTTP: no HSTS
            wrong["server/hsts"] = r.headers.get("server") or r.headers.get("strict-transport-security")
        if wrong:
            missing[f"{name} ({r.status_code})"] = wrong
    assert not missing, missing


def test_api_and_admin_answers_are_never_stored(gateway, key):
    for name, r in responses(gateway, key).items():
        if not name.startswith("static"):
            assert r.headers.get("cache-control") == "no-store", (name, r.headers.get("cache-control"))


def test_the_statuses_are_what_the_names_say(gateway, key):
    """Guards the test above: each response really is the kind it is named for."""
    statuses = {name: r.status_code for name, r in responses(gateway, key).items()}
    assert statuses["api chat"] == statuses["api stream"] == statuses["health"] == statuses["static file"] == 200
    assert statuses["healthz"] == statuses["readyz"] == 200
    assert (statuses["api 400"], statuses["api 401"], statuses["api 404 model"], statuses["api 405"]) == (
        400, 401, 404, 405)
    assert statuses["404 route"] == statuses["static 404"] == statuses["admin 404"] == 404
    assert statuses["admin api 401"] == 401 and statuses["websocket refused"] in (401, 403)
    assert statuses["admin page redirect"] in (302, 303) and statuses["dashboard redirect"] in (302, 303)


def test_csp_check_rejects_weak_policies():
    assert strict_csp("default-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
    assert not strict_csp("default-src 'self'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
    assert not strict_csp("default-src 'self'; script-src https://cdn.example.com; frame-ancestors 'none'")
    assert not strict_csp("default-src 'self'")
