"""config.yaml: one SETTINGS table drives defaults, validation, first-run writing, migration of
older files and the README reference (datasette's settings table, done for a nested file)."""

from __future__ import annotations

import copy
import os
import secrets
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from aigateway.providers import PROVIDER_TYPES, Provider


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # dotted path in the YAML file
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", "0.0.0.0", "Address to listen on"),
    Setting("server.port", 8090, "Port to listen on (`--port` overrides; 0 picks a free port)"),
    Setting("server.https.enabled", False, "Serve HTTPS with the files below"),
    Setting("server.https.cert_file", "", "PEM certificate chain"),
    Setting("server.https.key_file", "", "PEM private key"),
    Setting("server.max_upstream_connections", 2000,
            "Concurrent upstream requests (a stream holds one for its whole life; each slot is a "
            "pre-made curl handle of about 4 KB)"),
    Setting("server.shutdown_grace_seconds", 30,
            "On SIGTERM/SIGINT, how long in-flight requests and streams may take to finish"),
    Setting("server.max_body_mb", 10, "Largest request body accepted, in MB (larger: 413)"),
    Setting("server.idle_timeout_seconds", 60,
            "Close a connection that has sent no complete request headers for this long (idle or trickling)"),
    Setting("server.body_timeout_seconds", 60, "Close a connection whose request body takes longer than this"),
    Setting("admin.username", "admin", "Admin UI user name"),
    Setting("admin.password_hash", "", "bcrypt hash of the admin password (generated when empty)"),
    Setting("admin.session_secret", "", "Secret that signs admin session cookies (generated when empty)"),
    Setting("defaults.rate_limit.requests_per_minute", 60, "Per-client requests per minute (0: unlimited)"),
    Setting("defaults.rate_limit.requests_per_hour", 1000, "Per-client requests per hour (0: unlimited)"),
    Setting("defaults.rate_limit.requests_per_day", 10000, "Per-client requests per day (0: unlimited)"),
    Setting("defaults.quota.max_input_tokens_per_day", 1000000, "Per-client input tokens per day (0: unlimited)"),
    Setting("defaults.quota.max_output_tokens_per_day", 500000, "Per-client output tokens per day (0: unlimited)"),
    Setting("defaults.quota.max_requests_per_day", 1000, "Per-client requests per day, quota (0: unlimited)"),
    Setting("defaults.quota.max_input_tokens", 1000000, "Largest input of one request, in tokens (0: unlimited)"),
    Setting("defaults.quota.max_output_tokens", 8192, "Output cap of one request, in tokens (0: unlimited)"),
    Setting("defaults.timezone", "UTC", "Time zone (IANA name) whose midnight starts a new day for limits"),
    Setting("database.path", "./data/gateway.db", "SQLite file (a relative path starts from the config file's folder)"),
    Setting("logging.level", "info", "debug, info, warning or error"),
    Setting("logging.format", "text",
            "text, or json: one JSON object per line (ts, level, logger, message, exc), file and console"),
    Setting("logging.file", "./logs/gateway.log",
            "Rotating log file (10 MB, 5 kept; a relative path starts from the config file's folder)"),
)

PROVIDER_FIELDS: tuple[Setting, ...] = (
    Setting("type", "openai", "One of: " + ", ".join(PROVIDER_TYPES)),
    Setting("api_key", "", "The provider's API key (write-only in the admin UI)"),
    Setting("base_url", "", "Overrides the official endpoint; for OpenAI-compatible types it ends in `/v1`; for "
            "`anthropic` and `gemini` it is the host root (`https://api.anthropic.com`)"),
    Setting("default_model", "", "Model used when neither the request nor the client names one"),
    Setting("allowed_models", [], "If not empty, the only models clients may use (and what `/v1/models` lists; "
            "otherwise the upstream's own list, cached 5 minutes)"),
    Setting("timeout_seconds", 120, "Whole-request timeout; for streams, the longest silence allowed"),
)

# The providers a new config file starts with (the original's README).
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "gemini": {"type": "gemini", "api_key": "", "default_model": "gemini-2.0-flash",
               "allowed_models": ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"],
               "timeout_seconds": 120},
    "openai": {"type": "openai", "api_key": "", "default_model": "gpt-4o", "timeout_seconds": 120},
    "anthropic": {"type": "anthropic", "api_key": "", "default_model": "claude-sonnet-4-20250514",
                  "timeout_seconds": 120},
    "mistral": {"type": "mistral", "api_key": "", "default_model": "mistral-large-latest", "timeout_seconds": 120},
    "ollama": {"type": "ollama", "base_url": "http://localhost:11434/v1", "default_model": "llama3.2",
               "timeout_seconds": 120},
    "lmstudio": {"type": "lmstudio", "base_url": "http://localhost:1234/v1", "default_model": "default",
                 "timeout_seconds": 120},
}

_LEVELS = ("debug", "info", "warning", "error")
_CHOICES = {"logging.level": _LEVELS, "logging.format": ("text", "json")}


class ConfigError(Exception):
    """A config problem, reported as one line naming the file, line and key; the CLI exits 2."""


def _get(data: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _set(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[keys[-1]] = value


def default_data() -> dict:
    """The whole default file, as first run writes it."""
    data: dict = {}
    for s in SETTINGS:
        _set(data, s.name, copy.deepcopy(s.default))
    data["providers"] = copy.deepcopy(DEFAULT_PROVIDERS)
    order = ("server", "admin", "providers", "defaults", "database", "logging")
    return {k: data[k] for k in order}


def _line_map(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    """Remember the line of every key, so errors can point at it."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = f"{prefix}{key_node.value}"
            out[name] = key_node.start_mark.line + 1
            _line_map(value_node, name + ".", out)


def _check_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


_TYPE_NAMES = {bool: "true or false", int: "a whole number >= 0", float: "a number", list: "a list of strings",
               str: "a string"}


@dataclass(frozen=True)
class Config:
    """A loaded, validated config. Immutable: a reload builds a new one, so in-flight requests
    keep the one they started with."""

    path: Path
    data: dict
    providers: dict[str, Provider]

    def get(self, dotted: str) -> Any:
        return _get(self.data, dotted)[1]

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.get("defaults.timezone"))

    def resolve(self, dotted: str) -> Path:
        """A path setting, relative to the config file's folder."""
        return (self.path.parent / str(self.get(dotted))).resolve()


def check(data: dict) -> tuple[dict[str, Provider], dict[str, str]]:
    """Validate a whole config mapping: the providers it defines, and every problem found as
    ``{dotted key: message}`` in file order (empty when valid). The one place validation lives:
    ``load`` reports the first problem, the admin API all of them, field by field."""
    errors: dict[str, str] = {}

    def fail(key: str, message: str) -> None:
        errors.setdefault(key, message)

    for s in SETTINGS:
        _, value = _get(data, s.name)
        if not _check_type(value, s.default):
            fail(s.name, f"expected {_TYPE_NAMES[type(s.default)]}, got {value!r}")
    for name, choices in _CHOICES.items():
        if name not in errors and _get(data, name)[1] not in choices:
            fail(name, f"expected one of {', '.join(choices)}")
    zone = _get(data, "defaults.timezone")[1]
    if "defaults.timezone" not in errors:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            fail("defaults.timezone", f"unknown time zone {zone!r}")
    providers = data.get("providers") or {}
    if not isinstance(providers, dict):
        fail("providers", "expected a mapping of provider names to settings")
        providers = {}
    out: dict[str, Provider] = {}
    for name, raw in providers.items():
        key = f"providers.{name}"
        if not isinstance(raw, dict):
            fail(key, "expected a mapping (type, api_key, base_url, ...)")
            continue
        before = len(errors)
        for field_ in PROVIDER_FIELDS:
            value = raw.get(field_.name)
            if value is not None and not _check_type(value, field_.default):
                fail(f"{key}.{field_.name}", f"expected {_TYPE_NAMES[type(field_.default)]}, got {value!r}")
        unknown = set(raw) - {f.name for f in PROVIDER_FIELDS}
        if unknown:
            fail(f"{key}.{sorted(unknown)[0]}", "unknown provider setting")
        if raw.get("type", "openai") not in PROVIDER_TYPES:
            fail(f"{key}.type", f"expected one of {', '.join(PROVIDER_TYPES)}, got {raw.get('type')!r}")
        if len(errors) > before:
            continue
        try:
            out[str(name)] = Provider.from_config(str(name), raw)
        except ValueError as exc:
            fail(f"{key}.base_url", str(exc))
    return out, errors


class ConfigInvalid(ConfigError):
    """A config mapping (from the admin API) failed validation: ``errors`` maps dotted keys to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in errors.items()))
        self.errors = errors


def validated(path: Path, data: dict) -> Config:
    """A new Config from a mapping, validated exactly as ``load`` validates the file, without
    reading or writing anything. Raises ConfigInvalid naming every bad key."""
    providers, errors = check(data)
    if errors:
        raise ConfigInvalid(errors)
    return Config(path, data, providers)


def _validate(path: Path, data: dict, lines: dict[str, int]) -> dict[str, Provider]:
    providers, errors = check(data)
    if errors:
        key, message = next(iter(errors.items()))
        line = lines.get(key) or lines.get(key.rsplit(".", 1)[0])
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: {key}: {message}")
    return providers


def generate_admin(data: dict) -> str | None:
    """Fill an empty password hash or session secret; return a new plaintext password, if any."""
    password = None
    if not data["admin"].get("password_hash"):
        password = secrets.token_urlsafe(12)
        data["admin"]["password_hash"] = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    if not data["admin"].get("session_secret"):
        data["admin"]["session_secret"] = secrets.token_urlsafe(32)
    return password


def write_file(path: Path, data: dict) -> None:
    """Write the config atomically with mode 0600: it holds every provider key."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=False, allow_unicode=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def parse(path: Path, text: str) -> tuple[dict, dict[str, int]]:
    """YAML text to data plus the line of each key; syntax errors name the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping of sections")
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, "", lines)
    return data, lines


def load(path: str | os.PathLike, *, announce: bool = True) -> Config:
    """Load config.yaml, creating or upgrading it first; prints a newly generated admin
    password once (to the console only, never to the log)."""
    path = Path(path).resolve()
    if path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        data, lines = parse(path, text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        data, lines = default_data(), {}
    changed = not path.exists()
    for s in SETTINGS:  # migration: add what a newer version knows, keep the user's values
        if _get(data, s.name)[1] is None:
            _set(data, s.name, copy.deepcopy(s.default))
            changed = True
    if data.get("providers") is None:
        data["providers"] = {}
        changed = True
    providers = _validate(path, data, lines)
    password = generate_admin(data)
    if password or changed:
        write_file(path, data)
    config = Config(path, data, providers)
    for dotted in ("database.path", "logging.file"):
        config.resolve(dotted).parent.mkdir(parents=True, exist_ok=True)
    if password and announce:
        print(f"Admin username: {data['admin']['username']}")
        print(f"Admin password: {password}   (shown once; only its bcrypt hash is stored)", flush=True)
    return config
