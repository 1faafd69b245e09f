"""Config: the TOML file, environment overrides of any value, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.config import SECTIONS, ConfigError, ServerConfig, Settings, load_settings

BASE = """
[server]
port = 8080
[upstreams.openai]
base_url = "https://api.openai.com/v1/"
api_key_env = "MY_OPENAI_KEY"
[models."gpt-4o"]
upstream = "openai"
input_credits_per_million = 2.5
output_credits_per_million = 10
"""

SHIPPED = Path(__file__).parent.parent / "config" / "gateway.toml"


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return load_settings(path, env or {})


def test_the_shipped_example_config_loads() -> None:
    settings = load_settings(SHIPPED, {})
    assert {"gpt-4o", "gpt-4o-mini", "mock-model"} <= set(settings.models)
    assert settings.redis.url is None and settings.server.admin_token is None


def test_the_shipped_config_shows_the_defaults() -> None:
    """Defaults are written once, on the sections' fields; the shipped file shows them, so the two must not drift
    apart."""
    shipped = load_settings(SHIPPED, {})
    defaults = Settings()
    assert [getattr(shipped, name) for name in SECTIONS] == [getattr(defaults, name) for name in SECTIONS]


def test_the_sections_are_the_tables_of_the_shipped_file_and_name_each_of_its_keys() -> None:
    """Every setting is shown in the shipped file under its table (set, or commented out where it has no value
    by default), and every table the file has besides upstreams and models is a section."""
    text = SHIPPED.read_text()
    tables = dict(re.findall(r"^\[(\w+)\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL))
    assert set(tables) == set(SECTIONS)  # [upstreams.NAME] and [models."NAME"] are tables of tables
    for name, kind in SECTIONS.items():
        shown = set(re.findall(r"^#? ?(\w+) +=", tables[name], re.MULTILINE))
        assert shown == {item.name for item in dataclasses.fields(kind)}, name


def test_prices_become_micros_and_provider_keys_come_from_the_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path, BASE, {"MY_OPENAI_KEY": "sk-provider"})
    model = settings.models["gpt-4o"]
    assert model.price.input_micros_per_million == 2_500_000 and model.price.output_micros_per_million == 10_000_000
    assert model.upstream_model == "gpt-4o"
    upstream = settings.upstreams["openai"]
    assert upstream.api_key == "sk-provider" and upstream.base_url == "https://api.openai.com/v1"


def test_environment_overrides_any_value(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://127.0.0.1:6390/2",
        "GATEWAY_ADMIN_TOKEN": "admin",
        "GATEWAY_PORT": "9001",
        "GATEWAY__LIMITS__DEFAULT_MAX_TOKENS": "512",
        "GATEWAY__TIMEOUTS__READ": "2.5",
        "GATEWAY__MODELS__gpt-4o__OUTPUT_CREDITS_PER_MILLION": "12.25",
        "GATEWAY__UPSTREAMS__OPENAI__BASE_URL": "http://127.0.0.1:1234/v1",
        "GATEWAY__MODELS__local__UPSTREAM": "openai",
        "GATEWAY__MODELS__local__INPUT_CREDITS_PER_MILLION": "1",
        "GATEWAY__MODELS__local__OUTPUT_CREDITS_PER_MILLION": "1",
    }
    settings = _load(tmp_path, BASE, env)
    assert settings.redis.url == "redis://127.0.0.1:6390/2" and settings.server.admin_token == "admin"
    assert settings.server.port == 9001 and settings.limits.default_max_tokens == 512 and settings.timeouts.read == 2.5
    assert settings.models["gpt-4o"].price.output_micros_per_million == 12_250_000
    assert settings.upstreams["openai"].base_url == "http://127.0.0.1:1234/v1"
    assert "local" in settings.models


# Every setting, a value for its GATEWAY__SECTION__KEY variable, and what the setting then holds.
EVERY_SETTING: dict[str, tuple[str, object]] = {
    "server.host": ("0.0.0.0", "0.0.0.0"),
    "server.port": ("9001", 9001),
    "server.workers": ("3", 3),
    "server.event_loop": ("asyncio", "asyncio"),
    "server.access_log": ("true", True),
    "server.admin_token": ("admin", "admin"),
    "server.max_body_bytes": ("1024", 1024),
    "server.body_timeout": ("2.5", 2.5),
    "server.spool_dir": ("/var/spool/gw", Path("/var/spool/gw")),
    "redis.url": ("redis://10.0.0.1:6379/1", "redis://10.0.0.1:6379/1"),
    "redis.cluster": ("true", True),
    "redis.data_dir": ("/var/lib/gw", Path("/var/lib/gw")),
    "redis.request_log_maxlen": ("500", 500),
    "redis.request_log_retention_days": ("7", 7),
    "redis.hourly_retention_days": ("10", 10),
    "redis.response_retention_days": ("7", 7),
    "redis.timeout": ("0.5", 0.5),
    "redis.max_connections": ("64", 64),
    "limits.default_max_tokens": ("512", 512),
    "limits.reservation_ttl_seconds": ("1000", 1000),
    "limits.max_upstream_response_bytes": ("4096", 4096),
    "limits.prompt_clamp_ratio": ("2", 2),
    "limits.prompt_clamp_slack": ("0", 0),
    "limits.sweep_interval_seconds": ("5", 5),
    "limits.default_max_tool_calls": ("4", 4),
    "limits.max_tool_calls": ("32", 32),
    "limits.background_hold_seconds": ("7200", 7200),
    "limits.background_poll_seconds": ("20", 20),
    "webhooks.retry_schedule_seconds": ("[1, 2]", (1, 2)),
    "webhooks.allow_private_targets": ("true", True),
    "webhooks.max_per_account": ("3", 3),
    "webhooks.timeout": ("30", 30.0),
    "webhooks.disable_after_days": ("1", 1),
    "metrics.token": ("scrape", "scrape"),
    "metrics.port": ("9464", 9464),
    "metrics.per_account": ("true", True),
    "usage.max_range_days": ("31", 31),
    "usage.max_hour_range_hours": ("48", 48),
    "insights.duplicate_window_seconds": ("60", 60),
    "insights.retry_loop_min": ("2", 2),
    "insights.retry_loop_window_seconds": ("30", 30),
    "insights.long_prompt_tokens": ("100", 100),
    "insights.long_conversation_turns": ("4", 4),
    "insights.small_prompt_tokens": ("10", 10),
    "insights.small_completion_tokens": ("5", 5),
    "timeouts.connect": ("1", 1.0),
    "timeouts.read": ("2.5", 2.5),
    "timeouts.total": ("60", 60.0),
    "tokens.default_encoding": ("cl100k_base", "cl100k_base"),
    "tokens.remote_image_size": ("[512, 256]", (512, 256)),
}


def test_every_setting_is_set_by_the_variable_its_table_and_key_name(tmp_path: Path) -> None:
    """No list of paths in the reader: the variable of every field of every section takes effect."""
    assert set(EVERY_SETTING) == {
        f"{name}.{item.name}" for name, kind in SECTIONS.items() for item in dataclasses.fields(kind)
    }
    env = {f"GATEWAY__{path.replace('.', '__').upper()}": text for path, (text, _) in EVERY_SETTING.items()}
    settings = _load(tmp_path, BASE, env)
    for path, (_, expected) in EVERY_SETTING.items():
        table, key = path.split(".")
        assert getattr(getattr(settings, table), key) == expected, path


def test_override_replaces_values_of_a_section_and_keeps_the_rest() -> None:
    settings = Settings(server=ServerConfig(port=9000, admin_token="admin"))
    moved = settings.override(server={"port": 9001}, limits={"default_max_tokens": 7})
    assert (moved.server.port, moved.server.admin_token, moved.limits.default_max_tokens) == (9001, "admin", 7)
    assert settings.server.port == 9000  # frozen: a new Settings
    with pytest.raises(TypeError, match="no section 'serve'"):
        settings.override(serve={"port": 1})
    with pytest.raises(TypeError):
        settings.override(server={"prot": 1})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "[limits]\ndefault_max_tokens = -1\n", "limits.default_max_tokens"),
        (BASE + "[timeouts]\nread = 'soon'\n", "timeouts.read"),
        (BASE.replace('upstream = "openai"', 'upstream = "nope"'), "no upstream named 'nope'"),
        (BASE.replace("2.5", "0.0000001"), "must have at most 6 decimals"),
        (BASE.replace("https://api.openai.com/v1/", "ftp://x"), "upstreams.openai.base_url"),
        (BASE.replace("output_credits_per_million = 10", ""), "output_credits_per_million is required"),
        ("this is = not [toml", "invalid TOML"),
        (BASE + "[redis]\nrequest_log_retention_days = -1\n", "redis.request_log_retention_days"),
        (BASE + "[usage]\nmax_range_days = 0\n", "usage.max_range_days"),
        (BASE + "[webhooks]\ntimeout = 31\n", "webhooks.timeout must be at most 30 seconds"),
        (BASE + "[webhooks]\nretry_schedule_seconds = [5, 0]\n", "webhooks.retry_schedule_seconds"),
        (BASE.replace('api_key_env = "MY_OPENAI_KEY"', 'api = "claude"'), 'upstreams.openai.api must be "openai" or'),
        (BASE + "cache_write_credits_per_million = -1\n", 'models."gpt-4o".cache_write_credits_per_million'),
        (BASE + "tool_call_credits = 5\n", 'models."gpt-4o".tool_call_credits must be a table'),
        (
            BASE + "tool_call_credits = { web_serch = 1 }\n",
            'models."gpt-4o".tool_call_credits.web_serch is not a built-in tool type; known: web_search, ',
        ),
        (
            BASE + "tool_call_credits = { web_search_preview_2025_03_11 = 1 }\n",
            'models."gpt-4o".tool_call_credits.web_search_preview_2025_03_11 is not a built-in tool type',
        ),
        (BASE + "tool_call_credits = { web_search = -0.01 }\n", "tool_call_credits.web_search must not be negative"),
        (BASE + "tool_call_credits = { mcp = 0.0000001 }\n", "tool_call_credits.mcp must have at most 6 decimals"),
        (BASE + "tool_call_credits = { mcp = '1e3' }\n", "tool_call_credits.mcp must be a number of credits"),
        (BASE + "tool_call_credits = { mcp = true }\n", "tool_call_credits.mcp must be a number of credits"),
        (BASE + "tool_call_credits = { mcp = 1000001 }\n", "tool_call_credits.mcp is beyond the limit of 1000000"),
        (BASE + "[limits]\nmax_tool_calls = -1\n", "limits.max_tool_calls must be zero or a positive integer"),
        (
            BASE + "[limits]\ndefault_max_tool_calls = 9\nmax_tool_calls = 8\n",
            "limits.default_max_tool_calls .9. must not exceed limits.max_tool_calls",
        ),
        (BASE + "[limits]\nbackground_hold_seconds = 600\n", "background_hold_seconds .600. must be at least"),
        (BASE + "[limits]\nbackground_poll_seconds = 1000\n", "4 x limits.background_poll_seconds .4000."),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _load(tmp_path, text)


def test_tool_call_credits_are_exact_micros_per_call_by_tool_type(tmp_path: Path) -> None:
    text = BASE + 'tool_call_credits = { web_search = 0.01, file_search = "0.0025", code_interpreter = 3 }\n'
    text += '[models."plain"]\nupstream = "openai"\ninput_credits_per_million = 1\noutput_credits_per_million = 4\n'
    settings = _load(tmp_path, text, {"GATEWAY__MODELS__GPT_4O__TOOL_CALL_CREDITS__MCP": "0.000001"})
    # 0.01 credits = 10,000 micro-credits; "0.0025" = 2,500; 3 = 3,000,000; 0.000001 = 1 (from the environment).
    assert settings.models["gpt-4o"].tool_call_micros == {
        "web_search": 10_000,
        "file_search": 2_500,
        "code_interpreter": 3_000_000,
        "mcp": 1,
    }
    assert settings.models["plain"].tool_call_micros == {}
    assert (settings.limits.default_max_tool_calls, settings.limits.max_tool_calls) == (16, 128)


def test_reasoning_models_get_max_completion_tokens_by_default(tmp_path: Path) -> None:
    text = (
        BASE
        + '[models."o3-mini"]\nupstream = "openai"\ninput_credits_per_million = 1\noutput_credits_per_million = 4\n'
    )
    text += '[models."local"]\nupstream = "openai"\nupstream_model = "gpt-5-mini"\nmax_tokens_field = "max_tokens"\n'
    text += "input_credits_per_million = 1\noutput_credits_per_million = 4\n"
    settings = _load(tmp_path, text)
    assert settings.models["gpt-4o"].max_tokens_field == "max_tokens"
    assert settings.models["o3-mini"].max_tokens_field == "max_completion_tokens"
    assert settings.models["local"].max_tokens_field == "max_tokens"  # explicit wins


def test_usage_settings_default_and_override(tmp_path: Path) -> None:
    defaults = _load(tmp_path, BASE)
    assert defaults.redis.request_log_retention_days == 0 and defaults.usage.max_range_days == 400
    assert defaults.usage.max_hour_range_hours == 744
    text = BASE + "[redis]\nrequest_log_retention_days = 90\n[usage]\nmax_range_days = 31\nmax_hour_range_hours = 48\n"
    settings = _load(tmp_path, text, {"GATEWAY__USAGE__MAX_RANGE_DAYS": "62"})
    assert settings.redis.request_log_retention_days == 90 and settings.usage.max_range_days == 62
    assert settings.usage.max_hour_range_hours == 48


def test_a_model_name_a_shell_cannot_export_is_spelled_with_underscores(tmp_path: Path) -> None:
    text = BASE + '[models."claude-3.5:beta"]\nupstream = "openai"\ninput_credits_per_million = 1\n'
    text += "output_credits_per_million = 1\n"
    env = {
        "GATEWAY__MODELS__GPT_4O__INPUT_CREDITS_PER_MILLION": "3",
        "GATEWAY__MODELS__claude_3_5_BETA__OUTPUT_CREDITS_PER_MILLION": "7",
    }
    settings = _load(tmp_path, text, env)
    assert settings.models["gpt-4o"].price.input_micros_per_million == 3_000_000
    assert settings.models["claude-3.5:beta"].price.output_micros_per_million == 7_000_000
    assert set(settings.models) == {"gpt-4o", "claude-3.5:beta"}  # no new table "GPT_4O"


def test_an_exact_name_wins_and_two_names_spelled_alike_are_refused(tmp_path: Path) -> None:
    twin = BASE + '[models."gpt_4o"]\nupstream = "openai"\ninput_credits_per_million = 1\n'
    twin += "output_credits_per_million = 1\n"
    exact = _load(tmp_path, twin, {"GATEWAY__MODELS__gpt_4o__INPUT_CREDITS_PER_MILLION": "9"})
    assert exact.models["gpt_4o"].price.input_micros_per_million == 9_000_000
    assert exact.models["gpt-4o"].price.input_micros_per_million == 2_500_000
    alike = BASE + '[models."gpt.4o"]\nupstream = "openai"\ninput_credits_per_million = 1\n'
    alike += "output_credits_per_million = 1\n"
    with pytest.raises(ConfigError, match=r"GATEWAY__MODELS__GPT_4O__X could name any of gpt-4o, gpt\.4o"):
        _load(tmp_path, alike, {"GATEWAY__MODELS__GPT_4O__X": "1"})


ANTHROPIC = """
[upstreams.anthropic]
base_url = "https://api.anthropic.com/v1"
api_key_env = "MY_ANTHROPIC_KEY"
api = "anthropic"
[models."claude-sonnet-4-5"]
upstream = "anthropic"
input_credits_per_million = 3
output_credits_per_million = 15
cached_input_credits_per_million = 0.3
cache_write_credits_per_million = 3.75
"""


def test_an_upstream_speaks_openai_unless_it_says_anthropic(tmp_path: Path) -> None:
    settings = _load(tmp_path, BASE + ANTHROPIC, {"MY_ANTHROPIC_KEY": "sk-ant"})
    openai, anthropic = settings.upstreams["openai"], settings.upstreams["anthropic"]
    assert (openai.api, anthropic.api, anthropic.anthropic_version) == ("openai", "anthropic", "2023-06-01")
    price = settings.models["claude-sonnet-4-5"].price
    assert (price.cached_input_micros_per_million, price.cache_write_micros_per_million) == (300_000, 3_750_000)
    assert settings.models["gpt-4o"].price.cache_write_micros_per_million is None
    env = {
        "GATEWAY__UPSTREAMS__OPENAI__API": "anthropic",
        "GATEWAY__UPSTREAMS__ANTHROPIC__ANTHROPIC_VERSION": "2024-01-01",
    }
    overridden = _load(tmp_path, BASE + ANTHROPIC, env)
    assert overridden.upstreams["openai"].api == "anthropic"
    assert overridden.upstreams["anthropic"].anthropic_version == "2024-01-01"
    with pytest.raises(ConfigError, match='upstreams.openai.api must be "openai" or "anthropic"'):
        _load(tmp_path, BASE, {"GATEWAY__UPSTREAMS__OPENAI__API": "gemini"})


def test_conversations_are_kept_by_the_marked_upstream_else_the_first_openai_one(tmp_path: Path) -> None:
    first_openai = _load(tmp_path, ANTHROPIC + BASE + '[upstreams.local]\nbase_url = "http://127.0.0.1:1/v1"\n')
    assert first_openai.conversations_upstream is not None and first_openai.conversations_upstream.name == "openai"
    marked = _load(tmp_path, BASE + '[upstreams.local]\nbase_url = "http://127.0.0.1:1/v1"\nconversations = true\n')
    assert marked.conversations_upstream is not None and marked.conversations_upstream.name == "local"
    only_anthropic = _load(tmp_path, ANTHROPIC)
    assert only_anthropic.conversations_upstream is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE.replace("\n[models", '\nconversations = "yes"\n[models'), "upstreams.openai.conversations must be of"),
        (
            BASE.replace('api_key_env = "MY_OPENAI_KEY"', "conversations = true")
            + '[upstreams.local]\nbase_url = "http://127.0.0.1:1/v1"\nconversations = true\n',
            "only one may set conversations = true, and openai, local do",
        ),
        (ANTHROPIC.replace('api = "anthropic"', 'api = "anthropic"\nconversations = true'), 'only an api = "openai"'),
    ],
)
def test_conversations_need_one_openai_upstream(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)
