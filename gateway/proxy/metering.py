"""Per-request metering, no HTTP in it: how many credits to hold before forwarding (`hold_credits`), how far an
upstream's usage is believed (`bounded_usage`; built-in tool calls: `CallPrices.bounded`), and how a finished
request is billed (`Biller`, built once): its tokens at the model's prices, rounded up once, plus its built-in tool
calls at their prices per call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from gateway.admin.accounts import ParsedApiKey
from gateway.billing import Ledger, ReserveStatus, Settlement, SettleOutcome
from gateway.billing.pricing import format_credits
from gateway.billing.record import TOOL_CALL_MICROS, TOOL_CALLS, Usage
from gateway.billing.scripts import MAX_SAFE_INTEGER
from gateway.billing.settler import REDIS_UNAVAILABLE, Settler
from gateway.billing.tool_calls import NO_CALL_PRICES, CallPrices, total_calls
from gateway.config import ModelConfig, Settings
from gateway.errors import AuthError, ContextLengthExceeded, GatewayError, InsufficientCredits, ServiceUnavailable
from gateway.insights.fingerprints import Fingerprint
from gateway.insights.signals import settlement_fields
from gateway.metrics import Metrics
from gateway.proxy.answers import PendingBill
from gateway.proxy.apis import Api, ApiRequest
from gateway.proxy.tool_calls import call_prices
from gateway.tokens import TokenCounter

log = logging.getLogger(__name__)

Clock = Callable[[], float]

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
    # The most completion tokens the upstream may produce across all choices (the forwarded bound times n).
    completion_limit: int
    deadline_ms: int = 0  # when the sweeper may release the hold (at the latest; 0: unknown)


async def hold_credits(
    ledger: Ledger,
    settler: Settler,
    settings: Settings,
    model: ModelConfig,
    api_key: ParsedApiKey,
    request_id: str,
    chat: ApiRequest,
    prompt_tokens: int,
    *,
    api: str,
    request_hash: str = "",
    ttl_s: int | None = None,
) -> Reservation:
    """Authenticate and hold the most this request can cost; raise 401, 402 or 503 otherwise.

    With a client-set max_tokens the hold is exact-or-nothing. Without one, the gateway holds for its cap and,
    when the balance cannot pay for that, for as many output tokens as the balance can pay for, which it then
    forwards as the request's max_tokens. Built-in tool calls are held in full on top: `max_tool_calls` at the
    dearest price among the request's priced tools. Every try carries the same request id, so none holds twice. A
    refusal marks `request_hash` (the fingerprint), so the usage insights see a repeat as a retry. The hold lasts
    `ttl_s` (by default limits.reservation_ttl_seconds).
    """
    price = model.price
    per_choice = output_bound(chat, model, settings, prompt_tokens)
    calls = call_prices(chat, model).hold_micros
    # With the client's bound (or no output at all) the hold is all or nothing; without, one token per choice is
    # the least it takes.
    exact = chat.max_tokens is not None or not chat.produces_output
    minimum = price.hold_micros(prompt_tokens, (per_choice if exact else 1) * chat.n) + calls
    hold = price.hold_micros(prompt_tokens, per_choice * chat.n) + calls
    ttl_s = ttl_s or settings.limits.reservation_ttl_seconds
    for _ in range(MAX_RESERVE_TRIES):
        deadline_ms = ledger.now_ms() + ttl_s * 1000  # the script's own clock reads later: its deadline is later
        try:
            outcome = await ledger.reserve(
                api_key.account_id,
                api_key.sha256,
                request_id,
                # Above 2^53 no balance can pay anyway; the cap keeps the script's numbers exact.
                hold_micros=min(hold, MAX_SAFE_INTEGER),
                min_hold_micros=min(minimum, MAX_SAFE_INTEGER),
                ttl_s=ttl_s,
                model=model.name,
                request_hash=request_hash,
                api=api,
            )
        except REDIS_UNAVAILABLE as exc:
            # The call may still run (a frozen Redis wakes up): release what it holds once Redis takes it.
            await settler.defer(Settlement.release(api_key.account_id, request_id))
            raise ServiceUnavailable() from exc
        if outcome.status is ReserveStatus.UNKNOWN_KEY:
            raise AuthError()
        if outcome.status is ReserveStatus.HELD:
            forced = None if exact else per_choice
            return Reservation(
                api_key.account_id,
                outcome.api_key_id,
                request_id,
                hold,
                outcome.balance_micros,
                forced,
                per_choice * chat.n,
                deadline_ms,
            )
        if outcome.status is ReserveStatus.SETTLED:
            raise GatewayError()  # request ids are fresh uuids: a settled one here is a bug, not the tenant's
        if outcome.status is ReserveStatus.INSUFFICIENT:
            break
        per_choice = price.affordable_completion_tokens(outcome.balance_micros - calls, prompt_tokens) // chat.n
        if per_choice < 1:
            break
        hold = price.hold_micros(prompt_tokens, per_choice * chat.n) + calls
    raise InsufficientCredits(
        f"Insufficient credits: this request needs at least {format_credits(minimum)} credits "
        f"and the balance is {format_credits(outcome.balance_micros)}.",
        balance_micros=outcome.balance_micros,
    )


def output_bound(chat: ApiRequest, model: ModelConfig, settings: Settings, prompt_tokens: int) -> int:
    """Completion tokens per choice the gateway holds for: the client's max_tokens, else the model's cap, else
    the gateway's default (which it then forwards, so the upstream cannot produce more), never past what the
    model's context window leaves after the prompt; 0 for an API without output. `check_context` has refused what
    cannot fit at all."""
    if not chat.produces_output:
        return 0
    if chat.max_tokens is not None:
        return chat.max_tokens
    bound = model.max_output_tokens or settings.limits.default_max_tokens
    if model.context_window is not None:
        bound = min(bound, model.context_window - prompt_tokens)
    return bound


def check_context(chat: ApiRequest, model: ModelConfig, prompt_tokens: int) -> None:
    """400 context_length_exceeded, as OpenAI words it, when the prompt passes the model's `max_input_tokens`, or
    the prompt and the client's max_tokens (else one output token; none for an API without output) pass its
    `context_window`."""
    if model.max_input_tokens is not None and prompt_tokens > model.max_input_tokens:
        raise ContextLengthExceeded(
            f"This model's maximum input length is {model.max_input_tokens} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
        )
    window = model.context_window
    if window is None:
        return
    least_output = 1 if chat.produces_output else 0
    if prompt_tokens + least_output > window:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
        )
    if chat.max_tokens is not None and prompt_tokens + chat.max_tokens > window:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt_tokens + chat.max_tokens} tokens ({prompt_tokens} in the messages, {chat.max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
            param="messages",
        )


def bounded_usage(reported: Usage, own_prompt_tokens: int, completion_limit: int, settings: Settings) -> Usage:
    """The upstream's usage, never beyond belief: prompt tokens at most `prompt_clamp_ratio` times the
    gateway's own count plus `prompt_clamp_slack`, completion tokens at most the forwarded bound times n."""
    prompt_limit = min(
        own_prompt_tokens * settings.limits.prompt_clamp_ratio + settings.limits.prompt_clamp_slack, MAX_SAFE_INTEGER
    )
    completion_limit = min(completion_limit, MAX_SAFE_INTEGER)
    clamped = []
    prompt, completion = reported.prompt_tokens, reported.completion_tokens
    if prompt > prompt_limit:
        prompt = prompt_limit
        clamped.append("prompt")
    if completion > completion_limit:
        completion = completion_limit
        clamped.append("completion")
    if not clamped:
        return reported
    return replace(
        reported,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(reported.cached_tokens, prompt),
        cache_write_tokens=min(reported.cache_write_tokens, prompt - min(reported.cached_tokens, prompt)),
        reasoning_tokens=min(reported.reasoning_tokens, completion),
        clamped=tuple(clamped),
    )


@dataclass(frozen=True)
class Ticket:
    """What the bill of one request is made from, beside its token counts: fixed once it holds credits."""

    api: Api
    request: ApiRequest
    model: ModelConfig
    reservation: Reservation
    prompt_tokens: int
    fingerprint: Fingerprint
    started: float  # time.monotonic() when the request arrived


class Biller:
    """Turns a finished request's usage into its settlement: the metrics it shows (clamped counts, counting
    drift), the usage insights' record fields, the price, and the settler. Built once, at start-up."""

    def __init__(self, settler: Settler, metrics: Metrics, counter: TokenCounter, settings: Settings, clock: Clock):
        self.settler = settler
        self.metrics = metrics
        self.counter = counter
        self.settings = settings
        self.clock = clock  # monotonic seconds, for the latency

    async def bill(self, ticket: Ticket, usage: Usage, estimate: Usage, status: int) -> SettleOutcome:
        """Settle `ticket`'s request as billed `usage` (the gateway counted `estimate`), ended with `status`; its
        built-in tool calls at most the request's bound."""
        calls = call_prices(ticket.request, ticket.model)
        self._observe(ticket.model, usage, estimate)
        insight = settlement_fields(
            ticket.fingerprint,
            usage,
            status,
            ticket.model,
            self.settings,
            history=lambda: ticket.api.history_tokens(self.counter, ticket.request, ticket.prompt_tokens),
        )
        return await bill(
            self.settler,
            ticket.reservation,
            ticket.model,
            self._bounded_calls(ticket.model, usage, calls),
            estimate,
            status=status,
            latency_ms=int((self.clock() - ticket.started) * 1000),
            stream=ticket.request.stream,
            api=ticket.api.name,
            insight=insight,
            calls=calls,
        )

    async def bill_later(
        self,
        account_id: str,
        pending: PendingBill,
        model: ModelConfig,
        api: str,
        usage: Usage,
        estimate: Usage,
        status: int,
        latency_ms: int,
    ) -> SettleOutcome:
        """Settle a background answer's `pending` bill, as `bill` settles a request's (proxy/background.py)."""
        self._observe(model, usage, estimate)
        calls = CallPrices(pending.call_micros, pending.max_tool_calls)
        reservation = Reservation(
            account_id,
            pending.api_key_id,
            pending.request_id,
            pending.hold_micros,
            pending.balance_micros,
            None,
            pending.completion_limit,
            pending.deadline_ms,
        )
        insight = settlement_fields(
            pending.fingerprint, usage, status, model, self.settings, history=lambda: pending.history_tokens
        )
        return await bill(
            self.settler,
            reservation,
            model,
            self._bounded_calls(model, usage, calls),
            estimate,
            status=status,
            latency_ms=latency_ms,
            stream=pending.stream,
            api=api,
            insight=insight,
            calls=calls,
        )

    def _bounded_calls(self, model: ModelConfig, usage: Usage, calls: CallPrices) -> Usage:
        """`usage` with the built-in tool calls that are billed: at most the request's bound, the dearest first (a
        cut is marked and counted)."""
        billed, cut = calls.bounded(usage.tool_calls)
        if not cut:
            return replace(usage, tool_calls=billed)
        self.metrics.observe_clamped(model.name, ("tool_calls",))
        return replace(usage, tool_calls=billed, clamped=(*usage.clamped, "tool_calls"))

    def _observe(self, model: ModelConfig, usage: Usage, estimate: Usage) -> None:
        """The metrics of a bill: clamped counts, or how far the gateway's count was from the upstream's usage."""
        if usage.clamped:
            self.metrics.observe_clamped(model.name, usage.clamped)
        elif usage.source == "upstream":
            # Reasoning tokens are never in the visible text the gateway counts; leave them out of the drift.
            visible = usage.completion_tokens - usage.reasoning_tokens
            self.metrics.observe_drift(
                model.name,
                prompt=usage.prompt_tokens - estimate.prompt_tokens,
                completion=visible - estimate.completion_tokens,
            )


async def bill(
    settler: Settler,
    reservation: Reservation,
    model: ModelConfig,
    usage: Usage,
    estimate: Usage,
    *,
    status: int,
    latency_ms: int,
    stream: bool,
    api: str,
    insight: Mapping[str, str | int] | None = None,
    calls: CallPrices = NO_CALL_PRICES,
) -> SettleOutcome:
    """Charge `usage` against the hold, once (spooled when Redis cannot take it now). Shielded, so a handler
    cancelled by a departing client still settles. `insight`: the usage insights' record fields (hashes and
    counts), counted by the settlement. `calls`: the prices of the built-in tool calls in `usage` (bounded
    already). A spooled settlement's outcome is projected from the hold."""
    call_micros = calls.cost_micros(usage.tool_calls)
    cost = call_micros + model.price.cost_micros(
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens
    )
    called = total_calls(usage.tool_calls)
    settlement = Settlement(
        account_id=reservation.account_id,
        request_id=reservation.request_id,
        model=model.name,
        api=api,
        # settle.lua charges at most hold + balance, both below 2^53; the cap keeps its numbers exact.
        cost_micros=min(cost, MAX_SAFE_INTEGER),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        failed=status >= 400,
        record={
            "status": status,
            "latency_ms": latency_ms,
            "stream": int(stream),
            "usage_source": usage.source,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "gateway_prompt_tokens": estimate.prompt_tokens,
            "gateway_completion_tokens": estimate.completion_tokens,
            "hold_micros": reservation.hold_micros,
            "clamped": ",".join(usage.clamped),
            **({TOOL_CALLS: called, TOOL_CALL_MICROS: call_micros} if called else {}),
            **(insight or {}),
        },
    )
    outcome = await asyncio.shield(settler.settle(settlement))
    if outcome is None:
        charged = min(settlement.cost_micros, reservation.hold_micros + reservation.balance_micros)
        after = reservation.balance_micros + reservation.hold_micros - charged
        return SettleOutcome(True, after, charged, spooled=True)
    return outcome
