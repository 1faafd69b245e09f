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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from gateway.billing.pricing import Price, credits_to_micros

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
ENV_PREFIX = "GATEWAY__"
T = TypeVar("T")
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One OpenAI-compatible upstream: where it is and how to authenticate to it."""

    name: str
    base_url: str
    api_key: str | None = None
    # "authorization" sends `Authorization: Bearer KEY`; any other name (Azure: "api-key") sends the raw key.
    auth_header: str = "authorization"
    query: Mapping[str, str] = field(default_factory=dict)
    # Ask streams for a usage chunk (stream_options.include_usage); off for upstreams that reject the field.
    stream_usage: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """A model the gateway serves: its upstream, the name sent there, and its price."""

    name: str
    upstream: str
    upstream_model: str
    price: Price
    max_output_tokens: int | None = None
    # "max_tokens" or "max_completion_tokens": the field the gateway sets when it must bound the output
    # (config's "auto" picks max_completion_tokens for OpenAI's reasoning models).
    max_tokens_field: str = "max_tokens"
    encoding: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to run. Tests build it directly."""

    models: Mapping[str, ModelConfig]
    upstreams: Mapping[str, UpstreamConfig]
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    redis_url: str | None = None
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
    default_encoding: str = "o200k_base"
    remote_image_size: tuple[int, int] = (1024, 1024)
    usage_max_range_days: int = 400  # longest range the usage API and export answer
    usage_max_hour_range_hours: int = 744  # longest range of an hourly breakdown


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
        existing = {key.lower(): key for key in node}
        last = position == len(segments) - 1
        # Sections and setting names are lower case; table names in between (models, upstreams) keep theirs.
        key = existing.get(segment.lower(), segment.lower() if position == 0 or last else segment)
        if last:
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override {'.'.join(segments)}: {key} is not a table")
        node = child


def _parse_scalar(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def settings_from_document(document: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Validate a parsed TOML document into `Settings`; every error names its key."""
    server = _table(document, "server")
    redis = _table(document, "redis")
    limits = _table(document, "limits")
    timeouts = _table(document, "timeouts")
    tokens = _table(document, "tokens")
    usage = _table(document, "usage")
    upstreams = {
        name: _upstream(name, _table(document, "upstreams", name), env) for name in _names(document, "upstreams")
    }
    models = {name: _model(name, _table(document, "models", name), upstreams) for name in _names(document, "models")}
    image = _get(tokens, "tokens.remote_image_size", list, [1024, 1024])
    if len(image) != 2 or not all(isinstance(side, int) and side > 0 for side in image):
        raise ConfigError("tokens.remote_image_size must be [width, height] in pixels")
    data_dir = _get(redis, "redis.data_dir", str, "data/redis")
    return Settings(
        models=models,
        upstreams=upstreams,
        host=_get(server, "server.host", str, "127.0.0.1"),
        port=_positive(server, "server.port", 8080),
        admin_token=_get(server, "server.admin_token", str, "") or None,
        max_body_bytes=_positive(server, "server.max_body_bytes", 4 * 1024 * 1024),
        redis_url=_get(redis, "redis.url", str, "") or None,
        redis_data_dir=Path(data_dir),
        request_log_maxlen=_positive(redis, "redis.request_log_maxlen", 1_000_000),
        request_log_retention_days=_non_negative(redis, "redis.request_log_retention_days", 0),
        hourly_retention_days=_positive(redis, "redis.hourly_retention_days", 35),
        default_max_tokens=_positive(limits, "limits.default_max_tokens", 4096),
        reservation_ttl_seconds=_positive(limits, "limits.reservation_ttl_seconds", 900),
        max_upstream_response_bytes=_positive(limits, "limits.max_upstream_response_bytes", 32 * 1024 * 1024),
        connect_timeout=_seconds(timeouts, "timeouts.connect", 10.0),
        read_timeout=_seconds(timeouts, "timeouts.read", 120.0),
        total_timeout=_seconds(timeouts, "timeouts.total", 600.0),
        default_encoding=_get(tokens, "tokens.default_encoding", str, "o200k_base"),
        remote_image_size=(image[0], image[1]),
        usage_max_range_days=_positive(usage, "usage.max_range_days", 400),
        usage_max_hour_range_hours=_positive(usage, "usage.max_hour_range_hours", 744),
    )


def _upstream(name: str, table: Mapping[str, object], env: Mapping[str, str]) -> UpstreamConfig:
    where = f"upstreams.{name}"
    base_url = _get(table, f"{where}.base_url", str, "")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    key_env = _get(table, f"{where}.api_key_env", str, "")
    query = _get(table, f"{where}.query", dict, {})
    return UpstreamConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key=(env.get(key_env) or None) if key_env else None,
        auth_header=_get(table, f"{where}.auth_header", str, "authorization").lower(),
        query={str(key): str(value) for key, value in query.items()},
        stream_usage=_get(table, f"{where}.stream_usage", bool, True),
    )


def _model(name: str, table: Mapping[str, object], upstreams: Mapping[str, UpstreamConfig]) -> ModelConfig:
    where = f'models."{name}"'
    upstream = _get(table, f"{where}.upstream", str, "")
    if upstream not in upstreams:
        raise ConfigError(f"{where}.upstream: no upstream named {upstream!r}")
    upstream_model = _get(table, f"{where}.upstream_model", str, name)
    field_name = _get(table, f"{where}.max_tokens_field", str, "auto")
    if field_name == "auto":
        field_name = default_max_tokens_field(upstream_model)
    if field_name not in ("max_tokens", "max_completion_tokens"):
        raise ConfigError(f"{where}.max_tokens_field must be auto, max_tokens or max_completion_tokens")
    max_output = table.get("max_output_tokens")
    return ModelConfig(
        name=name,
        upstream=upstream,
        upstream_model=upstream_model,
        price=Price(
            input_micros_per_million=_price(table, f"{where}.input_credits_per_million", "input_credits_per_million"),
            output_micros_per_million=_price(
                table, f"{where}.output_credits_per_million", "output_credits_per_million"
            ),
            cached_input_micros_per_million=_optional_price(
                table, f"{where}.cached_input_credits_per_million", "cached_input_credits_per_million"
            ),
        ),
        max_output_tokens=None if max_output is None else _positive(table, f"{where}.max_output_tokens", 1),
        max_tokens_field=field_name,
        encoding=_get(table, f"{where}.encoding", str, "") or None,
    )


def _optional_price(table: Mapping[str, object], where: str, key: str) -> int | None:
    return None if table.get(key) is None else _price(table, where, key)


def default_max_tokens_field(upstream_model: str) -> str:
    """OpenAI's reasoning models refuse `max_tokens`; everything else (vLLM, Ollama, older APIs) knows it."""
    base = upstream_model.removeprefix("ft:").rsplit("/", 1)[-1]
    return "max_completion_tokens" if base.startswith(REASONING_MODEL_PREFIXES) else "max_tokens"


def _price(table: Mapping[str, object], where: str, key: str) -> int:
    value = table.get(key)
    if value is None:
        raise ConfigError(f"{where} is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where} must be a number")
    try:
        micros = credits_to_micros(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if micros < 0:
        raise ConfigError(f"{where} must not be negative")
    return micros


def _names(document: Mapping[str, object], section: str) -> list[str]:
    return list(_table(document, section))


def _table(document: Mapping[str, object], *path: str) -> dict[str, object]:
    node: object = document
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)} must be a table")
    assert isinstance(node, dict)
    return node


def _get(table: Mapping[str, object], where: str, kind: type[T], default: T) -> T:
    value = table.get(where.rsplit(".", 1)[-1], default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where} must be of type {kind.__name__}, got {value!r}")
    return value


def _positive(table: Mapping[str, object], where: str, default: int) -> int:
    value = _get(table, where, int, default)
    if value <= 0:
        raise ConfigError(f"{where} must be a positive integer")
    return value


def _non_negative(table: Mapping[str, object], where: str, default: int) -> int:
    value = _get(table, where, int, default)
    if value < 0:
        raise ConfigError(f"{where} must be zero or a positive integer")
    return value


def _seconds(table: Mapping[str, object], where: str, default: float) -> float:
    value = table.get(where.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds")
    return float(value)
