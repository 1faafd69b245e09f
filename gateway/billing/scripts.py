"""The Lua scripts' calling conventions: each script's KEYS, ARGV and reply are built and read here only.

Each `lua/*.lua` file documents the same lists in its header. The hold record, written by reserve.lua and
read by settle.lua and by Python, is built and parsed by `Hold` here and by `lua/prelude.lua` (prepended to
every money script), nowhere else. Every number is checked here before a call (`whole`) and again by the
script before its first write, because Redis does not roll back a script that fails halfway.

    call = ReserveCall(account_id, api_key_sha256, request_id, hold_micros=900, min_hold_micros=900, deadline_ms=t)
    outcome = ReserveOutcome.from_reply(await script(call.keys(), call.argv()))
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources

from gateway.billing import keyspace
from gateway.billing.keyspace import as_text
from gateway.billing.periods import period_id
from gateway.billing.record import CONVERSATION_HASH, LEGACY_API, PREVIOUS_CONVERSATION_HASH, REQUEST_HASH

Argv = list[str | int]
MAX_SAFE_INTEGER = 2**53 - 1  # Lua numbers are doubles: integers are exact up to here


def whole(value: int, name: str) -> int:
    """`value` if it is an integer in [0, 2^53), else ValueError: no script is called with it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"{name} must be a whole number in [0, 2^53), got {value!r}")
    return value


def lua_source(package: str, name: str, *, prelude: Sequence[str] = ()) -> str:
    """The text of `<package>/lua/<name>`, after the `prelude` files of gateway/billing/lua."""
    parts = [resources.files("gateway.billing").joinpath("lua", part).read_text(encoding="utf-8") for part in prelude]
    parts.append(resources.files(package).joinpath("lua", name).read_text(encoding="utf-8"))
    return "\n".join(parts)


def money_script(name: str, *more: str) -> str:
    """A script of gateway/billing/lua with the shared checks and hold record helpers in front (and `more` of
    that folder's files: settle.lua takes insights.lua)."""
    return lua_source("gateway.billing", name, prelude=("prelude.lua", *more))


@dataclass(frozen=True)
class Hold:
    """A reservation not yet settled, stored in the holds hash as "amount_micros:deadline_ms:api_key_id:model",
    followed by HOLD_API_SEPARATOR and the API unless the API is LEGACY_API (holds taken before the API was kept
    have none: they were chat's)."""

    amount_micros: int
    deadline_ms: int  # after this the request behind it is surely over: the sweeper may release it
    api_key_id: str  # never contains ':'
    model: str  # never contains HOLD_API_SEPARATOR (config_checks refuses control characters in model names)
    api: str = LEGACY_API

    def encode(self) -> str:
        return f"{self.amount_micros}:{self.deadline_ms}:{self.api_key_id}:{hold_model(self.model, self.api)}"

    @classmethod
    def parse(cls, text: str) -> Hold:
        amount, deadline, api_key_id, rest = text.split(":", 3)
        model, _, api = rest.partition(HOLD_API_SEPARATOR)
        return cls(int(amount), int(deadline), api_key_id, model, api or LEGACY_API)


# Between a hold's model and its API: a control character, so no model name holds it and a gateway that predates
# it reads the pair as an (unknown) model name rather than failing.
HOLD_API_SEPARATOR = "\x1f"


def hold_model(model: str, api: str) -> str:
    """The model field of a hold as reserve.lua stores it: the model, and the API unless it is LEGACY_API."""
    return model if api == LEGACY_API else f"{model}{HOLD_API_SEPARATOR}{api}"


class ReserveStatus(enum.IntEnum):
    HELD = 1
    PARTIAL = 0  # the balance covers the minimum but not the full hold: nothing held
    UNKNOWN_KEY = -1
    INSUFFICIENT = -2
    SETTLED = -3  # this request id was settled or released already: a late or repeated reserve holds nothing


@dataclass(frozen=True)
class InsightRules:
    """What settle.lua counts as waste for the usage insights. Built from Settings, which holds the defaults."""

    duplicate_window_ms: int  # a repeat this soon after a successful answer is a duplicate
    retry_window_ms: int  # ... and `retry_min` sightings within this, or a repeat after an error, a retry loop
    retry_min: int
    examples: int = 5  # example request ids kept per waste type, per day (and per API key)
    conversation_idle_ms: int = 86_400_000  # a long conversation quiet for this long counts as a new one

    @property
    def request_state_ms(self) -> int:
        """How long a fingerprint's state lives: as long as either window can still look back at it."""
        return max(self.duplicate_window_ms, self.retry_window_ms)

    def argv(self) -> Argv:
        return [
            whole(self.duplicate_window_ms, "duplicate window"),
            whole(self.retry_window_ms, "retry window"),
            whole(self.retry_min, "retry loop min"),
            whole(self.examples, "examples"),
            whole(self.conversation_idle_ms, "conversation idle"),
        ]


@dataclass(frozen=True)
class ReserveCall:
    """reserve.lua: authenticate an API key and hold credits for one request. With a request hash (and the
    state's lifetime) a refusal with 402 is marked in that fingerprint's insight state."""

    account_id: str
    api_key_sha256: str
    request_id: str
    hold_micros: int
    min_hold_micros: int  # the least hold the caller accepts (PARTIAL when the balance is between the two)
    deadline_ms: int
    model: str
    now_ms: int
    request_hash: str = ""
    request_state_ms: int = 0
    api: str = LEGACY_API

    def keys(self) -> list[str]:
        account_id = self.account_id
        keys = [
            keyspace.account(account_id),
            keyspace.live_api_keys(account_id),
            keyspace.holds(account_id),
            keyspace.settled_requests(account_id),
            keyspace.alerts(account_id),
            keyspace.outbox(account_id),
        ]
        if self.request_hash:
            keys.append(keyspace.insight_request(account_id, self.request_hash))
        return keys

    def argv(self) -> Argv:
        argv: Argv = [
            self.api_key_sha256,
            self.request_id,
            whole(self.hold_micros, "hold"),
            whole(self.min_hold_micros, "least hold"),
            whole(self.deadline_ms, "deadline"),
            hold_model(self.model, self.api),
            self.account_id,
            whole(self.now_ms, "now"),
            period_id(self.now_ms),
        ]
        if self.request_hash:
            argv.append(whole(self.request_state_ms, "request state lifetime"))
        return argv


@dataclass(frozen=True)
class ReserveOutcome:
    status: ReserveStatus
    api_key_id: str
    balance_micros: int  # after the hold when HELD, else the balance as it stands
    alerts: int = 0  # webhook events the step appended (a refusal may fire credits.exhausted)

    @classmethod
    def from_reply(cls, reply: Sequence[object]) -> ReserveOutcome:
        code, api_key_id, balance, alerts = reply
        status = ReserveStatus(int(as_text(code)))
        return cls(status, as_text(api_key_id), int(as_text(balance)), int(as_text(alerts)))


@dataclass(frozen=True)
class Retention:
    """How long settlement keeps what it writes. Built from Settings, which holds the defaults."""

    request_log_maxlen: int  # records per account's request log (approximate cap)
    request_log_retention_ms: int  # records older than this may be trimmed; 0: capped by count only
    hour_ttl_s: int  # hourly aggregates expire after this
    settled_ids_ms: int  # how long settled request ids (and grant ids) are remembered against late repeats


class SettleMode(enum.StrEnum):
    CHARGE = "charge"  # charge the cost, release the rest, write aggregates and the request record
    RELEASE = "release"  # return the whole hold and write nothing else: the request never ran


@dataclass(frozen=True)
class Settlement:
    """The real cost of one request and the facts its usage record keeps."""

    account_id: str
    request_id: str
    model: str
    cost_micros: int
    prompt_tokens: int
    completion_tokens: int
    failed: bool = False
    record: Mapping[str, str | int] = field(default_factory=dict)  # extra request-record fields
    mode: SettleMode = SettleMode.CHARGE
    api: str = LEGACY_API  # the API the request was made on (billing.record.API_NAMES)

    @classmethod
    def release(cls, account_id: str, request_id: str) -> Settlement:
        """Return a request's whole hold, if it has one, and remember its id so that no late reserve holds."""
        return cls(account_id, request_id, "", 0, 0, 0, mode=SettleMode.RELEASE)


@lru_cache(maxsize=256)
def utc_hour(hour: int) -> datetime:
    """The start of the `hour`-th hour since the epoch, UTC (made once per hour, not once per request)."""
    return datetime.fromtimestamp(hour * 3600, UTC)


@dataclass(frozen=True)
class SettleCall:
    """settle.lua: charge a settlement against its hold, release the rest, write aggregates and the record.

    A fingerprinted charge (its record has REQUEST_HASH) settled with `insights` rules also counts the waste it
    shows in the day's insights: four more keys, and the rules before the record fields.
    """

    settlement: Settlement
    now_ms: int
    retention: Retention
    insights: InsightRules | None = None

    @property
    def counts_insights(self) -> bool:
        settlement = self.settlement
        return self.insights is not None and settlement.mode is SettleMode.CHARGE and REQUEST_HASH in settlement.record

    def keys(self) -> list[str]:
        account_id = self.settlement.account_id
        when = utc_hour(self.now_ms // 3_600_000)  # the day and hour keys need no finer time
        keys = [
            keyspace.account(account_id),
            keyspace.holds(account_id),
            keyspace.usage_day(account_id, when),
            keyspace.usage_hour(account_id, when),
            keyspace.api_key_last_used(account_id),
            keyspace.request_log(account_id),
            keyspace.settled_requests(account_id),
            keyspace.alerts(account_id),
            keyspace.outbox(account_id),
        ]
        if self.counts_insights:
            record = self.settlement.record
            keys += [
                keyspace.insights_day(account_id, when),
                keyspace.insight_request(account_id, str(record[REQUEST_HASH])),
                keyspace.insight_conversation(account_id, str(record.get(CONVERSATION_HASH, ""))),
                keyspace.insight_conversation(account_id, str(record.get(PREVIOUS_CONVERSATION_HASH, ""))),
            ]
        return keys

    def argv(self) -> Argv:
        settlement, retention = self.settlement, self.retention
        cutoff = 0
        if retention.request_log_retention_ms:
            cutoff = max(self.now_ms - retention.request_log_retention_ms, 1)
        argv: Argv = [
            settlement.request_id,
            whole(settlement.cost_micros, "cost"),
            whole(settlement.prompt_tokens, "prompt tokens"),
            whole(settlement.completion_tokens, "completion tokens"),
            settlement.model,
            whole(self.now_ms, "now"),
            whole(retention.hour_ttl_s, "hour ttl"),
            whole(retention.request_log_maxlen, "request log length"),
            1 if settlement.failed else 0,
            cutoff,
            settlement.mode.value,
            max(self.now_ms - retention.settled_ids_ms, 0),
            period_id(self.now_ms),
            settlement.account_id,
            settlement.api,
        ]
        if self.insights is not None and self.counts_insights:
            argv += self.insights.argv()
        for name, value in settlement.record.items():
            argv.extend((name, value))
        return argv


@dataclass(frozen=True)
class SettleOutcome:
    """What a settlement charged and the balance after it. A `spooled` one waits for Redis: its figures are
    projected from the hold, what settle.lua will charge unless the balance moves meanwhile."""

    settled: bool  # False: there was no hold left to settle (already settled); nothing changed
    balance_micros: int
    charged_micros: int
    alerts: int = 0  # webhook events the settlement appended (thresholds it crossed)
    spooled: bool = False

    @classmethod
    def from_reply(cls, reply: Sequence[object]) -> SettleOutcome:
        settled, balance, charged, alerts = (int(as_text(value)) for value in reply)
        return cls(bool(settled), balance, charged, alerts)


class GrantStatus(enum.IntEnum):
    DONE = 1  # applied now, or before under the same grant id
    NO_ACCOUNT = -1
    BELOW_ZERO = -2  # the amount would take the balance below zero: nothing changed
    TOO_LARGE = -3  # the balance would pass 2^53 micro-credits: nothing changed


@dataclass(frozen=True)
class GrantCall:
    """grant.lua: add (or take back) credits and log the grant, once per grant id."""

    account_id: str
    amount_micros: int  # negative: take back
    now_ms: int
    note: str
    grant_id: str
    settled_ids_ms: int

    def keys(self) -> list[str]:
        account_id = self.account_id
        return [
            keyspace.account(account_id),
            keyspace.grant_log(account_id),
            keyspace.applied_grants(account_id),
            keyspace.alerts(account_id),
            keyspace.outbox(account_id),
        ]

    def argv(self) -> Argv:
        if self.amount_micros == 0:
            raise ValueError("a grant of zero")
        whole(abs(self.amount_micros), "amount")
        cutoff = max(self.now_ms - self.settled_ids_ms, 0)
        now = whole(self.now_ms, "now")
        return [self.amount_micros, now, self.note, self.grant_id, cutoff, self.account_id, period_id(now)]


@dataclass(frozen=True)
class GrantOutcome:
    status: GrantStatus
    balance_micros: int
    alerts: int = 0  # webhook events the grant appended

    @classmethod
    def from_reply(cls, reply: Sequence[object]) -> GrantOutcome:
        code, balance, alerts = (int(as_text(value)) for value in reply)
        return cls(GrantStatus(code), balance, alerts)
