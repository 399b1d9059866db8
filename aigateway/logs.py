"""Logging setup: a rotating file plus the console, at the configured level, with secrets
masked in every line whatever logged it."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
from datetime import datetime, timezone
from typing import Any

from aigateway.config import Config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Bearer tokens, our key prefixes, key-like query/header values, passwords and session secrets,
# and whole Cookie / Set-Cookie header values.
_SECRET = re.compile(
    r"(?i)(bearer\s+|x-api-key:\s*|x-goog-api-key:\s*|[?&]key=|"
    r"(?:api_key|password|password_hash|session_secret)['\"]?\s*[:=]\s*['\"]?)[^\s'\"&,}]+"
    r"|\b(sk-ant-|sk-|gm_)[A-Za-z0-9_\-]{8,}"
    r"|((?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)[^\n'\"]+"
)


def redact(text: str) -> str:
    """Mask anything that looks like a key, token, password or cookie."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "[redacted]", text)


class RedactingFilter(logging.Filter):
    """Masks secrets in the message and in a logged exception's text (a traceback's last line
    may quote a value)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """``logging.format: json``: one JSON object per line, ``ts`` (ISO-8601, UTC, milliseconds),
    ``level``, ``logger``, ``message``, and ``exc`` (the traceback) when there is one. Handlers run
    RedactingFilter before formatting, so message and traceback arrive masked. ASCII-only output
    (stdlib json's escapes): a lone surrogate in a message cannot break the line or the file."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files (the current one and every rotation) are created 0600, whatever the umask."""

    def _open(self):  # noqa: ANN202 -- logging's own signature
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=lambda path, flags: os.open(path, flags, 0o600))


def configure(config: Config) -> None:
    """Send aigateway's and Tornado's logs to ``logging.file`` (rotated at 10 MB, 5 kept) and stderr,
    as text lines or (``logging.format: json``) JSON objects."""
    path = config.resolve("logging.file")
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = PrivateRotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5)
    console = logging.StreamHandler()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    json_lines = config.get("logging.format") == "json"
    for handler in (file_handler, console):
        handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(config.get("logging.level").upper())
    # libcurl's verbose trace prints request headers, provider keys included: never let it through.
    logging.getLogger("tornado.curl_httpclient").setLevel(logging.INFO)
    path.chmod(0o600)


def log_request(handler: Any) -> None:
    """Tornado's access log without the query string (Gemini clients may put their key there);
    formatted only when debugging or for server errors, so the hot path pays nothing."""
    status = handler.get_status()
    # A probe's 503 (not ready, draining) is an answer that a load balancer asks for every second.
    level = logging.ERROR if status >= 500 and not getattr(handler, "probe", False) else logging.DEBUG
    logger = logging.getLogger("tornado.access")
    if logger.isEnabledFor(level):
        logger.log(level, "%d %s %s %.2fms", status, handler.request.method, handler.request.path,
                   1000.0 * handler.request.request_time())
