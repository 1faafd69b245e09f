"""Where webhooks may go: the URL rules, the forbidden addresses, and the guard at connection time, which is
what defeats DNS rebinding. Hostnames other than `localhost` resolve through a stub, so nothing leaves the host."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.webhooks.delivery import delivery_session
from gateway.webhooks.targets import AddressRefused, GuardedResolver, TargetRefused, check_resolved, check_url
from tests.webhooks.stub_resolver import StubResolver

PUBLIC_V4 = "93.184.215.14"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/alerts",
        "http://hooks.example.com:8080/alerts?token=abc",
        "https://hooks.example.com./trailing-dot",
        "http://93.184.215.14/",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/",
        "https://h.example/" + "a" * (2048 - len("https://h.example/")),
    ],
)
def test_a_well_formed_http_or_https_url_is_accepted_unchanged(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("//hooks.example.com/alerts", "http or https"),
        ("hooks.example.com/alerts", "http or https"),
        ("http:///alerts", "no host"),
        ("http://", "no host"),
        ("http://user:pass@hooks.example.com/", "user name or password"),
        ("http://user@hooks.example.com/", "user name or password"),
        ("http://:pass@hooks.example.com/", "user name or password"),
        ("http://hooks.example.com:99999/", "malformed"),
        ("http://hooks.example.com:0/", "port"),
        ("https://h.example/" + "a" * (2049 - len("https://h.example/")), "longer than 2048"),
        (" http://hooks.example.com/", "whitespace"),
        ("http://hooks.example.com/a b", "whitespace"),
        ("http://hooks.example.com\\@127.0.0.1/", "backslash"),
        ("http://hooks.example.com/\r\nX-Injected: 1", "control character"),
        ("http://2130706433/", "canonical IP"),
        ("http://127.1/", "canonical IP"),
        ("http://0x7f.0.0.1/", "canonical IP"),
        ("", "non-empty string"),
    ],
)
def test_a_url_that_is_not_a_plain_http_target_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(TargetRefused, match=message):
        check_url(url)


@pytest.mark.parametrize("value", [None, 42, ["https://hooks.example.com/"]])
def test_a_url_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(TargetRefused, match="string"):
        check_url(value)


def test_target_refused_is_a_value_error() -> None:
    assert issubclass(TargetRefused, ValueError)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("100.127.255.254", "shared address space"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved|private"),
        ("192.0.2.10", "not globally routable|private"),
        ("[::1]", "loopback"),
        ("[::]", "unspecified"),
        ("[fc00::1]", "private"),
        ("[fd12:3456::1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("[ff02::1]", "multicast"),
        ("[::1.2.3.4]", "reserved"),  # IPv4-compatible, deprecated
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:7f00:1]", "loopback"),
        ("[::ffff:169.254.169.254]", "cloud metadata"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[::ffff:100.64.0.1]", "shared address space"),
        ("[::ffff:0.0.0.0]", "unspecified"),
        ("[64:ff9b::7f00:1]", "loopback"),
        ("[2002:a9fe:a9fe::]", "cloud metadata"),
    ],
)
async def test_an_ip_literal_in_a_forbidden_range_is_refused_naming_the_range(host: str, reason: str) -> None:
    with pytest.raises(TargetRefused, match=f"\\(({reason})\\)"):
        await check_resolved(f"http://{host}:8080/hook", allow_private=False)


@pytest.mark.parametrize("host", [PUBLIC_V4, "8.8.8.8", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]"])
async def test_a_public_ip_literal_is_accepted_without_a_lookup(host: str) -> None:
    stub = StubResolver(None)  # would fail any lookup
    await check_resolved(f"https://{host}/hook", allow_private=False, resolver=stub)
    assert stub.calls == 0


async def test_allow_private_accepts_loopback_and_metadata_literals() -> None:
    await check_resolved("http://127.0.0.1:8080/hook", allow_private=True)
    await check_resolved("http://169.254.169.254/latest/meta-data/", allow_private=True)


async def test_allow_private_still_refuses_a_malformed_url() -> None:
    with pytest.raises(TargetRefused, match="http or https"):
        await check_resolved("ftp://127.0.0.1/", allow_private=True)


async def test_localhost_is_refused_as_it_resolves_to_loopback() -> None:
    with pytest.raises(TargetRefused, match=r"localhost resolves to (127\.0\.0\.1|::1) \(loopback\)"):
        await check_resolved("http://localhost:8080/hook", allow_private=False)


async def test_a_name_is_refused_if_any_of_its_addresses_is_forbidden() -> None:
    stub = StubResolver([PUBLIC_V4, "10.0.0.7"])
    with pytest.raises(TargetRefused, match=r"hooks\.example\.com resolves to 10\.0\.0\.7 \(private\)"):
        await check_resolved("https://hooks.example.com/hook", allow_private=False, resolver=stub)


async def test_a_name_resolving_only_to_public_addresses_is_accepted() -> None:
    stub = StubResolver([PUBLIC_V4, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    await check_resolved("https://hooks.example.com/hook", allow_private=False, resolver=stub)
    assert stub.calls == 1


@pytest.mark.parametrize("answer", [None, []], ids=["lookup-fails", "no-addresses"])
async def test_a_name_that_does_not_resolve_is_refused(answer: list[str] | None) -> None:
    with pytest.raises(TargetRefused, match=r"host hooks\.example\.invalid does not resolve"):
        await check_resolved("https://hooks.example.invalid/", allow_private=False, resolver=StubResolver(answer))


async def test_the_guarded_resolver_refuses_a_metadata_answer_as_an_os_error() -> None:
    resolver = GuardedResolver(StubResolver(["169.254.169.254"]))
    with pytest.raises(AddressRefused, match="metadata") as caught:
        await resolver.resolve("metadata.example.com", 80)
    assert isinstance(caught.value, OSError)  # aiohttp wraps OSErrors from resolvers as ClientConnectorDNSError
    await resolver.close()


Receiver = tuple[TestServer, list[str]]


@pytest.fixture
async def receiver(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> Receiver:
    """A real server on 127.0.0.1 that records the path of every request it gets."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="received")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return await aiohttp_server(app), seen


async def test_the_guarded_session_refuses_a_loopback_literal_before_any_request(receiver: Receiver) -> None:
    server, seen = receiver
    async with delivery_session(allow_private=False, timeout_s=5) as session:
        with pytest.raises(TargetRefused, match=r"sent to 127\.0\.0\.1 \(loopback\)"):
            await session.post(f"http://127.0.0.1:{server.port}/hook", data=b"{}", allow_redirects=False)
    assert seen == []


async def test_the_guarded_session_refuses_a_name_resolving_to_loopback_when_connecting(receiver: Receiver) -> None:
    server, seen = receiver
    async with delivery_session(allow_private=False, timeout_s=5) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.post(f"http://localhost:{server.port}/hook", data=b"{}", allow_redirects=False)
    assert isinstance(caught.value.os_error, AddressRefused)
    assert "localhost resolves to" in str(caught.value.os_error)
    assert seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_session_allowing_private_targets_reaches_a_local_server(receiver: Receiver, host: str) -> None:
    server, seen = receiver
    async with delivery_session(allow_private=True, timeout_s=5) as session:
        async with session.post(f"http://{host}:{server.port}/hook", data=b"{}") as response:
            assert (response.status, await response.text()) == (200, "received")
    assert seen == ["/hook"]


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_when_connecting(receiver: Receiver) -> None:
    server, seen = receiver
    rebinding = StubResolver([PUBLIC_V4], ["127.0.0.1"])  # public when subscribing, loopback when delivering
    await check_resolved(f"http://rebind.example.com:{server.port}/hook", allow_private=False, resolver=rebinding)
    async with delivery_session(allow_private=False, timeout_s=5, resolver=rebinding) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.post(f"http://rebind.example.com:{server.port}/hook", data=b"{}", allow_redirects=False)
    assert isinstance(caught.value.os_error, AddressRefused)
    assert "rebind.example.com resolves to 127.0.0.1 (loopback)" in str(caught.value.os_error)
    assert seen == []


async def test_the_stub_answer_is_what_an_unguarded_session_connects_to(receiver: Receiver) -> None:
    # The control for the rebinding test: the same stubbed name does reach the server when not guarded.
    server, seen = receiver
    async with delivery_session(allow_private=True, timeout_s=5, resolver=StubResolver(["127.0.0.1"])) as session:
        async with session.post(f"http://rebind.example.com:{server.port}/hook", data=b"{}") as response:
            assert response.status == 200
    assert seen == ["/hook"]
