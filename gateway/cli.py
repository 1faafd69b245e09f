"""The `gateway` command: serve, mock-upstream, the admin verbs (accounts, keys, credits, webhooks, usage
insights), and `tokens count` (a body's tokens and price range, offline).

Admin verbs act on Redis directly, through the same code as the admin API, so they work whether or not a
gateway is running; with no REDIS_URL they join (or briefly start) the embedded Redis of the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.admin.accounts import AccountStore
from gateway.admin.service import AdminService
from gateway.config import ConfigError, Settings, load_settings
from gateway.errors import GatewayError, InvalidRequest
from gateway.insights.reader import InsightsReader
from gateway.insights.report import insights_report
from gateway.mock.options import MockOptions
from gateway.mock.server import run_mock_upstream
from gateway.proxy.apis.chat import parse_chat_request
from gateway.proxy.preview import price_preview
from gateway.proxy.priced_fields import priced_model
from gateway.storage import ledger_for, open_redis
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.service import DEFAULT_USAGE_PERCENT, Limits, WebhookService
from gateway.webhooks.store import WebhookStore


@dataclass(frozen=True)
class Services:
    """What the admin verbs act through: the same services as the HTTP API."""

    admin: AdminService
    webhooks: WebhookService
    insights: InsightsReader
    settings: Settings


AdminAction = Callable[[Services, argparse.Namespace], Awaitable[dict[str, object]]]


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command (`gateway serve --config x.toml`).
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="TOML config file (default: config/gateway.toml)",
    )
    parser = argparse.ArgumentParser(prog="gateway", description="LLM metering gateway", parents=[config])
    commands = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), config)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default=None, help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default: server.port)")
    serve.add_argument(
        "--workers", type=_worker_count, default=None, help="processes serving the port (0: one per core)"
    )

    mock = commands.add_parser("mock-upstream", help="run a fake OpenAI-compatible upstream")
    mock.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    mock.add_argument("--port", type=int, default=8090, help="port to listen on (default: %(default)s)")
    mock.add_argument("--tokens", type=int, default=MockOptions.completion_tokens, help="reply length in tokens")
    mock.add_argument("--latency-ms", type=int, default=MockOptions.latency_ms, help="delay before answering")
    mock.add_argument(
        "--chunk-delay-ms", type=int, default=MockOptions.chunk_delay_ms, help="delay between streamed chunks"
    )
    mock.add_argument("--no-usage", action="store_true", help="never report usage")
    mock.add_argument("--fail-status", type=int, default=None, help="answer every request with this error")
    mock.add_argument(
        "--builtin-tool-calls",
        type=int,
        default=MockOptions.builtin_tool_calls,
        help="calls of the request's first built-in tool (web_search, ...) before the reply",
    )

    accounts = commands.add_group("accounts", "manage accounts")
    create = accounts.add_parser("create", help="create an account")
    create.add_argument("--name", required=True, help="the account's display name")
    create.add_argument("--credits", default="0", help="its starting balance in credits (default: 0)")
    accounts.add_parser("list", help="list every account")
    show = accounts.add_parser("show", help="one account and its balance")
    show.add_argument("account_id", metavar="ACCOUNT_ID", help="the account's id (acct_...)")

    keys = commands.add_group("keys", "manage API keys")
    key_create = keys.add_parser("create", help="create an API key (printed this once)")
    key_create.add_argument("--account", required=True, metavar="ID", help="the account the key spends from")
    key_create.add_argument("--name", required=True, help="the key's display name")
    key_list = keys.add_parser("list", help="an account's keys (never the keys themselves)")
    key_list.add_argument("--account", required=True, metavar="ID", help="the account's id")
    revoke = keys.add_parser("revoke", help="revoke an API key at once")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_...)")

    credits = commands.add_group("credits", "manage credits")
    grant = credits.add_parser("grant", help="add credits to an account, or take them back")
    grant.add_argument("--account", required=True, metavar="ID", help="the account's id")
    grant.add_argument("--amount", required=True, help="credits to add (negative to take back)")
    grant.add_argument("--note", default="", help="a note kept with the grant")

    webhooks = commands.add_group("webhooks", "manage usage-alert webhooks")
    hook = webhooks.add_parser("create", help="subscribe a URL to an account's alerts")
    hook.add_argument("--account", required=True, metavar="ID", help="the account to watch")
    hook.add_argument("--url", required=True, help="where the events are POSTed")
    hook.add_argument("--events", required=True, help="comma-separated: usage.threshold,credits.low,credits.exhausted")
    hook.add_argument(
        "--usage-threshold-percent",
        type=int,
        default=None,
        metavar="PERCENT",
        help=f"usage.threshold fires at this %% of the period's budget (default: {DEFAULT_USAGE_PERCENT})",
    )
    hook.add_argument(
        "--credits-low-threshold", default=None, metavar="CREDITS", help="credits.low fires below this balance"
    )
    hook_list = webhooks.add_parser("list", help="an account's webhooks")
    hook_list.add_argument("--account", required=True, metavar="ID", help="the account's id")
    hook_delete = webhooks.add_parser("delete", help="unsubscribe a webhook")
    hook_delete.add_argument("--account", required=True, metavar="ID", help="the account it belongs to")
    hook_delete.add_argument("webhook_id", metavar="WEBHOOK_ID", help="the webhook's id (wh_...)")

    usage = commands.add_group("usage", "read an account's usage")
    insights = usage.add_parser("insights", help="the waste found in a range, as GET /v1/usage/insights")
    insights.add_argument("--account", required=True, metavar="ID", help="the account's id")
    insights.add_argument("--start", default=None, help="first UTC day (YYYY-MM-DD); default: the billing period")
    insights.add_argument("--end", default=None, help="last UTC day (inclusive)")
    insights.add_argument("--key", default=None, help="one API key's insights (its id, key_...)")
    insights.add_argument("--api", default=None, help="one API's insights (chat.completions, responses, ...)")

    tokens = commands.add_group("tokens", "count tokens offline")
    count = tokens.add_parser("count", help="a chat-completions body's tokens and price range, as count_tokens")
    count.add_argument("file", type=Path, metavar="FILE", help="the JSON body ('-' for standard input)")
    return parser


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per core) or a positive number of processes")
    return count


class _Commands:
    """Subcommands that all take the shared options (here: --config)."""

    def __init__(self, group: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser):
        self.group = group
        self.shared = shared

    def add_parser(self, name: str, help: str) -> argparse.ArgumentParser:
        return self.group.add_parser(name, parents=[self.shared], help=help, description=help)

    def add_group(self, name: str, help: str) -> _Commands:
        """A command whose verbs are subcommands of their own (`gateway accounts create`)."""
        verbs = self.add_parser(name, help).add_subparsers(dest="verb", required=True, metavar="VERB")
        return _Commands(verbs, self.shared)


async def _create_webhook(services: Services, args: argparse.Namespace) -> dict[str, object]:
    await services.admin.show_account(args.account)  # 404 for an account that does not exist
    settings: dict[str, object] = {}
    if args.usage_threshold_percent is not None:
        settings["usage_threshold_percent"] = args.usage_threshold_percent
    if args.credits_low_threshold is not None:
        settings["credits_low_threshold"] = args.credits_low_threshold
    events = [event.strip() for event in args.events.split(",") if event.strip()]
    return await services.webhooks.create(args.account, {"url": args.url, "events": events, "settings": settings})


async def _list_webhooks(services: Services, args: argparse.Namespace) -> dict[str, object]:
    await services.admin.show_account(args.account)
    return await services.webhooks.list_for(args.account)


async def _usage_insights(services: Services, args: argparse.Namespace) -> dict[str, object]:
    await services.admin.show_account(args.account)  # 404 for an account that does not exist
    query = {name: value for name in ("start", "end", "key", "api") if (value := getattr(args, name))}
    now = datetime.now(UTC)
    return await insights_report(services.insights, services.settings, args.account, query, now)


ADMIN_ACTIONS: dict[tuple[str, str], AdminAction] = {
    ("accounts", "create"): lambda s, a: s.admin.create_account({"name": a.name, "credits": a.credits}),
    ("accounts", "list"): lambda s, a: s.admin.list_accounts(),
    ("accounts", "show"): lambda s, a: s.admin.show_account(a.account_id),
    ("keys", "create"): lambda s, a: s.admin.create_api_key(a.account, {"name": a.name}),
    ("keys", "list"): lambda s, a: s.admin.list_api_keys(a.account),
    ("keys", "revoke"): lambda s, a: s.admin.revoke_api_key(a.key_id),
    ("credits", "grant"): lambda s, a: s.admin.adjust_credits(a.account, {"amount": a.amount, "note": a.note}),
    ("webhooks", "create"): _create_webhook,
    ("webhooks", "list"): _list_webhooks,
    ("webhooks", "delete"): lambda s, a: s.webhooks.delete(a.account, a.webhook_id),
    ("usage", "insights"): _usage_insights,
}


async def run_admin(settings: Settings, action: AdminAction, args: argparse.Namespace) -> dict[str, object]:
    async with open_redis(settings) as redis:
        admin = AdminService(AccountStore(redis, clock=time.time), ledger_for(redis, settings, time.time))
        store, outbox = WebhookStore(redis, clock=time.time), Outbox(redis, clock=time.time)
        webhooks = WebhookService(store, outbox, Limits.configured(settings.webhooks), clock=time.time)
        return await action(Services(admin, webhooks, InsightsReader(redis), settings), args)


def count_tokens_offline(settings: Settings, path: Path) -> dict[str, object]:
    """What POST /v1/chat/completions/count_tokens answers for the body in `path`, without Redis or a key."""
    from gateway.app import token_counter

    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from None
    chat = parse_chat_request(raw)
    model = priced_model(chat, settings)
    prompt_tokens = token_counter(settings).count_prompt_tokens(chat.model, chat.body)
    return price_preview(chat, model, settings, prompt_tokens)


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
            builtin_tool_calls=args.builtin_tool_calls,
        )
        run_mock_upstream(args.host, args.port, options)
        return 0
    assert settings is not None
    if args.command == "serve":
        from gateway.serving import ListenError, serve  # imported here: admin verbs need no tokenizers

        flags = {"host": args.host, "port": args.port, "workers": args.workers}
        settings = settings.override(server={name: value for name, value in flags.items() if value is not None})
        try:
            return serve(settings)
        except ConfigError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        except ListenError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 1
    try:
        if args.command == "tokens":
            result = count_tokens_offline(settings, args.file)
        else:
            result = asyncio.run(run_admin(settings, ADMIN_ACTIONS[(args.command, args.verb)], args))
    except GatewayError as error:
        print(f"gateway: {error.message}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
