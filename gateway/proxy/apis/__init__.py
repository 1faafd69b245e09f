"""The APIs the gateway meters, one module each, behind one interface: `Api`.

Every metered route runs the same path (proxy/handlers.py): authenticate -> parse (`Api.parse`) and price
(`priced_fields`) -> count the prompt (`Api.count_prompt`) -> hold (metering.hold_credits) -> forward
(`Api.upstream_path`, `Api.upstream_body`) -> relay the answer, plain or streamed, counting it -> settle once (the
request's `Meter`) -> the bill on the answer (`Api.stamp_answer`, `StreamFormat.stamp`). An `Api` says only what
differs between APIs; it never talks to Redis, aiohttp or the ledger, and is tested with plain dicts.

Answers the provider keeps (Responses): an API whose answers have ids that later requests continue says so with
`answer_id` (plain) and `StreamFormat.answer_id` (streamed); the meter records each such id, owned by the
request's account, as soon as the gateway sees it and before the client does, with the context size the
provider billed for it. A request that continues one, or a conversation the provider keeps (`prior_context`), is
authenticated first; an id its account never got is 404 `not_found`, and an owned one adds its context size to
the prompt the hold, the clamp and the bill-on-cut count with. APIs without stored answers return None from all
three. A stored answer may also be made after the request was answered (`finishes_later`): its bill waits, held,
until the answer is seen finished.

To add an API: write `proxy/apis/NAME.py` with a class that satisfies `Api` (and a `StreamFormat` if it streams),
register it with `handlers.add_api_route(app, "/v1/PATH", NAME_API)` (`count_path=` for the API's own count
route, answered by `count_answer`), and test it with the shared suites (tests/proxy). `chat.py` is the reference
implementation; `responses.py` adds stored answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError
from gateway.insights.fingerprints import Fingerprint
from gateway.proxy.sse import Event
from gateway.tokens import CompletionCounter, TokenCounter

JSON = dict[str, object]
# Request field -> whether this value of it changes the provider's price beyond what the model's config prices
# (proxy/priced_fields.py).
PricedFields = Mapping[str, Callable[[object, ModelConfig], bool]]


@dataclass(frozen=True)
class ApiRequest:
    """What the shared path needs of a parsed request; the API's own fields stay in `body`."""

    body: JSON
    model: str
    stream: bool
    # The client asked for the bill inside the stream (chat: stream_options.include_usage).
    client_wants_usage: bool
    # The output bound per choice as the client set it (max_tokens and the like, or the API's own default); None
    # when it set none, and the gateway then sets one (`Api.upstream_body` forwards it) from the balance and the
    # model's caps.
    max_tokens: int | None
    n: int  # completions generated per request: the hold covers n x the output bound
    # False for an API whose answers have no output tokens (embeddings): the hold covers the prompt alone, no
    # output bound is forwarded, and reported completion tokens are not believed (clamped to 0).
    produces_output: bool = True
    # The answer's texts begin with the request's prompts (legacy completions' `echo`): (the prompts, choices per
    # prompt). The echoed part is not output; the gateway's own count leaves it out.
    echo: tuple[Sequence[str | Sequence[int]], int] | None = None
    # The types of the built-in tools the request offers (Responses' `tools` but function and custom ones;
    # Messages' server tools billed per use): the provider runs them and bills per call (proxy/tool_calls.py).
    builtin_tools: tuple[str, ...] = ()
    # The bound on those calls: the client's (`tool_calls_field`), else, when the model prices a tool the request
    # offers, the gateway's default (proxy/tool_calls.py sets it once the model is known; `Api.upstream_body`
    # forwards it). The hold covers it at the dearest price, and no more calls are billed.
    max_tool_calls: int | None = None
    tool_calls_field: str = "max_tool_calls"  # Messages: its web search tool's `max_uses`


@dataclass(frozen=True)
class PriorContext:
    """Context the provider keeps that a request continues, and bills again as input: the request field that names
    it, its id, and what it is (an earlier answer: Responses' `previous_response_id`; or a `conversation`)."""

    field: str
    id: str
    kind: Literal["answer", "conversation"]


class NoStoredAnswer:
    """For the answers of a provider that keeps none under an id (all but Responses): `answer_id` is None."""

    def answer_id(self, payload: Mapping[str, object]) -> str | None:
        return None


class StatelessApi(NoStoredAnswer):
    """For an API whose request carries its whole context (all but Responses): it continues no kept answer, and
    its answers are finished when they are relayed."""

    def prior_context(self, request: ApiRequest) -> PriorContext | None:
        return None

    def finishes_later(self, request: ApiRequest) -> bool:
        return False


class StreamFormat(Protocol):
    """How one API's stream events are read and billed, for one request (it may keep state between events).

    Events are relayed as they arrive and counted once written. The relay settles the request just before the
    event that carries the bill (`is_final`) goes out, or before the stream's end when there is none, and adds a
    `closing_event` then if the client asked for the bill (`wants_bill`) and none went out.
    """

    wants_bill: bool

    def is_end(self, event: Event) -> bool:
        """The stream's last event (chat: `data: [DONE]`)."""
        ...

    def usage(self, chunk: Mapping[str, object]) -> Usage | None:
        """The usage an event reports (cumulative), if it reports one that can be believed to be counts."""
        ...

    def prompt_usage(self, chunk: Mapping[str, object]) -> Usage | None:
        """The prompt's usage an event reports before the answer's end (Anthropic's `message_start`), if any: a
        client that leaves later is billed that prompt rather than the gateway's count of it."""
        ...

    def is_final(self, chunk: Mapping[str, object]) -> bool:
        """Whether this event, reporting usage, is the one that closes the answer and carries the bill."""
        ...

    def is_error(self, chunk: Mapping[str, object]) -> bool:
        """Whether the upstream reported an error inside the stream."""
        ...

    def stamp(self, chunk: Mapping[str, object], usage: Usage, bill: SettleOutcome | None) -> JSON:
        """The event with its usage shown as billed (`usage`, bounded) and, given a `bill`, the charge."""
        ...

    def closing_event(self, usage: Usage, bill: SettleOutcome, last: Mapping[str, object]) -> JSON:
        """The event the gateway adds to carry the bill when the upstream sent none; `last` is the last event."""
        ...

    def count(self, counter: CompletionCounter, chunk: Mapping[str, object]) -> None:
        """Add what an event showed the client to the completion count."""
        ...

    def encode(self, event: Mapping[str, object]) -> bytes:
        """An event the gateway writes itself (one it stamped or added, or an error) as SSE bytes, with its
        blank line; APIs with typed events write their `event:` line too."""
        ...

    def answer_id(self, chunk: Mapping[str, object]) -> str | None:
        """The id the provider keeps the answer under, if this event names it (Responses: `response.created`);
        None for APIs without stored answers."""
        ...


class Api(Protocol):
    """One metered API: its request, its upstream call, its answers' usage and where its bill is shown."""

    name: str  # "chat.completions"
    upstream_path: str  # under the upstream's base_url: "/chat/completions"
    # The API family its models' upstream must speak (`UpstreamConfig.api`): "openai" or "anthropic". A model
    # of an upstream of the other family is not served on this route (404 model_not_found, before any hold).
    upstream_api: str

    @property
    def priced_fields(self) -> PricedFields:
        """The request fields that change the provider's price: refused unless the model allows them
        (proxy/priced_fields.py)."""
        ...

    def parse(self, raw: bytes) -> ApiRequest:
        """Decode and check a request body; InvalidRequest naming the field otherwise."""
        ...

    def parse_count(self, raw: bytes) -> ApiRequest:
        """A body of the route's `count_tokens`: as `parse`, less what only a call needs (Anthropic's count_tokens
        takes no max_tokens)."""
        ...

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        """The prompt tokens the provider will bill for `request`, counted offline."""
        ...

    def prior_context(self, request: ApiRequest) -> PriorContext | None:
        """The earlier answer or conversation the provider keeps and this request continues (Responses:
        `previous_response_id` or `conversation`), whose context the provider bills again as input; None if none."""
        ...

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        """The answer of the API's count route (`prompt_tokens` includes a prior context; `preview`:
        the gateway's price preview, proxy/preview.py), in the API's own shape."""
        ...

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        """The request's hashes for the usage insights (insights/fingerprints.py)."""
        ...

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        """The prompt tokens the request resends from earlier turns (for the long-conversation insight)."""
        ...

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        """The body sent upstream: the model's upstream name, the gateway's output bound when it set one, and
        whatever makes a streaming upstream report its usage."""
        ...

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        """Count a plain answer's completion into `counter`; the usage it reports, if usable."""
        ...

    def answer_id(self, payload: Mapping[str, object]) -> str | None:
        """The id the provider keeps a plain answer under (Responses: its `id`); None for APIs without stored
        answers."""
        ...

    def finishes_later(self, request: ApiRequest) -> bool:
        """Whether the provider may go on making the answer after the gateway relayed what it had (Responses'
        `background: true`): then, unless the relayed answer reported its usage (it was finished), the bill waits
        for the answer to be seen finished (proxy/background.py), held until then. Needs stored answers."""
        ...

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        """The plain answer with its usage shown as billed and the bill (cost, credits remaining)."""
        ...

    def stream_format(self, request: ApiRequest, request_id: str) -> StreamFormat:
        """A fresh reader of one streamed answer's events (`request_id`: the gateway's id of the request)."""
        ...

    def error_body(self, error: GatewayError) -> JSON:
        """An error in this API's own shape."""
        ...
