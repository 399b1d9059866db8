"""The live dashboard in a real browser (Debian's Chromium driven by Playwright): log in, open
the page, send requests with the openai SDK and see each one land within a second; restart the
server and see the page reconnect by itself. Skipped, with the reason, when Chromium or
Playwright is missing, except under CI=true, where that is a failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, GatewayServer, admin_overrides

from aigateway.admin import sessions
from aigateway.config import load

SECOND = 1000  # ms: how soon a finished request must show


@pytest.fixture
def server(fake_upstream: str, tmp_path: Path) -> Iterator[GatewayServer]:
    """A gateway of this test's own (it gets restarted) with a known admin password."""
    gw = GatewayServer(tmp_path, fake_upstream, **admin_overrides())
    yield gw
    gw.stop()


def log_in_to_dashboard(page: Any, server: GatewayServer) -> None:
    """On the login page the dashboard sent us to: log in through its form, which brings us
    back; without a login form (no admin UI), with a session cookie made as the login does."""
    password = page.locator("input[type=password]")
    if password.count():
        page.locator("input[name=username]").fill(ADMIN_USER)
        password.first.fill(ADMIN_PASSWORD)
        password.first.press("Enter")
        page.wait_for_url(server.url + "/admin/dashboard", timeout=5 * SECOND)
        return
    value = sessions.make_session(load(server.config, announce=False)).decode()
    page.context.add_cookies([{"name": sessions.COOKIE, "value": value, "url": server.url}])
    page.goto(server.url + "/admin/dashboard")


def log_rows(page: Any, client: str) -> int:
    return page.locator(f'#log tr[data-client="{client}"]').count()


def wait_shown(page: Any, client: str, rows: int, requests: int, chart_total: int, timeout: int = SECOND) -> None:
    """The log has ``rows`` rows of ``client``, the counter and the chart count ``requests``."""
    page.wait_for_function(
        """([client, rows, requests, total]) =>
             document.querySelectorAll(`#log tr[data-client="${client}"]`).length === rows
             && document.getElementById("s-requests_today").textContent === String(requests)
             && document.getElementById("chart-requests").dataset.total === String(total)""",
        arg=[client, rows, requests, chart_total], timeout=timeout)


def chart_pixels(page: Any) -> str:
    return page.eval_on_selector("#chart-requests", "c => c.toDataURL()")


def test_dashboard_live_then_reconnects_after_restart(browser: Any, server: GatewayServer) -> None:
    key = server.add_client("dash-live")
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    page = browser.new_context().new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: "Content Security Policy" in msg.text and problems.append(msg.text))

    page.goto(server.url + "/admin/dashboard")
    assert urlsplit(page.url).path == "/admin"  # not logged in: sent to the login page
    log_in_to_dashboard(page, server)
    page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'"
                           " && document.body.dataset.snapshots === '1'", timeout=5 * SECOND)
    wait_shown(page, "dash-live", 0, 0, 0)
    tokens_before = page.get_attribute("#chart-tokens", "data-total")

    # A plain request: its row, the counters and the chart within a second of the answer.
    pixels = chart_pixels(page)
    sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello dashboard"}])
    wait_shown(page, "dash-live", 1, 1, 1)
    assert chart_pixels(page) != pixels
    assert page.get_attribute("#chart-tokens", "data-total") != tokens_before
    row = page.locator('#log tr[data-client="dash-live"]').first
    assert "gpt-4o" in row.inner_text() and row.get_attribute("data-status") == "200"

    # A stream: in flight while it runs, then its row.
    stream = iter(sdk.chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream to the dashboard #fake:stall=1.5"}]))
    next(stream)
    page.wait_for_function("() => document.getElementById('s-active_streams').textContent === '1'"
                           " && document.querySelectorAll('#active tr').length === 1", timeout=SECOND)
    assert "dash-live" in page.inner_text("#active")
    pixels = chart_pixels(page)
    for _ in stream:
        pass
    wait_shown(page, "dash-live", 2, 2, 2)
    page.wait_for_function("() => document.querySelectorAll('#active tr').length === 0"
                           " && document.getElementById('s-active_streams').textContent === '0'", timeout=SECOND)
    assert chart_pixels(page) != pixels
    assert page.locator('#log tr[data-client="dash-live"]').first.locator("td").nth(8).inner_text() == "yes"

    # The last minute's figures: two successes so far, then one failure (1 in 3); the latency and
    # time-to-first-token percentiles count the successes only, and show numbers.
    assert page.inner_text("#s-error_rate") == "0.0%"
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "fail #fake:status=500"}])
    wait_shown(page, "dash-live", 3, 3, 3)
    page.wait_for_function("() => document.getElementById('s-error_rate').textContent === '33.3%'", timeout=SECOND)
    for figure in ("latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms"):
        assert float(page.inner_text(f"#s-{figure}").replace(",", "")) > 0, figure  # "1,506" ms

    # Restart (what GatewayServer.restart does, with a look in between): "disconnected", then
    # back by itself with a fresh snapshot that still has the history.
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    page.wait_for_function("() => document.getElementById('conn').dataset.state === 'disconnected'", timeout=5 * SECOND)
    assert page.inner_text("#conn").startswith("disconnected")
    server.start(port)
    page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'"
                           " && document.body.dataset.snapshots === '2'", timeout=15 * SECOND)
    wait_shown(page, "dash-live", 3, 3, 3)
    sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after the restart"}])
    wait_shown(page, "dash-live", 4, 4, 4)
    assert not problems, problems
