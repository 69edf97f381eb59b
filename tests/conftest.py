"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py files."""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config):
    return f"CUSTODY_TEST_PG_URL={'set' if os.environ.get('CUSTODY_TEST_PG_URL') else 'unset'} CI={os.environ.get('CI', '')}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server for the tests. In CI its absence is a failure, never a skip."""
    url = os.environ.get("CUSTODY_TEST_PG_URL")
    if not url:
        pytest.fail("CUSTODY_TEST_PG_URL is not set: run the tests with `make test`, which starts PostgreSQL")
    return url
