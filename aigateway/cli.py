"""Command line: parses arguments, calls one function, prints. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aigateway import clients
from aigateway.config import ConfigError, load
from aigateway.keys import KEY_TYPES


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-config", default="config.yaml", help="config file (default ./config.yaml)")


def _client_fields(parser: argparse.ArgumentParser, creating: bool) -> None:
    if not creating:
        parser.add_argument("--name", help="new name")
    parser.add_argument("--provider", required=creating, help="provider name from config.yaml")
    parser.add_argument("--system-prompt", help="prepended as a system message to every request")
    parser.add_argument("--base-url", help="overrides the provider's base_url for this client")
    parser.add_argument("--model", help="default model for this client")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aigateway", description="AI API gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the gateway")
    _config_arg(run)
    run.add_argument("--port", "-port", type=int, help="port (overrides the config; 0 picks a free one)")
    run.add_argument("--host", "-host", help="address to listen on (overrides the config)")

    fake = sub.add_parser("fake-upstream", help="serve the fake provider (OpenAI, Anthropic, Gemini)")
    fake.add_argument("--port", "-port", type=int, default=8091)
    fake.add_argument("--host", default="127.0.0.1")

    client = sub.add_parser("client", help="manage clients and their keys")
    actions = client.add_subparsers(dest="action", required=True)
    for name, help_ in (("add", "create a client and print its key once"), ("list", "list clients"),
                        ("show", "show one client"), ("update", "change a client's settings"),
                        ("rotate-key", "replace a client's key and print the new one once"),
                        ("disable", "refuse the client's key"), ("enable", "accept the client's key again"),
                        ("delete", "delete a client")):
        p = actions.add_parser(name, help=help_)
        _config_arg(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "add":
            p.add_argument("--name", required=True)
            _client_fields(p, creating=True)
            p.add_argument("--key-type", choices=KEY_TYPES, default="sk-", help="key prefix (default sk-)")
        elif name != "list":
            p.add_argument("client", help="client name or id")
        if name == "update":
            _client_fields(p, creating=False)
        if name == "rotate-key":
            p.add_argument("--key-type", choices=KEY_TYPES, help="new key prefix (default: keep)")
    return parser


def _print(args: argparse.Namespace, data: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if "api_key" in row:
            print(f"API key (shown once, store it now): {row['api_key']}")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["last_used_at"])) if row.get("last_used_at") else "never"
        state = "enabled" if row["enabled"] else "disabled"
        print(f"{row['id']:>4}  {row['name']:<24} {row['provider']:<12} {row['key_prefix']:<14} {state:<9} "
              f"model={row['default_model'] or '-'} last_used={when}")


def client_command(args: argparse.Namespace) -> None:
    from aigateway.db import connect

    config = load(args.config)
    conn = connect(config.resolve("database.path"))
    providers = list(config.providers)
    fields = {k: getattr(args, k, None) for k in ("provider", "system_prompt", "base_url")}
    fields["default_model"] = getattr(args, "model", None)
    action = args.action
    key = None
    if action == "list":
        _print(args, [clients.public(r) for r in clients.all_clients(conn)])
        return
    if action == "add":
        row, key = clients.create(conn, args.name, key_type=args.key_type, providers=providers, **fields)
    elif action == "rotate-key":
        row, key = clients.rotate_key(conn, args.client, args.key_type)
    elif action == "show":
        row = clients.find(conn, args.client)
    elif action == "update":
        row = clients.update(conn, args.client, providers=providers, name=args.name, **fields)
    elif action in ("disable", "enable"):
        row = clients.update(conn, args.client, enabled=int(action == "enable"))
    else:
        row = clients.delete(conn, args.client)
    out = clients.public(row)
    if key:
        out["api_key"] = key
    if action == "delete":
        out["deleted"] = True
    _print(args, out)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from aigateway import server

            server.run(args.config, port=args.port, host=args.host)
        elif args.command == "fake-upstream":
            from aigateway import fake_upstream

            fake_upstream.serve(args.host, args.port)
        elif args.command == "client":
            client_command(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except clients.ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
