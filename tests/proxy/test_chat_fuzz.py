"""Generated chat bodies thrown at POST /v1/chat/completions: valid ones are served, every other one is refused
with a 4xx, nothing is ever a 5xx, and the books stay exact to the micro-credit.

Hypothesis drives a blocking HTTP client from a worker thread while the gateway runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import hypothesis
import orjson
import requests
from hypothesis import strategies as st

from gateway.billing import keyspace
from gateway.proxy.apis.chat import MAX_DEPTH, MAX_N, ROLES
from tests.common import StartGateway

MODEL = "m-main"
# Fields that change the provider's price: refused unless the model's config prices them.
PRICED_FIELDS = {"service_tier", "audio", "modalities", "web_search_options", "store", "prediction"}
CHECKED_FIELDS = {"model", "messages", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens"}

text = st.text(max_size=40)  # any unicode but lone surrogates, which JSON text cannot carry
# Integers past 64 bits too (orjson reads them as floats); no NaN or infinity, which JSON cannot carry.
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
not_an_int = json_values.filter(lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, int)))
not_a_bool = json_values.filter(lambda v: v is not None and not isinstance(v, bool))


def messages() -> st.SearchStrategy[list[dict[str, object]]]:
    parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), min_size=1, max_size=2)
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(sorted(ROLES)), "content": st.none() | text | parts},
        optional={"name": st.from_regex(r"[a-z]{1,8}", fullmatch=True)},
    )
    return st.lists(message, min_size=1, max_size=3)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, object]:
    """Bodies the gateway must serve: what it checks is well-formed, the rest is the upstream's."""
    body: dict[str, object] = {"model": MODEL, "messages": draw(messages())}
    optional = {
        "stream": st.booleans() | st.none(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}) | st.none(),
        "n": st.integers(1, 8) | st.none(),
        "max_tokens": st.integers(1, 64) | st.none(),
        "max_completion_tokens": st.integers(1, 64) | st.none(),
        "temperature": st.floats(0, 2),
        "user": text,
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            body[name] = draw(values)
    unchecked = text.filter(lambda key: key not in CHECKED_FIELDS | PRICED_FIELDS | set(body))
    body |= draw(st.dictionaries(unchecked, json_values, max_size=2))
    return body


def nested(depth: int) -> object:
    """Arrays and objects, alternately, `depth` levels deep."""
    value: object = "deep"
    for level in range(depth):
        value = {"x": value} if level % 2 else [value]
    return value


@st.composite
def invalid_bodies(draw: st.DrawFn) -> bytes:
    """Bodies the gateway must refuse: one defect in an otherwise valid body, or no JSON object at all."""
    body = draw(valid_bodies())
    defect = draw(
        st.sampled_from(
            [
                ("model", st.sampled_from(["", "no-such-model"]) | not_a_bool.filter(lambda v: not isinstance(v, str))),
                ("messages", st.just([]) | json_values.filter(lambda v: not isinstance(v, list))),
                ("messages", st.lists(json_values.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=2)),
                (
                    "messages",
                    st.lists(
                        st.fixed_dictionaries(
                            {"role": json_values.filter(lambda v: not (isinstance(v, str) and v in ROLES))}
                        )
                    ),
                ),
                ("stream", not_a_bool),
                ("stream_options", not_a_bool.filter(lambda v: not isinstance(v, dict))),
                ("stream_options", st.fixed_dictionaries({"include_usage": not_a_bool})),
                ("n", st.integers(-(2**70), 0) | st.integers(MAX_N + 1, 2**70) | not_an_int),
                ("max_tokens", st.integers(-(2**70), 0) | st.integers(2**40, 2**70) | not_an_int),
                ("max_completion_tokens", st.integers(-(2**70), 0) | st.integers(2**40, 2**70) | not_an_int),
                ("nesting", st.integers(MAX_DEPTH, 300).map(nested)),
                ("whole", json_values.filter(lambda v: not isinstance(v, dict))),
                ("bytes", st.binary(max_size=30).filter(_not_json_object) | st.just(b'{"model": "m-main",')),
            ]
        )
    )
    name, values = defect
    if name == "bytes":
        return draw(values)  # type: ignore[no-any-return]
    if name == "whole":
        return encode(draw(values))
    if name == "messages" and draw(st.booleans()):
        del body["messages"]
    elif name == "model" and draw(st.booleans()):
        del body["model"]
    else:
        body[name] = draw(values)
    if name == "messages" and body.get("messages") == [{}]:
        body["messages"] = [{"role": None}]
    return encode(body)


def encode(value: object) -> bytes:
    """JSON as a client may send it: the standard library also writes integers past 64 bits, unlike orjson."""
    return json.dumps(value, ensure_ascii=False).encode()


@st.composite
def odd_bodies(draw: st.DrawFn) -> bytes:
    """Valid bodies with any JSON in a field the gateway reads to count tokens: it may serve or refuse them."""
    body = draw(valid_bodies())
    message = draw(st.sampled_from(body["messages"]))  # type: ignore[arg-type]
    field = draw(st.sampled_from(["content", "name", "tool_calls", "tool_call_id", "function_call", "refusal"]))
    message[field] = draw(json_values)
    for name in draw(st.sets(st.sampled_from(["tools", "functions", "tool_choice", "response_format"]), max_size=2)):
        body[name] = draw(
            json_values
            | st.lists(st.fixed_dictionaries({"type": st.just("function")}, optional={"function": json_values}))
        )
    return encode(body)


def _not_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return True


LABELLED_BODIES = st.one_of(
    valid_bodies().map(lambda body: ("valid", encode(body))),
    invalid_bodies().map(lambda raw: ("invalid", raw)),
    odd_bodies().map(lambda raw: ("odd", raw)),
)


def fuzz_chat(url: str, key: str, statuses: Counter[tuple[str, int]]) -> None:
    """Run the search, counting (kind, status): blocking calls, so it runs in a worker thread."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    @hypothesis.settings(max_examples=400, derandomize=True, deadline=None, database=None)
    @hypothesis.given(LABELLED_BODIES)
    def check(labelled: tuple[str, bytes]) -> None:
        kind, raw = labelled
        response = session.post(url, data=raw, headers=headers, timeout=10)
        statuses[kind, response.status_code] += 1
        assert response.status_code < 500 and "Traceback" not in response.text, (raw, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert {"message", "type", "param", "code"} <= set(error), response.text
        if kind == "valid":
            assert response.status_code == 200, (raw, response.text)
        if kind == "invalid":
            assert 400 <= response.status_code < 500, (raw, response.text)

    try:
        check()
    finally:
        session.close()


async def test_generated_chat_bodies_never_fail_and_the_books_stay_exact(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account(credits=100_000)
    before = await gateway.balance_micros(account_id)
    statuses: Counter[tuple[str, int]] = Counter()
    await asyncio.to_thread(fuzz_chat, str(gateway.client.make_url("/v1/chat/completions")), key, statuses)
    served = sum(count for (_, status), count in statuses.items() if status == 200)
    # Every kind was really tried, and valid bodies reached the upstream.
    assert statuses["valid", 200] >= 50 and statuses.total() - served >= 50, statuses
    # The books: one record per answer served, and its credits are exactly what left the balance; nothing held.
    status, account = await gateway.admin("GET", f"/admin/accounts/{account_id}")
    assert status == 200 and account["reserved_credits"] == 0, account
    records = await gateway.redis.xrange(keyspace.request_log(account_id))
    charged = sum(int(fields["credits_micros"]) for _, fields in records)
    assert len(records) == served and charged > 0
    assert before - await gateway.balance_micros(account_id) == charged


async def test_deep_nesting_is_refused_before_it_reaches_the_upstream(start_gateway: StartGateway) -> None:
    """orjson reads 300 levels but will not write past 254: the body could not be forwarded, so it is a 400."""
    gateway = await start_gateway()
    account_id, key = await gateway.new_account()
    deep = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "metadata": nested(300)}
    response = await gateway.client.post(
        "/v1/chat/completions", data=encode(deep), headers={"Authorization": f"Bearer {key}"}
    )
    body = await response.json()
    assert response.status == 400 and f"more than {MAX_DEPTH} levels" in body["error"]["message"], body
    # At the limit it is served: the body is level 1, `metadata` levels 2 to MAX_DEPTH.
    at_limit = deep | {"metadata": nested(MAX_DEPTH - 1)}
    response = await gateway.client.post(
        "/v1/chat/completions", data=encode(at_limit), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status == 200, await response.text()
    assert gateway.upstreams["main"].state.requests[-1]["metadata"] == at_limit["metadata"]


async def test_a_role_that_is_no_string_is_a_400(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    for role in ([], {}, ["user"], 1, None):
        response = await gateway.chat(key, {"model": MODEL, "messages": [{"role": role, "content": "hi"}]})
        body = await response.json()
        assert response.status == 400 and body["error"]["param"] == "messages[0].role", body
