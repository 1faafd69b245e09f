"""The metered path shared by every API (/v1/chat/completions, /v1/embeddings, /v1/completions, /v1/messages,
/v1/responses), its count beforehand (`PATH/count_tokens` with `preview`, /v1/responses/input_tokens) and
/v1/models with prices, one request at a time.

Modules, in the order a request meets them: `handlers` (authenticate; the route's API plug-in in `apis/`
parses, counts and fingerprints; price with `priced_fields`, `tool_calls`) -> `metering` (hold_credits: reserve.lua) ->
`meter` (one request's bill, its only owner) -> `exchange` (POST through `upstream`, relay a stream with `relay`,
split with `sse`, the meter counting what was sent) -> the meter settles once through the Biller of `metering`
(settle.lua), whose charge rides on the answer. `preview` prices a request without sending it. `apis/` holds the
Api protocol and one module per API (`apis/chat.py`, `apis/embeddings.py`, `apis/completions.py`,
`apis/messages.py`, `apis/responses.py`, its request in `apis/response_items.py`; `apis/inputs.py` checks the
text inputs embeddings and completions share). `answers` remembers which account owns each answer id the provider
keeps (Responses' response ids) and its context size; `stored` serves the routes on those answers (retrieve,
delete, cancel, input items), forwarded only for their owner and never billed; `background` bills a background
answer once it is seen finished (by those routes, or by its own look at the upstream). `conversation_store` keeps
the owner and context size of conversations the provider keeps, and `conversations` serves /v1/conversations and
its items.

May import: `billing`, `tokens`, the shared modules, `admin.accounts`, `admin.auth`, `insights.fingerprints`
and `insights.signals`; `conversations`, `exchange`, `handlers` and `stored` also the app state. The caller comes
from `admin`, and each request's fingerprint and signals from `insights` (the usage insights' hot path). Its
services (`answers`, `apis`, `background`, `conversation_store`, `meter`, `sse`, `metering`, `preview`,
`priced_fields`, `relay`, `tool_calls`, `upstream`) never import its handlers.
"""
