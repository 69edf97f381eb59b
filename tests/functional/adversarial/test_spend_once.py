"""One approval, many payments (issue 14, attacks 1 and 2): a compromised node (harness.RogueNode: the
node's real certificate and request-signing key) sends the same approved intent, with the same
approvals, under a new request id with another transaction. Three real signer processes, 2 of 3
sign. Every peer keeps a durable record of each transaction version it joined per intent and
signs another only if it conflicts with every earlier one: a second payment (other coins,
another nonce) is intent_already_signed and nothing is signed; an honest fee bump (the same
inputs, the same nonce, a higher fee within fee_max) still signs; a restart forgets nothing.
The segwit v0 input-amount lie (attack 2): sessions over one transaction, each understating
another input, are refused (the peers read each input's amount from its previous transaction).
"""

from __future__ import annotations

import pytest

from mpc.proto import signer_pb2 as pb
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from tests.functional.adversarial.harness import RogueNode
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal, eth_withdrawal, funding_tx
from tests.support.procs import wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")
GWEI = 10**9


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, round_timeout_ms=5_000)


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("hot-1", PEERS, 1)


@pytest.fixture(scope="module")
def node(cluster):
    return RogueNode(cluster)


def keys_of(vault) -> RecordKeys:
    return RecordKeys(vault.public_key, vault.chain_code)


def request(cluster, vault, tx, intent) -> dict:
    """A new request id, the intent's real approval: what the node itself could send."""
    return rq.sign_request(vault.vault_id, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),))


def btc(cluster, vault, intent=None, **kw) -> tuple[dict, object]:
    tx, intent = btc_withdrawal(keys_of(vault), vault.vault_id, intent=intent, **kw)
    return request(cluster, vault, tx, intent), intent


def eth(cluster, vault, intent=None, **kw) -> tuple[dict, object]:
    tx, intent = eth_withdrawal(keys_of(vault), vault.vault_id, intent=intent, fee_max=21_000 * 4 * GWEI, **kw)
    return request(cluster, vault, tx, intent), intent


def signed_by(reply: pb.CeremonyReply) -> tuple[str, ...]:
    assert reply.ok and reply.signatures, f"not signed: {reply.reason}"
    return tuple(reply.committee)


def settled_total(cluster) -> int:
    """The cluster's signature count once no peer runs a session and two reads agree: a quorum
    peer other than the coordinator counts its signatures as it ends its session, a moment
    after the reply."""
    last = [None]

    def settled():
        idle = all(cluster.health(n)["active_sessions"] == 0 for n in PEERS)
        now = cluster.signatures_total()
        same, last[0] = now == last[0], now
        return idle and same

    wait_until(settled, 30, "every peer has ended its sessions and the count holds")
    return last[0]


def refused_everywhere(cluster, node, body: dict, committee) -> None:
    """Sent to every peer as coordinator: refused by each, nothing signed. A peer of the first
    quorum refuses it itself; the third (which never saw the intent) finds every quorum holding
    a peer that did (2 of 3: any two quorums share a peer)."""
    before = settled_total(cluster)
    for coordinator in PEERS:
        reply = node.sign(coordinator, body)
        assert not reply.ok and not reply.signatures, f"{coordinator} signed: {reply}"
        if coordinator in committee:
            assert reply.reason.startswith("intent_already_signed"), f"{coordinator}: {reply.reason!r}"
        else:
            assert "intent_already_signed" in reply.reason, f"{coordinator}: {reply.reason!r}"
    assert settled_total(cluster) == before, "a signature was produced"


def test_a_second_payment_of_one_approved_intent_spending_other_coins_is_refused(cluster, vault, node):
    first, intent = btc(cluster, vault)
    committee = signed_by(node.sign("peer-1", first))
    second, _ = btc(cluster, vault, intent=intent, funding="other-coins")
    assert second["request_id"] != first["request_id"] and second["intent"] == first["intent"]
    refused_everywhere(cluster, node, second, committee)


def test_honest_fee_bumps_under_new_request_ids_sign_and_the_intent_stays_closed(cluster, vault, node):
    first, intent = btc(cluster, vault, fee_sats=1_000)
    signed_by(node.sign("peer-1", first))
    bump, _ = btc(cluster, vault, intent=intent, fee_sats=3_000)  # the same inputs, fee_max 5,000
    assert bump["transaction"]["payload"] != first["transaction"]["payload"]
    signed_by(node.sign("peer-2", bump))
    again, _ = btc(cluster, vault, intent=intent, fee_sats=4_000)  # and a second bump, anywhere
    committee = signed_by(node.sign("peer-3", again))
    # the bumps opened no door: a payment from other coins is still refused
    other, _ = btc(cluster, vault, intent=intent, funding="after-the-bumps")
    refused_everywhere(cluster, node, other, committee)


def test_the_records_survive_a_restart_of_every_peer(cluster, vault, node):
    first, intent = btc(cluster, vault)
    committee = signed_by(node.sign("peer-1", first))
    for name in PEERS:
        cluster.procs[name].stop()
    cluster.start_all()
    second, _ = btc(cluster, vault, intent=intent, funding="after-restart")
    refused_everywhere(cluster, node, second, committee)
    bump, _ = btc(cluster, vault, intent=intent, fee_sats=2_000)
    signed_by(node.sign("peer-1", bump))


def test_ethereum_another_nonce_is_refused_the_same_nonce_with_a_higher_fee_signs(cluster, vault, node):
    first, intent = eth(cluster, vault, nonce=5, max_fee_per_gas=2 * GWEI)
    committee = signed_by(node.sign("peer-1", first))
    other_nonce, _ = eth(cluster, vault, intent=intent, nonce=6, max_fee_per_gas=2 * GWEI)
    refused_everywhere(cluster, node, other_nonce, committee)
    replacement, _ = eth(cluster, vault, intent=intent, nonce=5, max_fee_per_gas=3 * GWEI)
    signed_by(node.sign("peer-1", replacement))


# --- attack 2: the segwit v0 input-amount lie ----------------------------------------------
LIE_SATS = 100_000_000  # each session understates one input by 1 BTC


def refused_by_every_coordinator(node, body: dict, reason: str) -> None:
    for coordinator in PEERS:
        reply = node.sign(coordinator, body)
        assert not reply.ok and not reply.signatures, f"{coordinator} signed: {reply}"
        assert reply.reason.startswith(reason), f"{coordinator}: expected {reason!r}, got {reply.reason!r}"


def lie_about(tx, keys, n: int, how: str):
    """Input n stated LIE_SATS lower, with its previous transaction `how`: "kept" (the real
    one), "forged" (rewritten to hold the stated amount: another txid) or "left_out"."""
    import dataclasses

    from chains.bitcoin import tx as btx
    from node.ports import InputKey

    inputs = list(tx.inputs)
    inputs[n] = InputKey(inputs[n].path, inputs[n].amount - LIE_SATS)
    prev = list(tx.prev_txs)
    if how == "forged":
        prev[n] = funding_tx(f"funding-{n}", [(btx.p2wpkh_script_pubkey(keys.child_public_key((0, n))), inputs[n].amount)])
    elif how == "left_out":
        prev = []
    return dataclasses.replace(tx, inputs=tuple(inputs), prev_txs=tuple(prev))


@pytest.mark.parametrize("n_inputs", [2, 3])
def test_sessions_each_understating_another_input_are_refused_and_nothing_is_signed(cluster, vault, node, n_inputs):
    """The 2020 hardware-wallet fee attack: one transaction paying 50,000 sat out and a real fee
    of 100,004,999 sat against an approved fee_max of 10,000. Each session states one input 1 BTC
    lower, so its own fee looks like 4,999 sat; BIP143 signatures of the inputs stated truly
    would combine into the real transaction. Every peer, as coordinator, refuses each session."""
    tx, intent = btc_withdrawal(keys_of(vault), vault.vault_id, in_amounts=(500_000_000,) * n_inputs,
                                fee_sats=4_999 + LIE_SATS, fee_max=10_000)
    before = settled_total(cluster)
    honest = request(cluster, vault, tx, intent)
    refused_by_every_coordinator(node, honest, "transaction_does_not_match_intent: fee_exceeds_max")
    for n in range(n_inputs):
        for how, reason in (("kept", "input_amount_mismatch"), ("forged", "prev_tx_missing"), ("left_out", "prev_tx_missing")):
            body = request(cluster, vault, lie_about(tx, keys_of(vault), n, how), intent)
            assert body["transaction"]["payload"] == honest["transaction"]["payload"], "one transaction, other stated amounts"
            refused_by_every_coordinator(node, body, reason)
    assert settled_total(cluster) == before, "a signature was produced"
    # and the peers still sign the honest version of a withdrawal within its fee
    fine, _ = btc(cluster, vault, n_inputs=n_inputs)
    signed_by(node.sign("peer-1", fine))


# --- the Ethereum nonce window ----------------------------------------------------------------
def test_a_nonce_far_ahead_signs_only_beside_evidence_the_vault_signed_near_it(cluster, vault, node):
    """A node collecting signatures for nonces the vault will reach later (to spend them then)
    is refused: past CLUSTER_ETH_NONCE_WINDOW a request carries a transaction from the same
    sender signed by the vault's key at a nonce >= n - W. Evidence the cluster really signed
    lets it sign on; forged evidence, evidence too far below, or none, is refused by every peer."""
    import dataclasses

    from chains.ethereum import tx as etx
    from node import limits
    from node.ports import EcdsaSignature
    from tests.support.test_signer import PlainTestSigner

    w = limits.CLUSTER_ETH_NONCE_WINDOW
    sender = etx.address_of(keys_of(vault).child_public_key((0, 0)))
    base = 10 * w
    body, _ = eth(cluster, vault, nonce=base)  # no evidence
    refused_by_every_coordinator(node, body, "nonce_evidence_missing")
    # what the vault signs at nonce w - 1 (no evidence needed), then becomes evidence
    first, _ = eth(cluster, vault, nonce=w - 1)
    reply = node.sign("peer-1", first)
    assert reply.ok and len(reply.signatures) == 1, reply.reason
    sig65 = reply.signatures[0]
    t = etx.parse_unsigned(bytes.fromhex(first["transaction"]["payload"]))
    evidence = etx.attach(t, EcdsaSignature(int.from_bytes(sig65[:32], "big"), int.from_bytes(sig65[32:64], "big"), sig65[64]), sender)
    signed_by_the_vault = settled_total(cluster)

    def with_evidence(nonce: int, raw: bytes) -> dict:
        tx, intent = eth_withdrawal(keys_of(vault), vault.vault_id, nonce=nonce, fee_max=21_000 * 4 * GWEI)
        return request(cluster, vault, dataclasses.replace(tx, nonce_evidence=raw), intent)

    forger = PlainTestSigner("forger")  # the node's own key: not the vault's
    ft = dataclasses.replace(t, nonce=base)
    forged = etx.attach(ft, forger.sign_one((0, 0), etx.digest_of(etx.unsigned_payload(ft))),
                        etx.address_of(forger.vault_keys().child_public_key((0, 0))))
    refused_by_every_coordinator(node, with_evidence(base, forged), "nonce_evidence_invalid")
    refused_by_every_coordinator(node, with_evidence(base, evidence), "nonce_beyond_window")
    assert settled_total(cluster) == signed_by_the_vault, "a signature was produced"
    signed_by(node.sign("peer-2", with_evidence(2 * w - 1, evidence)))  # within the window above it
