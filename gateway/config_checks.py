"""The checks a configured value passes, each naming its dotted key in any error: `positive(value, "server.port")`.

A check takes the value as the TOML document (or an environment override) has it and returns it as the setting
holds it (seconds as float, a path as `Path`, a price as micro-credits). Sections attach one to each field
(`config.setting`); the upstream and model tables name theirs in `config`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.billing.pricing import AmountError, credits_to_micros
from gateway.billing.tool_calls import TOOL_TYPES

# A price per million tokens: a billion credits at most, so a request's cost stays well within exact integers.
MAX_PRICE_MICROS = 10**15
# A price per built-in tool call: a million credits at most, so every call a request may make stays exact too.
MAX_CALL_PRICE_MICROS = 10**12


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


# A value from the TOML document, checked; the second argument is its dotted path, named in any error.
Check = Callable[[object, str], Any]


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be of type str, got {value!r}")
    return value


def optional_text(value: object, where: str) -> str | None:
    """Text, where an empty string means unset."""
    return text(value, where) or None


def lower_text(value: object, where: str) -> str:
    return text(value, where).lower()


def path(value: object, where: str) -> Path:
    return Path(text(value, where))


def boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be of type bool, got {value!r}")
    return value


def integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be of type int, got {value!r}")
    return value


def positive(value: object, where: str) -> int:
    number = integer(value, where)
    if number <= 0:
        raise ConfigError(f"{where} must be a positive integer")
    return number


def non_negative(value: object, where: str) -> int:
    number = integer(value, where)
    if number < 0:
        raise ConfigError(f"{where} must be zero or a positive integer")
    return number


def seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds")
    return float(value)


def webhook_timeout(value: object, where: str) -> float:
    limit = seconds(value, where)
    if limit > 30:  # a slower attempt would look like a dead consumer's and be claimed by another process
        raise ConfigError(f"{where} must be at most 30 seconds")
    return limit


def event_loop(value: object, where: str) -> str:
    if value not in ("uvloop", "asyncio"):
        raise ConfigError(f'{where} must be "uvloop" or "asyncio"')
    return str(value)


def image_size(value: object, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_positive_int(side) for side in value)):
        raise ConfigError(f"{where} must be [width, height] in pixels")
    return value[0], value[1]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def string_table(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be of type dict, got {value!r}")
    return {str(key): str(item) for key, item in value.items()}


def field_names(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of request field names")
    return frozenset(value)


def delays(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_positive_int(item) for item in value) or len(value) > 20:
        raise ConfigError(f"{where} must be a list of at most 20 positive whole numbers of seconds")
    return tuple(value)


def price(value: object, where: str) -> int:
    """Credits per million tokens (a number or decimal text, up to six decimals), as micro-credits per million."""
    try:
        micros = credits_to_micros(value, MAX_PRICE_MICROS)
    except AmountError as exc:
        raise ConfigError(f"{where} {exc}") from None
    if micros < 0:
        raise ConfigError(f"{where} must not be negative")
    return micros


def call_prices(value: object, where: str) -> dict[str, int]:
    """Credits per call by built-in tool type (a table of TOOL_TYPES' names), as micro-credits per call."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of credits per call by tool type, got {value!r}")
    prices = {}
    for tool, credits in value.items():
        if tool not in TOOL_TYPES:
            raise ConfigError(f"{where}.{tool} is not a built-in tool type; known: {', '.join(TOOL_TYPES)}")
        try:
            prices[tool] = credits_to_micros(credits, MAX_CALL_PRICE_MICROS)
        except AmountError as exc:
            raise ConfigError(f"{where}.{tool} {exc}") from None
        if prices[tool] < 0:
            raise ConfigError(f"{where}.{tool} must not be negative")
    return prices


def at_least_two(value: object, where: str) -> int:
    number = integer(value, where)
    if number < 2:
        raise ConfigError(f"{where} must be at least 2")
    return number


def date_text(value: object, where: str) -> str:
    """Text such as "2023-06-01", also as TOML reads it unquoted (an environment override): a date."""
    return value.isoformat() if isinstance(value, datetime.date) else text(value, where)


def upstream_api(value: object, where: str) -> str:
    if value not in ("openai", "anthropic"):
        raise ConfigError(f'{where} must be "openai" or "anthropic", got {value!r}')
    return text(value, where)


def max_tokens_field(value: object, where: str) -> str:
    if value not in ("auto", "max_tokens", "max_completion_tokens"):
        raise ConfigError(f"{where} must be auto, max_tokens or max_completion_tokens")
    return text(value, where)
