"""A compromised node: the attacker holds the node's TLS certificate and request-signing key and
talks to three real signer processes directly (harness.RogueNode). Whatever it sends, every peer
decides from what it verifies itself; each refusal names its reason and nothing is signed.
"""

from __future__ import annotations

import os
import re

import grpc
import pytest
from nacl.signing import SigningKey

from mpc.proto import signer_pb2 as pb
from mpc.transport import tls
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from tests.functional.adversarial.harness import RogueNode, peer_stub
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")
BTC = 100_000_000
HOURLY_BTC = 3 * BTC // 2  # every peer's rolling-hour amount limit for BTC in this module


TOKEN = "0x" + "cd" * 20  # an ERC-20 contract address (no chain here: the peers parse the calldata)


def _lower_the_hourly_btc_limit(cluster):
    """...and a band for TOKEN (one approval), which the dev policy does not name."""
    from chains.ethereum import tx as etx

    for name in PEERS:
        policy = cluster.dir / name / "policy.toml"
        text, n = re.subn(r'(?m)^BTC = "\d+"$', f'BTC = "{HOURLY_BTC}"', policy.read_text())
        assert n == 1, "the dev policy's [rate_limits.amount_per_hour] BTC line moved"
        text += f'\n[[bands]]\nasset = "ERC20:{etx.checksum(TOKEN)}"\namount_max = "1000000"\napprovals_min = 1\n'
        policy.write_text(text)


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, round_timeout_ms=5_000, before_start=_lower_the_hourly_btc_limit)


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("hot-1", PEERS, 1)


@pytest.fixture(scope="module")
def node(cluster):
    return RogueNode(cluster)


def approved(cluster, vault, **kw):
    tx, intent = btc_withdrawal(RecordKeys(vault.public_key, vault.chain_code), vault.vault_id, **kw)
    return tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),)


def body_of(cluster, vault, request_id=None, **kw) -> dict:
    tx, intent, approvals = approved(cluster, vault, **kw)
    return rq.sign_request(vault.vault_id, tx, intent, approvals, request_id=request_id)


def refused(reply: pb.CeremonyReply, reason: str) -> None:
    assert not reply.ok and not reply.signatures, f"signed: {reply}"
    assert reply.reason.startswith(reason), f"expected {reason!r}, got {reply.reason!r}"


def test_a_request_signed_with_another_key_is_refused(cluster, vault, node):
    before = cluster.signatures_total()
    refused(node.sign("peer-1", body_of(cluster, vault), key=SigningKey.generate()), "node_signature_invalid")
    assert cluster.signatures_total() == before


@pytest.mark.parametrize("tamper", ["destination", "amount"])
def test_a_transaction_that_does_not_match_its_intent_is_refused(cluster, vault, node, tamper):
    before = cluster.signatures_total()
    reply = node.sign("peer-1", body_of(cluster, vault, tamper=tamper))
    refused(reply, "transaction_does_not_match_intent")
    assert tamper in reply.reason
    assert cluster.signatures_total() == before


def test_every_peer_checks_for_itself(cluster, vault):
    """A coordinator that skipped its own check would still hit the other peer's refusal: Join
    peer-2 directly, as a compromised peer-1 would, with a request no quorum approved."""
    tx, intent, _ = approved(cluster, vault)
    raw, sig = rq.sign_body(rq.sign_request(vault.vault_id, tx, intent, ()), cluster.node_key())
    ack = peer_stub(cluster, as_peer="peer-1", to="peer-2").Join(
        pb.JoinRequest(session_id=os.urandom(16).hex(), protocol="sign", peers=["peer-1", "peer-2"],
                       request=pb.SignedRequest(request=raw, node_signature=sig).SerializeToString()), timeout=10)
    assert not ack.ok and ack.reason.startswith("approvals_below_quorum")


def test_a_certificate_that_is_not_pinned_is_refused(cluster, vault, node):
    stranger = tls.make_identity("node")  # claims the node's name, with its own key
    signed = node.signed(body_of(cluster, vault))
    before = cluster.signatures_total()
    with pytest.raises(grpc.RpcError) as e:
        peer_stub(cluster, as_peer="peer-1", to="peer-1", identity=stranger).Sign(signed, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    # A pinned peer certificate is not the node's: a peer cannot ask for signatures.
    with pytest.raises(grpc.RpcError) as e:
        peer_stub(cluster, as_peer="peer-2", to="peer-1").Sign(signed, timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "caller_not_the_node" in e.value.details()
    assert cluster.signatures_total() == before


def test_one_request_id_with_another_body_is_refused(cluster, vault, node):
    """The same request id is one request: the same body again is a retry (refused once signed:
    a node retry with a new created_at_ms pays nothing twice); another body under that id is
    refused by every peer that saw it, before anything runs."""
    request_id = rq.new_request_id()
    body = body_of(cluster, vault, request_id=request_id)
    first = node.sign("peer-1", body)
    assert first.ok, first.reason
    before = cluster.signatures_total()
    refused(node.sign("peer-1", {**body, "created_at_ms": body["created_at_ms"] + 1}), "request_already_signed")
    for coordinator in first.committee:
        refused(node.sign(coordinator, body_of(cluster, vault, request_id=request_id, amount_sats=60_000)), "request_id_reused")
    assert cluster.signatures_total() == before


def test_the_hourly_limit_survives_a_restart_of_every_peer(cluster, vault, node):
    # 1 BTC out with its fee_max (5,000 sat), the one-approval band's most (issue 14)
    tx, intent, approvals = approved(cluster, vault, amount_sats=BTC - 5_000)
    assert node.sign("peer-1", rq.sign_request(vault.vault_id, tx, intent, approvals)).ok
    for name in PEERS:
        cluster.procs[name].stop()
    cluster.start_all()
    before = cluster.signatures_total()
    reply = node.sign("peer-1", body_of(cluster, vault, amount_sats=BTC - 5_000))
    refused(reply, "rate_limit_exceeded")
    assert "amount_per_hour BTC" in reply.reason
    assert cluster.signatures_total() == before


def test_a_fee_beyond_the_peers_own_limits_is_refused_even_when_approved(cluster, vault, node):
    """The 1 BTC fee attack (issue 14): a 546-sat payment carrying a 0.99 BTC fee, its intent's
    fee_max raised to match and approved — every peer holds it against its own [fees.bitcoin]."""
    import dataclasses

    keys = RecordKeys(vault.public_key, vault.chain_code)
    tx, intent = btc_withdrawal(keys, vault.vault_id, amount_sats=546, fee_sats=99_000_000)
    intent = dataclasses.replace(intent, fee_max=99_000_000)
    body = rq.sign_request(vault.vault_id, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),))
    before = cluster.signatures_total()
    for coordinator in PEERS:
        reply = node.sign(coordinator, body)
        refused(reply, "fee_exceeds_policy")
    assert cluster.signatures_total() == before


def test_an_ethereum_tip_beyond_the_peers_own_limit_is_refused_even_when_approved(cluster, vault, node):
    """maxFeePerGas = maxPriorityFeePerGas = 10^6 gwei (21 ETH at 21,000 gas), fee_max to match."""
    from chains.ethereum import tx as etx
    from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent

    destination = etx.checksum("0x" + "ab" * 20)
    gwei = 10**9
    t = etx.Eip1559Tx(chain_id=1337, nonce=0, max_priority_fee_per_gas=10**6 * gwei, max_fee_per_gas=10**6 * gwei,
                      gas=21_000, to=destination, value=10**15)
    tx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey((0, 0)),))
    intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id=vault.vault_id, chain="ethereum", network="1337",
                              asset="ETH", payments=(Payment(destination, 10**15),), fee_max=21_000 * 10**6 * gwei)
    # 21 ETH with its fee_max: the two-approval band (issue 14), so both approve
    body = rq.sign_request(vault.vault_id, tx, intent, tuple(rq.approve(intent, a, cluster.approver(a)) for a in ("approver-1", "approver-2")))
    before = cluster.signatures_total()
    refused(node.sign("peer-1", body), "fee_exceeds_policy")
    assert cluster.signatures_total() == before


def test_an_erc20_transfer_with_an_absurd_gas_limit_is_refused_even_when_approved(cluster, vault, node):
    """A token transfer needs ~60,000 gas; this one allows 900,000 at 20 gwei (0.018 ETH), its
    intent's fee_max raised to match and approved. Every peer holds gas limit x maxFeePerGas to
    its own [fees.ethereum] fee_max (0.01 ETH); and within the approved fee_max, nothing more."""
    from chains.ethereum import tx as etx
    from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent

    gwei, dest = 10**9, etx.checksum("0x" + "ab" * 20)

    def body(gas: int, fee_max: int) -> dict:
        t = etx.Eip1559Tx(chain_id=1337, nonce=0, max_priority_fee_per_gas=gwei, max_fee_per_gas=20 * gwei, gas=gas,
                          to=etx.checksum(TOKEN), value=0, data=etx.erc20_transfer_data(dest, 1_000))
        tx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey((0, 0)),))
        intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id=vault.vault_id, chain="ethereum", network="1337",
                                  asset=f"ERC20:{etx.checksum(TOKEN)}", payments=(Payment(dest, 1_000),), fee_max=fee_max)
        return rq.sign_request(vault.vault_id, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),))

    before = cluster.signatures_total()
    for coordinator in PEERS:
        refused(node.sign(coordinator, body(900_000, 900_000 * 20 * gwei)), "fee_exceeds_policy")
        reply = node.sign(coordinator, body(900_000, 60_000 * 20 * gwei))
        refused(reply, "transaction_does_not_match_intent")
        assert "fee_exceeds_max" in reply.reason
    assert cluster.signatures_total() == before
