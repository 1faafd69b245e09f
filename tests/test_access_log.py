"""The access log: nothing per request unless `[server] access_log = true`; then one line per request with
method, path, status, time and request id, and never a header (so never a key)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.access_log import AccessLogger, access_log_options, log
from gateway.app import create_app
from tests.common import make_settings, user_message


async def _access_lines(caplog: pytest.LogCaptureFixture, timeout: float = 10.0) -> list[str]:
    """The access log's lines, once there is one."""
    deadline = time.monotonic() + timeout
    while not (lines := [record.getMessage() for record in caplog.records if record.name == log.name]):
        assert time.monotonic() < deadline, f"no access log line after {timeout} s"
        await asyncio.sleep(0.01)
    return lines


async def test_off_by_default_means_no_logger_at_all() -> None:
    assert access_log_options(False) == {"access_log": None}


async def test_one_line_per_request_without_headers(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    app = create_app(make_settings(redis_url, {"main": "http://127.0.0.1:9/v1"}))
    server = TestServer(app)
    await server.start_server(**access_log_options(True))  # as gateway/http_server.py gives them to each connection
    async with TestClient(server) as client:
        secret = "sk-gw-0123456789abcdef-notakey"
        body = {"model": "m-main", "messages": user_message()}
        response = await client.post(
            "/v1/chat/completions?x=1", json=body, headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status == 401
        await _access_lines(caplog)  # the line is written once the answer is out
    [line] = await _access_lines(caplog)  # ...and only one: the server is closed now
    method, path, status, took, request_id = line.split(" ")
    assert (method, path, status) == ("POST", "/v1/chat/completions", "401")
    assert took.endswith("ms") and request_id == response.headers["x-request-id"]
    assert secret not in caplog.text and "x=1" not in caplog.text
    assert access_log_options(True)["access_log_class"] is AccessLogger
