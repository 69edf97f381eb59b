"""Shared ceremonies for the MPC engine tests (see support/mpc_ceremonies.py).

Key generations are expensive (2-of-3 ~5 s, 3-of-5 ~14 s on 2 cores), so each committee's
keygen runs once per test session and the tests share its shares. Fixture pre-params (never in
production): 2-of-3 uses fixtures 0-2, 3-of-5 uses 3-7, the resharing committee 8-10.
"""

from __future__ import annotations

import pytest

from support.mpc_ceremonies import Committee, run_keygen


@pytest.fixture(scope="session")
def committee_2of3() -> Committee:
    return run_keygen(["signer-1", "signer-2", "signer-3"], 1, preparams_offset=0)


@pytest.fixture(scope="session")
def committee_3of5() -> Committee:
    return run_keygen([f"peer-{i}" for i in range(1, 6)], 2, preparams_offset=3)
