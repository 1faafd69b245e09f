"""The Node clients, installed once per run."""

from __future__ import annotations

import pytest

from tests.node_clients.node import NodeClients, install


@pytest.fixture(scope="session")
def node_clients() -> NodeClients:
    return NodeClients(install())
