"""Per-request metering: how many credits to hold before forwarding, and what to bill afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.admin.accounts import ParsedApiKey
from gateway.admin.auth import credits_header
from gateway.billing import Ledger, ReserveStatus, Settlement, SettleOutcome
from gateway.billing.pricing import format_credits
from gateway.config import ModelConfig, Settings
from gateway.errors import AuthError, InsufficientCredits
from gateway.proxy.chat_request import ChatRequest

# A hold can shrink between the two tries when other requests spend concurrently; give up after this many.
MAX_RESERVE_TRIES = 3


@dataclass(frozen=True)
class Reservation:
    """Credits held for one request: who holds them, how much, and what the balance was left at."""

    account_id: str
    api_key_id: str
    request_id: str
    hold_micros: int
    balance_micros: int  # available after the hold
    # Per-choice output bound the gateway must forward because the client set none; None when it set one.
    forced_max_tokens: int | None


@dataclass(frozen=True)
class Usage:
    """Token counts of a finished request, and who counted them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    source: str = "gateway"  # "upstream" when the upstream reported usage


async def hold_credits(
    ledger: Ledger,
    settings: Settings,
    model: ModelConfig,
    api_key: ParsedApiKey,
    request_id: str,
    chat: ChatRequest,
    prompt_tokens: int,
) -> Reservation:
    """Authenticate and hold the most this request can cost; raise 401 or 402 otherwise.

    With a client-set max_tokens the hold is exact-or-nothing. Without one, the gateway holds for its cap and,
    when the balance cannot pay for that, for as many output tokens as the balance can pay for, which it then
    forwards as the request's max_tokens.
    """
    price = model.price
    if chat.max_tokens is not None:
        per_choice = chat.max_tokens
        minimum = price.cost_micros(prompt_tokens, per_choice * chat.n)
    else:
        per_choice = model.max_output_tokens or settings.default_max_tokens
        minimum = price.cost_micros(prompt_tokens, chat.n)
    hold = price.cost_micros(prompt_tokens, per_choice * chat.n)
    for _ in range(MAX_RESERVE_TRIES):
        outcome = await ledger.reserve(
            api_key.account_id,
            api_key.sha256,
            request_id,
            hold_micros=hold,
            min_hold_micros=minimum,
            ttl_s=settings.reservation_ttl_seconds,
        )
        if outcome.status is ReserveStatus.UNKNOWN_KEY:
            raise AuthError()
        if outcome.status is ReserveStatus.HELD:
            forced = None if chat.max_tokens is not None else per_choice
            return Reservation(api_key.account_id, outcome.api_key_id, request_id, hold, outcome.balance_micros, forced)
        if outcome.status is ReserveStatus.INSUFFICIENT:
            break
        per_choice = price.affordable_completion_tokens(outcome.balance_micros, prompt_tokens) // chat.n
        if per_choice < 1:
            break
        hold = price.cost_micros(prompt_tokens, per_choice * chat.n)
    raise InsufficientCredits(
        f"Insufficient credits: this request needs at least {format_credits(minimum)} credits "
        f"and the balance is {format_credits(outcome.balance_micros)}.",
        headers=credits_header(outcome.balance_micros),
    )


def usage_from_upstream(usage: object) -> Usage | None:
    """The upstream's `usage` object, if it is a usable one."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not _count(prompt) or not _count(completion):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    return Usage(
        prompt,
        completion,
        cached_tokens=_detail(usage.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=_detail(usage.get("completion_tokens_details"), "reasoning_tokens"),
        source="upstream",
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _detail(details: object, name: str) -> int:
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if _count(value) and isinstance(value, int) else 0


async def bill(
    ledger: Ledger,
    reservation: Reservation,
    model: ModelConfig,
    usage: Usage,
    estimate: Usage,
    *,
    status: int,
    latency_ms: int,
    stream: bool,
) -> SettleOutcome:
    """Charge `usage` against the hold; shielded so a cancelled handler still settles."""
    cost = model.price.cost_micros(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    settlement = Settlement(
        account_id=reservation.account_id,
        request_id=reservation.request_id,
        model=model.name,
        cost_micros=cost,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        failed=status >= 400,
        record={
            "status": status,
            "latency_ms": latency_ms,
            "stream": int(stream),
            "usage_source": usage.source,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "gateway_prompt_tokens": estimate.prompt_tokens,
            "gateway_completion_tokens": estimate.completion_tokens,
            "hold_micros": reservation.hold_micros,
        },
    )
    return await asyncio.shield(ledger.settle(settlement))
