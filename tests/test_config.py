"""First run, migration and error reporting of config.yaml, through the real CLI."""

from __future__ import annotations

import stat
import subprocess
import sys

import bcrypt
import yaml

from aigateway.config import SETTINGS, load


def run_cli(*args: str, cwd=None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aigateway", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_first_run_writes_the_original_schema_0600_and_prints_the_password_once(tmp_path):
    out = run_cli("client", "list", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = tmp_path / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = yaml.safe_load(config.read_text())
    # the original schema, in its order, then the sections this version adds
    assert list(data) == ["server", "admin", "providers", "defaults", "database", "logging", "routing"]
    assert data["server"]["port"] == 8090 and data["server"]["https"]["enabled"] is False
    assert set(data["providers"]) == {"gemini", "openai", "anthropic", "mistral", "ollama", "lmstudio"}
    assert data["defaults"]["quota"]["max_output_tokens"] == 8192
    assert data["database"]["path"] == "./data/gateway.db" and data["logging"]["file"] == "./logs/gateway.log"
    password = next(line.split(":", 1)[1].split()[0] for line in out.stdout.splitlines()
                    if line.startswith("Admin password:"))
    assert password not in config.read_text()
    assert bcrypt.checkpw(password.encode(), data["admin"]["password_hash"].encode())
    assert len(data["admin"]["session_secret"]) >= 32
    assert (tmp_path / "data").is_dir() and (tmp_path / "logs").is_dir()
    again = run_cli("client", "list", "--json", cwd=tmp_path)
    assert "Admin password" not in again.stdout  # once only


def test_hand_written_config_gets_secrets_and_missing_keys_kept_values(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: 9999\nproviders:\n  local:\n    type: ollama\nlogging:\n  level: warning\n")
    out = run_cli("client", "list", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert "Admin password:" in out.stdout
    data = yaml.safe_load(config.read_text())
    assert data["server"]["port"] == 9999 and data["logging"]["level"] == "warning"
    assert data["server"]["host"] == "0.0.0.0"  # migrated in
    assert data["providers"] == {"local": {"type": "ollama"}}  # the user's providers, untouched
    for setting in SETTINGS:
        node = data
        for part in setting.name.split("."):
            node = node[part]


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    config = load(folder / "config.yaml", announce=False)
    assert config.resolve("database.path") == folder / "data" / "gateway.db"
    assert (folder / "logs").is_dir()


def test_malformed_yaml_is_one_line_with_file_and_line_exit_2(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: 8090\n  host: [unclosed\n")
    out = run_cli("run", "--config", str(config))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: {config}:")
    assert "invalid YAML" in out.stderr


def test_bad_value_names_file_line_and_key_exit_2(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  host: 0.0.0.0\n  port: lots\n")
    out = run_cli("run", "-config", str(config))
    assert out.returncode == 2
    assert f"{config}:3: server.port:" in out.stderr and "Traceback" not in out.stderr


def test_bad_provider_type_names_the_key(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("providers:\n  weird:\n    type: telepathy\n")
    out = run_cli("client", "list", "--config", str(config))
    assert out.returncode == 2
    assert f"{config}:3: providers.weird.type:" in out.stderr
