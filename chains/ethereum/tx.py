"""Ethereum transactions: EIP-55 addresses from our child keys, EIP-1559 (type 2) unsigned
transactions with chain id, their signing digest, ERC-20 transfer calldata, parsing, and
attaching an external (r, s, recovery id) signature. Pure functions, no node, no state.

The unsigned payload is `0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas,
to, value, data, accessList])` and the digest its keccak256 (EIP-1559). eth-account computes the
same digest from the dict (`digest_eth_account`) and encodes the signed transaction; the unit
tests check both against eth-account's own signing on a fixed key.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
import rlp
from eth_account._utils.legacy_transactions import encode_transaction, serializable_unsigned_transaction_from_dict
from eth_utils import is_address, keccak, to_checksum_address
from rlp.sedes import big_endian_int

from chains.errors import ChainError, SignatureInvalid
from node import limits
from node.ports import EcdsaSignature

TX_TYPE_EIP1559 = 2
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ERC20_TRANSFER_SELECTOR = keccak(text="transfer(address,uint256)")[:4]  # a9059cbb
ERC20_TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")
UINT256_MAX = 2**256 - 1


def address_of(public_key: bytes) -> str:
    """EIP-55 checksummed address of a (compressed or uncompressed) secp256k1 key."""
    uncompressed = coincurve.PublicKey(public_key).format(compressed=False)
    return to_checksum_address(keccak(uncompressed[1:])[-20:])


def checksum(address: str) -> str:
    """Accepts 0x + 40 hex (any case, but a mixed-case address must carry a valid EIP-55
    checksum); returns the EIP-55 form."""
    if not isinstance(address, str) or not is_address(address):
        raise ChainError("destination_invalid", repr(address))
    body = address[2:]
    if body != body.lower() and body != body.upper() and to_checksum_address(address) != address:
        raise ChainError("destination_checksum_invalid", address)
    return to_checksum_address(address)


def erc20_transfer_data(to: str, amount: int) -> bytes:
    assert 0 < amount <= UINT256_MAX
    return ERC20_TRANSFER_SELECTOR + bytes.fromhex(checksum(to)[2:]).rjust(32, b"\0") + amount.to_bytes(32, "big")


def parse_erc20_transfer(data: bytes) -> tuple[str, int]:
    if len(data) != 4 + 64 or data[:4] != ERC20_TRANSFER_SELECTOR or data[4:16] != b"\0" * 12:
        raise ChainError("calldata_not_erc20_transfer")
    return to_checksum_address(data[16:36]), int.from_bytes(data[36:68], "big")


@dataclass(frozen=True)
class Eip1559Tx:
    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: str  # EIP-55
    value: int
    data: bytes = b""

    def fields(self) -> list:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            bytes.fromhex(self.to[2:]),
            self.value,
            self.data,
            [],
        ]

    def as_eth_account_dict(self) -> dict:
        return {
            "type": TX_TYPE_EIP1559,
            "chainId": self.chain_id,
            "nonce": self.nonce,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
            "maxFeePerGas": self.max_fee_per_gas,
            "gas": self.gas,
            "to": self.to,
            "value": self.value,
            "data": self.data,
            "accessList": [],
        }

    @property
    def fee_max(self) -> int:
        return self.gas * self.max_fee_per_gas


def unsigned_payload(t: Eip1559Tx) -> bytes:
    return bytes([TX_TYPE_EIP1559]) + rlp.encode(t.fields())


def digest_of(payload: bytes) -> bytes:
    return keccak(payload)


def digest_eth_account(t: Eip1559Tx) -> bytes:
    return bytes(serializable_unsigned_transaction_from_dict(t.as_eth_account_dict()).hash())


def _typed_fields(raw: bytes, n_fields: int) -> list:
    """The RLP list of an EIP-1559 envelope (type byte 2), which must hold `n_fields` items."""
    if not raw or raw[0] != TX_TYPE_EIP1559:
        raise ChainError("transaction_type_not_eip1559")
    try:
        items = rlp.decode(raw[1:])
    except Exception as exc:  # pyrlp raises several types on bad bytes
        raise ChainError("transaction_unparseable", repr(exc)) from None
    if not isinstance(items, list) or len(items) != n_fields:
        raise ChainError("transaction_unparseable", f"expected {n_fields} fields")
    return items


def parse_unsigned(payload: bytes) -> Eip1559Tx:
    """Strict: type 2, nine fields, canonical integers, a 20-byte `to`, an empty access list,
    and the bytes re-encode to exactly `payload`."""
    items = _typed_fields(payload, 9)
    chain_id, nonce, prio, max_fee, gas, to, value, data, access_list = items
    try:
        ints = [big_endian_int.deserialize(x) for x in (chain_id, nonce, prio, max_fee, gas, value)]
    except Exception as exc:
        raise ChainError("transaction_unparseable", repr(exc)) from None
    if not isinstance(to, bytes) or len(to) != 20:
        raise ChainError("transaction_to_invalid", "contract creation or malformed `to`")
    if not isinstance(data, bytes):
        raise ChainError("transaction_unparseable", "data")
    if access_list != []:
        raise ChainError("access_list_not_allowed")
    t = Eip1559Tx(ints[0], ints[1], ints[2], ints[3], ints[4], to_checksum_address(to), ints[5], data)
    if unsigned_payload(t) != payload:
        raise ChainError("transaction_not_canonical")
    return t


def parse_signed(raw: bytes) -> tuple[Eip1559Tx, EcdsaSignature]:
    """A signed EIP-1559 transaction (type 2, the nine fields, y parity, r, s): its unsigned
    part (strict, as parse_unsigned) and its signature. Who signed it: `recover_address`."""
    items = _typed_fields(raw, 12)
    t = parse_unsigned(bytes([TX_TYPE_EIP1559]) + rlp.encode(items[:9]))
    try:
        y, r, s = (big_endian_int.deserialize(x) for x in items[9:])
    except Exception as exc:
        raise ChainError("transaction_unparseable", repr(exc)) from None
    if bytes([TX_TYPE_EIP1559]) + rlp.encode(items) != raw:
        raise ChainError("transaction_not_canonical")
    return t, EcdsaSignature(r, s, y)


def recover_address(digest: bytes, sig: EcdsaSignature) -> str:
    if not (1 <= sig.r < SECP256K1_N and 1 <= sig.s <= SECP256K1_N // 2):
        raise SignatureInvalid("r or s out of range, or high-S")
    if sig.recovery_id not in (0, 1):
        raise SignatureInvalid(f"recovery id {sig.recovery_id}")
    raw = sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.recovery_id])
    try:
        pub = coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None)
    except Exception as exc:
        raise SignatureInvalid(f"no key recovers: {exc!r}") from None
    return address_of(pub.format())


def attach(t: Eip1559Tx, sig: EcdsaSignature, sender: str) -> bytes:
    """The signed transaction, after checking that the signature recovers to `sender`."""
    digest = digest_of(unsigned_payload(t))
    recovered = recover_address(digest, sig)
    if recovered != sender:
        raise SignatureInvalid(f"recovers to {recovered}, not the sender {sender}")
    unsigned = serializable_unsigned_transaction_from_dict(t.as_eth_account_dict())
    return bytes(encode_transaction(unsigned, vrs=(sig.recovery_id, sig.r, sig.s)))


def tx_hash(raw: bytes) -> str:
    return "0x" + keccak(raw).hex()


def check_gas(t: Eip1559Tx) -> None:
    if not 21_000 <= t.gas <= limits.CHAINS_ETH_GAS_LIMIT_MAX:
        raise ChainError("gas_limit_out_of_range", str(t.gas))
    if t.max_priority_fee_per_gas > t.max_fee_per_gas:
        raise ChainError("priority_fee_above_max_fee")
