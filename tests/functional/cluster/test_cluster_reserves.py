"""The `reserves` request over a 2-of-3 cluster of real `custody signer` processes (gRPC + mTLS):
every peer parses the message as exactly `por-mst/1 reserves <sid> <root>`, computes the
BIP-137 / EIP-191 digest itself and signs with the child key at each path. The signed assets
file passes `custody-verify assets`; anything else is refused with nothing signed."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
import sys

import pytest
from nacl.signing import SigningKey

from mpc.client import ClusterClient, ClusterReservesSigner
from mpc.proto import signer_pb2 as pb
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from node.ports import ReservesAddress, SigningRefused
from proofs import assets as ast
from proofs import snapshot
from tests.functional.cluster.conftest import make_cluster
from tests.functional.cluster.test_cluster_3 import peer_stub
from tests.support import por_world as W

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")
SID, ROOT = "ab" * 16, "cd" * 32
MESSAGE = ast.reserves_message(SID, ROOT)


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, round_timeout_ms=5_000)


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("reserves-1", PEERS, 1)


class ClusterHoldings:
    """ReservesBalances for the test: fixed balances at the vault's child addresses."""

    def __init__(self, vault, holdings):
        keys = RecordKeys(vault.public_key, vault.chain_code)
        self.addresses = [ReservesAddress(chain, asset, ast.address_for(chain, keys.child_public_key(path), "regtest"),
                                          vault.vault_id, path, balance) for chain, asset, path, balance in holdings]

    def funded_addresses(self, chains):
        return list(self.addresses)


def test_two_bitcoin_paths_in_one_request_verify_under_their_child_keys(cluster, vault):
    keys = RecordKeys(vault.public_key, vault.chain_code)
    sigs = cluster.client().sign_reserves(vault, "bitcoin", [(0, 1), (0, 2)], MESSAGE)
    assert [s.public_key for s in sigs] == [keys.child_public_key((0, 1)), keys.child_public_key((0, 2))]
    for path, s in zip([(0, 1), (0, 2)], sigs):
        address = ast.address_for("bitcoin", keys.child_public_key(path), "regtest")
        ast.verify_address_signature("bitcoin", "regtest", address, SID, ROOT, ast.encode_signature("bitcoin", s.r, s.s, s.recovery_id))


def test_assets_file_signed_by_the_cluster_passes_custody_verify(cluster, vault, tmp_path):
    holdings = [
        ("bitcoin", "BTC", (0, 1), 100_000_000),
        ("bitcoin", "BTC", (0, 2), 2**70 + 60_000_000),
        ("ethereum", "ETH", (0, 3), 3 * 10**18),
    ]
    balances = ClusterHoldings(vault, holdings)
    signer = ClusterReservesSigner(cluster.client(), {vault.vault_id: vault})
    store = snapshot.SnapshotStore(tmp_path / "store")
    key = W.Ed25519PrivateKey.generate()
    published = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), balances, signer, store, key,
                                       dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc))
    world = W.World(tmp_path, store, key, W.public_hex(key), published)
    files = world.write_files()
    bin_ = pathlib.Path(sys.executable).parent / "custody-verify"
    r = subprocess.run([str(bin_), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                        world.public_key_hex], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "valid: 3 address signatures" in r.stdout


def refused_raw(client: ClusterClient, body: dict) -> str:
    r = client._call("Sign", body)
    assert not r.ok and not r.signatures
    return r.reason


@pytest.mark.parametrize("message", [
    "por-mst/1 withdraw 1 BTC to bcrt1qxyz",  # a withdrawal-looking message
    MESSAGE + " ",  # one trailing byte
    MESSAGE + "\n",
    MESSAGE.upper(),
])
def test_a_message_not_of_the_reserves_form_is_refused(cluster, vault, message):
    before = cluster.signatures_total()
    reason = refused_raw(cluster.client(), rq.reserves_request(vault.vault_id, "bitcoin", [(0, 1)], message))
    assert reason.startswith("message_not_reserves"), reason
    # The client checks too, before anything is sent.
    with pytest.raises(ast.AssetsInvalid):
        cluster.client().sign_reserves(vault, "bitcoin", [(0, 1)], message)
    assert cluster.signatures_total() == before


def test_every_peer_checks_the_reserves_message_itself(cluster, vault):
    """A compromised coordinator Joining a peer with a bad reserves message is refused there."""
    body = rq.reserves_request(vault.vault_id, "ethereum", [(0, 3)], MESSAGE + "x")
    raw, sig = rq.sign_body(body, cluster.node_key())
    ack = peer_stub(cluster, as_peer="peer-1", to="peer-2").Join(
        pb.JoinRequest(session_id=os.urandom(16).hex(), protocol="sign", peers=["peer-1", "peer-2"],
                       request=pb.SignedRequest(request=raw, node_signature=sig).SerializeToString()), timeout=10)
    assert not ack.ok and ack.reason.startswith("message_not_reserves"), ack.reason


def test_a_reserves_request_without_a_valid_node_signature_is_refused(cluster, vault):
    forger = ClusterClient.from_cluster_dir(cluster.info)
    forger.signing_key = SigningKey.generate()  # the right TLS identity, the wrong request key
    before = cluster.signatures_total()
    with pytest.raises(SigningRefused) as e:
        forger.sign_reserves(vault, "bitcoin", [(0, 1)], MESSAGE)
    assert e.value.reason.startswith("node_signature_invalid"), e.value.reason
    assert cluster.signatures_total() == before
