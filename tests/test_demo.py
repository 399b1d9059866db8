"""``python -m aigateway demo`` as a new user runs it: in a fresh folder, no flags; what it prints
works as printed (the curl line through a shell, the Python snippet with this venv's python, and the
same key with the anthropic and google-genai SDKs); a second run keeps the history and replaces the
key; Ctrl-C stops it and both its servers. With ``--traffic``, the dashboard in a real browser
shows the traffic (a screenshot goes to $SCREENSHOT_DIR or a temp folder named in the summary)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import pytest
from conftest import SUMMARY, Proc, eventually, start_process
from google import genai

READY_LINE = "Ctrl-C stops everything."


@dataclass
class Demo:
    proc: Proc
    url: str
    password: str
    key: str
    curl: str
    python: str


def start_demo(cwd: Path, *args: str) -> Demo:
    """Run the demo and read what it printed once both servers listen."""
    proc = start_process(["demo", *args], cwd=str(cwd), timeout=60)
    text = eventually(lambda: proc.text, lambda t: READY_LINE in t, timeout=30)
    assert READY_LINE in text, text
    admin = re.search(r"^Admin UI: +(http://\S+)/admin +user: admin +password: (\S+)$", text, re.M)
    key = re.search(r"^Client key: (\S+)", text, re.M).group(1)
    curl = next(line for line in text.splitlines() if line.startswith("curl "))
    snippet = text.split("Or with the openai SDK (pip install openai):\n", 1)[1].split("\n\n", 1)[0]
    assert admin.group(1) == proc.url
    return Demo(proc, proc.url, admin.group(2), key, curl, snippet)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_with_ctrl_c(demo: Demo) -> None:
    """SIGINT, as a terminal's Ctrl-C sends it: exit 0, and neither server left running."""
    children = children_of(demo.proc.popen.pid)
    assert len(children) == 2, children  # the fake upstream and the gateway
    demo.proc.popen.send_signal(signal.SIGINT)
    assert demo.proc.popen.wait(30) == 0, demo.proc.text
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in demo.proc.text and "\nstopped" in demo.proc.text


def chat_text(body: str) -> str:
    return httpx.Response(200, content=body).json()["choices"][0]["message"]["content"]


def test_a_new_user_runs_the_demo_and_what_it_prints_works(tmp_path):
    demo = start_demo(tmp_path)
    try:
        assert not (tmp_path / "config.yaml").exists() and (tmp_path / "aigateway-demo" / "config.yaml").exists()
        curl = subprocess.run(demo.curl, shell=True, capture_output=True, text=True, timeout=30)
        assert curl.returncode == 0 and chat_text(curl.stdout) == "Echo: Hello from curl", curl
        python = subprocess.run([sys.executable, "-c", demo.python], capture_output=True, text=True, timeout=60)
        assert python.returncode == 0 and python.stdout == "Echo: Hello from Python\n", python
        # The banner's other claim: the same key with the other SDKs, any model name.
        message = anthropic.Anthropic(base_url=demo.url, api_key=demo.key, max_retries=0).messages.create(
            model="claude-sonnet-4-20250514", max_tokens=64, messages=[{"role": "user", "content": "hi claude"}])
        assert message.content[0].text == "Echo: hi claude"
        gemini = genai.Client(api_key=demo.key, http_options={"base_url": demo.url})
        assert gemini.models.generate_content(model="gemini-2.0-flash", contents="hi gemini").text == "Echo: hi gemini"
    finally:
        stop_with_ctrl_c(demo)

    # A second run in the same folder: the history stays, the key and password are new, the old key is refused.
    again = start_demo(tmp_path, "--port", "0")
    try:
        assert again.key != demo.key and again.password != demo.password
        old = httpx.post(again.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {demo.key}"},
                         json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
        assert old.status_code == 401
        curl = subprocess.run(again.curl, shell=True, capture_output=True, text=True, timeout=30)
        assert chat_text(curl.stdout) == "Echo: Hello from curl"
        conn = sqlite3.connect(tmp_path / "aigateway-demo" / "data" / "gateway.db")
        rows = conn.execute("SELECT COUNT(*) FROM request_log WHERE client_name = 'demo' AND status = 200").fetchone()
        conn.close()
        assert rows[0] >= 4  # the first run's four calls are still there
    finally:
        stop_with_ctrl_c(again)


def test_the_demo_never_rewrites_a_config_it_did_not_make(tmp_path):
    (tmp_path / "config.yaml").write_text("server:\n  port: 9999\n")
    run = subprocess.run([sys.executable, "-m", "aigateway", "demo", "--dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "holds a config.yaml the demo did not write" in run.stderr
    assert (tmp_path / "config.yaml").read_text() == "server:\n  port: 9999\n"


def counter(page: Any, name: str) -> int:
    return int(re.sub(r"\D", "", page.inner_text(f"#s-{name}")) or 0)


def test_the_dashboard_shows_the_demo_traffic(browser: Any, tmp_path: Path,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    demo = start_demo(tmp_path, "--dir", str(tmp_path / "demo"), "--port", "0", "--traffic")
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(demo.url + "/admin/dashboard")
        page.fill("#login-username", "admin")
        page.fill("#login-password", demo.password)
        page.press("#login-password", "Enter")
        page.wait_for_url(demo.url + "/admin/dashboard")
        # Each kind of demo request goes out once first (12, in ~5 s): successes, errors, rejections.
        page.wait_for_function(
            """() => ["requests_today", "errors_today", "rejected_today", "output_tokens_today"].every(
                 n => Number(document.getElementById("s-" + n).textContent.replace(/\\D/g, "")) > 0)
               && document.querySelectorAll("#log tr").length >= 12""", timeout=30_000)
        clients_shown = {page.locator("#log tr").nth(i).get_attribute("data-client")
                         for i in range(page.locator("#log tr").count())}
        assert {"support-bot", "docs-search", "code-agent"} <= clients_shown
        assert counter(page, "requests_today") > counter(page, "errors_today") > 0
        folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / "demo-dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        SUMMARY.append(f"demo dashboard screenshot (python -m aigateway demo --traffic): {shot}")
        page.context.close()
    finally:
        stop_with_ctrl_c(demo)
    assert re.search(r"stopped \(sent \d+ demo requests\)", demo.proc.text)
