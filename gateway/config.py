"""Settings: one TOML file, every value overridable from the environment.

Only `load_settings` reads files and `os.environ`; everything else receives a frozen `Settings`.

Environment overrides, applied on top of the TOML document before it is validated:

- `REDIS_URL`, `GATEWAY_ADMIN_TOKEN`, `GATEWAY_HOST`, `GATEWAY_PORT` for the common cases;
- `GATEWAY__SECTION__KEY=value` for any value at any depth, e.g. `GATEWAY__LIMITS__DEFAULT_MAX_TOKENS=512`
  or `GATEWAY__MODELS__gpt-4o__INPUT_CREDITS_PER_MILLION=3`. Path segments match existing keys
  case-insensitively; values are parsed as TOML scalars when they can be (numbers, booleans), else kept as text.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.billing.pricing import AmountError, Price, credits_to_micros

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
ENV_PREFIX = "GATEWAY__"
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# A price per million tokens: a billion credits at most, so a request's cost stays well within exact integers.
MAX_PRICE_MICROS = 10**15


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One OpenAI-compatible upstream: where it is and how to authenticate to it."""

    name: str
    base_url: str
    api_key: str | None = None
    # The variable the provider key is read from; set while `api_key` is None means the key is missing.
    api_key_env: str | None = None
    # "authorization" sends `Authorization: Bearer KEY`; any other name (Azure: "api-key") sends the raw key.
    auth_header: str = "authorization"
    query: Mapping[str, str] = field(default_factory=dict)
    # Ask streams for a usage chunk (stream_options.include_usage); off for upstreams that reject the field.
    stream_usage: bool = True

    @property
    def key_missing(self) -> bool:
        """A provider key is expected (`api_key_env` is configured) and its variable is unset or empty."""
        return self.api_key_env is not None and self.api_key is None


@dataclass(frozen=True)
class ModelConfig:
    """A model the gateway serves: its upstream, the name sent there, and its price."""

    name: str
    upstream: str
    upstream_model: str
    price: Price
    max_output_tokens: int | None = None
    # Optional bounds the provider enforces (OpenAI's context_length_exceeded): a prompt over max_input_tokens,
    # or a prompt plus the output bound over context_window, is refused before any hold.
    max_input_tokens: int | None = None
    context_window: int | None = None
    # The field the gateway sets when it must bound the output: "max_tokens", "max_completion_tokens", or
    # "auto", which picks max_completion_tokens for OpenAI's reasoning models and max_tokens otherwise.
    max_tokens_field: str = "auto"
    encoding: str | None = None
    # Request fields that change the provider's price (proxy/priced_fields.py), allowed because this model's
    # price already covers them; any other such field is refused with 400.
    allowed_fields: frozenset[str] = frozenset()
    # A configured model that could do this one's small requests for less (the usage insights' model mix).
    cheaper_alternative: str | None = None

    def __post_init__(self) -> None:
        where = f'models."{self.name}"'
        if self.context_window is not None:
            for bound in ("max_input_tokens", "max_output_tokens"):
                value = getattr(self, bound)
                if value is not None and value >= self.context_window:
                    raise ConfigError(f"{where}.{bound} ({value}) must be below context_window ({self.context_window})")
        if self.max_tokens_field == "auto":
            object.__setattr__(self, "max_tokens_field", default_max_tokens_field(self.upstream_model))


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to run, and the one place each default is written. Tests build it directly."""

    models: Mapping[str, ModelConfig]
    upstreams: Mapping[str, UpstreamConfig]
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0  # processes serving the port; 0: one per core (see gateway/serving.py)
    event_loop: str = "uvloop"  # "uvloop" (when installed) or "asyncio"
    access_log: bool = False  # one line per request (method, path, status, time, request id); off: no cost
    admin_token: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    redis_url: str | None = None
    redis_cluster: bool = False  # redis_url names one master of a Redis Cluster
    redis_data_dir: Path = Path("data/redis")
    request_log_maxlen: int = 1_000_000
    request_log_retention_days: int = 0  # 0: request records are capped by count only
    hourly_retention_days: int = 35
    default_max_tokens: int = 4096
    reservation_ttl_seconds: int = 900
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    total_timeout: float = 600.0
    max_upstream_response_bytes: int = 32 * 1024 * 1024
    # Upstream-reported prompt tokens above ratio x the gateway's own count + slack are not believed.
    prompt_clamp_ratio: int = 4
    prompt_clamp_slack: int = 256
    body_timeout: float = 30.0  # a request body still arriving after this gets 408
    redis_timeout: float = 5.0  # one Redis call; a timed-out call is "unknown", never "did not happen"
    # Connections per process (per node with a cluster); a call waits up to redis_timeout for a free one.
    redis_max_connections: int = 512
    sweep_interval_seconds: int = 30  # how often each process looks for holds past their deadline
    spool_dir: Path = Path("data/spool")  # settlements Redis could not take yet, replayed when it is back
    metrics_token: str | None = None  # bearer token for /metrics; see `metrics_public`
    metrics_port: int | None = None  # serve /metrics on this port of `host` instead of the API port
    metrics_per_account: bool = False  # label request, token and credit counters with the account id
    # Webhooks: the delay before each retry after the first, immediate attempt (Standard Webhooks' schedule).
    webhook_retry_schedule: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_allow_private_targets: bool = False  # deliver to loopback/private addresses (development, tests)
    webhook_max_per_account: int = 20
    webhook_timeout: float = 15.0  # one delivery attempt, connect to last byte (Standard Webhooks: 15-30 s), <= 30
    webhook_disable_after_days: int = 5  # a subscription failing this long is disabled
    default_encoding: str = "o200k_base"
    remote_image_size: tuple[int, int] = (1024, 1024)
    usage_max_range_days: int = 400  # longest range the usage API and export answer
    usage_max_hour_range_hours: int = 744  # longest range of an hourly breakdown
    # Usage insights (gateway/insights): what counts as waste.
    insights_duplicate_window_seconds: int = 600  # a repeat this soon after a successful answer is a duplicate
    insights_retry_loop_min: int = 3  # the same request this many times within the window below is a loop
    insights_retry_loop_window_seconds: int = 120
    insights_long_prompt_tokens: int = 8000  # a conversation resending a prompt longer than this is long
    insights_long_conversation_turns: int = 20  # ... and so is one past this many turns (user messages)
    # Model mix: a request on a model with a cheaper alternative is "small" at or under both of these.
    insights_small_prompt_tokens: int = 1000
    insights_small_completion_tokens: int = 250

    def __post_init__(self) -> None:
        # A hold must outlive the longest request, or the sweeper would release a request still running.
        longest = self.body_timeout + self.total_timeout
        if self.reservation_ttl_seconds <= longest:
            raise ConfigError(
                f"limits.reservation_ttl_seconds ({self.reservation_ttl_seconds}) must exceed "
                f"server.body_timeout + timeouts.total ({longest:g} s)"
            )
        for model in self.models.values():
            alternative = model.cheaper_alternative
            if alternative is not None and (alternative not in self.models or alternative == model.name):
                raise ConfigError(
                    f'models."{model.name}".cheaper_alternative: {alternative!r} is not another configured model'
                )

    @property
    def metrics_public(self) -> bool:
        """/metrics needs no token only on a loopback-bound gateway that has none configured."""
        return self.metrics_token is None and self.host in ("127.0.0.1", "::1", "localhost")


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (default `config/gateway.toml`, or `GATEWAY_CONFIG`), apply env overrides, validate."""
    env = os.environ if environ is None else environ
    config_path = path or Path(env.get("GATEWAY_CONFIG", str(DEFAULT_CONFIG_PATH)))
    try:
        document = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {config_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: invalid TOML: {exc}") from exc
    apply_env_overrides(document, env)
    return settings_from_document(document, env)


def apply_env_overrides(document: dict[str, object], env: Mapping[str, str]) -> None:
    """Write the shortcut variables and every `GATEWAY__A__B=v` into the document, in place."""
    shortcuts = {
        "REDIS_URL": ("redis", "url"),
        "GATEWAY_ADMIN_TOKEN": ("server", "admin_token"),
        "GATEWAY_HOST": ("server", "host"),
        "GATEWAY_PORT": ("server", "port"),
    }
    for variable, path in shortcuts.items():
        if env.get(variable):
            _set_path(document, list(path), _parse_scalar(env[variable]))
    for variable, value in env.items():
        if variable.upper().startswith(ENV_PREFIX) and len(variable) > len(ENV_PREFIX):
            segments = variable[len(ENV_PREFIX) :].split("__")
            _set_path(document, segments, _parse_scalar(value))


def _set_path(document: dict[str, object], segments: list[str], value: object) -> None:
    node = document
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        # Sections and setting names are lower case; table names in between (models, upstreams) keep theirs.
        key = _existing_key(node, segment, segments) or (segment.lower() if position == 0 or last else segment)
        if last:
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override {'.'.join(segments)}: {key} is not a table")
        node = child


def _existing_key(node: Mapping[str, object], segment: str, segments: list[str]) -> str | None:
    """The key of `node` a variable's segment names: the same letters in any case, else the same once every
    character a shell variable cannot hold is written `_` (`GPT_4O` names `gpt-4o`, `CLAUDE_3_5` `claude-3.5`)."""
    wanted = segment.lower()
    for key in node:
        if key.lower() == wanted:
            return key
    spelled = [key for key in node if _shell_spelling(key) == wanted]
    if len(spelled) > 1:
        raise ConfigError(
            f"GATEWAY__{'__'.join(segments)} could name any of {', '.join(sorted(spelled))}: "
            "set it with `env` and the exact name instead"
        )
    return spelled[0] if spelled else None


def _shell_spelling(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def _parse_scalar(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# A value from the TOML document, checked; the second argument is its dotted path, named in any error.
Check = Callable[[object, str], Any]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be of type str, got {value!r}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    """Text, where an empty string means unset."""
    return _text(value, where) or None


def _lower_text(value: object, where: str) -> str:
    return _text(value, where).lower()


def _path(value: object, where: str) -> Path:
    return Path(_text(value, where))


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be of type bool, got {value!r}")
    return value


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be of type int, got {value!r}")
    return value


def _positive(value: object, where: str) -> int:
    number = _integer(value, where)
    if number <= 0:
        raise ConfigError(f"{where} must be a positive integer")
    return number


def _non_negative(value: object, where: str) -> int:
    number = _integer(value, where)
    if number < 0:
        raise ConfigError(f"{where} must be zero or a positive integer")
    return number


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds")
    return float(value)


def _webhook_timeout(value: object, where: str) -> float:
    seconds = _seconds(value, where)
    if seconds > 30:  # a slower attempt would look like a dead consumer's and be claimed by another process
        raise ConfigError(f"{where} must be at most 30 seconds")
    return seconds


def _event_loop(value: object, where: str) -> str:
    if value not in ("uvloop", "asyncio"):
        raise ConfigError(f'{where} must be "uvloop" or "asyncio"')
    return str(value)


def _image_size(value: object, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_positive_int(side) for side in value)):
        raise ConfigError(f"{where} must be [width, height] in pixels")
    return value[0], value[1]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _string_table(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be of type dict, got {value!r}")
    return {str(key): str(item) for key, item in value.items()}


def _field_names(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of request field names")
    return frozenset(value)


def _delays(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_positive_int(item) for item in value) or len(value) > 20:
        raise ConfigError(f"{where} must be a list of at most 20 positive whole numbers of seconds")
    return tuple(value)


def _price(value: object, where: str) -> int:
    """Credits per million tokens (a number or decimal text, up to six decimals), as micro-credits per million."""
    try:
        micros = credits_to_micros(value, MAX_PRICE_MICROS)
    except AmountError as exc:
        raise ConfigError(f"{where} {exc}") from None
    if micros < 0:
        raise ConfigError(f"{where} must not be negative")
    return micros


def _at_least_two(value: object, where: str) -> int:
    number = _integer(value, where)
    if number < 2:
        raise ConfigError(f"{where} must be at least 2")
    return number


def _max_tokens_field(value: object, where: str) -> str:
    if value not in ("auto", "max_tokens", "max_completion_tokens"):
        raise ConfigError(f"{where} must be auto, max_tokens or max_completion_tokens")
    return _text(value, where)


# "section.key" in the TOML file -> (Settings field, check). A key the file leaves out keeps the field's default.
SETTING_PATHS: dict[str, tuple[str, Check]] = {
    "server.host": ("host", _text),
    "server.port": ("port", _positive),
    "server.workers": ("workers", _non_negative),
    "server.event_loop": ("event_loop", _event_loop),
    "server.access_log": ("access_log", _boolean),
    "server.admin_token": ("admin_token", _optional_text),
    "server.max_body_bytes": ("max_body_bytes", _positive),
    "server.body_timeout": ("body_timeout", _seconds),
    "server.spool_dir": ("spool_dir", _path),
    "redis.url": ("redis_url", _optional_text),
    "redis.cluster": ("redis_cluster", _boolean),
    "redis.data_dir": ("redis_data_dir", _path),
    "redis.request_log_maxlen": ("request_log_maxlen", _positive),
    "redis.request_log_retention_days": ("request_log_retention_days", _non_negative),
    "redis.hourly_retention_days": ("hourly_retention_days", _positive),
    "redis.timeout": ("redis_timeout", _seconds),
    "redis.max_connections": ("redis_max_connections", _positive),
    "limits.default_max_tokens": ("default_max_tokens", _positive),
    "limits.reservation_ttl_seconds": ("reservation_ttl_seconds", _positive),
    "limits.max_upstream_response_bytes": ("max_upstream_response_bytes", _positive),
    "limits.prompt_clamp_ratio": ("prompt_clamp_ratio", _positive),
    "limits.prompt_clamp_slack": ("prompt_clamp_slack", _non_negative),
    "limits.sweep_interval_seconds": ("sweep_interval_seconds", _positive),
    "metrics.token": ("metrics_token", _optional_text),
    "metrics.port": ("metrics_port", _positive),
    "metrics.per_account": ("metrics_per_account", _boolean),
    "webhooks.retry_schedule_seconds": ("webhook_retry_schedule", _delays),
    "webhooks.allow_private_targets": ("webhook_allow_private_targets", _boolean),
    "webhooks.max_per_account": ("webhook_max_per_account", _positive),
    "webhooks.timeout": ("webhook_timeout", _webhook_timeout),
    "webhooks.disable_after_days": ("webhook_disable_after_days", _positive),
    "timeouts.connect": ("connect_timeout", _seconds),
    "timeouts.read": ("read_timeout", _seconds),
    "timeouts.total": ("total_timeout", _seconds),
    "tokens.default_encoding": ("default_encoding", _text),
    "tokens.remote_image_size": ("remote_image_size", _image_size),
    "usage.max_range_days": ("usage_max_range_days", _positive),
    "usage.max_hour_range_hours": ("usage_max_hour_range_hours", _positive),
    "insights.duplicate_window_seconds": ("insights_duplicate_window_seconds", _positive),
    "insights.retry_loop_min": ("insights_retry_loop_min", _at_least_two),
    "insights.retry_loop_window_seconds": ("insights_retry_loop_window_seconds", _positive),
    "insights.long_prompt_tokens": ("insights_long_prompt_tokens", _positive),
    "insights.long_conversation_turns": ("insights_long_conversation_turns", _positive),
    "insights.small_prompt_tokens": ("insights_small_prompt_tokens", _positive),
    "insights.small_completion_tokens": ("insights_small_completion_tokens", _positive),
}
# Optional keys of an [upstreams.NAME] and a [models."NAME"] table -> (field, check), defaults as above.
UPSTREAM_KEYS: dict[str, tuple[str, Check]] = {
    "auth_header": ("auth_header", _lower_text),
    "query": ("query", _string_table),
    "stream_usage": ("stream_usage", _boolean),
}
MODEL_KEYS: dict[str, tuple[str, Check]] = {
    "max_output_tokens": ("max_output_tokens", _positive),
    "max_input_tokens": ("max_input_tokens", _positive),
    "context_window": ("context_window", _positive),
    "max_tokens_field": ("max_tokens_field", _max_tokens_field),
    "encoding": ("encoding", _optional_text),
    "allowed_fields": ("allowed_fields", _field_names),
    "cheaper_alternative": ("cheaper_alternative", _optional_text),
}


def settings_from_document(document: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Validate a parsed TOML document into `Settings`; every error names its key."""
    upstreams = {
        name: _upstream(name, _table(document, "upstreams", name), env) for name in _table(document, "upstreams")
    }
    models = {name: _model(name, _table(document, "models", name), upstreams) for name in _table(document, "models")}
    values: dict[str, Any] = {}
    for where, (field_name, check) in SETTING_PATHS.items():
        section, key = where.split(".")
        table = _table(document, section)
        if key in table:
            values[field_name] = check(table[key], where)
    return Settings(models=models, upstreams=upstreams, **values)


def _present(table: Mapping[str, object], where: str, keys: Mapping[str, tuple[str, Check]]) -> dict[str, Any]:
    """The optional keys the table sets, checked, as dataclass fields."""
    return {name: check(table[key], f"{where}.{key}") for key, (name, check) in keys.items() if key in table}


def _upstream(name: str, table: Mapping[str, object], env: Mapping[str, str]) -> UpstreamConfig:
    where = f"upstreams.{name}"
    base_url = _text(table.get("base_url", ""), f"{where}.base_url")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    key_env = _text(table.get("api_key_env", ""), f"{where}.api_key_env")
    return UpstreamConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key=(env.get(key_env) or None) if key_env else None,
        api_key_env=key_env or None,
        **_present(table, where, UPSTREAM_KEYS),
    )


def _model(name: str, table: Mapping[str, object], upstreams: Mapping[str, UpstreamConfig]) -> ModelConfig:
    where = f'models."{name}"'
    upstream = _text(table.get("upstream", ""), f"{where}.upstream")
    if upstream not in upstreams:
        raise ConfigError(f"{where}.upstream: no upstream named {upstream!r}")
    price = Price(
        input_micros_per_million=_required_price(table, where, "input_credits_per_million"),
        output_micros_per_million=_required_price(table, where, "output_credits_per_million"),
        cached_input_micros_per_million=_optional_price(table, where, "cached_input_credits_per_million"),
    )
    return ModelConfig(
        name=name,
        upstream=upstream,
        upstream_model=_text(table.get("upstream_model", name), f"{where}.upstream_model"),
        price=price,
        **_present(table, where, MODEL_KEYS),
    )


def _required_price(table: Mapping[str, object], where: str, key: str) -> int:
    if table.get(key) is None:
        raise ConfigError(f"{where}.{key} is required")
    return _price(table[key], f"{where}.{key}")


def _optional_price(table: Mapping[str, object], where: str, key: str) -> int | None:
    return None if table.get(key) is None else _required_price(table, where, key)


def missing_provider_keys(settings: Settings) -> list[str]:
    """One warning per upstream whose provider key variable is unset, naming the models it leaves unusable."""
    warnings = []
    for upstream in settings.upstreams.values():
        if upstream.key_missing:
            models = sorted(model.name for model in settings.models.values() if model.upstream == upstream.name)
            if models:
                warnings.append(
                    f"upstream {upstream.name!r}: {upstream.api_key_env} is not set, so its models "
                    f"({', '.join(models)}) answer 502 provider_key_missing until it is"
                )
    return warnings


def default_max_tokens_field(upstream_model: str) -> str:
    """OpenAI's reasoning models refuse `max_tokens`; everything else (vLLM, Ollama, older APIs) knows it."""
    base = upstream_model.removeprefix("ft:").rsplit("/", 1)[-1]
    return "max_completion_tokens" if base.startswith(REASONING_MODEL_PREFIXES) else "max_tokens"


def _table(document: Mapping[str, object], *path: str) -> dict[str, object]:
    node: object = document
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)} must be a table")
    assert isinstance(node, dict)
    return node
