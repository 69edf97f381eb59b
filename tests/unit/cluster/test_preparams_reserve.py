"""Pre-params kept for recovery (mpc/signer/preparams.py RECOVERY_RESERVE): once a peer holds a
vault, a key generation may not take the last set, a reshare may. A real, sealed pool on disk
(never started: no refill thread), filled with fixture pre-params (tests/fixtures/preparams:
never in production); the store is a stand-in that only lists vault ids (this unit tests one
function, Preparer.take_preparams)."""

from __future__ import annotations

import pytest

from mpc.preparams import PreParams, PreParamsPool
from mpc.signer.prepare import Preparer
from mpc.signer.preparams import POOL_SIZE, RECOVERY_RESERVE, PreParamsSource
from mpc.wire.requests import Refused
from node import log as nlog
from tests.support.cluster import fixture_preparams
from tests.support.records import fast_sealer


class _Vaults:
    def __init__(self, ids):
        self.ids = list(ids)

    def vault_ids(self):
        return self.ids


def _source(tmp_path, sets: int) -> PreParamsSource:
    pool = PreParamsPool(tmp_path / "preparams", fast_sealer(), POOL_SIZE, party="peer-1")
    for f in fixture_preparams()[:sets]:
        pool.add(PreParams(f.read_bytes()))
    src = PreParamsSource.__new__(PreParamsSource)
    src._fixture_path, src._fixture, src._pool = None, None, pool
    return src


def _preparer(src, vaults) -> Preparer:
    return Preparer("peer-1", ("peer-1",), None, None, _Vaults(vaults), None, src, nlog.get("test"))


@pytest.mark.parametrize("vaults, sets, protocol, takes", [
    ((), RECOVERY_RESERVE, "keygen", True),           # the first vault: nothing to recover yet
    (("hot",), RECOVERY_RESERVE + 1, "keygen", True),  # one set left for a reshare
    (("hot",), RECOVERY_RESERVE, "keygen", False),     # the reserve: refused
    (("hot",), RECOVERY_RESERVE, "reshare", True),     # recovery takes it
])
def test_a_key_generation_leaves_the_recovery_reserve(tmp_path, vaults, sets, protocol, takes):
    src = _source(tmp_path, sets)
    p = _preparer(src, vaults)
    if takes:
        assert p.take_preparams(protocol) is not None
        assert src.ready() == sets - 1
    else:
        with pytest.raises(Refused) as e:
            p.take_preparams(protocol)
        assert e.value.reason == "preparams_reserved_for_recovery"
        assert src.ready() == sets, "nothing taken"
