"""Previous transactions: what proves a Bitcoin input's amount and script (issue 14, attack 2).

A BIP143 signature commits to its own input's amount only. Were the amounts the node's word,
two sessions over one transaction, each understating another input, would yield signatures that
combine into a valid transaction paying a fee nobody approved (the 2020 hardware-wallet fee
attack). So every signer peer reads each input's amount and scriptPubKey from the transaction
that created it, sent stripped (no witness: the serialisation whose double SHA-256 is the
txid), and checks that txid itself.

The serialisation (Bitcoin's `CTransaction`; BIP144 for the witness form):

    version u32 | [marker 0x00, flag 0x01: witness form only]
    | n_in varint | n_in x (prev txid 32, vout u32, script_sig varint+bytes, sequence u32)
    | n_out varint | n_out x (value i64, script_pubkey varint+bytes)
    | [witness form only: per input, n_items varint, n_items x (varint+bytes)]
    | locktime u32

Pure functions, no library: ~60 lines to audit against the spec rather than trusting a parser
built for wallets. Expected failures raise `PrevTxInvalid` with a sentence-like reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


class PrevTxInvalid(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PrevOut:
    amount: int  # satoshi
    script_pubkey: bytes


@dataclass(frozen=True)
class PrevTx:
    txid: str  # display order hex, as in an outpoint `<txid>:<vout>`
    outputs: tuple[PrevOut, ...]


def txid_of_stripped(stripped: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(stripped).digest()).digest()[::-1].hex()


class _Reader:
    __slots__ = ("b", "at")

    def __init__(self, b: bytes):
        self.b = b
        self.at = 0

    def take(self, n: int) -> bytes:
        end = self.at + n
        if n < 0 or end > len(self.b):
            raise PrevTxInvalid("prev_tx_malformed", f"truncated at byte {self.at}")
        out = self.b[self.at:end]
        self.at = end
        return out

    def skip(self, n: int) -> None:
        if n < 0 or self.at + n > len(self.b):
            raise PrevTxInvalid("prev_tx_malformed", f"truncated at byte {self.at}")
        self.at += n

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def varint(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        n = int.from_bytes(self.take(size), "little")
        if n < (0xFD if size == 2 else 1 << (8 * size // 2)):
            raise PrevTxInvalid("prev_tx_malformed", "non-canonical compact size")
        return n


def _walk(raw: bytes, witness_allowed: bool) -> tuple[bytes, tuple[PrevOut, ...]]:
    """(stripped bytes, outputs) of `raw`; refuses trailing or missing bytes."""
    r = _Reader(raw)
    r.skip(4)  # version
    witness = False
    if raw[4:6] == b"\x00\x01" and witness_allowed:
        witness = True
        r.skip(2)
    start_ins = r.at
    n_in = r.varint()
    if n_in == 0:  # in the stripped form this byte would be a witness marker: never signed for
        raise PrevTxInvalid("prev_tx_malformed", "no inputs")
    for _ in range(n_in):
        r.skip(36)
        r.skip(r.varint())
        r.skip(4)
    n_out = r.varint()
    outputs = []
    for _ in range(n_out):
        amount = int.from_bytes(r.take(8), "little")
        outputs.append(PrevOut(amount, r.take(r.varint())))
    end_outs = r.at
    if witness:
        for _ in range(n_in):
            for _ in range(r.varint()):
                r.skip(r.varint())
    r.skip(4)  # locktime
    if r.at != len(raw):
        raise PrevTxInvalid("prev_tx_malformed", f"{len(raw) - r.at} trailing bytes")
    stripped = raw[:4] + raw[start_ins:end_outs] + raw[-4:] if witness else raw
    return stripped, tuple(outputs)


def parse_stripped(stripped: bytes) -> PrevTx:
    """A previous transaction as a peer receives it: the txid it computes and the outputs."""
    _, outputs = _walk(stripped, witness_allowed=False)
    return PrevTx(txid_of_stripped(stripped), outputs)


def strip(raw: bytes) -> bytes:
    """The stripped serialisation of a transaction as a node returns it (with witnesses or not)."""
    stripped, _ = _walk(raw, witness_allowed=True)
    return stripped
