"""Background answers' bills (Responses' `background: true`): held at creation, billed exactly once, when the
gateway first sees the answer finished.

The meter defers the bill of a background answer relayed unfinished (proxy/meter.py): the hold stays, held for
`limits.background_hold_seconds`, and the answer's record carries its `PendingBill` (proxy/answers.py). The first
of these settles it:
- a client's retrieval (`GET /v1/responses/{id}`) or cancel (`POST .../cancel`) whose answer shows it finished;
- a client's delete: the answer is looked at, and cancelled if still running, before the delete goes upstream;
- the gateway's own look (`BackgroundPoller`): every `limits.background_poll_seconds` one process asks the
  upstream about each listed answer due a look. One still running when its hold nears its deadline (two poll
  intervals before) is cancelled, so no answer runs on that no hold covers.

A finished answer is billed by its status: `completed` and `incomplete` as any answer (the provider's usage,
bounded, else the gateway's count of its output); `cancelled` as `incomplete`, but free before any output;
`failed` nothing, as an upstream failure. An answer the upstream no longer knows, or cannot say by the deadline,
is billed its prompt, as a request whose client left before any output. Settlement is idempotent by request id
(settle.lua), so two processes that see the same answer finished charge it once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping

import aiohttp
import orjson

from gateway.billing import keyspace
from gateway.billing.record import NO_USAGE, Usage
from gateway.billing.scripts import SettleOutcome
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.config import ModelConfig, Settings
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.proxy.answers import AnswerStore, PendingBill, StoredAnswer
from gateway.proxy.apis.responses import RESPONSES
from gateway.proxy.meter import CLIENT_CLOSED
from gateway.proxy.metering import Biller, bounded_usage
from gateway.proxy.upstream import call_upstream, read_bounded
from gateway.tokens import TokenCounter

log = logging.getLogger(__name__)

FINISHED = frozenset({"completed", "incomplete", "cancelled", "failed"})
LOOK_BATCH = 200  # listed answers looked at per pass
LOOKS_AT_ONCE = 8  # upstream calls in flight per pass
ANSWER_LIMIT = 32 * 1024 * 1024


class BackgroundBills:
    """Settles background answers' pending bills. Built once, at start-up."""

    def __init__(
        self,
        answers: AnswerStore,
        biller: Biller,
        settings: Settings,
        session: aiohttp.ClientSession,
        counter: TokenCounter,
    ):
        self.answers = answers
        self.biller = biller
        self.settings = settings
        self.session = session
        self.counter = counter
        self.poll_ms = settings.limits.background_poll_seconds * 1000

    async def seen(
        self, account_id: str, answer_id: str, stored: StoredAnswer, payload: Mapping[str, object]
    ) -> SettleOutcome | None:
        """Bill `stored`'s pending bill if `payload`, the provider's response object, shows it finished; None when
        there is nothing to bill (billed already, or not finished)."""
        pending = stored.pending
        model = self.settings.models.get(stored.model)
        if pending is None or model is None or payload.get("status") not in FINISHED:
            return None
        usage, estimate, status = self.billed_usage(pending, model, payload)
        return await self._bill(account_id, answer_id, stored, model, usage, estimate, status)

    def billed_usage(
        self, pending: PendingBill, model: ModelConfig, payload: Mapping[str, object]
    ) -> tuple[Usage, Usage, int]:
        """What a finished answer is billed, the gateway's count of it, and the status it is recorded with."""
        counter = self.counter.completion_counter(model.name)
        reported = RESPONSES.read_answer(payload, counter)
        estimate = Usage(pending.prompt_tokens, counter.count_completion_tokens(), tool_calls=counter.builtin_calls())
        status = payload.get("status")
        if status == "failed":
            return NO_USAGE, estimate, 502
        output = payload.get("output")
        if status == "cancelled" and not (isinstance(output, list) and output):
            return NO_USAGE, estimate, CLIENT_CLOSED
        if reported is not None:
            usage = bounded_usage(reported, pending.prompt_tokens, pending.completion_limit, self.settings)
        else:
            usage = estimate
        return usage, estimate, CLIENT_CLOSED if status == "cancelled" else 200

    async def look(self, account_id: str, answer_id: str, *, last: bool = False) -> None:
        """Ask the upstream about a listed answer and bill it if it finished; cancel it first when its hold nears
        its deadline, or when this is the `last` look (it is about to be deleted)."""
        stored = await self.answers.find(account_id, answer_id)
        pending = stored.pending if stored is not None else None
        model = self.settings.models.get(stored.model) if stored is not None else None
        if stored is None or pending is None or model is None:
            if stored is not None and pending is not None:
                log.error("background answer %s: model %r is no longer configured", answer_id, stored.model)
            await self.answers.unlist(account_id, answer_id)  # billed already, or left to the sweeper
            return
        payload, gone = await self._ask(model, "GET", f"/responses/{answer_id}")
        if payload is not None and await self.seen(account_id, answer_id, stored, payload) is not None:
            return
        now_ms = self.answers.now_ms()
        cutoff_ms = pending.deadline_ms - 2 * self.poll_ms
        if not gone and not last and now_ms < cutoff_ms:
            await self.answers.reschedule(account_id, answer_id, min(now_ms + self.poll_ms, cutoff_ms))
            return
        if not gone:
            payload, gone = await self._ask(model, "POST", f"/responses/{answer_id}/cancel")
            if payload is not None and await self.seen(account_id, answer_id, stored, payload) is not None:
                return
        log.warning("background answer %s billed its prompt: its end was never seen", answer_id)
        prompt = Usage(pending.prompt_tokens, 0)
        await self._bill(account_id, answer_id, stored, model, prompt, prompt, CLIENT_CLOSED)

    async def _bill(
        self,
        account_id: str,
        answer_id: str,
        stored: StoredAnswer,
        model: ModelConfig,
        usage: Usage,
        estimate: Usage,
        status: int,
    ) -> SettleOutcome:
        pending = stored.pending
        assert pending is not None
        latency_ms = max(self.answers.now_ms() - pending.started_ms, 0)
        outcome = await self.biller.bill_later(
            account_id, pending, model, RESPONSES.name, usage, estimate, status, latency_ms
        )
        context = usage.prompt_tokens + usage.completion_tokens or pending.prompt_tokens
        try:
            await self.answers.billed(account_id, answer_id, stored, context)
        except REDIS_UNAVAILABLE:  # still listed: a later look settles it again, which charges nothing more
            log.warning("background answer %s stays listed: Redis is unavailable", answer_id)
        return outcome

    async def _ask(self, model: ModelConfig, method: str, path: str) -> tuple[Mapping[str, object] | None, bool]:
        """The upstream's response object at `path`, if it answers with one; and whether it no longer knows it."""
        upstream = self.settings.upstreams[model.upstream]
        try:
            response = await call_upstream(self.session, upstream, method, path)
            async with response:
                if response.status == 404:
                    return None, True
                if response.status != 200:
                    return None, False
                body = await read_bounded(response, ANSWER_LIMIT)
        except (UpstreamError, UpstreamTimeout):
            return None, False
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, False
        return (payload if isinstance(payload, dict) else None), False


class BackgroundPoller:
    """Every poll interval, one gateway process looks at the background answers due a look."""

    def __init__(self, bills: BackgroundBills):
        self.bills = bills
        self.answers = bills.answers
        self.interval_s = bills.settings.limits.background_poll_seconds

    async def run(self) -> None:
        """A pass every interval until cancelled. A failed pass waits for the next."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except REDIS_UNAVAILABLE:
                log.info("background answers not looked at: Redis is unavailable")
            except Exception:
                log.exception("background answers' pass failed")  # the next pass tries again

    async def poll(self) -> int:
        """One pass, unless another process has just made it; returns the answers looked at."""
        redis = self.answers.redis
        token = secrets.token_hex(8)
        if not await redis.set(keyspace.BACKGROUND_LOCK, token, nx=True, px=self.interval_s * 1000):
            return 0
        due = await self.answers.due(self.answers.now_ms(), LOOK_BATCH)
        slots = asyncio.Semaphore(LOOKS_AT_ONCE)

        async def look(account_id: str, answer_id: str) -> None:
            async with slots:
                await self.bills.look(account_id, answer_id)

        looks = await asyncio.gather(*(look(*listed) for listed in due), return_exceptions=True)
        for (_, answer_id), error in zip(due, looks, strict=True):
            if isinstance(error, REDIS_UNAVAILABLE):
                log.info("background answer %s not looked at: Redis is unavailable", answer_id)
            elif isinstance(error, Exception):
                log.error("background answer %s not looked at", answer_id, exc_info=error)
        return len(due)
