from __future__ import annotations

import pytest

from gateway.tokens import TokenCounter


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """One counter for the session: encodings load once per process, as in the gateway."""
    return TokenCounter()
