"""The insights report: one item per kind of waste found in a range, with its credits, what avoiding it would
have saved, a tip and example request ids, most savings first. Served by GET /v1/usage/insights and
`gateway usage insights`.

    report = await insights_report(reader, settings, account_id, {"start": "2026-09-01"}, now)  # an InsightsReader
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.billing.pricing import credits_number
from gateway.config import Settings
from gateway.errors import InvalidRequest, NotFound
from gateway.insights.reader import Found, InsightsReader, Stats
from gateway.usage.ranges import Granularity, UsageRange, parse_api, parse_granularity, parse_range

KEY_ID = re.compile(r"key_[0-9a-f]{16}")
Details = dict[str, object]


@dataclass(frozen=True)
class Kind:
    """One kind of waste: its type in the report, its name in the counters, its title and its tip."""

    type: str
    counter: str
    title: Callable[[Found], str]
    tip: str
    details: Callable[[Found, Settings], Details]


def _count(found: Found, kind: str, stat: str = "requests") -> int:
    return found.stats(kind).get(stat, 0)


def _plural(count: int, one: str) -> str:
    return f"{count:,} {one if count == 1 else one + 's'}"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _credits(micros: int, name: str = "credits") -> Details:
    return {name: credits_number(micros), f"{name}_micros": micros}


def _retry_details(found: Found, settings: Settings) -> Details:
    keys = [
        {"key_id": key_id, "loops": stats.get("loops", 0), "requests": stats.get("requests", 0)}
        | _credits(stats.get("credits", 0))
        for key_id, stats in sorted(found.loops_by_key.items(), key=lambda item: (-item[1].get("loops", 0), item[0]))
    ]
    window = settings.insights.retry_loop_window_seconds
    return {"loops": _count(found, "retry", "loops"), "window_seconds": window, "keys": keys}


def _mix_details(found: Found, settings: Settings) -> Details:
    models = []
    for name, stats in sorted(found.models.get("mix", {}).items(), key=lambda item: -item[1].get("savings", 0)):
        model = settings.models.get(name)
        models.append(
            {"model": name, "alternative": model.cheaper_alternative if model else None, "requests": stats["requests"]}
            | _credits(stats.get("credits", 0))
            | _credits(stats.get("alternative", 0), "alternative_credits")
        )
    return _credits(_count(found, "mix", "alternative"), "alternative_credits") | {"models": models}


def _long_title(found: Found) -> str:
    conversations = _plural(_count(found, "long", "conversations"), "long conversation")
    history = _plural(_count(found, "long", "history_tokens"), "history token")
    return f"{conversations} resent {history} in {_plural(_count(found, 'long'), 'request')}"


def _cache_totals(found: Found) -> tuple[int, int]:
    models = found.models.get("cache", {}).values()
    return sum(s.get("prompt_tokens", 0) for s in models), sum(s.get("cached_tokens", 0) for s in models)


def _cache_title(found: Found) -> str:
    prompt, cached = _cache_totals(found)
    return f"{cached / prompt if prompt else 0:.1%} of prompt tokens served from the provider's prompt cache"


def _cache_details(found: Found, settings: Settings) -> Details:
    prompt, cached = _cache_totals(found)
    models = [
        {
            "model": name,
            "requests": stats.get("requests", 0),
            "prompt_tokens": stats.get("prompt_tokens", 0),
            "cached_tokens": stats.get("cached_tokens", 0),
            "cached_share": _share(stats.get("cached_tokens", 0), stats.get("prompt_tokens", 0)),
        }
        for name, stats in sorted(found.models.get("cache", {}).items())
    ]
    return {"prompt_tokens": prompt, "cached_tokens": cached, "cached_share": _share(cached, prompt), "models": models}


KINDS = (
    Kind(
        "duplicates",
        "dup",
        lambda f: f"{_plural(_count(f, 'dup'), 'duplicate request')} soon after a successful answer",
        "Cache the answers to identical requests and serve repeats from your cache instead of asking the model again.",
        lambda f, s: {"window_seconds": s.insights.duplicate_window_seconds},
    ),
    Kind(
        "retry_loops",
        "retry",
        lambda f: f"{_plural(_count(f, 'retry', 'loops'), 'retry loop')} ({_plural(_count(f, 'retry'), 'request')})",
        "Retry with exponential backoff and a limit, and stop on errors that repeat, such as insufficient credits.",
        _retry_details,
    ),
    Kind(
        "unused_responses",
        "unused",
        lambda f: f"{_plural(_count(f, 'unused'), 'response')} abandoned before the end (still billed)",
        "Set max_tokens to what you will read, and stop requests you no longer need before they start, not midway.",
        lambda f, s: {},
    ),
    Kind(
        "long_conversations",
        "long",
        _long_title,
        "Summarise or truncate long conversation histories instead of resending every earlier turn.",
        lambda f, s: {
            "conversations": _count(f, "long", "conversations"),
            "history_tokens": _count(f, "long", "history_tokens"),
            "long_prompt_tokens": s.insights.long_prompt_tokens,
            "long_conversation_turns": s.insights.long_conversation_turns,
        },
    ),
    Kind(
        "model_mix",
        "mix",
        lambda f: f"{_plural(_count(f, 'mix'), 'small request')} on a model with a cheaper alternative",
        "Send small, simple requests to the cheaper model configured for them.",
        _mix_details,
    ),
    Kind(
        "cache",
        "cache",
        _cache_title,
        "Put the parts of your prompts that do not change (system message, tools, examples) first, so the "
        "provider's prompt cache can serve them.",
        _cache_details,
    ),
)


def _item(kind: Kind, found: Found, settings: Settings) -> dict[str, object] | None:
    """The report's item for `kind`, or None when the range shows none of it."""
    if kind.counter == "cache":
        requests, credits, savings = sum(s.get("requests", 0) for s in found.models.get("cache", {}).values()), 0, 0
    else:
        stats: Stats = found.stats(kind.counter)
        requests, credits, savings = stats.get("requests", 0), stats.get("credits", 0), stats.get("savings", 0)
    if not requests:
        return None
    return {
        "type": kind.type,
        "title": kind.title(found),
        "requests": requests,
        **_credits(credits),
        **_credits(savings, "estimated_savings_credits"),
        "tip": kind.tip,
        "examples": found.examples.get(kind.counter, []),
        "details": kind.details(found, settings),
    }


def insights_view(usage_range: UsageRange, found: Found, settings: Settings, api: str | None) -> dict[str, object]:
    """`GET /v1/usage/insights`: the items found (on `api`, if given), most estimated savings first (then most
    credits)."""
    items = [item for kind in KINDS if (item := _item(kind, found, settings)) is not None]
    items.sort(key=lambda item: (-int(item["estimated_savings_credits_micros"]), -int(item["credits_micros"])))  # type: ignore[call-overload]
    return {"object": "list", **usage_range.view(), "api": api, "data": items}


def parse_key(value: str | None) -> str | None:
    """The `key` parameter: an API key id, or None for the whole account; 400 when malformed."""
    if value is None or value == "":
        return None
    if not KEY_ID.fullmatch(value):
        raise InvalidRequest("'key' must be an API key id (key_ and 16 hex digits).", param="key")
    return value


async def insights_report(
    reader: InsightsReader, settings: Settings, account_id: str, query: Mapping[str, str], now: datetime
) -> dict[str, object]:
    """The report for `account_id` over the range the query asks for (`start`, `end`, `key`, `api`), as the usage
    API's other endpoints read them (whole UTC days). 400 for bad parameters, 404 for a key not of this account."""
    usage_range = parse_range(
        query,
        now,
        parse_granularity(query.get("granularity"), (Granularity.DAY,)),
        max_days=settings.usage.max_range_days,
        max_hours=settings.usage.max_hour_range_hours,
    )
    key_id = parse_key(query.get("key"))
    api = parse_api(query.get("api"))
    examples_from = None
    if settings.redis.request_log_retention_days:
        examples_from = now - timedelta(days=settings.redis.request_log_retention_days)
    found = await reader.read(account_id, usage_range.buckets(now), key_id=key_id, examples_from=examples_from, api=api)
    if not found.key_known:
        raise NotFound(f"No API key with id '{key_id}' in this account.", param="key")
    return insights_view(usage_range, found, settings, api)
