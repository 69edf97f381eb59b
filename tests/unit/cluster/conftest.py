"""Fixtures of the signer unit tests."""

from __future__ import annotations

import pytest

from tests.support.records import open_records


@pytest.fixture
def records(tmp_path):
    """This test's own durable records (real files under tmp_path), closed after it."""
    r = open_records(tmp_path / "data")
    yield r
    r.close()
