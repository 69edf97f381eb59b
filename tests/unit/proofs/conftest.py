"""Fixtures for the proof-of-reserves unit tests."""

from __future__ import annotations

import json
import pathlib

import pytest

# A copy of ../shared/design/por-vector.json (the format's normative test vector).
VECTOR_PATH = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "por" / "por-vector.json"


@pytest.fixture(scope="session")
def vector() -> dict:
    return json.loads(VECTOR_PATH.read_text())
