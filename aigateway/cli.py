"""Command line: parses arguments, calls one function, prints. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aigateway import clients, usage
from aigateway.config import ConfigError, load
from aigateway.keys import KEY_TYPES
from aigateway.limits import LIMITS


def _limit_value(text: str) -> int | str:
    if text == clients.DEFAULT:
        return text
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-config", default="config.yaml", help="config file (default ./config.yaml)")


def _client_fields(parser: argparse.ArgumentParser, creating: bool) -> None:
    if not creating:
        parser.add_argument("--name", help="new name")
    parser.add_argument("--provider", required=creating, help="provider name from config.yaml")
    parser.add_argument("--system-prompt", help="prepended as a system message to every request")
    parser.add_argument("--base-url", help="overrides the provider's base_url for this client")
    parser.add_argument("--model", help="default model for this client")
    parser.add_argument("--allowed-providers", type=_names, metavar="A,B",
                        help="providers the client may reach besides its own ('' for none)")
    parser.add_argument("--allowed-routes", type=_names, metavar="R,S", help="model routes the client may use")
    for limit in LIMITS:
        parser.add_argument(limit.flag, type=_limit_value, metavar="N",
                            help=f"{limit.help} (0: unlimited; 'default': from config.yaml)")


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

    demo = sub.add_parser("demo", help="the gateway with a fake upstream and a client, ready to try (Ctrl-C stops)")
    demo.add_argument("--dir", default="aigateway-demo",
                      help="the demo's own folder: config, database, logs (default ./aigateway-demo)")
    demo.add_argument("--port", type=int, help="the gateway's port (default 8090, or a free one when taken)")
    demo.add_argument("--traffic", action="store_true", help="send a gentle stream of varied requests")

    client = sub.add_parser("client", help="manage clients and their keys")
    actions = client.add_subparsers(dest="action", required=True)
    for name, help_ in (("add", "create a client and print its key once"), ("list", "list clients"),
                        ("show", "show one client"), ("update", "change a client's settings"),
                        ("rotate-key", "replace a client's key and print the new one once"),
                        ("disable", "refuse the client's key"), ("enable", "accept the client's key again"),
                        ("delete", "delete a client"), ("usage", "show usage counters and remaining quota"),
                        ("reset-usage", "start the client's limits and quotas afresh")):
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
        if name == "usage":
            p.add_argument("--days", type=int, default=1, help="how many days back (default 1: today)")
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


def _print_usage(args: argparse.Namespace, report: dict) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['client']}: today {report['today']}")
    for name, item in report["limits"].items():
        limit = item["limit"] or "unlimited"
        print(f"  {name:<20} used {item['used']:<10} limit {limit:<10} remaining {item['remaining']}")
    for day in report["days"]:
        print(f"  {day['day']}  requests {day['requests']}  rejected {day['rejected']}  errors {day['errors']}  "
              f"input {day['input_tokens']}  output {day['output_tokens']}  cost ${day['cost_usd'] or 0:.4f}")


def client_command(args: argparse.Namespace) -> None:
    from aigateway.db import connect

    config = load(args.config)
    conn = connect(config.resolve("database.path"))
    known = clients.Known(config.providers, config.routes)
    fields: dict[str, Any] = {k: getattr(args, k, None) for k in ("provider", "system_prompt", "base_url",
                                                                   *clients.LISTS)}
    fields.update({limit.field: getattr(args, limit.field, None) for limit in LIMITS})
    fields["default_model"] = getattr(args, "model", None)
    action = args.action
    key = None
    if action == "list":
        _print(args, [clients.public(r) for r in clients.all_clients(conn)])
        return
    if action == "add":
        row, key = clients.create(conn, args.name, key_type=args.key_type, known=known, **fields)
    elif action == "rotate-key":
        row, key = clients.rotate_key(conn, args.client, args.key_type)
    elif action == "show":
        row = clients.find(conn, args.client)
    elif action == "usage":
        _print_usage(args, usage.report(conn, clients.find(conn, args.client), config, args.days))
        return
    elif action == "reset-usage":
        row = clients.reset_usage(conn, args.client)
    elif action == "update":
        row = clients.update(conn, args.client, known, name=args.name, **fields)
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
        elif args.command == "demo":
            from aigateway import demo

            sys.exit(demo.main(args.dir, args.port, args.traffic))
        elif args.command == "client":
            client_command(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except clients.ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
