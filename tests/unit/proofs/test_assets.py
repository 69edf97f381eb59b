"""Proof-of-assets primitives against independent implementations and published vectors."""

from __future__ import annotations

import base64

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct

from proofs import assets as ast

SID = "00112233445566778899aabbccddeeff"
ROOT = "e696766b2648aced40601a1f3fa2e13105424ecebd44e1272337fb8de1333be9"
MESSAGE = f"por-mst/1 reserves {SID} {ROOT}"


def test_message_round_trip_and_refusals():
    assert ast.reserves_message(SID, ROOT) == MESSAGE
    assert ast.parse_reserves_message(MESSAGE) == (SID, ROOT)
    assert ast.parse_reserves_message(MESSAGE.encode()) == (SID, ROOT)
    for bad in [MESSAGE + " ", MESSAGE.upper(), "por-mst/1 reserves " + SID, MESSAGE.replace("reserves", "withdraw"),
                b"\xff" + MESSAGE.encode(), f"por-mst/1 reserves {SID} {ROOT}\n"]:
        with pytest.raises(ast.AssetsInvalid) as exc:
            ast.parse_reserves_message(bad)
        assert exc.value.reason == "message_not_reserves"


def test_eip191_digest_matches_eth_account_and_signature_verifies():
    acct = Account.from_key(b"\x42" * 32)
    assert ast.eip191_digest(MESSAGE.encode()) == _hash_eip191_message(encode_defunct(text=MESSAGE))
    signed = acct.sign_message(encode_defunct(text=MESSAGE))
    ours = ast.eip191_encode(signed.r, signed.s, signed.v - 27)
    assert ours == "0x" + bytes(signed.signature).hex()
    ast.verify_address_signature("ethereum", "1337", acct.address, SID, ROOT, ours)
    ast.verify_address_signature("ethereum", "1337", acct.address.lower(), SID, ROOT, ours)
    with pytest.raises(ast.AssetsInvalid) as exc:
        ast.verify_address_signature("ethereum", "1337", Account.from_key(b"\x43" * 32).address, SID, ROOT, ours)
    assert exc.value.reason == "signature_wrong_key"


def test_p2wpkh_address_bip173_vector():
    # BIP-173: the generator point's key -> bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4
    pub = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
    assert ast.p2wpkh_address(pub, "mainnet") == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    assert ast.p2wpkh_address(pub, "testnet") == "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"


def test_bip137_digest_layout_and_signature():
    msg = MESSAGE.encode()
    import hashlib

    expected = hashlib.sha256(hashlib.sha256(b"\x18Bitcoin Signed Message:\n" + bytes([len(msg)]) + msg).digest()).digest()
    assert ast.bip137_digest(msg) == expected
    key = coincurve.PrivateKey(b"\x07" * 32)
    raw = key.sign_recoverable(ast.reserves_digest("bitcoin", SID, ROOT), hasher=None)
    sig = ast.bip137_encode(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64])
    assert base64.b64decode(sig)[0] == 39 + raw[64]  # P2WPKH header byte
    address = ast.p2wpkh_address(key.public_key.format(), "regtest")
    assert address.startswith("bcrt1q")
    ast.verify_address_signature("bitcoin", "regtest", address, SID, ROOT, sig)
    with pytest.raises(ast.AssetsInvalid) as exc:  # same signature, another snapshot's message
        ast.verify_address_signature("bitcoin", "regtest", address, SID, "00" * 32, sig)
    assert exc.value.reason == "signature_wrong_key"


@pytest.mark.parametrize(
    "chain, sig, reason",
    [
        ("bitcoin", "not base64!", "signature_malformed"),
        ("bitcoin", base64.b64encode(bytes([31]) + b"\x01" * 64).decode(), "signature_malformed"),  # P2PKH header
        ("bitcoin", base64.b64encode(bytes([39]) + b"\xff" * 64).decode(), "signature_malformed"),  # r >= n
        ("ethereum", "0x" + "01" * 64 + "1d", "signature_malformed"),  # v = 29
        ("ethereum", "0x" + "01" * 32 + "7f" + "ff" * 31 + "1b", "signature_malformed"),  # high S
        ("dogecoin", "", "chain_unknown"),
    ],
)
def test_malformed_signatures(chain, sig, reason):
    with pytest.raises(ast.AssetsInvalid) as exc:
        ast.verify_address_signature(chain, "regtest", "x", SID, ROOT, sig)
    assert exc.value.reason == reason


def test_ratio_is_integer_arithmetic():
    assert ast.ratio_text(3, 2) == "1.5000"
    assert ast.ratio_text(2, 3) == "0.6666"
    assert ast.ratio_text(10**40 + 1, 10**40) == "1.0000"
    assert ast.ratio_text(0, 0) == "n/a" and ast.ratio_text(1, 0) == "inf"


@pytest.mark.parametrize(
    "chain, sid, root, reason",
    [
        ("bitcoin", SID.upper(), ROOT, "message_not_reserves"),
        ("bitcoin", SID, ROOT + "00", "message_not_reserves"),
        ("bitcoin", SID + " x", ROOT, "message_not_reserves"),
        ("bitcoin", None, ROOT, "message_not_reserves"),
        ("litecoin", SID, ROOT, "chain_unknown"),
    ],
)
def test_signer_side_digest_refuses_anything_else(chain, sid, root, reason):
    with pytest.raises(ast.AssetsInvalid) as exc:
        ast.reserves_digest(chain, sid, root)
    assert exc.value.reason == reason


def test_signer_side_request_digest():
    sid, root, digest = ast.reserves_request_digest("ethereum", MESSAGE.encode())
    assert (sid, root) == (SID, ROOT) and digest == ast.eip191_digest(MESSAGE.encode())
    with pytest.raises(ast.AssetsInvalid):
        ast.reserves_request_digest("ethereum", b"\x19Ethereum Signed Message:\n32" + bytes(32))
