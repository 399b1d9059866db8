"""The admin UI in a real browser (Playwright driving Debian's Chromium; no browser download):
log in, add a provider, create a client, use its key with the openai SDK, see the usage, change
its system prompt, delete it. Every page is screenshotted at desktop and phone width.

Without /usr/bin/chromium (or the playwright package) these tests are skipped, with the reason;
under CI=true they fail instead, so CI cannot pass without running them."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, SUMMARY, GatewayServer, admin_overrides

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PAGES = ("clients", "teams", "providers", "routes", "usage", "settings")
PROVIDER_KEY = "sk-browser-provider-secret-7391"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the screenshots go: $SCREENSHOT_DIR, else a temp folder; named in the run's summary."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    SUMMARY.append(f"admin UI screenshots ({len(list(folder.glob('*.png')))}, desktop and phone): {folder}")


@pytest.fixture(scope="module")
def ui_gateway(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway of this module's own, with a known admin password."""
    server = GatewayServer(tmp_path_factory.mktemp("ui-gateway"), fake_upstream, **admin_overrides())
    yield server
    server.stop()


@pytest.fixture
def page(browser, ui_gateway: GatewayServer) -> Iterator:
    """A fresh browser context (no cookies) at desktop size; fails the test on any script error or
    Content-Security-Policy violation the page reports."""
    context = browser.new_context(viewport=DESKTOP, base_url=ui_gateway.url,
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    expected = re.compile(r"Failed to load resource: .* status of (400|401|409)")  # refusals the test asks for
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
           if msg.type == "error" and not expected.search(msg.text) else None)
    yield tab
    context.close()
    assert not problems, problems


def log_in(page) -> None:
    """Log in with the keyboard only: the user name field has focus, Tab moves on, Enter submits."""
    page.goto("/admin/usage")
    assert re.search(r"/admin\?next=", page.url)
    # Chromium applies autofocus at its next rendering step, which can come after "load".
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type(ADMIN_USER)
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/usage")


def expect(target):
    """Playwright's auto-waiting assertions (imported late: the module must load without playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def shoot(page, folder: Path, name: str) -> None:
    """Screenshot the whole page, after checking it does not scroll sideways at this width."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def chat(url: str, key: str, text: str = "hello") -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def test_admin_journey(page, ui_gateway: GatewayServer, fake_upstream: str, screenshots: Path):
    page.goto("/admin")
    shoot(page, screenshots, "login-desktop")
    log_in(page)

    # A provider pointing at the fake upstream: test it, then save it.
    page.goto("/admin/providers")
    page.get_by_role("button", name="Add provider").click()
    dialog = page.locator("#provider-dialog")
    dialog.get_by_label("Name").fill("browser-upstream")
    dialog.get_by_label("Type").select_option("openai_compatible")
    dialog.get_by_label("API key", exact=True).fill(PROVIDER_KEY)
    dialog.get_by_label("Base URL").fill(fake_upstream + "/v1")
    dialog.get_by_label("Default model").fill("gpt-4o")
    dialog.get_by_role("button", name="Test connection").click()
    expect(dialog.locator("#form-test-result")).to_contain_text("gpt-4o")
    shoot(page, screenshots, "provider-dialog-desktop")
    dialog.get_by_role("button", name="Add provider").click()
    row = page.locator("#providers-table tr[data-name='browser-upstream']")
    expect(row).to_contain_text(f"…{PROVIDER_KEY[-4:]} ×1 ok")  # its last characters, weight and state: never the key
    assert PROVIDER_KEY not in page.content()
    row.get_by_role("button", name="Test browser-upstream").click()
    expect(page.locator("#test-result")).to_contain_text("✓ browser-upstream answered")
    shoot(page, screenshots, "providers-desktop")

    # A client on it: the form refuses bad values next to the field, then the key is shown once.
    page.goto("/admin/clients")
    page.get_by_role("button", name="New client").click()
    dialog = page.locator("#client-dialog")
    dialog.get_by_label("Provider").select_option("browser-upstream")
    dialog.get_by_label("Requests per minute").fill("-3")
    dialog.get_by_role("button", name="Create client").click()
    expect(dialog.locator("#c-name-error")).to_have_text("required")
    expect(dialog.locator("#c-rpm-error")).to_contain_text("whole number")
    expect(dialog.get_by_label("Name")).to_be_focused()
    assert dialog.get_by_label("Name").get_attribute("aria-invalid") == "true"
    shoot(page, screenshots, "client-errors-desktop")
    dialog.get_by_label("Name").fill("browser-bot")
    dialog.get_by_label("Requests per minute").fill("")
    dialog.get_by_role("button", name="Create client").click()
    key_dialog = page.locator("#key-dialog")
    expect(key_dialog).to_be_visible()
    key = key_dialog.locator("#new-key").input_value()
    assert key.startswith("sk-")
    assert key in key_dialog.locator("#curl-example").inner_text()
    key_dialog.get_by_role("button", name="Copy", exact=True).click()
    expect(key_dialog.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    shoot(page, screenshots, "client-key-desktop")
    key_dialog.get_by_role("button", name="Done").click()

    # The copied key works with the official SDK, and the request shows on the usage page.
    assert chat(ui_gateway.url, key) == "Echo: hello"
    page.goto("/admin/usage")
    deadline = time.monotonic() + 10
    while "browser-bot" not in page.locator("#by-client").inner_text() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(page.locator("#by-client")).to_contain_text("browser-bot")
    expect(page.locator("#log")).to_contain_text("browser-bot")
    expect(page.locator("#chart .bar").first).to_be_attached()
    page.get_by_label("Client", exact=True).select_option(label="browser-bot")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#log tbody tr")).to_have_count(1)
    shoot(page, screenshots, "usage-desktop")

    # Editing the system prompt changes the very next request.
    page.goto("/admin/clients")
    expect(page.locator("tr[data-name='browser-bot']")).to_contain_text("browser-upstream")
    page.get_by_role("button", name="Edit browser-bot").click()
    page.locator("#client-dialog").get_by_label("System prompt").fill("Answer like a pirate.")
    page.locator("#client-dialog").get_by_role("button", name="Save changes").click()
    expect(page.locator("#client-dialog")).to_be_hidden()
    assert chat(ui_gateway.url, key) == "[system: Answer like a pirate.] Echo: hello"
    shoot(page, screenshots, "clients-desktop")

    # Deleting the client refuses its key at once.
    page.get_by_role("button", name="Edit browser-bot").click()
    page.locator("#client-dialog").get_by_role("button", name="Delete client").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete client").click()
    expect(page.locator("tr[data-name='browser-bot']")).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        chat(ui_gateway.url, key)

    page.goto("/admin/settings")
    expect(page.locator("#facts")).to_contain_text("aigateway")
    shoot(page, screenshots, "settings-desktop")


def test_a_route_made_in_the_ui_serves_a_client_allowed_it_on_its_dialog(page, ui_gateway: GatewayServer):
    """Routes page: add a route whose first target is a provider that cannot answer; the client's
    dialog allows it; the client's request falls back to the second target. The providers page
    shows each key's state, never the key."""
    log_in(page)
    page.goto("/admin/routes")
    page.get_by_role("button", name="Add route").click()
    page.get_by_label("Model name").fill("ui-smart")
    page.get_by_label("Targets").fill("nowhere gpt-4o\nfake-anthropic claude-sonnet-4-20250514")
    page.get_by_role("button", name="Add route").last.click()
    expect(page.locator("#r-targets-error")).to_contain_text("nowhere")  # an unknown provider: refused, nothing saved
    page.get_by_label("Targets").fill("fake-gemini gemini-2.0-flash\nfake-anthropic claude-sonnet-4-20250514")
    page.get_by_label("Falls back on").fill("429, 500, 503")
    page.get_by_role("button", name="Add route").last.click()
    row = page.locator("#routes-table tr[data-name='ui-smart']")
    expect(row).to_contain_text("fake-gemini")
    expect(row).to_contain_text("429, 500, 503")
    key = ui_gateway.add_client("ui-routed")
    page.goto("/admin/clients")
    page.get_by_role("button", name="Edit ui-routed").click()
    page.get_by_label("Routes").fill("ui-smart")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#toast")).to_contain_text("ui-routed")
    client = openai.OpenAI(base_url=ui_gateway.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="ui-smart", messages=[{"role": "user", "content": "hi #fake:x=1"}])
    assert reply.choices[0].message.content == "Echo: hi"
    page.goto("/admin/providers")
    keys = page.locator("#providers-table tr[data-name='fake-anthropic'] ul.keys")
    expect(keys).to_contain_text("ok")
    assert "sk-ant-upstream-secret" not in page.content()


def test_a_team_budget_made_in_the_ui_refuses_its_client(page, ui_gateway: GatewayServer):
    """Teams page: a team with a tiny budget; the client's dialog puts a client in it, with a
    budget in dollars and allowed models; its next request is refused naming the team's budget."""
    log_in(page)
    page.goto("/admin/teams")
    page.get_by_role("button", name="Add team").click()
    page.get_by_label("Name").fill("ui-team")
    page.get_by_label("USD per day").fill("-1")
    page.get_by_role("button", name="Add team").last.click()
    expect(page.locator("#t-daily_budget_usd-error")).to_be_visible()  # refused, nothing saved
    page.get_by_label("USD per day").fill("0.000001")
    page.get_by_role("button", name="Add team").last.click()
    expect(page.locator("#teams-table tr[data-name='ui-team']")).to_contain_text("USD per day: $0.000001")
    key = ui_gateway.add_client("ui-teamed")
    page.goto("/admin/clients")
    page.get_by_role("button", name="Edit ui-teamed").click()
    page.get_by_label("Team", exact=True).select_option(label="ui-team")
    page.get_by_label("Allowed models").fill("gpt-4o*")
    page.get_by_label("USD per day").fill("2.50")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#toast")).to_contain_text("ui-teamed")
    page.get_by_role("button", name="Edit ui-teamed").click()
    expect(page.get_by_label("USD per day")).to_have_value("2.5")
    expect(page.get_by_label("Allowed models")).to_have_value("gpt-4o*")
    client = openai.OpenAI(base_url=ui_gateway.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "team 'ui-team': daily budget" in refused.value.message


def test_settings_errors_show_next_to_the_field(page, ui_gateway: GatewayServer):
    log_in(page)
    page.goto("/admin/settings")
    page.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    page.get_by_label("Requests per minute").fill("-1")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("[id='s-defaults.timezone-error']")).to_contain_text("unknown time zone")
    expect(page.locator("[id='s-defaults.rate_limit.requests_per_minute-error']")).to_contain_text("whole number")
    assert "Mars" not in ui_gateway.config.read_text()  # nothing saved


def test_password_change_from_the_settings_page(browser, fake_upstream: str, tmp_path):
    """On a gateway of its own (it changes the password): errors show next to their field, and after
    the change this browser stays logged in while the old password no longer works."""
    server = GatewayServer(tmp_path, fake_upstream, **admin_overrides())
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    try:
        page = context.new_page()
        log_in(page)
        page.goto("/admin/settings")
        form = page.locator("#password-form")
        form.get_by_label("Current password").fill("not the password")
        form.get_by_label("New password", exact=True).fill("brand new password")
        form.get_by_label("Repeat the new password").fill("brand new passwort")
        form.get_by_role("button", name="Change password").click()
        expect(form.locator("#pw-confirm-error")).to_have_text("does not match the new password")
        form.get_by_label("Repeat the new password").fill("brand new password")
        form.get_by_role("button", name="Change password").click()
        expect(form.locator("#pw-current_password-error")).to_have_text("this is not the current password")
        form.get_by_label("Current password").fill(ADMIN_PASSWORD)
        form.get_by_role("button", name="Change password").click()
        expect(page.locator("#toast")).to_contain_text("Password changed")
        page.goto("/admin/clients")
        expect(page).to_have_url(re.compile(r"/admin/clients$"))  # still logged in
        other = browser.new_context(base_url=server.url).new_page()
        other.goto("/admin")
        other.get_by_label("User name").fill(ADMIN_USER)
        other.get_by_label("Password").fill(ADMIN_PASSWORD)
        other.get_by_role("button", name="Log in").click()
        expect(other.locator("#login-form .form-error")).to_have_text("Wrong user name or password.")
        other.context.close()
    finally:
        context.close()
        server.stop()


def test_keyboard_alone_reaches_everything(page):
    """Tab starts at the skip link, then the page header; a dialog opens with Enter, takes the focus
    to its first field, and Escape closes it."""
    log_in(page)
    page.goto("/admin/clients")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "aigateway"
    page.get_by_role("button", name="New client").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#client-dialog")).to_be_visible()
    expect(page.locator("#client-dialog").get_by_label("Name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#client-dialog")).to_be_hidden()
    for name in PAGES:
        page.goto(f"/admin/{name}")
        page.wait_for_load_state("networkidle")
        unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
            .filter((el) => !el.hidden && el.type !== 'hidden' && !(el.labels && el.labels.length))
            .map((el) => el.id || el.name)""")
        assert unlabelled == [], f"{name}: fields without a label: {unlabelled}"


def test_every_page_fits_a_phone(browser, ui_gateway: GatewayServer, screenshots: Path):
    """390 px wide: no page scrolls sideways, and each is screenshotted (with a client and some usage)."""
    key = ui_gateway.add_client("phone-bot", default_model="gpt-4o", system_prompt="Be brief.")
    chat(ui_gateway.url, key)
    context = browser.new_context(viewport=PHONE, base_url=ui_gateway.url, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto("/admin")
    shoot(page, screenshots, "login-phone")
    page.get_by_label("User name").fill(ADMIN_USER)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/clients")
    for name in PAGES:
        page.goto(f"/admin/{name}")
        page.wait_for_load_state("networkidle")
        shoot(page, screenshots, f"{name}-phone")
    page.goto("/admin/clients")
    page.get_by_role("button", name="New client").click()
    shoot(page, screenshots, "client-dialog-phone")
    context.close()
