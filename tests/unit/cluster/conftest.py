"""Fixtures of the signer unit tests."""

from __future__ import annotations

import pytest

from tests.support.records import Clock, fast_sealer, open_records


@pytest.fixture
def records(tmp_path):
    """This test's own durable records (real files under tmp_path), closed after it."""
    r = open_records(tmp_path / "data")
    yield r
    r.close()


@pytest.fixture
def world(tmp_path):
    """(data dir, sealer, clock): open, close and reopen records on them as a peer would."""
    return tmp_path / "data", fast_sealer(), Clock()
