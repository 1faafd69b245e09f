"""The `gateway` command's admin verbs, against the test Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from tests.common import StartGateway
from tests.insights.waste import DAY, scripted
from tests.usage.traffic import get_json

CONFIG = """
[upstreams.mock]
base_url = "http://127.0.0.1:9/v1"
[models."mock-model"]
upstream = "mock"
input_credits_per_million = 1
output_credits_per_million = 2
"""


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> dict[str, object]:
    assert main(["--config", str(config), *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.fixture
def config(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file, with REDIS_URL pointing the CLI at the test Redis."""
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("REDIS_URL", redis_url)
    return path


def test_cli_verbs_create_list_grant_and_revoke_like_the_admin_api(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = _run(capsys, config, "accounts", "create", "--name", "cli co", "--credits", "12.5")
    assert account["name"] == "cli co" and account["credits"] == 12.5
    account_id = str(account["id"])
    key = _run(capsys, config, "keys", "create", "--account", account_id, "--name", "job")
    assert str(key["key"]).startswith("sk-gw-")
    listed = _run(capsys, config, "keys", "list", "--account", account_id)
    assert [k["id"] for k in listed["data"]] == [key["id"]]  # type: ignore[attr-defined]
    granted = _run(capsys, config, "credits", "grant", "--account", account_id, "--amount", "7.5")
    assert granted["credits"] == 20
    revoked = _run(capsys, config, "keys", "revoke", str(key["id"]))
    assert revoked["revoked_at"] is not None
    assert _run(capsys, config, "accounts", "show", account_id)["credits"] == 20
    assert [a["id"] for a in _run(capsys, config, "accounts", "list")["data"]] == [account_id]  # type: ignore[attr-defined]


def test_cli_reports_errors_without_tracebacks(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--config", str(config), "credits", "grant", "--account", "acct_0000000000000000", "--amount", "1"]) == 1
    )
    assert "No account" in capsys.readouterr().err
    assert main(["--config", str(config.parent / "missing.toml"), "accounts", "list"]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_webhook_verbs_create_list_and_delete(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")  # no DNS here: the URL is not looked up
    account_id = str(_run(capsys, config, "accounts", "create", "--name", "hooked")["id"])
    created = _run(
        capsys,
        config,
        *("webhooks", "create", "--account", account_id, "--url", "https://hooks.example.com/alerts"),
        *("--events", "usage.threshold,credits.low", "--usage-threshold-percent", "90"),
        *("--credits-low-threshold", "12.5"),
    )
    assert created["settings"] == {"usage_threshold_percent": 90, "credits_low_threshold": 12.5}
    assert str(created["secret"]).startswith("whsec_")
    listed = _run(capsys, config, "webhooks", "list", "--account", account_id)
    assert [w["id"] for w in listed["data"]] == [created["id"]]  # type: ignore[attr-defined]
    deleted = _run(capsys, config, "webhooks", "delete", "--account", account_id, str(created["id"]))
    assert deleted["deleted"] is True
    assert _run(capsys, config, "webhooks", "list", "--account", account_id)["data"] == []
    args = ["--config", str(config), "webhooks", "create", "--account", account_id, "--url", "ftp://x", "--events", "x"]
    assert main(args) == 1 and "'url' is refused" in capsys.readouterr().err


async def test_cli_usage_insights_is_the_report_the_api_gives(
    start_gateway: StartGateway, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, tenant, _, _ = await scripted(start_gateway)
    _, expected = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    # The CLI runs its own event loop: on a thread of its own. Its config knows none of the test's models, so
    # the model mix names no alternative.
    args = ["usage", "insights", "--account", tenant.account_id, "--start", DAY, "--end", DAY]
    shown = await asyncio.to_thread(_run, capsys, config, *args)
    for item in expected["data"]:  # type: ignore[attr-defined]
        if item["type"] == "model_mix":
            item["details"]["models"][0]["alternative"] = None
    assert shown == expected
    key_args = [*args, "--key", tenant.key_id(1)]
    assert [item["type"] for item in (await asyncio.to_thread(_run, capsys, config, *key_args))["data"]] == [  # type: ignore[attr-defined]
        "retry_loops"
    ]
    unknown = ["--config", str(config), "usage", "insights", "--account", "acct_0000000000000000"]
    assert await asyncio.to_thread(main, unknown) == 1 and "No account" in capsys.readouterr().err
    bad = ["--config", str(config), *args, "--key", "nope"]
    assert await asyncio.to_thread(main, bad) == 1 and "'key' must be" in capsys.readouterr().err


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the parser: (), ("serve",), ("accounts",), ("accounts", "create"), ..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _commands(subparser, (*path, name))


def _parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = subparsers.choices[name]
    return parser


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_walked() -> None:
    # Eight commands, twelve verbs under six of them: the tests below see them all.
    assert len([p for p in COMMANDS if len(p) == 1]) == 8 and len([p for p in COMMANDS if len(p) == 2]) == 12


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "gateway")
def test_every_argument_and_subcommand_has_a_one_line_description(path: tuple[str, ...]) -> None:
    for action in _parser_of(path)._actions:
        described = action._choices_actions if isinstance(action, argparse._SubParsersAction) else [action]
        for item in described:
            assert item.help and item.help != argparse.SUPPRESS, f"{' '.join(path)}: {item.dest} has no help"
            assert "\n" not in item.help


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "gateway")
def test_every_command_prints_its_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: {' '.join(('gateway', *path))} ")
    for action in _parser_of(path)._actions:
        if action.option_strings:
            assert action.option_strings[-1] in shown
