"""The `gateway` command: serve, mock-upstream, and the admin verbs (accounts, keys, credits).

Admin verbs act on Redis directly, through the same code as the admin API, so they work whether or not a
gateway is running; with no REDIS_URL they join (or briefly start) the embedded Redis of the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web

from gateway.admin.accounts import AccountStore
from gateway.admin.service import AdminService
from gateway.config import ConfigError, Settings, load_settings
from gateway.errors import GatewayError
from gateway.mock.options import MockOptions
from gateway.mock.server import run_mock_upstream
from gateway.storage import ledger_for, open_redis

AdminAction = Callable[[AdminService, argparse.Namespace], Awaitable[dict[str, object]]]


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command (`gateway serve --config x.toml`).
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config file")
    parser = argparse.ArgumentParser(prog="gateway", description="LLM metering gateway", parents=[config])
    commands = _Commands(parser.add_subparsers(dest="command", required=True), config)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    mock = commands.add_parser("mock-upstream", help="run a fake OpenAI-compatible upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8090)
    mock.add_argument("--tokens", type=int, default=MockOptions.completion_tokens, help="reply length in tokens")
    mock.add_argument("--latency-ms", type=int, default=MockOptions.latency_ms, help="delay before answering")
    mock.add_argument(
        "--chunk-delay-ms", type=int, default=MockOptions.chunk_delay_ms, help="delay between streamed chunks"
    )
    mock.add_argument("--no-usage", action="store_true", help="never report usage")
    mock.add_argument("--fail-status", type=int, default=None, help="answer every request with this error")

    accounts = _Commands(
        commands.add_parser("accounts", help="manage accounts").add_subparsers(dest="verb", required=True), config
    )
    create = accounts.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--credits", default="0")
    accounts.add_parser("list")
    show = accounts.add_parser("show")
    show.add_argument("account_id")

    keys = _Commands(
        commands.add_parser("keys", help="manage API keys").add_subparsers(dest="verb", required=True), config
    )
    key_create = keys.add_parser("create")
    key_create.add_argument("--account", required=True)
    key_create.add_argument("--name", required=True)
    key_list = keys.add_parser("list")
    key_list.add_argument("--account", required=True)
    revoke = keys.add_parser("revoke")
    revoke.add_argument("key_id")

    credits = _Commands(
        commands.add_parser("credits", help="manage credits").add_subparsers(dest="verb", required=True), config
    )
    grant = credits.add_parser("grant")
    grant.add_argument("--account", required=True)
    grant.add_argument("--amount", required=True, help="credits to add (negative to take back)")
    grant.add_argument("--note", default="")
    return parser


class _Commands:
    """Subcommands that all take the shared options (here: --config)."""

    def __init__(self, group: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser):
        self.group = group
        self.shared = shared

    def add_parser(self, name: str, help: str | None = None) -> argparse.ArgumentParser:
        return self.group.add_parser(name, parents=[self.shared], help=help)


ADMIN_ACTIONS: dict[tuple[str, str], AdminAction] = {
    ("accounts", "create"): lambda s, a: s.create_account({"name": a.name, "credits": a.credits}),
    ("accounts", "list"): lambda s, a: s.list_accounts(),
    ("accounts", "show"): lambda s, a: s.show_account(a.account_id),
    ("keys", "create"): lambda s, a: s.create_api_key(a.account, {"name": a.name}),
    ("keys", "list"): lambda s, a: s.list_api_keys(a.account),
    ("keys", "revoke"): lambda s, a: s.revoke_api_key(a.key_id),
    ("credits", "grant"): lambda s, a: s.adjust_credits(a.account, {"amount": a.amount, "note": a.note}),
}


async def run_admin(settings: Settings, action: AdminAction, args: argparse.Namespace) -> dict[str, object]:
    async with open_redis(settings) as redis:
        service = AdminService(AccountStore(redis, clock=time.time), ledger_for(redis, settings, time.time))
        return await action(service, args)


def serve(settings: Settings) -> None:
    from gateway.app import create_app  # imported here: loading tokenizers is not needed by admin verbs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The default access log format has no headers, so keys never reach the log. Request bodies are never
    # inflated: a compressed one is refused with 415 before it is read, so a gzip bomb costs nothing. Header
    # lines keep aiohttp's 8190-byte limit (longer: 400, logged without their bytes).
    web.run_app(create_app(settings), host=settings.host, port=settings.port, auto_decompress=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        if args.command != "mock-upstream":
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        settings = None
    if args.command == "mock-upstream":
        options = MockOptions(
            completion_tokens=args.tokens,
            latency_ms=args.latency_ms,
            chunk_delay_ms=args.chunk_delay_ms,
            usage=not args.no_usage,
            fail_status=args.fail_status,
        )
        run_mock_upstream(args.host, args.port, options)
        return 0
    assert settings is not None
    if args.command == "serve":
        overrides = {"host": args.host, "port": args.port}
        settings = _replace(settings, {k: v for k, v in overrides.items() if v is not None})
        serve(settings)
        return 0
    try:
        result = asyncio.run(run_admin(settings, ADMIN_ACTIONS[(args.command, args.verb)], args))
    except GatewayError as error:
        print(f"gateway: {error.message}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _replace(settings: Settings, changes: dict[str, object]) -> Settings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
