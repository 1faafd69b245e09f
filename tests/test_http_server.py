"""What aiohttp's HTTP parser refuses, sent raw to a real `gateway serve`: answered in OpenAI's error shape (431
for a head too large, 400 for anything malformed) with an x-request-id, and neither the answer nor the log holds
a byte of the offending request. With aiohttp's C parser and its Python one, one process and two workers."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass

import pytest

from gateway.redis_server import free_port
from tests.processes import GatewayProcesses, gateway_env, wait_http

ADMIN = "http-server-admin"
TOKEN = "sk-gw-acct0123456789abcdef-S3CR3TS3CR3T"  # a key's shape: none of it may come back
LONG_TOKEN = TOKEN + "S3CR3T" * 1500  # 9,000+ bytes, past aiohttp's 8190-byte limit
MARKERS = (b"sk-gw", b"0123456789abcdef", b"S3CR3T")
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# (request, status, code)
REFUSED = {
    "header line too long": (
        f"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {LONG_TOKEN}\r\n\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "request line too long": (
        f"GET /v1/models?key={LONG_TOKEN} HTTP/1.1\r\nHost: gw\r\n\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "too many headers": (
        "GET /v1/models HTTP/1.1\r\nHost: gw\r\n" + "".join(f"X-Key-{i}: {TOKEN}\r\n" for i in range(200)) + "\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "bad method": (f"G\x01T /v1/models?key={TOKEN} HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "malformed_request"),
    "bad HTTP version": (f"GET /v1/models?key={TOKEN} HTTP/9.Z\r\nHost: gw\r\n\r\n", 400, "malformed_request"),
    "no request line": (f"{TOKEN}\r\nHost: gw\r\n\r\n", 400, "malformed_request"),
    "invalid header name": (
        f"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-{{{TOKEN}}}: 1\r\n\r\n",  # braces are not token characters
        400,
        "malformed_request",
    ),
    "chunked garbage": (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\nzz-{TOKEN}\r\n{{}}\r\n0\r\n\r\n",
        400,
        "malformed_request",
    ),
}

# name: (extra environment, extra config, workers)
MODES = {
    "C parser, uvloop, one process": ({}, "", "1"),
    "Python parser, asyncio loop, one process": ({"AIOHTTP_NO_EXTENSIONS": "1"}, 'event_loop = "asyncio"\n', "1"),
    "C parser, uvloop, two workers": ({}, "", "2"),
}


@dataclass
class Answer:
    raw: bytes
    status: int
    headers: dict[str, str]
    body: bytes


def _exchange(port: int, request: bytes, body: bytes | None = None) -> Answer:
    """Send `request`, and `body` once the gateway has read the head (its `100 Continue`); read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        if body is not None:
            while not raw.endswith(CONTINUE):
                raw += sock.recv(1)
            sock.sendall(body)
            raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(raw, int(status_line.split()[1]), headers, content)


def _start(processes: GatewayProcesses, redis_url: str, mode: str) -> int:
    environment, server_config, workers = MODES[mode]
    port = free_port()
    processes.write_config(free_port(), f'[server]\nadmin_token = "{ADMIN}"\n{server_config}')
    processes.start(gateway_env(REDIS_URL=redis_url, **environment), "serve", "--port", str(port), "--workers", workers)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return port


def _assert_openai_error(answer: Answer, status: int, code: str) -> str:
    """The answer is the error, and holds nothing of the request; its x-request-id."""
    assert answer.status == status, answer.raw[:300]
    assert answer.headers["content-type"].startswith("application/json")
    error = json.loads(answer.body)["error"]
    assert set(json.loads(answer.body)) == {"error"} and set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, code)
    assert not any(marker in answer.raw for marker in MARKERS), answer.raw
    request_id = answer.headers["x-request-id"]
    assert REQUEST_ID.fullmatch(request_id)
    return request_id


def _logged(processes: GatewayProcesses, request_id: str) -> str:
    """The gateway's log line for `request_id` (written before the answer is sent; read with a deadline)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in processes.log.read_text(errors="replace").splitlines() if request_id in line]
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}: {processes.tail()}")


@pytest.mark.parametrize("mode", MODES)
def test_what_the_parser_refuses_is_answered_in_openai_shape_and_never_echoed(
    processes: GatewayProcesses, redis_url: str, mode: str
) -> None:
    port = _start(processes, redis_url, mode)
    seen: set[str] = set()
    for name, (request, status, code) in REFUSED.items():
        answer = _exchange(port, request.encode("latin-1"))
        request_id = _assert_openai_error(answer, status, code)
        assert f" {status} {code} " in _logged(processes, request_id), name
        seen.add(request_id)
    assert len(seen) == len(REFUSED)
    log = processes.log.read_bytes()
    assert not any(marker in log for marker in MARKERS)
    assert b"Traceback" not in log


def test_a_chunked_body_refused_after_its_head_gets_400(processes: GatewayProcesses, redis_url: str) -> None:
    # aiohttp's Python parser fails the body the handler is reading; its C parser leaves it unfinished, so the
    # body timeout answers there (408).
    port = _start(processes, redis_url, "Python parser, asyncio loop, one process")
    head = (
        "POST /admin/accounts HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        f"Authorization: Bearer {ADMIN}\r\n\r\n"
    )
    answer = _exchange(port, head.encode(), f"zz-{TOKEN}\r\n{{}}\r\n0\r\n\r\n".encode())
    assert answer.status == 400, answer.raw[:300]
    assert answer.headers["connection"] == "close"
    assert json.loads(answer.body)["error"]["code"] == "malformed_request"
    assert not any(marker in answer.raw for marker in MARKERS)
    assert "refused a request body that is not valid HTTP on POST /admin/accounts" in processes.log.read_text()
    log = processes.log.read_bytes()
    assert not any(marker in log for marker in MARKERS) and b"Traceback" not in log


def test_the_metrics_port_answers_what_the_parser_refuses_the_same_way(
    processes: GatewayProcesses, redis_url: str
) -> None:
    port, metrics_port = free_port(), free_port()
    processes.write_config(free_port(), f'[server]\nadmin_token = "{ADMIN}"\n[metrics]\nport = {metrics_port}\n')
    processes.start(gateway_env(REDIS_URL=redis_url), "serve", "--port", str(port), "--workers", "1")
    wait_http(f"http://127.0.0.1:{metrics_port}/metrics")
    for name in ("header line too long", "bad method"):
        request, status, code = REFUSED[name]
        _assert_openai_error(_exchange(metrics_port, request.encode("latin-1")), status, code)
    assert not any(marker in processes.log.read_bytes() for marker in MARKERS)


def test_a_client_that_hangs_up_mid_body_is_no_error(processes: GatewayProcesses, redis_url: str) -> None:
    port = _start(processes, redis_url, "C parser, uvloop, one process")
    head = (
        f"POST /admin/accounts HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {ADMIN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b'{"name": "x"')
    deadline = time.monotonic() + 30
    while "the client went away during POST /admin/accounts" not in processes.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, processes.tail()
        time.sleep(0.05)
    wait_http(f"http://127.0.0.1:{port}/healthz")  # a request after it: anything the hang-up logs is logged by now
    log = processes.log.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log
