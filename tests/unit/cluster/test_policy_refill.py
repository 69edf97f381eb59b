"""A peer's check of a cold -> hot refill (mpc/signer/policy.py): the hot vault's address derived
from the public keys in the peer's own policy, the cold vault's own bands, and its delay counted
from the approvers' signed times. Real Bitcoin intent checker, real Ed25519 signatures; one row
per refusal in the verifier's precedence order."""

from __future__ import annotations

import dataclasses
import os

import coincurve
import pytest
from nacl.signing import SigningKey

from chains.bitcoin import tx as btx
from chains.bitcoin.intent import BitcoinIntentChecker
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from mpc.signer.policy import Policy, PolicyError, RequestVerifier
from mpc.wire.requests import Refused
from node import limits
from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent
from tests.support.cluster import funding_tx

NODE = SigningKey.generate()
ALICE, BOB = SigningKey.generate(), SigningKey.generate()


class Keys(RecordKeys):
    """A vault's public record: group key and chain code (what a peer's policy lists)."""

    def __init__(self):
        self.pub, self.code = coincurve.PrivateKey().public_key.format(), os.urandom(32)
        super().__init__(self.pub, self.code)

    def toml(self) -> dict:
        return {"public_key": self.pub.hex(), "chain_code": self.code.hex()}


COLD, HOT, STRANGER = Keys(), Keys(), Keys()
HOT_WALLET = (2, 0)
DELAY_S = 60
NOW_MS = rq.now_ms()


@pytest.fixture(autouse=True)
def _now():
    """The peer's clock for each test, read when the test starts: requests are stamped with the
    real clock when built, so a time read at import would fall behind in a long session."""
    global NOW_MS
    NOW_MS = rq.now_ms()


RECORDS = None


@pytest.fixture(autouse=True)
def _records(records):
    """Each test's durable records (the `records` fixture: real files in a temp dir)."""
    global RECORDS
    RECORDS = records


def policy(**over) -> Policy:
    d = {
        "node": {"public_key": NODE.verify_key.encode().hex()},
        "approvers": {"alice": ALICE.verify_key.encode().hex(), "bob": BOB.verify_key.encode().hex()},
        # Shared bands sign small amounts without approvals; the cold vault has its own.
        "bands": [{"asset": "BTC", "amount_max": 10**8, "approvals_min": 0},
                  {"vault": "cold", "asset": "BTC", "amount_max": 10**9, "approvals_min": 2}],
        "rate_limits": {"signatures_per_hour": 100},
        "vaults": {"cold": {"delay_s": DELAY_S}},
        "own_destinations": {"hot": HOT.toml()},
        "networks": {"bitcoin": ["regtest"], "ethereum": ["1337"]},
        "fees": {"bitcoin": {"fee_max": 100_000, "fee_rate_sat_vb_max": 100},
                 "ethereum": {"fee_max": str(10**16), "priority_fee_wei_max": str(10**12)}},
    }
    d.update(over)
    return Policy.from_dict(d)


def refill(pays: Keys = HOT, amount: int = 2_000_000, dest_vault: str = "hot"):
    """A real unsigned regtest transaction: the cold vault's coin -> `pays`'s wallet address, change to cold."""
    address = btx.p2wpkh_address(pays.child_public_key(HOT_WALLET), "regtest")
    in_amount = 5_000_000
    coin = funding_tx("cold-coin", [(btx.p2wpkh_script_pubkey(COLD.child_public_key((1, 0))), in_amount)])
    ins = [btx.TxIn(btx.txid_of(coin), 0, in_amount, COLD.child_public_key((1, 0)))]
    outs = [btx.TxOut(btx.script_pubkey_for(address, "regtest"), amount),
            btx.TxOut(btx.p2wpkh_script_pubkey(COLD.child_public_key((1, 1))), in_amount - amount - 1_000)]
    tx = UnsignedTransaction("bitcoin", "regtest", btx.unsigned_bytes(btx.build(ins, outs, "regtest")),
                             (InputKey((1, 0), in_amount),), change_paths=((1, 1),), prev_txs=(coin,))
    intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id="cold", chain="bitcoin", network="regtest", asset="BTC",
                              payments=(Payment(address, amount),), fee_max=5_000, kind="refill",
                              own_destination_paths=(HOT_WALLET,), own_destination_vault=dest_vault)
    return tx, intent


def body(times=(-DELAY_S - 10, -DELAY_S - 5), approvers=(("alice", ALICE), ("bob", BOB)), **kw):
    """Timed approvals `times` seconds from now (None: untimed)."""
    tx, intent = refill(**kw)
    approvals = [rq.approve(intent, aid, k, None if t is None else NOW_MS + t * 1000) for (aid, k), t in zip(approvers, times)]
    return rq.sign_request("cold", tx, intent, approvals)


def verify(b, **over):
    v = RequestVerifier(policy(**over), "production", {"bitcoin": BitcoinIntentChecker()}, RECORDS, clock_ms=lambda: NOW_MS)
    return v.verify_sign(*rq.sign_body(b, NODE), COLD)


def _claimed_time_changed():
    b = body()
    b["approvals"][0]["approved_at_ms"] -= 3_600_000  # the node moves an approval back an hour
    return b


def test_a_refill_past_its_delay_to_the_hot_vault_the_peer_knows_is_signed():
    v = verify(body())
    assert (v.vault_id, v.asset, v.amount, len(v.digests)) == ("cold", "BTC", 2_000_000 + 5_000, 1)  # + fee_max (issue 14)


def test_the_delay_runs_from_the_quorum_the_kth_signed_time():
    # alice approved long ago, bob just now: the quorum (2) was reached at bob's time.
    with pytest.raises(Refused) as e:
        verify(body(times=(-10 * DELAY_S, -5)))
    assert e.value.reason == "delay_not_elapsed" and "55000 ms left" in e.value.detail, e.value


CASES = [
    ("a signed time changed by the node", _claimed_time_changed, "approval_signature_invalid"),
    ("a signed time far ahead of the peer's clock", lambda: body(times=(-DELAY_S - 10, limits.APPROVAL_CLOCK_SKEW_MS_MAX // 1000 + 60)),
     "approval_time_out_of_range"),
    ("one approval where the cold vault's own band needs two", lambda: body(times=(-DELAY_S - 10,), approvers=(("alice", ALICE),)),
     "approvals_below_quorum"),
    ("the same approver twice counts once", lambda: body(approvers=(("alice", ALICE), ("alice", ALICE))), "approvals_below_quorum"),
    ("untimed approvals cannot anchor the delay", lambda: body(times=(None, None)), "approvals_below_quorum"),
    ("one timed, one untimed", lambda: body(times=(-DELAY_S - 10, None)), "approvals_below_quorum"),
    ("signed before the delay", lambda: body(times=(-DELAY_S + 20, -DELAY_S + 10)), "delay_not_elapsed"),
    ("pays a vault this peer does not list", lambda: body(pays=STRANGER, dest_vault="stranger"), "own_destination_vault_unknown"),
    ("says hot, pays another key's address", lambda: body(pays=STRANGER), "transaction_does_not_match_intent"),
]


@pytest.mark.parametrize("name,make,reason", CASES, ids=[c[0] for c in CASES])
def test_refusals(name, make, reason):
    with pytest.raises(Refused) as e:
        verify(make())
    assert e.value.reason == reason, (name, e.value)


def test_a_refill_whose_hot_address_is_derived_from_other_keys_names_the_mismatch():
    with pytest.raises(Refused) as e:
        verify(body(), own_destinations={"hot": STRANGER.toml()})
    assert (e.value.reason, e.value.detail.split(":")[0]) == ("transaction_does_not_match_intent", "sweep_destination_not_ours")


def test_without_a_delay_untimed_approvals_count_and_other_vaults_keep_the_shared_bands():
    assert verify(body(times=(None, None)), vaults={}).amount == 2_000_000 + 5_000  # the payment + fee_max
    # The shared bands (no approvals up to 1 BTC) do not apply to the cold vault: it has its own.
    assert policy().quorum("BTC", 2_000_000, "cold") == 2
    assert policy().quorum("BTC", 2_000_000, "hot") == 0


def test_the_destination_vault_is_part_of_what_approvers_sign():
    tx, intent = refill()
    other = dataclasses.replace(intent, own_destination_vault="")
    assert intent.canonical_bytes() != other.canonical_bytes()
    assert b"own_destination_vault" not in other.canonical_bytes(), "untouched for intents without it (older approvals)"


@pytest.mark.parametrize("over,msg", [
    ({"vaults": {"cold": {"delay_s": -1}}}, "delay_s"),
    ({"vaults": {"cold": {"delay_s": limits.VAULT_DELAY_S_MAX + 1}}}, "delay_s"),
    ({"own_destinations": {"hot": {"public_key": "02" + "00" * 32, "chain_code": "00" * 32}}}, "not a secp256k1 point"),
    ({"own_destinations": {"hot": {"public_key": HOT.pub.hex()}}}, "chain_code"),
    ({"own_destinations": {"hot": {"public_key": HOT.pub.hex()[:-2], "chain_code": "00" * 32}}}, "33 bytes"),
])
def test_bad_vault_sections_are_refused(over, msg):
    with pytest.raises(PolicyError, match=msg):
        policy(**over)


def eth_refill(pays: Keys):
    from chains.ethereum import tx as etx

    to = etx.address_of(pays.child_public_key(HOT_WALLET))
    t = etx.Eip1559Tx(chain_id=1337, nonce=0, max_priority_fee_per_gas=10**9, max_fee_per_gas=2 * 10**9, gas=21_000, to=to,
                      value=10**17)
    tx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey(HOT_WALLET),))
    intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id="cold", chain="ethereum", network="1337", asset="ETH",
                              payments=(Payment(to, 10**17),), fee_max=21_000 * 2 * 10**9, kind="refill",
                              own_destination_paths=(HOT_WALLET,), own_destination_vault="hot")
    at = NOW_MS - (DELAY_S + 10) * 1000
    return rq.sign_request("cold", tx, intent, [rq.approve(intent, a, k, at) for a, k in (("alice", ALICE), ("bob", BOB))])


@pytest.mark.parametrize("pays,reason", [(HOT, None), (STRANGER, "transaction_does_not_match_intent")], ids=["hot", "stranger"])
def test_an_ethereum_refill_pays_only_the_hot_wallet_the_peer_derives(pays, reason):
    from chains.ethereum.intent import EthereumIntentChecker

    pol = policy(bands=[{"vault": "cold", "asset": "ETH", "amount_max": str(10**19), "approvals_min": 2}])
    v = RequestVerifier(pol, "production", {"ethereum": EthereumIntentChecker()}, RECORDS, clock_ms=lambda: NOW_MS)
    raw, sig = rq.sign_body(eth_refill(pays), NODE)
    if reason is None:
        assert v.verify_sign(raw, sig, COLD).amount == 10**17 + 21_000 * 2 * 10**9  # the payment + fee_max
    else:
        with pytest.raises(Refused) as e:
            v.verify_sign(raw, sig, COLD)
        assert (e.value.reason, e.value.detail.split(":")[0]) == (reason, "sweep_destination_not_ours")
