"""Bitcoin transactions with bitcoinlib: P2WPKH addresses, unsigned transactions, BIP143
sighashes, attaching external signatures. Pure functions, no node, no state.

bitcoinlib's sighash was cross-checked against the BIP143 native P2WPKH vector
(tests/unit/chains/test_vectors.py).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import coincurve
from bitcoinlib.encoding import EncodingError
from bitcoinlib.keys import Address
from bitcoinlib.transactions import Transaction, TransactionError
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from chains.errors import ChainError, SignatureInvalid
from node.ports import EcdsaSignature

# Our network names -> bitcoinlib's.
NETWORKS = {"mainnet": "bitcoin", "testnet": "testnet", "regtest": "regtest"}
# Base58 addresses on regtest use testnet's version bytes; bitcoinlib names them testnet.
_ACCEPTED = {"mainnet": {"bitcoin"}, "testnet": {"testnet"}, "regtest": {"regtest", "testnet"}}

SEQUENCE_RBF = 0xFFFFFFFD  # BIP125: replaceable, no relative lock time
SIGHASH_ALL = 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TX_VERSION = 2


def check_network(network: str) -> str:
    if network not in NETWORKS:
        raise ChainError("network_unknown", network)
    return NETWORKS[network]


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def p2wpkh_script_pubkey(public_key: bytes) -> bytes:
    assert len(public_key) == 33, "compressed keys only (BIP143 P2WPKH)"
    return b"\x00\x14" + hash160(public_key)


def p2wpkh_address(public_key: bytes, network: str) -> str:
    return Address(public_key, script_type="p2wpkh", encoding="bech32", network=check_network(network)).address


@functools.lru_cache(maxsize=65536)
def script_pubkey_for(address: str, network: str) -> bytes:
    """The output script paying `address`; refuses addresses of another network."""
    check_network(network)
    if not isinstance(address, str) or not 14 <= len(address) <= 100:
        raise ChainError("destination_invalid", repr(address))
    try:
        parsed = Address.parse(address)
    except (EncodingError, TransactionError, ValueError, TypeError, KeyError) as exc:
        raise ChainError("destination_invalid", f"{address}: {exc}") from None
    if parsed.network.name not in _ACCEPTED[network]:
        raise ChainError("destination_wrong_network", f"{address} is a {parsed.network.name} address, not {network}")
    if parsed.script_type not in ("p2pkh", "p2sh", "p2wpkh", "p2wsh", "p2tr"):
        raise ChainError("destination_invalid", f"{address}: unsupported script type {parsed.script_type}")
    from bitcoinlib.transactions import Output

    script = Output(1, address=parsed).lock_script
    assert script, f"no script for {address}"
    return bytes(script)


def output_vbytes(script_pubkey: bytes) -> int:
    return 8 + 1 + len(script_pubkey)


P2WPKH_INPUT_VBYTES = 68  # 41 non-witness + (1 + 1 + 72 + 1 + 33) / 4 witness, rounded up
TX_OVERHEAD_VBYTES = 11  # version, locktime, counts, segwit marker and flag (10.5)


def vsize_estimate(n_inputs: int, output_scripts: list[bytes]) -> int:
    """An upper bound of the signed vsize for P2WPKH inputs (signatures at most 72 bytes)."""
    return TX_OVERHEAD_VBYTES + n_inputs * P2WPKH_INPUT_VBYTES + sum(output_vbytes(s) for s in output_scripts)


@dataclass(frozen=True)
class TxIn:
    txid: str  # display order hex
    vout: int
    amount: int  # value of the output spent (BIP143 commits to it)
    public_key: bytes  # our child key that owns it
    sequence: int = SEQUENCE_RBF


@dataclass(frozen=True)
class TxOut:
    script_pubkey: bytes
    amount: int


def build(inputs: list[TxIn], outputs: list[TxOut], network: str, locktime: int = 0, version: int = TX_VERSION) -> Transaction:
    t = Transaction(network=check_network(network), witness_type="segwit", version=version, locktime=locktime)
    for i in inputs:
        t.add_input(
            bytes.fromhex(i.txid), i.vout, keys=i.public_key, value=i.amount, witness_type="segwit", sequence=i.sequence
        )
    for o in outputs:
        t.add_output(o.amount, lock_script=o.script_pubkey)
    return t


def unsigned_bytes(t: Transaction) -> bytes:
    """Network serialisation without witnesses: what UnsignedTransaction.payload carries."""
    return bytes(t.raw(witness_type="legacy"))


def txid_of(unsigned: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(unsigned).digest()).digest()[::-1].hex()


@dataclass(frozen=True)
class ParsedTx:
    version: int
    locktime: int
    inputs: list[tuple[str, int, int]]  # (txid, vout, sequence)
    outputs: list[TxOut]


def parse_unsigned(payload: bytes, network: str) -> ParsedTx:
    """Parses an unsigned transaction; refuses anything that does not re-serialise to exactly
    the same bytes or that already carries scripts."""
    try:
        t = Transaction.parse_bytes(payload, network=check_network(network))
    except Exception as exc:  # bitcoinlib raises a zoo of types on bad bytes
        raise ChainError("transaction_unparseable", repr(exc)) from None
    if any(i.unlocking_script or i.witnesses for i in t.inputs):
        raise ChainError("transaction_not_unsigned")
    if bytes(t.raw(witness_type="legacy")) != payload:
        raise ChainError("transaction_not_canonical")
    return ParsedTx(
        version=t.version_int,
        locktime=t.locktime,
        inputs=[(i.prev_txid.hex(), i.output_n_int, i.sequence) for i in t.inputs],
        outputs=[TxOut(bytes(o.lock_script), int(o.value)) for o in t.outputs],
    )


def sighashes(t: Transaction) -> list[bytes]:
    """BIP143 SIGHASH_ALL digests, one per input."""
    return [bytes(t.signature_hash(n, hash_type=SIGHASH_ALL, witness_type="segwit")) for n in range(len(t.inputs))]


def verify_signature(public_key: bytes, digest: bytes, sig: EcdsaSignature) -> bytes:
    """Returns the DER signature after checking it (low-S, valid under `public_key`)."""
    if not (1 <= sig.r < SECP256K1_N and 1 <= sig.s <= SECP256K1_N // 2):
        raise SignatureInvalid("r or s out of range, or high-S")
    if sig.public_key and sig.public_key != public_key:
        raise SignatureInvalid("signature names another public key")
    der = encode_dss_signature(sig.r, sig.s)
    if not coincurve.PublicKey(public_key).verify(der, digest, hasher=None):
        raise SignatureInvalid(f"does not verify under {public_key.hex()}")
    return der


def attach(t: Transaction, signatures: list[EcdsaSignature]) -> bytes:
    """Puts [DER‖SIGHASH_ALL, pubkey] in each input's witness; every signature is verified
    against its input's key and BIP143 digest first."""
    if len(signatures) != len(t.inputs):
        raise SignatureInvalid(f"{len(signatures)} signatures for {len(t.inputs)} inputs")
    digests = sighashes(t)
    for inp, digest, sig in zip(t.inputs, digests, signatures):
        public_key = inp.keys[0].public_byte
        der = verify_signature(public_key, digest, sig)
        inp.witnesses = [der + bytes([SIGHASH_ALL]), public_key]
    return bytes(t.raw())


@dataclass(frozen=True)
class ScannedTx:
    txid: str
    coinbase: bool
    prevouts: list[tuple[str, int]]
    outputs: list[TxOut]


def parse_signed_hex(raw_hex: str, network: str) -> ScannedTx:
    """A transaction from a block: its txid, what it spends, what it pays."""
    t = Transaction.parse_hex(raw_hex, strict=False, network=check_network(network))
    coinbase = len(t.inputs) == 1 and t.inputs[0].prev_txid == b"\x00" * 32
    prevouts = [] if coinbase else [(i.prev_txid.hex(), i.output_n_int) for i in t.inputs]
    return ScannedTx(
        txid=t.txid,
        coinbase=coinbase,
        prevouts=prevouts,
        outputs=[TxOut(bytes(o.lock_script), int(o.value)) for o in t.outputs],
    )
