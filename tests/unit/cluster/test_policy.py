"""A peer's own check of a signing request (mpc/signer/policy.py), against the real Bitcoin
intent checker (chains.bitcoin.intent) and real Ed25519 signatures. One row per refusal, in
the verifier's precedence order."""

from __future__ import annotations

import dataclasses
import os

import coincurve
import pytest
from nacl.signing import SigningKey

from chains.bitcoin.intent import BitcoinIntentChecker
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from mpc.signer.policy import Policy, PolicyError, RequestVerifier
from mpc.wire.requests import Refused
from node import limits
from node.ports import InputKey, SigningDigest
from tests.support.cluster import btc_withdrawal

NODE = SigningKey.generate()
ALICE, BOB, MALLORY = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
KEYS = RecordKeys(coincurve.PrivateKey().public_key.format(), os.urandom(32))


def policy(**over) -> Policy:
    d = {
        "node": {"public_key": NODE.verify_key.encode().hex()},
        "approvers": {"alice": ALICE.verify_key.encode().hex(), "bob": BOB.verify_key.encode().hex()},
        "bands": [{"asset": "BTC", "amount_max": 100_000, "approvals_min": 1},
                  {"asset": "BTC", "amount_max": "1000000", "approvals_min": 2}],
        "rate_limits": {"signatures_per_hour": 100, "amount_per_hour": {"BTC": 5_000_000}},
        "ceremonies": {"keygen_allowed": True},
        "networks": {"bitcoin": ["regtest"], "ethereum": ["1337"]},
        "fees": {"bitcoin": {"fee_max": 100_000, "fee_rate_sat_vb_max": 100}},
    }
    d.update(over)
    return Policy.from_dict(d)


def verifier(records, env="production", **over) -> RequestVerifier:
    """A verifier counting into `records` (the `records` fixture: real files in a temp dir)."""
    return RequestVerifier(policy(**over), env, {"bitcoin": BitcoinIntentChecker()}, records)


def signed(body, key=NODE):
    return rq.sign_body(body, key)


def request(amount=50_000, approvers=(("alice", ALICE),), tamper=None, vault="v1", **kw):
    tx, intent = btc_withdrawal(KEYS, vault, amount_sats=amount, tamper=tamper)
    approvals = [rq.approve(intent, aid, k) for aid, k in approvers]
    return rq.sign_request(vault, tx, intent, approvals, **kw)


def test_a_valid_request_gives_the_digests_the_peer_computed(records):
    v = verifier(records).verify_sign(*signed(request()), KEYS)
    assert len(v.digests) == 1 and len(v.digests[0].digest) == 32 and v.digests[0].path == (0, 0)
    assert (v.asset, v.amount, v.opaque) == ("BTC", 50_000 + 5_000, False), "the payment and the intent's fee_max"


def _expired():
    b = request()
    b["created_at_ms"] -= 3_600_000
    return signed(b)


def _approval_by(key, aid="alice"):
    b = request()
    intent = rq.parse_intent(b["intent"])
    b["approvals"] = [{"approver_id": aid, "signature": rq.approve(intent, aid, key).signature.hex()}]
    return signed(b)


def _intent_vault_mismatch():
    b = request()
    b["intent"]["vault_id"] = "other"
    return signed(b)


def _input_amount_stated_low():
    """Issue 14, attack 2: the transaction and its previous transaction as built, one input's
    amount stated 1 BTC lower than the previous transaction holds."""
    tx, intent = btc_withdrawal(KEYS, "v1", amount_sats=50_000)
    tx = dataclasses.replace(tx, inputs=(InputKey(tx.inputs[0].path, tx.inputs[0].amount - 100_000_000),))
    return signed(rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE)]))


def _prev_txs_not_hex():
    b = request()
    b["transaction"]["prev_txs"] = ["zz"]
    return signed(b)


def _intent_id_too_long():
    b = request()
    b["intent"]["intent_id"] = "i" * (limits.CLUSTER_INTENT_ID_CHARS_MAX + 1)  # each peer records it: bounded
    return signed(b)


CASES = [
    ("node signature by another key", lambda: signed(request(), SigningKey.generate()), "node_signature_invalid"),
    ("body changed after signing", lambda: (signed(request())[0].replace(b"50000", b"50001"), signed(request())[1]), "node_signature_invalid"),
    ("expired", _expired, "request_expired"),
    ("an intent id longer than a peer records", _intent_id_too_long, "request_malformed"),
    ("opaque digest in production", lambda: signed(request(opaque_digests=[SigningDigest((0,), b"\1" * 32)])), "opaque_digest_refused"),
    ("intent for another vault", _intent_vault_mismatch, "intent_vault_mismatch"),
    ("approval signed by a different key", lambda: _approval_by(MALLORY), "approval_signature_invalid"),
    ("amount above every band", lambda: signed(request(amount=2_000_000, approvers=(("alice", ALICE), ("bob", BOB)))), "amount_exceeds_policy"),
    ("no approval", lambda: signed(request(approvers=())), "approvals_below_quorum"),
    ("unregistered approver does not count", lambda: _approval_by(MALLORY, "mallory"), "approvals_below_quorum"),
    ("second band needs two", lambda: signed(request(amount=500_000)), "approvals_below_quorum"),
    # issue 14: a BTC band counts the payments and fee_max (5,000 sat): 96,000 is in the second
    ("a payment in the first band, with its fee_max in the second", lambda: signed(request(amount=96_000)), "approvals_below_quorum"),
    ("destination not the intent's", lambda: signed(request(tamper="destination")), "transaction_does_not_match_intent"),
    ("amount not the intent's", lambda: signed(request(tamper="amount")), "transaction_does_not_match_intent"),
    ("an input amount its previous transaction does not hold", _input_amount_stated_low, "input_amount_mismatch"),
    ("previous transactions that are not hex", _prev_txs_not_hex, "request_malformed"),
]


@pytest.mark.parametrize("name,make,reason", CASES, ids=[c[0] for c in CASES])
def test_refusals(name, make, reason, records):
    raw, sig = make()
    with pytest.raises(Refused) as e:
        verifier(records).verify_sign(raw, sig, KEYS)
    assert e.value.reason == reason, str(e.value)


def test_unknown_vault_is_refused(records):
    with pytest.raises(Refused) as e:
        verifier(records).verify_sign(*signed(request()), None)
    assert e.value.reason == "vault_unknown"


def test_opaque_digests_only_in_test_environment(records):
    raw, sig = signed(request(opaque_digests=[SigningDigest((0,), b"\1" * 32)]))
    v = verifier(records, "test").verify_sign(raw, sig, KEYS)
    assert v.opaque and v.digests[0].digest == b"\1" * 32


def test_whitelist(records):
    with pytest.raises(Refused) as e:
        verifier(records, whitelist={"BTC": ["bcrt1qsomewhereelse"]}).verify_sign(*signed(request()), KEYS)
    assert e.value.reason == "destination_not_whitelisted"


def test_rate_limit_counts_each_request_once(records):
    v = verifier(records, rate_limits={"signatures_per_hour": 2})
    b1, b2, b3 = request(), request(), request()
    v.verify_sign(*signed(b1), KEYS)
    v.verify_sign(*signed(b1), KEYS)  # a coordinator retry of the same request is free
    v.verify_sign(*signed({**b1, "created_at_ms": b1["created_at_ms"] + 1_000}), KEYS)  # a node retry, re-signed: free
    v.verify_sign(*signed(b2), KEYS)
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(b3), KEYS)
    assert e.value.reason == "rate_limit_exceeded"


def test_a_request_id_reused_with_another_body_is_refused_before_the_rate_limit(records):
    v = verifier(records, rate_limits={"signatures_per_hour": 1})
    b1 = request()
    v.verify_sign(*signed(b1), KEYS)
    with pytest.raises(Refused) as e:  # same id, another transaction: not a retry, whatever the limits say
        v.verify_sign(*signed(request(amount=60_000, request_id=b1["request_id"])), KEYS)
    assert e.value.reason == "request_id_reused"
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(request()), KEYS)
    assert e.value.reason == "rate_limit_exceeded"


def _version_of(intent, approvers=(("alice", ALICE),), vault="v1", **kw):
    """Another transaction version of an approved intent, under a new request id, with the
    same approvals (btc_withdrawal: `funding` names other inputs, `fee_sats` bumps the fee)."""
    tx, _ = btc_withdrawal(KEYS, vault, amount_sats=intent.payments[0].amount, intent=intent, **kw)
    return rq.sign_request(vault, tx, intent, [rq.approve(intent, aid, k) for aid, k in approvers])


def test_spend_once_one_approved_intent_pays_once(records):
    """Join records the version it verified (Preparer.sign: records.record_intent); then the same
    intent with the same approvals is signed again only as a transaction conflicting with it."""
    v = verifier(records, rate_limits={"signatures_per_hour": 4})
    first = request()
    intent = rq.parse_intent(first["intent"])
    checked = v.verify_sign(*signed(first), KEYS)
    assert checked.version.intent_id == intent.intent_id and len(checked.version.spends) == 1
    v.verify_sign(*signed(_version_of(intent, funding="elsewhere")), KEYS)  # nothing recorded yet: a check only reads
    records.record_intent(checked.version)  # Join, after every check
    other = _version_of(intent, funding="elsewhere")
    with pytest.raises(Refused) as e:  # other inputs: a second payment of the one approval
        v.verify_sign(*signed(other), KEYS)
    assert e.value.reason == "intent_already_signed"
    with pytest.raises(Refused) as e:  # before request_id_reused: the refusal that says why
        v.verify_sign(*signed({**other, "request_id": first["request_id"]}), KEYS)
    assert e.value.reason == "intent_already_signed"
    bump = v.verify_sign(*signed(_version_of(intent, fee_sats=3_000)), KEYS)  # same inputs, within fee_max
    assert bump.version.spends == checked.version.spends and bump.version.payload_sha256 != checked.version.payload_sha256
    v.verify_sign(*signed(request()), KEYS)  # the 4th admitted: the refusals counted nothing
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(request()), KEYS)
    assert e.value.reason == "rate_limit_exceeded"


def test_amount_rate_limit_by_wall_clock_ms(records):
    now_ms, sph, aph = 1_733_570_000_000, 100, {"BTC": 100}
    records.admit("a", b"a" * 32, "BTC", 60, sph, aph, now_ms)
    with pytest.raises(Refused) as e:
        records.admit("b", b"b" * 32, "BTC", 41, sph, aph, now_ms)
    assert (e.value.reason, e.value.detail) == ("rate_limit_exceeded", "amount_per_hour BTC")
    records.admit("b", b"b" * 32, "BTC", 41, sph, aph, now_ms + limits.CLUSTER_RATE_WINDOW_S * 1000 + 1)  # the window rolled


@pytest.mark.parametrize("over,msg", [
    ({"node": {"public_key": "zz"}}, "node.public_key"),
    ({"rate_limits": {}}, "signatures_per_hour"),
    ({"rate_limits": {"signatures_per_hour": limits.CLUSTER_RATE_EVENTS_MAX + 1}}, "signatures_per_hour"),
    ({"bands": [{"asset": "BTC", "amount_max": 1.5, "approvals_min": 1}]}, "amount"),
    ({"bands": [{"asset": "BTC", "amount_max": 1, "approvals_min": 3}]}, "approvals_min"),
])
def test_bad_policy_files_are_refused(over, msg):
    with pytest.raises(PolicyError, match=msg):
        policy(**over)


def signs_or_refuses(v: RequestVerifier, body: dict, reason: str | None) -> None:
    """`reason` None: the request passes with one digest; else it is refused with that reason."""
    if reason is None:
        assert len(v.verify_sign(*signed(body), KEYS).digests) == 1
        return
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(body), KEYS)
    assert e.value.reason == reason, str(e.value)


# The peer's own fee limits ([fees.<chain>]): the intent's fee_max and what the transaction's own
# bytes pay, in the chain's units. btc_withdrawal: intent fee_max 5,000 sat, one input, ~141 vB.
BTC_FEES = {"fee_max": 100_000, "fee_rate_sat_vb_max": 100}
FEE_CASES = [
    ("within every limit", {"bitcoin": BTC_FEES}, 1_000, None),
    ("no fee limits for the chain", {}, 1_000, "fee_limits_not_configured"),
    ("intent fee_max above the peer's cap", {"bitcoin": {**BTC_FEES, "fee_max": 4_999}}, 1_000, "fee_exceeds_policy"),
    ("fee rate above the peer's cap", {"bitcoin": {**BTC_FEES, "fee_rate_sat_vb_max": 30}}, 4_900, "fee_rate_exceeds_policy"),
    ("fee rate at the cap", {"bitcoin": {**BTC_FEES, "fee_rate_sat_vb_max": 35}}, 4_900, None),
]


@pytest.mark.parametrize("name,fees,fee_sats,reason", FEE_CASES, ids=[c[0] for c in FEE_CASES])
def test_bitcoin_fee_limits(name, fees, fee_sats, reason, records):
    tx, intent = btc_withdrawal(KEYS, "v1", amount_sats=50_000, fee_sats=fee_sats)
    body = rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE)])
    signs_or_refuses(verifier(records, fees=fees), body, reason)


ETH_FEES = {"fee_max": str(10**16), "priority_fee_wei_max": str(10**12)}
ETH_CASES = [
    ("within every limit", ETH_FEES, None),
    ("gas x maxFeePerGas above the peer's cap", {**ETH_FEES, "fee_max": str(21_000 * 2 * 10**9 - 1)}, "fee_exceeds_policy"),
    ("tip above the peer's cap", {**ETH_FEES, "priority_fee_wei_max": str(10**9 - 1)}, "priority_fee_exceeds_policy"),
]


@pytest.mark.parametrize("name,fees,reason", ETH_CASES, ids=[c[0] for c in ETH_CASES])
def test_ethereum_fee_limits(name, fees, reason, records):
    from chains.ethereum.intent import EthereumIntentChecker
    from tests.support.cluster import eth_withdrawal

    tx, intent = eth_withdrawal(KEYS, "v1", amount_wei=10**15)  # tip 1 gwei, maxFee 2 gwei, 21,000 gas
    body = rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE)])
    v = RequestVerifier(policy(bands=[{"asset": "ETH", "amount_max": str(10**18), "approvals_min": 1}],
                               fees={"ethereum": fees}), "production", {"ethereum": EthereumIntentChecker()}, records)
    signs_or_refuses(v, body, reason)


@pytest.mark.parametrize("fees,msg", [
    ({"litecoin": {"fee_max": 1}}, "unknown chain"),
    ({"bitcoin": {"fee_max": 1}}, "exactly fee_max, fee_rate_sat_vb_max"),
    ({"bitcoin": {"fee_max": 0, "fee_rate_sat_vb_max": 1}}, "> 0"),
    ({"ethereum": {"fee_max": "1", "priority_fee_wei_max": "1", "extra": 1}}, "exactly"),
])
def test_bad_fee_limits_are_refused(fees, msg):
    with pytest.raises(PolicyError, match=msg):
        policy(fees=fees)


@pytest.mark.parametrize("networks,reason", [
    ({"bitcoin": ["regtest"]}, None),
    ({"bitcoin": ["mainnet", "testnet"]}, "network_not_allowed"),  # a regtest transaction, for a mainnet peer
    ({"ethereum": ["1337"]}, "network_not_allowed"),                # no bitcoin network at all
    ({}, "network_not_allowed"),
])
def test_only_the_networks_the_peer_names_are_signed_for(networks, reason, records):
    signs_or_refuses(verifier(records, networks=networks), request(), reason)


@pytest.mark.parametrize("networks", [{"litecoin": ["main"]}, {"bitcoin": "regtest"}, {"bitcoin": []}, {"bitcoin": [""]}])
def test_bad_networks_are_refused(networks):
    with pytest.raises(PolicyError, match="networks"):
        policy(networks=networks)


# --- issue 14: bands and hourly limits count what a transaction can take out -----------------
def test_the_hourly_btc_limit_counts_payments_and_fee_max(records):
    """Two 50,000-sat payments fit 104,999 sat an hour; with their fee_max (5,000 each) they do not."""
    v = verifier(records, rate_limits={"signatures_per_hour": 100, "amount_per_hour": {"BTC": 104_999}})
    v.verify_sign(*signed(request()), KEYS)
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(request()), KEYS)
    assert (e.value.reason, e.value.detail) == ("rate_limit_exceeded", "amount_per_hour BTC")


TOKEN = "0x" + "cd" * 20
GWEI = 10**9


def eth_verifier(records, **over) -> RequestVerifier:
    from chains.ethereum.intent import EthereumIntentChecker
    from chains.ethereum import tx as etx

    d = dict(bands=[{"asset": "ETH", "amount_max": str(10**18), "approvals_min": 1},
                    {"asset": f"ERC20:{etx.checksum(TOKEN)}", "amount_max": "1000", "approvals_min": 1}],
             fees={"ethereum": ETH_FEES})
    d.update(over)
    return RequestVerifier(policy(**d), "production", {"ethereum": EthereumIntentChecker()}, records)


def erc20_request(amount=1_000, gas=60_000, max_fee_per_gas=20 * GWEI, fee_max=None, nonce=0):
    """An ERC-20 transfer of `amount` token units; the intent's fee_max is gas x maxFeePerGas
    unless given (what the approvers approved)."""
    from chains.ethereum import tx as etx
    from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent

    dest = etx.checksum("0x" + "ab" * 20)
    t = etx.Eip1559Tx(chain_id=1337, nonce=nonce, max_priority_fee_per_gas=GWEI, max_fee_per_gas=max_fee_per_gas, gas=gas,
                      to=etx.checksum(TOKEN), value=0, data=etx.erc20_transfer_data(dest, amount))
    tx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey((0, 0)),))
    intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id="v1", chain="ethereum", network="1337",
                              asset=f"ERC20:{etx.checksum(TOKEN)}", payments=(Payment(dest, amount),),
                              fee_max=gas * max_fee_per_gas if fee_max is None else fee_max)
    return rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE)])


def eth_request(amount_wei: int, nonce: int = 0):
    from tests.support.cluster import eth_withdrawal

    tx, intent = eth_withdrawal(KEYS, "v1", amount_wei=amount_wei, nonce=nonce)  # fee_max 21,000 x 2 gwei
    return rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE)])


ETH_BAND_CASES = [
    ("ETH: payment and fee_max within the band", lambda: eth_request(10**18 - 21_000 * 2 * GWEI), None),
    ("ETH: the payment fits the band, with its fee_max it does not", lambda: eth_request(10**18 - 21_000 * 2 * GWEI + 1),
     "amount_exceeds_policy"),
    ("ERC-20: the band counts token units only", lambda: erc20_request(amount=1_000), None),
    ("ERC-20: above its band", lambda: erc20_request(amount=1_001), "amount_exceeds_policy"),
    ("ERC-20: an absurd gas limit within the approved fee_max, past the peer's cap",
     lambda: erc20_request(gas=900_000, max_fee_per_gas=20 * GWEI), "fee_exceeds_policy"),
    ("ERC-20: an absurd gas limit past the approved fee_max",
     lambda: erc20_request(gas=900_000, fee_max=60_000 * 20 * GWEI), "transaction_does_not_match_intent"),
    ("ERC-20: a gas limit past any transaction's", lambda: erc20_request(gas=30_000_000, max_fee_per_gas=GWEI, fee_max=10**16),
     "transaction_does_not_match_intent"),
]


@pytest.mark.parametrize("name,make,reason", ETH_BAND_CASES, ids=[c[0] for c in ETH_BAND_CASES])
def test_ethereum_bands_and_gas(name, make, reason, records):
    signs_or_refuses(eth_verifier(records), make(), reason)


def test_token_fees_count_against_the_hourly_eth_fee_budget_not_the_eth_amount(records):
    """fee_per_hour ETH holds two token transfers' fee_max (60,000 gas x 20 gwei each); the
    third is refused, while ETH's own amount limit is untouched and an ETH payment still signs."""
    fee = 60_000 * 20 * GWEI
    v = eth_verifier(records, rate_limits={"signatures_per_hour": 100, "amount_per_hour": {"ETH": str(10**17)},
                                           "fee_per_hour": {"ETH": str(2 * fee)}})
    for nonce in (0, 1):
        signs_or_refuses(v, erc20_request(nonce=nonce), None)
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(erc20_request(nonce=2)), KEYS)
    assert (e.value.reason, e.value.detail) == ("rate_limit_exceeded", "fee_per_hour ETH")
    signs_or_refuses(v, eth_request(10**17 - 21_000 * 2 * GWEI, nonce=3), None)
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(eth_request(1, nonce=4)), KEYS)
    assert (e.value.reason, e.value.detail) == ("rate_limit_exceeded", "amount_per_hour ETH")


def test_a_fee_budget_for_a_token_is_refused():
    with pytest.raises(PolicyError, match="fee_per_hour"):
        policy(rate_limits={"signatures_per_hour": 1, "fee_per_hour": {"ERC20:0xabc": "1"}})


# --- issue 14: approval expiry ([approvals] age_s_max), for an intent's first version ----------
AGE_S = 3600


def timed_request(ago_s: int | None, intent=None, **kw):
    """An intent's transaction with alice's approval signed `ago_s` seconds ago (None: untimed)."""
    tx, intent = btc_withdrawal(KEYS, "v1", intent=intent, **kw)
    at_ms = None if ago_s is None else rq.now_ms() - ago_s * 1000
    return rq.sign_request("v1", tx, intent, [rq.approve(intent, "alice", ALICE, at_ms)]), intent


@pytest.mark.parametrize("ago_s,reason", [
    (60, None),
    (AGE_S - 60, None),
    (AGE_S + 60, "approvals_expired"),
    (None, "approvals_expired"),  # an untimed approval has no age to hold: it does not count
])
def test_a_first_version_needs_its_quorum_signed_within_the_age(ago_s, reason, records):
    signs_or_refuses(verifier(records, approvals={"age_s_max": AGE_S}), timed_request(ago_s)[0], reason)


def test_a_fee_bump_of_a_joined_intent_signs_after_its_approvals_expired(records):
    v = verifier(records, approvals={"age_s_max": AGE_S})
    first, intent = timed_request(AGE_S - 60)
    records.record_intent(v.verify_sign(*signed(first), KEYS).version)  # what Join does
    bump, _ = timed_request(AGE_S + 600, intent=intent, fee_sats=3_000)  # the same approval, aged past the limit
    signs_or_refuses(v, bump, None)
    other, _ = timed_request(AGE_S + 600)  # another intent approved as long ago
    signs_or_refuses(v, other, "approvals_expired")


@pytest.mark.parametrize("over,msg", [
    ({"approvals": {"age_s_max": limits.RECORDS_INTENT_KEPT_MS // 1000}}, "retention"),
    ({"approvals": {"age_s_max": 7200}, "vaults": {"cold": {"delay_s": 3600}}}, "vaults.cold.delay_s"),
    ({"approvals": {"age_s_max": "1h"}}, "integer"),
    ({"approvals": {"max_age": 60}}, "age_s_max only"),
])
def test_an_approval_age_the_records_or_a_delay_cannot_honour_is_refused_at_start(over, msg):
    with pytest.raises(PolicyError, match=msg):
        policy(**over)


def test_an_approval_age_past_the_longest_delay_and_margin_loads():
    p = policy(approvals={"age_s_max": 3600 + limits.APPROVAL_AGE_MARGIN_S}, vaults={"cold": {"delay_s": 3600}})
    assert p.approval_age_s_max == 3600 + limits.APPROVAL_AGE_MARGIN_S
