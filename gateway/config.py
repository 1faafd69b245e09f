"""Settings: one TOML file, every value overridable from the environment.

`Settings` has one frozen section per table of the file (`settings.server.port` is `[server] port`), and the
upstreams and models tables. Each setting's default and check are written once, on its section's field; the
reader walks the sections, so a new field is read from the file and the environment with nothing more.

Only `load_settings` reads files and `os.environ`; everything else receives a frozen `Settings`.

Environment overrides, applied on top of the TOML document before it is validated:

- `REDIS_URL`, `GATEWAY_ADMIN_TOKEN`, `GATEWAY_HOST`, `GATEWAY_PORT` for the common cases (each named by its
  field: `setting(..., env="REDIS_URL")`);
- `GATEWAY__SECTION__KEY=value` for any value at any depth, e.g. `GATEWAY__LIMITS__DEFAULT_MAX_TOKENS=512`
  or `GATEWAY__MODELS__GPT_4O__INPUT_CREDITS_PER_MILLION=3`. Path segments match existing keys
  case-insensitively, and table names also with every character a shell variable cannot hold written `_`;
  values are parsed as TOML scalars when they can be (numbers, booleans), else kept as text.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway import config_checks as check
from gateway.billing.pricing import Price
from gateway.config_checks import Check
from gateway.config_checks import ConfigError as ConfigError

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
ENV_PREFIX = "GATEWAY__"
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")

T = TypeVar("T")


def setting(default: T, checked: Check, *, env: str | None = None) -> T:
    """A section's field: its default, the check a value from the file passes, and the shortcut variable that
    also sets it, if any (`GATEWAY__SECTION__KEY` always does)."""
    return field(default=default, metadata={"check": checked, "env": env})


@dataclass(frozen=True)
class UpstreamConfig:
    """One upstream: where it is, which API family it speaks, and how to authenticate to it."""

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
    # The API family it speaks: "openai" (chat completions and the rest) or "anthropic" (Messages: the key goes
    # as `x-api-key`, with `anthropic-version`). A route serves only the models of upstreams of its family.
    api: str = "openai"
    anthropic_version: str = "2023-06-01"
    # Serves /v1/conversations (proxy/conversations.py): at most one upstream says so, one of OpenAI's family.
    conversations: bool = False

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
    # Micro-credits per call of the built-in tools this model prices, by undated tool type (billing/tool_calls.py);
    # a request may offer these, and is held and billed for their calls.
    tool_call_micros: Mapping[str, int] = field(default_factory=dict)

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
class ServerConfig:
    """[server]: where the gateway listens, and what it takes from a client."""

    host: str = setting("127.0.0.1", check.text, env="GATEWAY_HOST")
    port: int = setting(8080, check.positive, env="GATEWAY_PORT")
    workers: int = setting(0, check.non_negative)  # processes serving the port; 0: one per core (serving.py)
    event_loop: str = setting("uvloop", check.event_loop)  # "uvloop" (when installed) or "asyncio"
    access_log: bool = setting(False, check.boolean)  # one line per request; off: no cost
    admin_token: str | None = setting(None, check.optional_text, env="GATEWAY_ADMIN_TOKEN")
    max_body_bytes: int = setting(4 * 1024 * 1024, check.positive)
    body_timeout: float = setting(30.0, check.seconds)  # a request body still arriving after this gets 408
    # Settlements Redis could not take yet, replayed when it is back.
    spool_dir: Path = setting(Path("data/spool"), check.path)


@dataclass(frozen=True)
class RedisConfig:
    """[redis]: the server (or the embedded one), its pool, and how long what settlement writes is kept."""

    url: str | None = setting(None, check.optional_text, env="REDIS_URL")  # None: the embedded server
    cluster: bool = setting(False, check.boolean)  # url names one master of a Redis Cluster
    data_dir: Path = setting(Path("data/redis"), check.path)
    request_log_maxlen: int = setting(1_000_000, check.positive)
    request_log_retention_days: int = setting(0, check.non_negative)  # 0: request records are capped by count only
    hourly_retention_days: int = setting(35, check.positive)
    # Response ids the gateway relayed (their owner and context size) are kept this long, as OpenAI keeps them.
    response_retention_days: int = setting(30, check.positive)
    # One Redis call; a timed-out call is "unknown", never "did not happen".
    timeout: float = setting(5.0, check.seconds)
    # Connections per process (per node with a cluster); a call waits up to `timeout` for a free one.
    max_connections: int = setting(512, check.positive)


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: bounds on holds, on upstream answers and on what the upstream may claim."""

    default_max_tokens: int = setting(4096, check.positive)
    reservation_ttl_seconds: int = setting(900, check.positive)
    max_upstream_response_bytes: int = setting(32 * 1024 * 1024, check.positive)
    # Upstream-reported prompt tokens above ratio x the gateway's own count + slack are not believed.
    prompt_clamp_ratio: int = setting(4, check.positive)
    prompt_clamp_slack: int = setting(256, check.non_negative)
    sweep_interval_seconds: int = setting(30, check.positive)  # how often each process looks for expired holds
    # Built-in tool calls (priced per call): the bound forwarded as max_tool_calls when the client sets none, and
    # the most a client may set.
    default_max_tool_calls: int = setting(16, check.non_negative)
    max_tool_calls: int = setting(128, check.non_negative)
    # A background response (Responses' `background: true`) is held this long: it must be billed before, or be
    # cancelled. Every `background_poll_seconds` one process asks the upstream about those not seen finished.
    background_hold_seconds: int = setting(3600, check.positive)
    background_poll_seconds: int = setting(10, check.positive)

    def __post_init__(self) -> None:
        if self.default_max_tool_calls > self.max_tool_calls:
            raise ConfigError(
                f"limits.default_max_tool_calls ({self.default_max_tool_calls}) must not exceed "
                f"limits.max_tool_calls ({self.max_tool_calls})"
            )


@dataclass(frozen=True)
class WebhooksConfig:
    """[webhooks]: usage alerts' delivery."""

    # The delay before each retry after the first, immediate attempt (Standard Webhooks' schedule).
    retry_schedule_seconds: tuple[int, ...] = setting((5, 300, 1800, 7200, 18000, 36000, 36000), check.delays)
    allow_private_targets: bool = setting(False, check.boolean)  # deliver to loopback/private addresses (development)
    max_per_account: int = setting(20, check.positive)
    timeout: float = setting(15.0, check.webhook_timeout)  # one attempt, connect to last byte (15-30 s), <= 30
    disable_after_days: int = setting(5, check.positive)  # a subscription failing this long is disabled


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: GET /metrics (Prometheus)."""

    token: str | None = setting(None, check.optional_text)  # bearer token for /metrics; see `Settings.metrics_public`
    port: int | None = setting(None, check.positive)  # serve /metrics on this port of server.host instead
    per_account: bool = setting(False, check.boolean)  # label request, token and credit counters with the account


@dataclass(frozen=True)
class UsageConfig:
    """[usage]: the usage API and export."""

    max_range_days: int = setting(400, check.positive)  # longest range the usage API and export answer
    max_hour_range_hours: int = setting(744, check.positive)  # longest range of an hourly breakdown


@dataclass(frozen=True)
class InsightsConfig:
    """[insights]: what the usage insights count as waste."""

    duplicate_window_seconds: int = setting(600, check.positive)  # a repeat this soon after a success: a duplicate
    retry_loop_min: int = setting(3, check.at_least_two)  # this many of one request within the window: a loop
    retry_loop_window_seconds: int = setting(120, check.positive)
    long_prompt_tokens: int = setting(8000, check.positive)  # a conversation resending more than this is long
    long_conversation_turns: int = setting(20, check.positive)  # ... and so is one past this many user messages
    # Model mix: a request on a model with a cheaper alternative is "small" at or under both of these.
    small_prompt_tokens: int = setting(1000, check.positive)
    small_completion_tokens: int = setting(250, check.positive)


@dataclass(frozen=True)
class TimeoutsConfig:
    """[timeouts]: seconds for the upstream."""

    connect: float = setting(10.0, check.seconds)
    read: float = setting(120.0, check.seconds)  # longest silence, also between streamed chunks
    total: float = setting(600.0, check.seconds)


@dataclass(frozen=True)
class TokensConfig:
    """[tokens]: counting what the tokenizer table does not say."""

    default_encoding: str = setting("o200k_base", check.text)  # for models the tokenizer table does not know
    remote_image_size: tuple[int, int] = setting((1024, 1024), check.image_size)  # image URLs are never fetched


def section(kind: type[T]) -> T:
    """A field of `Settings` that holds one table of the file, its defaults those of `kind`."""
    return field(default_factory=kind, metadata={"section": kind})


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to run: one section per table of the file, and the upstreams and models.
    Tests build it directly: `Settings(redis=RedisConfig(url=...))`, or `settings.override(server={...})`."""

    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    upstreams: Mapping[str, UpstreamConfig] = field(default_factory=dict)
    server: ServerConfig = section(ServerConfig)
    redis: RedisConfig = section(RedisConfig)
    limits: LimitsConfig = section(LimitsConfig)
    webhooks: WebhooksConfig = section(WebhooksConfig)
    metrics: MetricsConfig = section(MetricsConfig)
    usage: UsageConfig = section(UsageConfig)
    insights: InsightsConfig = section(InsightsConfig)
    timeouts: TimeoutsConfig = section(TimeoutsConfig)
    tokens: TokensConfig = section(TokensConfig)

    def __post_init__(self) -> None:
        # A hold must outlive the longest request, or the sweeper would release a request still running.
        longest = self.server.body_timeout + self.timeouts.total
        ttl = self.limits.reservation_ttl_seconds
        if ttl <= longest:
            raise ConfigError(
                f"limits.reservation_ttl_seconds ({ttl}) must exceed "
                f"server.body_timeout + timeouts.total ({longest:g} s)"
            )
        background, poll = self.limits.background_hold_seconds, self.limits.background_poll_seconds
        if background < max(ttl, 4 * poll):
            raise ConfigError(
                f"limits.background_hold_seconds ({background}) must be at least limits.reservation_ttl_seconds "
                f"({ttl}) and 4 x limits.background_poll_seconds ({4 * poll})"
            )
        self._check_conversations_upstream()
        for model in self.models.values():
            alternative = model.cheaper_alternative
            if alternative is not None and (alternative not in self.models or alternative == model.name):
                raise ConfigError(
                    f'models."{model.name}".cheaper_alternative: {alternative!r} is not another configured model'
                )

    def _check_conversations_upstream(self) -> None:
        marked = [upstream for upstream in self.upstreams.values() if upstream.conversations]
        if len(marked) > 1:
            names = ", ".join(upstream.name for upstream in marked)
            raise ConfigError(f"upstreams: only one may set conversations = true, and {names} do")
        if marked and marked[0].api != "openai":
            raise ConfigError(f'upstreams.{marked[0].name}.conversations: only an api = "openai" upstream keeps them')

    @property
    def conversations_upstream(self) -> UpstreamConfig | None:
        """The upstream that keeps conversations (/v1/conversations): the one that sets `conversations = true`,
        else the first of OpenAI's family in the file; None when no upstream speaks OpenAI's API."""
        openai = [upstream for upstream in self.upstreams.values() if upstream.api == "openai"]
        return next((upstream for upstream in openai if upstream.conversations), next(iter(openai), None))

    @property
    def metrics_public(self) -> bool:
        """/metrics needs no token only on a loopback-bound gateway that has none configured."""
        return self.metrics.token is None and self.server.host in ("127.0.0.1", "::1", "localhost")

    def override(self, **sections: Mapping[str, object]) -> Settings:
        """These settings with some values of some sections replaced, unchecked (the CLI's flags, tests):
        `settings.override(server={"port": 9000})`. An unknown section or key is a TypeError."""
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise TypeError(f"Settings has no section {sorted(unknown)[0]!r}")
        changes = {name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()}
        return dataclasses.replace(self, **changes)


# The sections by table name, in the order of the class: the one list of what the file's tables are.
SECTIONS: dict[str, type[Any]] = {
    f.name: f.metadata["section"] for f in dataclasses.fields(Settings) if "section" in f.metadata
}


def section_fields() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """Every setting of every section, with its table's name."""
    for name, kind in SECTIONS.items():
        for item in dataclasses.fields(kind):
            yield name, item


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
    for table, item in section_fields():
        variable = item.metadata["env"]
        if variable is not None and env.get(variable):
            _set_path(document, [table, item.name], _parse_scalar(env[variable]))
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


# Optional keys of an [upstreams.NAME] and a [models."NAME"] table -> (field, check), defaults as in the classes.
UPSTREAM_KEYS: dict[str, tuple[str, Check]] = {
    "api": ("api", check.upstream_api),
    "anthropic_version": ("anthropic_version", check.date_text),
    "auth_header": ("auth_header", check.lower_text),
    "query": ("query", check.string_table),
    "stream_usage": ("stream_usage", check.boolean),
    "conversations": ("conversations", check.boolean),
}
MODEL_KEYS: dict[str, tuple[str, Check]] = {
    "max_output_tokens": ("max_output_tokens", check.positive),
    "max_input_tokens": ("max_input_tokens", check.positive),
    "context_window": ("context_window", check.positive),
    "max_tokens_field": ("max_tokens_field", check.max_tokens_field),
    "encoding": ("encoding", check.optional_text),
    "allowed_fields": ("allowed_fields", check.field_names),
    "cheaper_alternative": ("cheaper_alternative", check.optional_text),
    "tool_call_credits": ("tool_call_micros", check.call_prices),
}


def settings_from_document(document: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Validate a parsed TOML document into `Settings`; every error names its key. A key the file leaves out
    keeps its field's default."""
    upstreams = {
        name: _upstream(name, _table(document, "upstreams", name), env) for name in _table(document, "upstreams")
    }
    models = {name: _model(name, _table(document, "models", name), upstreams) for name in _table(document, "models")}
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for name, item in section_fields():
        table = _table(document, name)
        if item.name in table:
            values[name][item.name] = item.metadata["check"](table[item.name], f"{name}.{item.name}")
    sections = {name: kind(**values[name]) for name, kind in SECTIONS.items()}
    return Settings(models=models, upstreams=upstreams, **sections)


def _present(table: Mapping[str, object], where: str, keys: Mapping[str, tuple[str, Check]]) -> dict[str, Any]:
    """The optional keys the table sets, checked, as dataclass fields."""
    return {name: checked(table[key], f"{where}.{key}") for key, (name, checked) in keys.items() if key in table}


def _upstream(name: str, table: Mapping[str, object], env: Mapping[str, str]) -> UpstreamConfig:
    where = f"upstreams.{name}"
    base_url = check.text(table.get("base_url", ""), f"{where}.base_url")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    key_env = check.text(table.get("api_key_env", ""), f"{where}.api_key_env")
    return UpstreamConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key=(env.get(key_env) or None) if key_env else None,
        api_key_env=key_env or None,
        **_present(table, where, UPSTREAM_KEYS),
    )


def _model(name: str, table: Mapping[str, object], upstreams: Mapping[str, UpstreamConfig]) -> ModelConfig:
    where = f'models."{name}"'
    if not name.isprintable():  # it goes into headers, CSV cells, metric labels and hold records
        raise ConfigError(f"{where}: a model name may not contain control characters")
    upstream = check.text(table.get("upstream", ""), f"{where}.upstream")
    if upstream not in upstreams:
        raise ConfigError(f"{where}.upstream: no upstream named {upstream!r}")
    price = Price(
        input_micros_per_million=_required_price(table, where, "input_credits_per_million"),
        output_micros_per_million=_required_price(table, where, "output_credits_per_million"),
        cached_input_micros_per_million=_optional_price(table, where, "cached_input_credits_per_million"),
        cache_write_micros_per_million=_optional_price(table, where, "cache_write_credits_per_million"),
    )
    return ModelConfig(
        name=name,
        upstream=upstream,
        upstream_model=check.text(table.get("upstream_model", name), f"{where}.upstream_model"),
        price=price,
        **_present(table, where, MODEL_KEYS),
    )


def _required_price(table: Mapping[str, object], where: str, key: str) -> int:
    if table.get(key) is None:
        raise ConfigError(f"{where}.{key} is required")
    return check.price(table[key], f"{where}.{key}")


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
