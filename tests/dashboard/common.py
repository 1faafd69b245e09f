"""Helpers the dashboard tests import by name: the gateway's origin for the browser, and the usage API's answers
the page must show."""

from __future__ import annotations

from typing import Any, cast

from tests.common import Gateway
from tests.usage.traffic import get_json


def origin(gateway: Gateway) -> str:
    """The gateway's origin (scheme, host and port), for the browser to open."""
    return str(gateway.client.make_url("")).rstrip("/")


async def read(gateway: Gateway, path: str, headers: dict[str, str], **params: str) -> dict[str, Any]:
    """A usage endpoint's answer, which must be a 200."""
    status, body = await get_json(gateway, path, headers, **params)
    assert status == 200, body
    return cast(dict[str, Any], body)
