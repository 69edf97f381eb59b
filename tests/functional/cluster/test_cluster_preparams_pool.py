"""Pre-parameters from each peer's own sealed pool: the production path (no fixture named in
the peers' configs), over three `custody signer` processes.

The story: a key generation that one peer refuses spends nobody's pre-parameters — the peers
that had joined put theirs back (until Start nothing computed from them has left the peer) —
and once every peer agrees, the key generation runs and spends one set on each peer, for good.

Shortcut, said here: the pools are filled before the peers start with fixture pre-params
(tests/fixtures/preparams: never in production), sealed with each peer's own sealer exactly as
its refill thread would; each pool is full, so no peer searches for safe primes meanwhile.
"""

from __future__ import annotations

import pytest

from mpc.preparams import PreParams, PreParamsPool
from mpc.signer import config as signer_config
from mpc.signer.hygiene import make_private_dir
from mpc.signer.preparams import POOL_SIZE
from mpc.signer.sealer import passphrase_sealer
from node.ports import SigningRefused
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import LocalCluster, fixture_preparams
from tests.support.procs import wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")
REFUSER = "peer-3"


def _pool(cluster: LocalCluster, name: str) -> PreParamsPool:
    cfg = signer_config.load(cluster.config(name))
    # The peer's own sealer, not open_state: that opens the records too, which a running peer holds locked.
    sealer = passphrase_sealer(cfg.key_id, cfg.passphrase.reveal(), cfg.environment)
    make_private_dir(cfg.data_dir)  # 0700, as the peer's start-up check wants it (before its first start)
    return PreParamsPool(cfg.data_dir / "preparams", sealer, POOL_SIZE, party=cfg.name)  # never started: no refill


def _set_keygen_allowed(cluster: LocalCluster, name: str, allowed: bool) -> None:
    policy = cluster.dir / name / "policy.toml"
    text = policy.read_text()
    old, new = (f"keygen_allowed = {str(not allowed).lower()}", f"keygen_allowed = {str(allowed).lower()}")
    assert old in text, f"{policy} has no '{old}'"
    policy.write_text(text.replace(old, new))


def _returned(cluster: LocalCluster, name: str) -> int:
    return sum(1 for ln in cluster.stderr(name).splitlines() if "preparams_returned" in ln)


def _fill_pools_and_make_one_peer_refuse(c: LocalCluster) -> None:
    fixtures = fixture_preparams()
    assert len(fixtures) >= POOL_SIZE * len(PEERS), "each peer needs pre-params of its own"
    for i, name in enumerate(c.names):
        pool = _pool(c, name)
        for f in fixtures[POOL_SIZE * i: POOL_SIZE * (i + 1)]:
            pool.add(PreParams(f.read_bytes()))
        assert pool.ready() == POOL_SIZE
    _set_keygen_allowed(c, REFUSER, False)


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, before_start=_fill_pools_and_make_one_peer_refuse, with_preparams=False)


def test_a_refused_key_generation_spends_no_peer_s_pre_parameters(cluster):
    with pytest.raises(SigningRefused, match="keygen_not_allowed"):
        cluster.client(coordinators=["peer-1"]).keygen("pool-v1", list(PEERS), 1)
    for name in PEERS:
        if name == REFUSER:
            continue
        # The coordinator's own abort is immediate; the other joined peer hears it by an Abort RPC.
        wait_until(lambda n=name: _returned(cluster, n) >= 1, 15, f"{name} logs preparams_returned")
        assert _pool(cluster, name).ready() == POOL_SIZE, f"{name}: its pre-params are back in its pool"
    assert _pool(cluster, REFUSER).ready() == POOL_SIZE, "the refusing peer took none"


def test_the_key_generation_that_runs_spends_one_set_per_peer(cluster):
    returned_before = {n: _returned(cluster, n) for n in PEERS}
    cluster.procs[REFUSER].stop()
    _set_keygen_allowed(cluster, REFUSER, True)
    cluster.start(REFUSER)
    vault = cluster.client(coordinators=["peer-1"]).keygen("pool-v1", list(PEERS), 1)
    assert len(vault.public_key) == 33
    for name in PEERS:
        assert _returned(cluster, name) == returned_before[name], f"{name} gave back a set it had used"
