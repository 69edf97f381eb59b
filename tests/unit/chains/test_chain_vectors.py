"""Published vectors for the chain code: BIP32 (public derivation), BIP173 addresses, BIP143
native P2WPKH, EIP-55, EIP-155, and an EIP-1559 signing hash.

Sources:
- BIP32 test vectors 1 and 2: https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki#test-vectors
- BIP173 examples: https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki#examples
- BIP143 "Native P2WPKH": https://github.com/bitcoin/bips/blob/master/bip-0143.mediawiki#native-p2wpkh
- EIP-55: https://eips.ethereum.org/EIPS/eip-55
- EIP-155 example: https://eips.ethereum.org/EIPS/eip-155#example
- EIP-1559: no published signing-hash vector is at hand, so ours is cross-checked against
  eth-account's `Account.sign_transaction` on a fixed key (byte-identical signed transaction).

The private keys below are the published vector keys; they sign only inside these tests.
"""

from __future__ import annotations

import coincurve
import pytest
from bip32 import BIP32
from eth_account import Account
from eth_account._utils.legacy_transactions import encode_transaction, serializable_unsigned_transaction_from_dict

from chains.bitcoin import tx as btx
from chains.errors import ChainError
from chains.ethereum import tx as etx
from chains.keys import Bip32VaultKeys, InvalidPath
from node.ports import EcdsaSignature

# --- BIP32: public (non-hardened) derivation from an xpub ---------------------------------
BIP32_PUBLIC_STEPS = [
    # (vector, parent xpub, child index, expected child xpub)
    (
        "1: m/0H -> m/0H/1",
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        1,
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
    ),
    (
        "1: m/0H/1/2H -> m/0H/1/2H/2",
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        2,
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
    ),
    (
        "1: m/0H/1/2H/2 -> m/0H/1/2H/2/1000000000",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        1000000000,
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
    ),
    (
        "2: m -> m/0",
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        0,
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
    ),
]


@pytest.mark.parametrize("name,parent,index,child", BIP32_PUBLIC_STEPS, ids=[s[0] for s in BIP32_PUBLIC_STEPS])
def test_bip32_public_derivation(name, parent, index, child):
    keys = Bip32VaultKeys.from_xpub(parent)
    assert keys.child_public_key((index,)).hex() == BIP32.from_xpub(child).pubkey.hex()


def test_bip32_two_level_path_matches_step_by_step():
    parent = BIP32_PUBLIC_STEPS[1][1]
    expected = BIP32.from_xpub(BIP32_PUBLIC_STEPS[2][3]).pubkey
    assert Bip32VaultKeys.from_xpub(parent).child_public_key((2, 1000000000)) == expected


@pytest.mark.parametrize("path", [(0x80000000,), (0, -1), (0, "1"), (True,)])
def test_hardened_or_malformed_paths_are_refused(path):
    keys = Bip32VaultKeys.from_xpub(BIP32_PUBLIC_STEPS[3][1])
    with pytest.raises(InvalidPath):
        keys.child_public_key(path)


# --- BIP173: P2WPKH addresses ------------------------------------------------------------
BIP173_PUBKEY = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")


@pytest.mark.parametrize(
    "network,address",
    [("mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"), ("testnet", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")],
)
def test_bip173_p2wpkh_address(network, address):
    assert btx.p2wpkh_address(BIP173_PUBKEY, network) == address
    assert btx.script_pubkey_for(address, network) == btx.p2wpkh_script_pubkey(BIP173_PUBKEY)


def test_regtest_address_uses_bcrt_and_other_networks_are_refused():
    address = btx.p2wpkh_address(BIP173_PUBKEY, "regtest")
    assert address.startswith("bcrt1q")
    assert btx.script_pubkey_for(address, "regtest") == btx.p2wpkh_script_pubkey(BIP173_PUBKEY)
    rows = [
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "regtest", "destination_wrong_network"),
        ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "mainnet", "destination_wrong_network"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "mainnet", "destination_invalid"),  # bad checksum
        ("not an address at all", "mainnet", "destination_invalid"),
    ]
    for address, network, reason in rows:
        with pytest.raises(ChainError) as exc:
            btx.script_pubkey_for(address, network)
        assert exc.value.reason == reason, (address, network, exc.value.reason)


# --- BIP143: native P2WPKH ---------------------------------------------------------------
BIP143_UNSIGNED = bytes.fromhex(
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
    "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb20600"
    "0000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e"
    "4dbe6a21b2d50ce2f0167faa815988ac11000000"
)
BIP143_KEY = bytes.fromhex("619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9")
BIP143_PUBKEY = bytes.fromhex("025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357")
BIP143_SIGHASH = "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
BIP143_SIG_DER = (
    "304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c451833156140"
    "6f90300e8f3358f51928d43c212a8caed02de67eebee"
)


def test_bip143_native_p2wpkh_sighash_and_signature():
    parsed = btx.parse_unsigned(BIP143_UNSIGNED, "mainnet")
    (txid0, vout0, seq0), (txid1, vout1, seq1) = parsed.inputs
    assert btx.p2wpkh_script_pubkey(BIP143_PUBKEY).hex() == "00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"
    other_key = coincurve.PrivateKey(b"\x01" * 32).public_key.format()  # input 0 is not P2WPKH; its key is unused
    t = btx.build(
        [btx.TxIn(txid0, vout0, 625_000_000, other_key, seq0), btx.TxIn(txid1, vout1, 600_000_000, BIP143_PUBKEY, seq1)],
        parsed.outputs,
        "mainnet",
        locktime=parsed.locktime,
        version=parsed.version,
    )
    assert btx.unsigned_bytes(t) == BIP143_UNSIGNED
    digest = btx.sighashes(t)[1]
    assert digest.hex() == BIP143_SIGHASH
    # RFC 6979 signatures are deterministic: coincurve reproduces the published one.
    sig = coincurve.PrivateKey(BIP143_KEY).sign_recoverable(digest, hasher=None)
    ext = EcdsaSignature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64])
    assert btx.verify_signature(BIP143_PUBKEY, digest, ext).hex() == BIP143_SIG_DER


def test_attach_refuses_a_signature_that_does_not_verify():
    parsed = btx.parse_unsigned(BIP143_UNSIGNED, "mainnet")
    ins = [btx.TxIn(t, v, 600_000_000, BIP143_PUBKEY, s) for t, v, s in parsed.inputs[1:]]
    t = btx.build(ins, parsed.outputs, "mainnet")
    digest = btx.sighashes(t)[0]
    good = coincurve.PrivateKey(BIP143_KEY).sign_recoverable(digest, hasher=None)
    r, s = int.from_bytes(good[:32], "big"), int.from_bytes(good[32:64], "big")
    n = btx.SECP256K1_N
    rows = [
        ("high-S", EcdsaSignature(r, n - s, 0)),
        ("other digest", EcdsaSignature(r, (s + 1) % n, 0)),
        ("other key named", EcdsaSignature(r, s, 0, public_key=b"\x02" + b"\x11" * 32)),
    ]
    for name, sig in rows:
        with pytest.raises(ChainError) as exc:
            btx.attach(btx.build(ins, parsed.outputs, "mainnet"), [sig])
        assert exc.value.reason == "signature_invalid", name
    raw = btx.attach(t, [EcdsaSignature(r, s, good[64])])
    assert raw[4:6] == b"\x00\x01", "segwit marker and flag"


# --- EIP-55 --------------------------------------------------------------------------------
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55)
def test_eip55_checksum(address):
    assert etx.checksum(address.lower()) == address
    assert etx.checksum(address) == address
    broken = address[:-1] + (address[-1].swapcase() if address[-1].isalpha() else address[-1])
    if broken != address:
        with pytest.raises(ChainError):
            etx.checksum(broken)


# --- EIP-155 -------------------------------------------------------------------------------
EIP155_KEY = bytes.fromhex("46" * 32)
EIP155_TX = {
    "nonce": 9,
    "gasPrice": 20 * 10**9,
    "gas": 21000,
    "to": "0x3535353535353535353535353535353535353535",
    "value": 10**18,
    "data": b"",
    "chainId": 1,
}
EIP155_SIGNING_HASH = "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
EIP155_SIGNED = (
    "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef6134"
    "0bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3"
    "dc64214b297fb1966a3b6d83"
)


def test_eip155_signing_hash_and_external_signature():
    unsigned = serializable_unsigned_transaction_from_dict(EIP155_TX)
    digest = bytes(unsigned.hash())
    assert digest.hex() == EIP155_SIGNING_HASH
    sig = coincurve.PrivateKey(EIP155_KEY).sign_recoverable(digest, hasher=None)
    r, s, recid = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    assert (r, s) == (
        18515461264373351373200002665853028612451056578545711640558177340181847433846,
        46948507304638947509940763649030358759909902576025900602547168820602576006531,
    )
    v = recid + 35 + 2 * EIP155_TX["chainId"]
    assert v == 37
    assert bytes(encode_transaction(unsigned, vrs=(v, r, s))).hex() == EIP155_SIGNED
    sender = etx.address_of(coincurve.PrivateKey(EIP155_KEY).public_key.format())
    assert sender == "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
    assert etx.recover_address(digest, EcdsaSignature(r, s, recid)) == sender


# --- EIP-1559 --------------------------------------------------------------------------------
EIP1559_CASES = [
    etx.Eip1559Tx(1, 0, 2 * 10**9, 100 * 10**9, 21000, "0x3535353535353535353535353535353535353535", 10**18),
    etx.Eip1559Tx(
        1337, 41, 1, 7 * 10**9, 65000, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 0,
        etx.erc20_transfer_data("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", 123456789),
    ),
]


@pytest.mark.parametrize("t", EIP1559_CASES, ids=["eth", "erc20"])
def test_eip1559_digest_and_attach_match_eth_account(t):
    payload = etx.unsigned_payload(t)
    assert payload[0] == 2
    digest = etx.digest_of(payload)
    assert digest == etx.digest_eth_account(t)
    assert etx.parse_unsigned(payload) == t
    key = coincurve.PrivateKey(EIP155_KEY)
    sig = key.sign_recoverable(digest, hasher=None)
    ext = EcdsaSignature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64])
    raw = etx.attach(t, ext, etx.address_of(key.public_key.format()))
    reference = Account.sign_transaction(t.as_eth_account_dict(), EIP155_KEY)
    assert raw == bytes(reference.raw_transaction)
    assert etx.tx_hash(raw) == "0x" + bytes(reference.hash).hex()
    with pytest.raises(ChainError) as exc:
        etx.attach(t, ext, EIP55[0])
    assert exc.value.reason == "signature_invalid"


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"", "transaction_type_not_eip1559"),
        (b"\x01\xc0", "transaction_type_not_eip1559"),
        (b"\x02\xff", "transaction_unparseable"),
        (b"\x02\xc0", "transaction_unparseable"),
    ],
)
def test_eip1559_parse_refuses_bad_bytes(payload, reason):
    with pytest.raises(ChainError) as exc:
        etx.parse_unsigned(payload)
    assert exc.value.reason == reason


def test_eip1559_parse_refuses_non_canonical_integers():
    import rlp

    good = EIP1559_CASES[0]
    fields = good.fields()
    fields[1] = b"\x00"  # nonce 0 encoded with a leading zero byte
    with pytest.raises(ChainError) as exc:
        etx.parse_unsigned(b"\x02" + rlp.encode(fields))
    assert exc.value.reason == "transaction_unparseable"
