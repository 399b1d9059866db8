"""The client CLI on a real config and database, and a running server noticing its changes."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx2 as httpx
import pytest
from conftest import eventually


def cli(config, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "aigateway", "client", *args, "--config", str(config)],
                         capture_output=True, text=True, timeout=30)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def as_json(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout)


def chat(url: str, key: str) -> int:
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_client_lifecycle_seen_by_the_running_server(fresh_gateway):
    config, url = fresh_gateway.config, fresh_gateway.url
    added = as_json(cli(config, "add", "--name", "billing-bot", "--provider", "fake-openai", "--key-type", "gm_",
                        "--system-prompt", "Be terse.", "--model", "gpt-4o-mini", "--json"))
    key = added["api_key"]
    assert key.startswith("gm_") and len(key) >= 3 + 43
    assert added["key_prefix"].startswith("gm_") and key not in json.dumps({**added, "api_key": None})
    assert eventually(lambda: chat(url, key), lambda s: s == 200) == 200

    shown = as_json(cli(config, "show", "billing-bot", "--json"))
    assert "api_key" not in shown and "key_hash" not in shown
    assert shown["system_prompt"] == "Be terse." and shown["default_model"] == "gpt-4o-mini"
    assert as_json(cli(config, "show", str(added["id"]), "--json"))["name"] == "billing-bot"

    listed = as_json(cli(config, "list", "--json"))
    assert [c["name"] for c in listed] == ["billing-bot"] and "api_key" not in listed[0]

    updated = as_json(cli(config, "update", "billing-bot", "--system-prompt", "Be kind.", "--json"))
    assert updated["system_prompt"] == "Be kind." and "api_key" not in updated

    cli(config, "disable", "billing-bot")
    assert eventually(lambda: chat(url, key), lambda s: s == 403) == 403
    cli(config, "enable", "billing-bot")
    assert eventually(lambda: chat(url, key), lambda s: s == 200) == 200

    rotated = as_json(cli(config, "rotate-key", "billing-bot", "--json"))
    new_key = rotated["api_key"]
    assert new_key != key and new_key.startswith("gm_")
    assert eventually(lambda: chat(url, key), lambda s: s == 401) == 401
    assert eventually(lambda: chat(url, new_key), lambda s: s == 200) == 200

    cli(config, "delete", "billing-bot")
    assert eventually(lambda: chat(url, new_key), lambda s: s == 401) == 401


def test_plain_output_shows_the_key_once(tmp_path):
    out = cli(tmp_path / "config.yaml", "add", "--name", "a", "--provider", "openai")
    assert "API key (shown once" in out.stdout
    assert "sk-" in out.stdout
    listed = cli(tmp_path / "config.yaml", "list")
    assert "API key" not in listed.stdout


@pytest.mark.parametrize("args,message", [
    (("add", "--name", "x", "--provider", "nope"), "unknown provider"),
    (("show", "ghost"), "no client"),
    (("update", "ghost", "--model", "m"), "no client"),
])
def test_cli_errors_are_one_line_exit_1(tmp_path, args, message):
    out = cli(tmp_path / "config.yaml", *args, check=False)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_duplicate_names_refused(tmp_path):
    cli(tmp_path / "config.yaml", "add", "--name", "dup", "--provider", "openai")
    out = cli(tmp_path / "config.yaml", "add", "--name", "dup", "--provider", "openai", check=False)
    assert out.returncode == 1 and "already exists" in out.stderr
