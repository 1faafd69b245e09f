"""Where webhooks may be sent: URL rules, and addresses refused both when subscribing and when connecting.

A tenant chooses the URL, so an unguarded sender is a server-side request forgery tool: it would post into
loopback services, the private network or a cloud metadata endpoint. Checking the name when subscribing is
not enough, since DNS can change afterwards (rebinding), and checking it again just before connecting is
racy. So `GuardedResolver` checks the very addresses aiohttp then connects to, and `literal_guard` covers IP
literals, which aiohttp connects to without asking any resolver.

    check_url(url)                                     # syntax: a ValueError subclass, TargetRefused
    await check_resolved(url, allow_private=False)     # the addresses, at subscribe time
    TCPConnector(resolver=GuardedResolver())           # the addresses, at connection time
"""

from __future__ import annotations

import asyncio
import re
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from types import SimpleNamespace

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

MAX_URL_LENGTH = 2048
CLOUD_METADATA = frozenset(map(ip_address, ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")))
THIS_NETWORK = IPv4Network("0.0.0.0/8")
SHARED_ADDRESS_SPACE = IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
NAT64 = IPv6Network("64:ff9b::/96")
# A last label of digits or 0x-hex: TLDs never are, so such a host is a legacy IPv4 form (2130706433, 127.1).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


class TargetRefused(ValueError):
    """The URL, or an address its host resolves to, may not receive webhooks. The message says why."""


class AddressRefused(TargetRefused, OSError):
    """Raised by `GuardedResolver`: an OSError so aiohttp reports it as a failed lookup
    (`ClientConnectorDNSError`, this as its `os_error`) instead of leaking a bare ValueError from its connector.
    """


def check_url(url: object) -> str:
    """The URL unchanged if webhooks may be sent to it: http(s), a host, no userinfo, a port in 1..65535, at
    most 2048 characters. Parsed with yarl, as aiohttp will parse it. Raises TargetRefused otherwise."""
    if not isinstance(url, str) or not url:
        raise TargetRefused("the webhook URL must be a non-empty string")
    _host_and_port(url)
    return url


def _host_and_port(url: str) -> tuple[str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE_CHARACTERS.search(url):
        raise TargetRefused("the webhook URL contains whitespace, a control character or a backslash")
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError as exc:  # yarl: "Port out of range 0-65535" and other malformed authorities
        raise TargetRefused(f"the webhook URL is malformed: {exc}") from None
    host = parsed.raw_host
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("the webhook URL must use http or https")
    if not host:
        raise TargetRefused("the webhook URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("the webhook URL must not contain a user name or password")
    if port is None or not 1 <= port <= 65535:
        raise TargetRefused("the webhook URL's port must be between 1 and 65535")
    if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]) and _literal(host) is None:
        raise TargetRefused(f"the webhook URL's host {host} is neither a canonical IP address nor a name")
    return host, port


def refusal(address: IPv4Address | IPv6Address) -> str | None:
    """Why webhooks may not reach this address ("loopback", "private", ...), or None if they may."""
    if isinstance(address, IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        return refusal(embedded)
    if address in CLOUD_METADATA:
        return "cloud metadata"
    if address.is_unspecified or (isinstance(address, IPv4Address) and address in THIS_NETWORK):
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "shared address space"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:  # documentation, benchmarking and other special-purpose ranges
        return "not globally routable"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address a packet to this one finally reaches: ::ffff:127.0.0.1 (mapped), 64:ff9b::7f00:1
    (NAT64), 2002:7f00:1:: (6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refuse_address(host: str, address: str) -> None:
    """Raise AddressRefused if `host`, resolved to `address`, may not receive webhooks."""
    parsed = _literal(address)
    reason = "unparseable address" if parsed is None else refusal(parsed)
    if reason is not None:
        where = address if host == address else f"{host} resolves to {address}"
        raise AddressRefused(f"webhooks may not be sent to {where} ({reason})")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses, at connection time, any name with a forbidden address among its
    answers: aiohttp connects only to addresses this returned, so the address checked is the one used."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refuse_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


async def _refuse_literal_host(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    host = params.url.raw_host
    if host is not None and _literal(host) is not None:
        refuse_address(host, host)


def literal_guard() -> aiohttp.TraceConfig:
    """A trace config that refuses IP-literal hosts before a request starts (aiohttp skips the resolver for
    them). It sees the first URL only, so requests must not follow redirects."""
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_refuse_literal_host)
    return config


async def check_resolved(
    url: str, *, allow_private: bool, resolver: AbstractResolver | None = None, timeout_s: float = 5.0
) -> None:
    """Refuse (TargetRefused) a URL whose host is, or resolves to, any forbidden address, or does not resolve
    within `timeout_s`. `allow_private` skips the lookup and the check (development, tests)."""
    host, port = _host_and_port(check_url(url))
    if allow_private:
        return
    if _literal(host) is not None:
        refuse_address(host, host)
        return
    guarded = GuardedResolver(resolver)
    try:
        results = await asyncio.wait_for(guarded.resolve(host, port, socket.AF_UNSPEC), timeout_s)
    except TargetRefused:
        raise
    except OSError:  # socket.gaierror, and TimeoutError from wait_for
        raise TargetRefused(f"the webhook URL's host {host} does not resolve") from None
    if not results:
        raise TargetRefused(f"the webhook URL's host {host} does not resolve")


def _literal(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None
