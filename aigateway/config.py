"""config.yaml: one SETTINGS table drives defaults, validation, first-run writing, migration of
older files and the README reference (datasette's settings table, done for a nested file)."""

from __future__ import annotations

import copy
import os
import re
import secrets
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import bcrypt
import yaml

from aigateway.providers import PROVIDER_APIS, PROVIDER_TYPES, Provider
from aigateway.routing import DEFAULT_FALLBACK_STATUSES, ModelRoute


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
    Setting("server.trusted_proxies", [],
            "Addresses or CIDR networks of reverse proxies whose X-Forwarded-For names the client"
            " (empty: the socket's address is the client's)"),
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
    Setting("defaults.rate_limit.tokens_per_minute", 0,
            "Per-client tokens per minute, input and output, reserved like quotas (0: unlimited)"),
    Setting("defaults.rate_limit.max_concurrent", 0,
            "Per-client requests at once; a stream counts until it ends (0: unlimited)"),
    Setting("defaults.budget.daily_usd", 0.0, "Per-client spend per day in USD, decimals allowed (0: unlimited)"),
    Setting("defaults.budget.monthly_usd", 0.0, "Per-client spend per calendar month in USD (0: unlimited)"),
    Setting("defaults.timezone", "UTC", "Time zone (IANA name) whose midnight starts a new day for limits"),
    Setting("database.path", "./data/gateway.db", "SQLite file (a relative path starts from the config file's folder)"),
    Setting("routing.key_rest_seconds", 60,
            "How long a provider key that got HTTP 429 without a Retry-After is skipped"),
    Setting("routing.key_failed_seconds", 3600,
            "How long a provider key refused with 401/403 is skipped (or until its value changes)"),
    Setting("logging.level", "info", "debug, info, warning or error"),
    Setting("logging.format", "text",
            "text, or json: one JSON object per line (ts, level, logger, message, exc), file and console"),
    Setting("logging.file", "./logs/gateway.log",
            "Rotating log file (10 MB, 5 kept; a relative path starts from the config file's folder)"),
)

PROVIDER_FIELDS: tuple[Setting, ...] = (
    Setting("type", "openai", "One of: " + ", ".join(PROVIDER_TYPES)),
    Setting("api_key", "", "The provider's API key (write-only in the admin UI)"),
    Setting("api_keys", [], "Several keys instead of `api_key`, sharing the load by weight: a list of "
            "`{key, weight (1), label}`"),
    Setting("base_url", "", "Overrides the official endpoint; for OpenAI-compatible types it ends in `/v1`; for "
            "`anthropic` and `gemini` it is the host root (`https://api.anthropic.com`)"),
    Setting("default_model", "", "Model used when neither the request nor the client names one"),
    Setting("allowed_models", [], "If not empty, the only models clients may use (and what `/v1/models` lists; "
            "otherwise the upstream's own list, cached 5 minutes)"),
    Setting("timeout_seconds", 120, "Whole-request timeout; for streams, the longest silence allowed"),
    Setting("api", "chat", "For the OpenAI-compatible types: `chat` (chat completions) or `responses` (the "
            "Responses API, `POST {base_url}/responses`: for models served only there)"),
    Setting("prices", {}, "USD per million tokens for this provider's models, over the shipped table: "
            "`{model: {input, output, cached_input, cache_write, reasoning}}` (see Cost)"),
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
    order = ("server", "admin", "providers", "defaults", "database", "logging", "routing")
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
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(default, dict):
        return isinstance(value, dict)  # its contents are checked by its own rule (prices_problem)
    return isinstance(value, str)


# A route: a model name clients ask for, mapped to targets tried in order (routing.py).
ROUTE_FIELDS: tuple[Setting, ...] = (
    Setting("targets", [], "The providers to try in order: a list of `{provider, model}` (model: the name "
            "to ask that provider for; empty keeps the route's name)"),
    Setting("fallback_on", list(DEFAULT_FALLBACK_STATUSES),
            "Upstream HTTP statuses that move on to the next target (connection failures and timeouts "
            "before the first byte always do)"),
    Setting("retries", 0, "Extra attempts on the same target before moving on (before the first byte only)"),
    Setting("retry_max_seconds", 10, "Longest time one request may spend on retries, waits included"),
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}")


_TYPE_NAMES = {bool: "true or false", int: "a whole number >= 0", float: "a number", list: "a list of strings",
               str: "a string", dict: "a mapping"}


@dataclass(frozen=True)
class Config:
    """A loaded, validated config. Immutable: a reload builds a new one, so in-flight requests
    keep the one they started with."""

    path: Path
    data: dict
    providers: dict[str, Provider]
    routes: dict[str, ModelRoute] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        return _get(self.data, dotted)[1]

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.get("defaults.timezone"))

    def resolve(self, dotted: str) -> Path:
        """A path setting, relative to the config file's folder."""
        return (self.path.parent / str(self.get(dotted))).resolve()


class Checked(NamedTuple):
    providers: dict[str, Provider]
    routes: dict[str, ModelRoute]
    errors: dict[str, str]  # {dotted key: message} in file order; empty when valid


def check(data: dict) -> Checked:
    """Validate a whole config mapping: the providers and routes it defines, and every problem
    found. The one place validation lives: ``load`` reports the first problem, the admin API all of
    them, field by field."""
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
            if field_.name == "api_keys":
                _check_keys(value, raw, f"{key}.api_keys", fail)
            elif value is not None and not _check_type(value, field_.default):
                fail(f"{key}.{field_.name}", f"expected {_TYPE_NAMES[type(field_.default)]}, got {value!r}")
        unknown = set(raw) - {f.name for f in PROVIDER_FIELDS}
        if unknown:
            fail(f"{key}.{sorted(unknown)[0]}", "unknown provider setting")
        if raw.get("type", "openai") not in PROVIDER_TYPES:
            fail(f"{key}.type", f"expected one of {', '.join(PROVIDER_TYPES)}, got {raw.get('type')!r}")
        elif (problem := api_problem(raw)) is not None:
            fail(f"{key}.api", problem)
        if (problem := prices_problem(raw.get("prices"))) is not None:
            fail(f"{key}.prices", problem)
        if len(errors) > before:
            continue
        try:
            out[str(name)] = Provider.from_config(str(name), raw)
        except ValueError as exc:
            fail(f"{key}.base_url", str(exc))
    return Checked(out, _check_routes(data.get("routes"), out, fail), errors)


def api_problem(raw: dict) -> str | None:
    """What is wrong with a provider's ``api`` setting, if anything (only OpenAI-compatible types
    have a choice)."""
    api = raw.get("api") or "chat"
    if api not in PROVIDER_APIS:
        return f"expected one of {', '.join(PROVIDER_APIS)}, got {api!r}"
    if api != "chat" and PROVIDER_TYPES[raw.get("type") or "openai"].format != "openai":
        return f"type {raw.get('type')} has one API; `api` is for the OpenAI-compatible types"
    return None


PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "reasoning")


def prices_problem(prices: Any) -> str | None:
    """What is wrong with a provider's ``prices`` mapping, if anything."""
    if prices is None:
        return None
    if not isinstance(prices, dict):
        return "expected a mapping of model names to {input, output, cached_input, cache_write, reasoning}"
    for model, price in prices.items():
        if not isinstance(price, dict) or not {"input", "output"} <= set(price) or set(price) - set(PRICE_FIELDS):
            return f"{model}: expected {{input, output}} and optionally cached_input, cache_write, reasoning"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in price.values()):
            return f"{model}: prices are numbers of USD per million tokens, 0 or more"
    return None


def _check_keys(value: Any, raw: dict, where: str, fail: Callable[[str, str], None]) -> None:
    """``api_keys``: a list of ``{key, weight?, label?}``, instead of (not beside) ``api_key``."""
    if value is None or value == []:
        return
    if raw.get("api_key"):
        fail(where, "give either api_key or api_keys, not both")
    if not isinstance(value, list):
        fail(where, "expected a list of {key, weight, label}")
        return
    for i, entry in enumerate(value):
        at = f"{where}.{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"].strip():
            fail(at, "expected {key: the API key, weight: a whole number >= 1, label: a name}")
        elif set(entry) - {"key", "weight", "label"}:
            fail(f"{at}.{sorted(set(entry) - {'key', 'weight', 'label'})[0]}", "unknown key setting")
        elif "weight" in entry and (isinstance(entry["weight"], bool) or not isinstance(entry["weight"], int)
                                    or entry["weight"] < 1):
            fail(f"{at}.weight", "expected a whole number >= 1")
        elif not isinstance(entry.get("label", ""), str):
            fail(f"{at}.label", "expected a string")


def _check_routes(routes: Any, providers: dict[str, Provider], fail: Callable[[str, str], None]
                  ) -> dict[str, ModelRoute]:
    """``routes``: model names mapped to targets (providers that exist) and fallback rules."""
    if routes is None:
        return {}
    if not isinstance(routes, dict):
        fail("routes", "expected a mapping of route names to {targets, fallback_on, retries}")
        return {}
    out: dict[str, ModelRoute] = {}
    for name, raw in routes.items():
        key = f"routes.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            fail(key, "a route name is a model name: letters, digits and . _ : @ + - (no slash)")
            continue
        if not isinstance(raw, dict):
            fail(key, "expected a mapping (targets, fallback_on, retries, retry_max_seconds)")
            continue
        ok = True
        for unknown in sorted(set(raw) - {f.name for f in ROUTE_FIELDS}):
            fail(f"{key}.{unknown}", "unknown route setting")
            ok = False
        targets = raw.get("targets")
        if not isinstance(targets, list) or not targets:
            fail(f"{key}.targets", "expected a non-empty list of {provider, model}")
            ok = False
        else:
            for i, target in enumerate(targets):
                if not isinstance(target, dict) or set(target) - {"provider", "model"} \
                        or not isinstance(target.get("model", ""), str):
                    fail(f"{key}.targets.{i}", "expected {provider: a provider's name, model: a model name}")
                    ok = False
                elif target.get("provider") not in providers:
                    fail(f"{key}.targets.{i}.provider", f"no provider named {target.get('provider')!r}")
                    ok = False
        statuses = raw.get("fallback_on")
        if statuses is not None and (not isinstance(statuses, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 400 <= s <= 599 for s in statuses)):
            fail(f"{key}.fallback_on", "expected a list of HTTP statuses (400-599)")
            ok = False
        for name_, bound in (("retries", 10), ("retry_max_seconds", 600)):
            value = raw.get(name_)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= bound):
                fail(f"{key}.{name_}", f"expected a number from 0 to {bound}")
                ok = False
        if ok:
            out[name] = ModelRoute.from_config(name, raw)
    return out


class ConfigInvalid(ConfigError):
    """A config mapping (from the admin API) failed validation: ``errors`` maps dotted keys to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in errors.items()))
        self.errors = errors


def validated(path: Path, data: dict) -> Config:
    """A new Config from a mapping, validated exactly as ``load`` validates the file, without
    reading or writing anything. Raises ConfigInvalid naming every bad key."""
    checked = check(data)
    if checked.errors:
        raise ConfigInvalid(checked.errors)
    return Config(path, data, checked.providers, checked.routes)


def _validate(path: Path, data: dict, lines: dict[str, int]) -> Checked:
    checked = check(data)
    if checked.errors:
        key, message = next(iter(checked.errors.items()))
        line = lines.get(key) or lines.get(key.rsplit(".", 1)[0])
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: {key}: {message}")
    return checked


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
    checked = _validate(path, data, lines)
    password = generate_admin(data)
    if password or changed:
        write_file(path, data)
    config = Config(path, data, checked.providers, checked.routes)
    for dotted in ("database.path", "logging.file"):
        config.resolve(dotted).parent.mkdir(parents=True, exist_ok=True)
    if password and announce:
        print(f"Admin username: {data['admin']['username']}")
        print(f"Admin password: {password}   (shown once; only its bcrypt hash is stored)", flush=True)
    return config
