"""The agent CLIs as their users run them, through a real gateway to every backend type: Claude Code
(Anthropic Messages), Gemini CLI (Gemini) and Codex CLI (the Responses API), each from npm at a
pinned version. A one-turn answer, and a turn where the model calls the CLI's own file-reading tool
and the CLI sends what it read back. The fake upstream's ``tool`` and ``args`` knobs script the model.

Installed once into a cache folder (``AIGATEWAY_AGENT_CLIS``, default ``~/.cache/aigateway/agent-clis``).
Without npm the module is skipped with the reason, except under ``CI=true``, where it fails.
Marked ``agent_cli``: ``pytest -m 'not agent_cli'`` leaves it out locally."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import GatewayServer

pytestmark = [pytest.mark.agent_cli, pytest.mark.timeout(900)]  # the first test may install them

PACKAGES = {"claude": "@anthropic-ai/claude-code@2.1.197", "gemini": "@google/gemini-cli@0.61.0",
            "codex": "@openai/codex@0.171.0"}
BACKENDS = ("openai", "responses", "anthropic", "gemini")
# Each CLI's own file-reading tool, and how its arguments name the file.
READ_TOOLS = {"claude": ("Read", "file_path"), "gemini": ("read_file", "file_path"), "codex": ("exec_command", "cmd")}
RUN_SECONDS = 120


def cache_dir() -> Path:
    return Path(os.environ.get("AIGATEWAY_AGENT_CLIS") or Path.home() / ".cache" / "aigateway" / "agent-clis")


def installed(folder: Path) -> bool:
    for spec in PACKAGES.values():
        name, _, version = spec.rpartition("@")
        manifest = folder / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text()).get("version") != version:
            return False
    return True


@pytest.fixture(scope="module")
def clis() -> Path:
    """The folder of the CLIs' executables, installed with npm when missing or of another version."""
    folder = cache_dir()
    if not installed(folder):
        reason = None if shutil.which("npm") else "npm is not installed (apt-get install nodejs npm)"
        if reason is None:
            folder.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                                   *PACKAGES.values()], capture_output=True, text=True, timeout=900)
            reason = None if done.returncode == 0 and installed(folder) else f"npm install failed: {done.stderr[-500:]}"
        if reason:
            if os.environ.get("CI") == "true":
                pytest.fail(f"the agent CLI tests must run in CI: {reason}")
            pytest.skip(reason)
    return folder / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def keys(gateway: GatewayServer) -> dict[str, str]:
    return {b: gateway.add_client(f"agent-{b}", provider=f"fake-{b}") for b in BACKENDS}


def knob_args(args: dict) -> str:
    """The fake's ``args`` knob: the tool call's arguments, base64url (no spaces to break the knob)."""
    return base64.urlsafe_b64encode(json.dumps(args).encode()).decode().rstrip("=")


def run_cli(cli: str, bin_dir: Path, gateway: Any, key: str, prompt: str, work: Path, home: Path) -> str:
    """Run one non-interactive turn of ``cli`` in ``work`` with a fresh ``home`` against ``gateway``
    (anything with a ``url``); its output."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    work.mkdir(exist_ok=True)
    if cli == "claude":
        env |= {"ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": key,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
        args = [str(bin_dir / "claude"), "-p", prompt, "--model", "claude-sonnet-4-20250514", "--allowedTools", "Read"]
    elif cli == "gemini":
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}}, "privacy": {"usageStatisticsEnabled": False}}))
        env |= {"GEMINI_API_KEY": key, "GOOGLE_GEMINI_BASE_URL": gateway.url, "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        args = [str(bin_dir / "gemini"), "-p", prompt, "-m", "gemini-2.0-flash"]
    else:
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model = "gpt-4o"\nmodel_provider = "aigateway"\n\n[model_providers.aigateway]\nname = "aigateway"\n'
            f'base_url = "{gateway.url}/v1"\nenv_key = "AIGATEWAY_KEY"\nwire_api = "responses"\n'
            "request_max_retries = 0\nstream_max_retries = 0\n")
        env |= {"CODEX_HOME": str(codex_home), "AIGATEWAY_KEY": key}
        args = [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", prompt]
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=RUN_SECONDS,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    return done.stdout


def rows_since(gateway: GatewayServer, backend: str, before: int, count: int) -> list[dict]:
    return gateway.wait_log_rows(f"agent-{backend}", before + count)[before:]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cli", list(PACKAGES))
def test_one_turn_answer(clis, gateway, keys, tmp_path, cli, backend):
    before = len(gateway.log_rows(f"agent-{backend}"))
    out = run_cli(cli, clis, gateway, keys[backend], f"say hello to the {cli} tester #fake:tool=none",
                  tmp_path / "work", tmp_path / "home")
    assert f"say hello to the {cli} tester" in out, out[-1500:]  # the fake's echo, printed by the CLI
    rows = rows_since(gateway, backend, before, 1)
    inbound = {"claude": "anthropic", "gemini": "gemini", "codex": "responses"}[cli]
    assert [(r["status"], r["inbound"], r["provider"]) for r in rows] == [(200, inbound, f"fake-{backend}")]
    assert rows[0]["output_tokens"] > 0 and rows[0]["input_tokens"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cli", list(PACKAGES))
def test_the_model_calls_the_clis_file_tool_and_gets_what_it_read(clis, gateway, keys, tmp_path, cli, backend):
    work = tmp_path / "work"
    work.mkdir()
    secret = f"the word of {cli} on {backend} is pelican-{os.getpid()}"
    (work / "note.txt").write_text(secret + "\n")
    tool, field = READ_TOOLS[cli]
    value = "cat note.txt" if cli == "codex" else str(work / "note.txt")
    before = len(gateway.log_rows(f"agent-{backend}"))
    out = run_cli(cli, clis, gateway, keys[backend],
                  f"read note.txt #fake:tool={tool} #fake:args={knob_args({field: value})}", work, tmp_path / "home")
    # The fake answers a tool result with "Tool <name> returned: <content>": the CLI ran the tool,
    # sent the file's content back through the gateway, and printed the answer.
    assert f"Tool {tool} returned:" in out and secret in out, out[-1500:]
    rows = rows_since(gateway, backend, before, 2)
    assert [r["status"] for r in rows] == [200, 200]


@pytest.mark.parametrize("cli", list(PACKAGES))
def test_each_cli_accepts_the_fake_upstream_directly(clis, fake_upstream, tmp_path, cli):
    """The fake speaks each CLI's API exactly enough that the CLI, pointed straight at it, works:
    what the gateway tests above rely on is the real wire format, not an agreement with our fake."""
    fake = SimpleNamespace(url=fake_upstream)
    out = run_cli(cli, clis, fake, "sk-direct-to-the-fake", "say hello directly #fake:tool=none", tmp_path / "work",
                  tmp_path / "home")
    assert "say hello directly" in out, out[-1500:]
