"""Fixtures of the proxy tests; the helpers they import by name are in tests/proxy/claude.py and tests/common.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from anthropic import AsyncAnthropic

from tests.common import Gateway
from tests.proxy.claude import MakeClient, client


@pytest.fixture
async def claude_client() -> AsyncIterator[MakeClient]:
    """`claude_client(gateway, key, bearer=False)`: the official Anthropic client pointed at the gateway
    (tests/proxy/claude.py `client`), closed at the test's end."""
    made: list[AsyncAnthropic] = []

    def make(gateway: Gateway, key: str, *, bearer: bool = False) -> AsyncAnthropic:
        made.append(client(gateway, key, bearer=bearer))
        return made[-1]

    yield make
    for each in made:
        await each.close()
