"""The bill of one request in flight, with one owner: its `Meter`.

The meter holds what the bill is made of (the reservation and the prompt count in its ticket, the completion
count as the answer is relayed, the upstream's usage) and the rules that make them one settlement. How the
request ended decides what it costs, worked out once, when it has ended (`billed_usage`):

- the upstream answered (a plain body, or a stream the client was sent): its usage, bounded, else the gateway's
  own count of what was sent;
- the client left: the gateway's count of what it was sent, and the prompt if the upstream had it: as the upstream
  reported it before the client left (bounded; Messages' `message_start` does), else as the gateway counted it;
- anything else (the upstream failed or refused, the gateway refused): nothing.

It is settled exactly once: the first `settle` starts the settlement, and every later call (even while the first
is under way, its caller cancelled by a departing client) gets that same outcome. The exchange and the stream
relay call it; neither keeps any part of the bill.

An answer the provider keeps under an id (`answer_seen`, Responses) is recorded as the request's account's before
the client sees the id, with the most context it can have (the prompt and the output bound); the settlement
then records the context the provider billed (the billed input + output tokens). A response made in a
conversation (`conversation`) leaves the conversation at the same figure (`turn_context`,
proxy/conversation_store.py); a deferred one at its bound (the prompt and the output bound).

A background answer (`Api.finishes_later`) relayed before it finished (no usage reported) is not settled: its
hold stays, and `settle` records the bill as pending on the answer's record instead (`deferred`), to be settled
once the answer is seen finished (proxy/background.py). Should Redis not take that record, the request is
billed now, as a request that ended here.

    meter = Meter(ticket, counter, biller, settings)
    meter.forwarded = True; ...; meter.take_usage(reported)
    outcome = await meter.settle(200)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from gateway.billing.record import NO_USAGE, Usage
from gateway.billing.scripts import SettleOutcome
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.config import Settings
from gateway.proxy.answers import AnswerStore, PendingBill, StoredAnswer, is_answer_id
from gateway.proxy.conversation_store import ConversationTurn
from gateway.proxy.metering import Biller, Ticket, bounded_usage
from gateway.proxy.tool_calls import call_prices
from gateway.tokens import CompletionCounter

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "the client went away"; recorded, never sent


class Meter:
    """Owns one request's bill: what it was held, counted and reported, and its one settlement."""

    def __init__(
        self,
        ticket: Ticket,
        counter: CompletionCounter,
        biller: Biller,
        settings: Settings,
        answers: AnswerStore | None = None,
        *,
        conversation: ConversationTurn | None = None,
    ):
        self.ticket = ticket
        self.counter = counter  # what the client was sent of the answer, counted as it goes
        self.biller = biller
        self.settings = settings
        self.upstream_usage: Usage | None = None  # bounded
        self.prompt_usage: Usage | None = None  # the upstream's prompt figures reported early, bounded
        self.forwarded = False  # the request went upstream, so the upstream has (at least) read its prompt
        self.answered = False  # the upstream's answer reached the client, whole or in part
        self._settlement: asyncio.Future[SettleOutcome] | None = None
        self.answers = answers
        self.answer: tuple[str, StoredAnswer] | None = None  # the id the provider keeps the answer under
        self.conversation = conversation  # the turn the request makes in a conversation the provider keeps
        self.deferred = False  # the bill waits for the background answer to be seen finished

    async def answer_seen(self, answer_id: str) -> None:
        """The provider keeps the answer under `answer_id`: record it as the account's (once), before the client
        is sent the id. Redis being away loses the record, not the answer: the id then answers 404 here."""
        if self.answer is not None or self.answers is None or not is_answer_id(answer_id):
            return
        ticket = self.ticket
        most = self.prompt_tokens + ticket.reservation.completion_limit
        self.answer = (answer_id, StoredAnswer(ticket.model.name, most, self.answers.now_ms()))
        try:
            await self.answers.remember(ticket.reservation.account_id, *self.answer)
        except REDIS_UNAVAILABLE:
            log.warning("answer %s of %s not recorded: Redis is unavailable", answer_id, ticket.reservation.request_id)

    @property
    def prompt_tokens(self) -> int:
        return self.ticket.prompt_tokens

    def take_prompt_usage(self, reported: Usage) -> None:
        """The upstream's count of the prompt, reported before the answer's end (bounded; its output figure is not
        the answer's)."""
        limit = self.ticket.reservation.completion_limit
        early = replace(reported, completion_tokens=0, reasoning_tokens=0)
        self.prompt_usage = bounded_usage(early, self.prompt_tokens, limit, self.settings)

    def take_usage(self, reported: Usage) -> Usage:
        """The upstream's usage, bounded, is what the answer is billed from now on (a stream may send several)."""
        reservation = self.ticket.reservation
        self.upstream_usage = bounded_usage(reported, self.prompt_tokens, reservation.completion_limit, self.settings)
        return self.upstream_usage

    def estimate(self) -> Usage:
        """The gateway's own count: the prompt, and what the client was sent (its built-in tool calls too)."""
        return Usage(
            self.prompt_tokens, self.counter.count_completion_tokens(), tool_calls=self.counter.builtin_calls()
        )

    def sent_usage(self) -> Usage:
        """What a client that left is billed: the prompt as the upstream reported it if it did (the provider's
        count, bounded, where the gateway's may be an estimate), and the answer as far as it was sent."""
        sent = self.estimate()
        reported = self.upstream_usage or self.prompt_usage
        if reported is None:
            return sent
        return replace(
            sent,
            prompt_tokens=reported.prompt_tokens,
            cached_tokens=reported.cached_tokens,
            cache_write_tokens=reported.cache_write_tokens,
            clamped=tuple(kind for kind in reported.clamped if kind == "prompt"),
        )

    def answer_usage(self) -> Usage:
        """What an answer is billed: the upstream's usage, bounded, else the gateway's own count of it."""
        return self.upstream_usage if self.upstream_usage is not None else self.estimate()

    def billed_usage(self, status: int) -> Usage:
        """What the request costs, given how it ended (see the module's docstring)."""
        if status == CLIENT_CLOSED:
            return self.sent_usage() if self.forwarded else NO_USAGE
        return self.answer_usage() if self.answered else NO_USAGE

    def waits_for_answer(self) -> bool:
        """Whether the bill waits: a background answer, recorded under its id, relayed unfinished."""
        ticket = self.ticket
        return (
            self.forwarded
            and self.answer is not None
            and self.upstream_usage is None
            and ticket.api.finishes_later(ticket.request)
        )

    async def settle(self, status: int) -> SettleOutcome:
        """Settle on the first call, as the request ended with `status`; later calls wait for that same outcome.
        A bill that waits for its answer is deferred instead: nothing charged, the balance as the hold left it."""
        if self._settlement is None:
            if self.waits_for_answer():
                self._settlement = asyncio.ensure_future(self._defer(status))
            else:
                usage, estimate = self.billed_usage(status), self.estimate()
                self._settlement = asyncio.ensure_future(self._bill(usage, estimate, status))
        return await asyncio.shield(self._settlement)

    async def _defer(self, status: int) -> SettleOutcome:
        assert self.answer is not None and self.answers is not None
        ticket, answers = self.ticket, self.answers
        reservation = ticket.reservation
        answer_id, answer = self.answer
        now_ms = answers.now_ms()
        calls = call_prices(ticket.request, ticket.model)
        pending = PendingBill(
            request_id=reservation.request_id,
            api_key_id=reservation.api_key_id,
            hold_micros=reservation.hold_micros,
            balance_micros=reservation.balance_micros,
            prompt_tokens=self.prompt_tokens,
            completion_limit=reservation.completion_limit,
            deadline_ms=reservation.deadline_ms,
            started_ms=now_ms - int((time.monotonic() - ticket.started) * 1000),
            stream=ticket.request.stream,
            fingerprint=ticket.fingerprint,
            history_tokens=ticket.api.history_tokens(self.biller.counter, ticket.request, self.prompt_tokens),
            call_micros=dict(calls.micros_per_call),
            max_tool_calls=calls.limit,
        )
        due_ms = now_ms + self.settings.limits.background_poll_seconds * 1000
        try:
            await answers.defer(reservation.account_id, answer_id, replace(answer, pending=pending), due_ms)
        except REDIS_UNAVAILABLE:
            log.warning("background answer %s billed as it stands: Redis is unavailable", answer_id)
            return await self._bill(self.billed_usage(status), self.estimate(), status)
        self.deferred = True
        # The provider adds the turn to its conversation when it finishes: at most the prompt and the output bound.
        await self._end_turn(self.prompt_tokens + reservation.completion_limit)
        return SettleOutcome(False, reservation.balance_micros, 0)

    async def _bill(self, usage: Usage, estimate: Usage, status: int) -> SettleOutcome:
        outcome = await self.biller.bill(self.ticket, usage, estimate, status)
        if self.answer is not None and self.answers is not None:
            answer_id, answer = self.answer
            try:
                context = usage.prompt_tokens + usage.completion_tokens
                await self.answers.set_context(self.ticket.reservation.account_id, answer_id, answer, context)
            except REDIS_UNAVAILABLE:
                log.warning("answer %s keeps its context bound: Redis is unavailable", answer_id)
        await self._end_turn(self.turn_context(usage, status))
        return outcome

    def turn_context(self, usage: Usage, status: int) -> int | None:
        """The context a response made in a conversation leaves it at, as billed: the provider adds an answered turn
        to its conversation, so its billed input + output; a client that left may have left the provider to finish
        the answer, so then the billed input and the forwarded bound, at most. None: the turn added nothing."""
        left = status == CLIENT_CLOSED
        if not (self.forwarded if left else self.answered):
            return None
        output = self.ticket.reservation.completion_limit if left else usage.completion_tokens
        return usage.prompt_tokens + output

    async def _end_turn(self, context_tokens: int | None) -> None:
        turn = self.conversation
        if turn is None or context_tokens is None:
            return
        try:
            await turn.ended(context_tokens)
        except REDIS_UNAVAILABLE:
            log.warning("conversation %s keeps its context as it was: Redis is unavailable", turn.conversation_id)

    @property
    def settled(self) -> bool:
        """Whether the settlement has started (its outcome may still be on its way)."""
        return self._settlement is not None
