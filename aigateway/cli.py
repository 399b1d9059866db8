"""Command line: parses arguments, calls one function, prints. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from aigateway import clients, teams, usage
from aigateway.config import ConfigError, load
from aigateway.keys import KEY_TYPES
from aigateway.limits import LIMITS, LimitSetting


def _limit_value(text: str) -> int | str:
    if text == clients.DEFAULT:
        return text
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _usd_value(text: str) -> float | str:
    if text == clients.DEFAULT:
        return text
    value = float(text.removeprefix("$"))
    if value < 0:
        raise ValueError(text)
    return value


def _when(text: str) -> float | str:
    """An expiry: an ISO date or date and time (UTC unless it names a zone), or "never"."""
    if text == "never":
        return clients.DEFAULT
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _limit_flags(parser: argparse.ArgumentParser, unset: str) -> None:
    for limit in LIMITS:
        parser.add_argument(limit.flag, dest=limit.field, type=_usd_value if limit.usd else _limit_value,
                            metavar="USD" if limit.usd else "N", help=f"{limit.help} (0: unlimited; {unset})")


def _limit_fields(args: argparse.Namespace, limits: tuple[LimitSetting, ...] = LIMITS) -> dict[str, Any]:
    return {limit.field: getattr(args, limit.field, None) for limit in limits}


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
    parser.add_argument("--allowed-models", type=_names, metavar="M,N*",
                        help="models the key may use, names or wildcards ('' for any)")
    parser.add_argument("--allowed-networks", type=_names, metavar="CIDR,...",
                        help="networks requests may come from, e.g. 10.0.0.0/8 ('' for any)")
    parser.add_argument("--expires", dest="expires_at", type=_when, metavar="WHEN",
                        help="the key stops working then: 2027-01-31 or 2027-01-31T18:00 (UTC), or 'never'")
    parser.add_argument("--team", help="team name or id ('none': no team)")
    _limit_flags(parser, "'default': from config.yaml")


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

    team = sub.add_parser("team", help="manage teams: limits and budgets shared by their clients")
    team_actions = team.add_subparsers(dest="action", required=True)
    for name, help_ in (("add", "create a team"), ("list", "list teams"), ("update", "change a team's limits"),
                        ("delete", "delete a team (its clients stay, in no team)")):
        p = team_actions.add_parser(name, help=help_)
        _config_arg(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        if name != "list":
            p.add_argument("team", help="team name" + (" or id" if name != "add" else ""))
        if name in ("add", "update"):
            if name == "update":
                p.add_argument("--name", help="new name")
            _limit_flags(p, "'default': not limited by the team")

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
            p.add_argument("--grace", type=float, default=0, metavar="SECONDS",
                           help="keep the old key working this long, to roll a deployment over (default 0)")
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
        used = "-" if item["used"] is None else item["used"]
        print(f"  {name:<20} used {used:<10} limit {limit:<10} remaining {item['remaining']}")
    for day in report["days"]:
        print(f"  {day['day']}  requests {day['requests']}  rejected {day['rejected']}  errors {day['errors']}  "
              f"input {day['input_tokens']}  output {day['output_tokens']}  cost ${day['cost_usd'] or 0:.4f}")


def client_command(args: argparse.Namespace) -> None:
    from aigateway.db import connect

    config = load(args.config)
    conn = connect(config.resolve("database.path"))
    known = clients.Known(config.providers, config.routes)
    fields: dict[str, Any] = {k: getattr(args, k, None) for k in ("provider", "system_prompt", "base_url",
                                                                   "expires_at", *clients.LISTS)}
    fields.update(_limit_fields(args))
    fields["default_model"] = getattr(args, "model", None)
    team = getattr(args, "team", None)
    if team is not None:
        fields["team_id"] = clients.DEFAULT if team == "none" else teams.find(conn, team)["id"]
    action = args.action
    key = None
    if action == "list":
        _print(args, [clients.public(r) for r in clients.all_clients(conn)])
        return
    if action == "add":
        row, key = clients.create(conn, args.name, key_type=args.key_type, known=known, **fields)
    elif action == "rotate-key":
        row, key = clients.rotate_key(conn, args.client, args.key_type, args.grace)
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


def team_command(args: argparse.Namespace) -> None:
    from aigateway.db import connect

    conn = connect(load(args.config).resolve("database.path"))
    fields = {k: None if v == clients.DEFAULT else v for k, v in _limit_fields(args).items()
              if v is not None}  # 'default' clears the team's limit
    counts = teams.member_counts(conn)
    if args.action == "list":
        out: Any = [teams.public(r, counts.get(r["id"], 0)) for r in teams.all_teams(conn)]
    elif args.action == "add":
        out = teams.public(teams.create(conn, args.team, **fields))
    elif args.action == "update":
        if args.name:
            fields["name"] = args.name
        row = teams.update(conn, args.team, **fields)
        out = teams.public(row, counts.get(row["id"], 0))
    else:
        out = {**teams.public(teams.delete(conn, args.team)), "deleted": True}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for row in out if isinstance(out, list) else [out]:
        limits = " ".join(f"{k}={row[k]}" for k in (s.field for s in LIMITS) if row[k] is not None)
        print(f"{row['id']:>4}  {row['name']:<24} members={row['members']} {limits or 'no limits'}")


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
        elif args.command == "team":
            team_command(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (clients.ClientError, teams.TeamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
