"""The OpenAPI document: served publicly, describes every route, and every operation survives fuzzing.

The fuzz test runs schemathesis against the document the gateway serves, with a real Redis, the mock upstream
and real credentials, so generated requests get past authentication. Schemathesis calls synchronously, so the
gateway and the upstream are served from a thread of their own.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestServer
from schemathesis.checks import content_type_conformance, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gateway.app import create_app
from gateway.mock.options import MockOptions
from gateway.mock.server import create_mock_app
from gateway.openapi import build_document
from tests.common import ADMIN_TOKEN, FakeClock, StartGateway, make_settings

T = TypeVar("T")
MODEL = "m-main"  # the model make_settings configures for the upstream "main"
CLAUDE_MODEL = "m-claude"  # and for "claude", the same mock speaking Anthropic's Messages API
SCHEMA_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_route_is_in_the_document() -> None:
    """Walks the app's router, so a route added without its description fails here."""
    app = create_app(make_settings("redis://127.0.0.1:1/0", {"main": "http://127.0.0.1:1/v1"}))
    paths = cast(dict[str, dict[str, object]], build_document()["paths"])
    described = {(method, path) for path, operations in paths.items() for method in operations}
    # aiohttp answers HEAD on every GET route by itself.
    served = {
        (r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource and r.method != "HEAD"
    }
    assert served - described == set()  # a route nobody described
    assert described - served == set()  # a description of a route that is gone


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_document()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.1 meta-schema


async def test_the_document_is_public(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    response = await gateway.client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == orjson.loads(orjson.dumps(build_document()))


class ServedApps:
    """aiohttp apps served from a thread with its own event loop, for synchronous clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="served-apps", daemon=True)
        self.thread.start()
        self.servers: list[TestServer] = []

    def run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def serve(self, app: web.Application) -> str:
        """Start `app` on a free 127.0.0.1 port; returns its base URL."""
        server = TestServer(app, host="127.0.0.1")
        self.run(server.start_server())
        self.servers.append(server)
        return str(server.make_url("")).rstrip("/")

    def close(self) -> None:
        for server in reversed(self.servers):
            self.run(server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class FuzzTarget:
    """A running gateway and the real credentials fuzzing uses."""

    base_url: str
    account_id: str = ""
    other_account_id: str = ""
    api_key: str = ""
    spare_key_id: str = ""  # a key of the account that the fuzzer may revoke
    session: requests.Session = field(default_factory=requests.Session)

    def admin(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        response = self.session.request(
            method, self.base_url + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )
        assert response.status_code < 300, response.text
        return response.json()  # type: ignore[no-any-return]

    def ledger(self) -> tuple[int, object]:
        """(balance in micro-credits, credits held) of the fuzzed account."""
        account = self.admin("GET", f"/admin/accounts/{self.account_id}")
        return account["credits_micros"], account["reserved_credits"]

    def wait_until_settled(self) -> None:
        """A served request may settle just after its last byte: wait until nothing is held."""
        deadline = time.monotonic() + 5
        while self.ledger()[1] != 0:
            assert time.monotonic() < deadline, "credits still held 5 s after the answer"
            time.sleep(0.005)


@pytest.fixture
def fuzz_target(redis_url: str) -> Iterator[FuzzTarget]:
    apps = ServedApps()
    try:
        upstream = apps.serve(create_mock_app(MockOptions()))
        settings = make_settings(
            redis_url,
            {"main": upstream + "/v1", "claude": upstream + "/v1"},
            upstream_fields={"claude": {"api": "anthropic"}},
        )
        target = FuzzTarget(apps.serve(create_app(settings, clock=FakeClock())))
        target.account_id = target.admin("POST", "/admin/accounts", {"name": "fuzzed", "credits": 1000})["id"]
        target.other_account_id = target.admin("POST", "/admin/accounts", {"name": "other", "credits": 5})["id"]
        target.api_key = target.admin("POST", f"/admin/accounts/{target.account_id}/keys", {"name": "app"})["key"]
        spare = target.admin("POST", f"/admin/accounts/{target.account_id}/keys", {"name": "spare"})
        target.spare_key_id = spare["id"]
        served = target.session.get(f"{target.base_url}/openapi.json", timeout=10)
        assert served.status_code == 200 and served.json() == orjson.loads(orjson.dumps(build_document()))
        yield target
        target.session.close()
    finally:
        apps.close()


# schemathesis' fixture-based loader breaks under pytest 9.2 (it sets `Function._nodeid`), so the schema is built
# here, at import, and the fuzz fixture checks that the gateway serves exactly this document.
schema = schemathesis.openapi.from_dict(build_document())
TENANT, ADMIN = "Bearer <tenant key>", "Bearer <admin token>"  # placeholders for the credentials of the running gateway


@schema.auth(refresh_interval=None)
class GatewayCredentials:
    """Marks where a real credential goes (the test puts it in), so generated requests get past authentication.
    Schemathesis leaves it off the cases it generates to test missing or bad credentials."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return "placeholders"

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        schemes = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
        if not schemes - {"metricsToken"}:
            return
        # Operations that take either read as the tenant or as the admin, by a stable hash of the case.
        as_admin = "apiKey" not in schemes or ("adminToken" in schemes and _digest(case) % 5 < 2)
        case.headers = {**(case.headers or {}), "Authorization": ADMIN if as_admin else TENANT}


def _digest(case: schemathesis.Case) -> int:
    """A hash of what was generated that is the same on every run (a case's repr holds object addresses)."""
    body = case.body if isinstance(case.body, dict | list | str | int | float | bool) else None
    return zlib.crc32(repr((case.operation.label, case.path_parameters, case.query, body)).encode())


def _aim(case: schemathesis.Case, target: FuzzTarget) -> None:
    """Real credentials where the placeholders stand, and about half the well-formed ids pointed at real ones, so
    fuzzing reaches past 401 and 404; which half is chosen by a digest of the case, so runs are repeatable."""
    credentials = {TENANT: f"Bearer {target.api_key}", ADMIN: f"Bearer {ADMIN_TOKEN}"}
    headers = case.headers or {}
    if headers.get("Authorization") in credentials:
        headers["Authorization"] = credentials[headers["Authorization"]]
    digest = _digest(case)
    if digest % 2:
        return
    path, query = case.path_parameters or {}, case.query or {}
    # A key reading another account's usage must get 403; the admin token reads any.
    account = target.other_account_id if digest % 3 == 0 else target.account_id
    for params, name, real in (
        (path, "account_id", account),
        (path, "key_id", target.spare_key_id),
        (query, "account", account),
    ):
        if isinstance(params.get(name), str) and re.fullmatch(r"(acct|key)_[0-9a-f]{16}", params[name]):
            params[name] = real
    if "model" in path:
        path["model"] = MODEL
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = CLAUDE_MODEL if case.operation.path.startswith("/v1/messages") else MODEL


def _assert_error_shape(response: requests.Response, path: str) -> None:
    """OpenAI's error shape, or on Anthropic's routes (/v1/messages*) Anthropic's."""
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.text
    error = body["error"]
    if path.startswith("/v1/messages") and response.status_code != 405:  # the router's 405 precedes the route
        assert body.get("type") == "error" and {"message", "type"} <= set(error), response.text
    else:
        assert {"message", "type", "param", "code"} <= set(error), response.text
    assert isinstance(error["message"], str) and isinstance(error["type"], str), response.text


# One gateway serves every input of an operation: what one input changes (a grant, a revoked key) is fine for the next.
@hypothesis.settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@schema.parametrize()
def test_fuzzed_requests_never_fail_the_gateway(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    _aim(case, fuzz_target)
    before = fuzz_target.ledger()
    response = case.call(base_url=fuzz_target.base_url, timeout=10)
    text = response.text
    assert response.status_code < 500, (case.as_curl_command(), text)
    assert "Traceback" not in text and 'File "' not in text, text
    if response.status_code >= 400:
        _assert_error_shape(response, case.operation.path)
        assert fuzz_target.ledger() == before, f"a refused request moved money: {case.as_curl_command()}"
    elif case.operation.path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/messages"):
        fuzz_target.wait_until_settled()  # so the next refused request's books are its own
    case.validate_response(response, checks=SCHEMA_CHECKS)
