"""Loads the fixture pre-parameters (tests/fixtures/preparams/).

fixture pre-params: never in production — cached only so tests skip minutes of safe-prime
searches. Production code has no loader for this directory (see mpc/preparams.py).
"""

from __future__ import annotations

import pathlib

from mpc.preparams import PreParams

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "preparams"


def fixture_files() -> list[pathlib.Path]:
    files = sorted(FIXTURES.glob("preparams-*.json"))
    assert files, f"no fixture pre-params in {FIXTURES}"
    return files


def fixture_preparams(count: int, offset: int = 0) -> list[PreParams]:
    """`count` distinct fixture pre-parameter sets starting at `offset` (each party its own)."""
    files = fixture_files()
    assert offset + count <= len(files), f"only {len(files)} fixture pre-params, asked for {offset}+{count}"
    return [PreParams(f.read_bytes()) for f in files[offset : offset + count]]
