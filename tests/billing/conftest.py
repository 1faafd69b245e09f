"""Fixtures of the ledger and script tests (their helpers are in tests/billing/common.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.billing.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    """An open spool in the test's directory; closed at the end."""
    opened = Spool(tmp_path)
    opened.open()
    yield opened
    opened.close()
