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
    outputs: dict[int, PrevOut]  # by vout: every output, or those asked for (parse_stripped)
    outputs_count: int


def txid_of_stripped(stripped: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(stripped).digest()).digest()[::-1].hex()


def _varint(b: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of the compact size at `at`; canonical encodings only."""
    if at >= len(b):
        raise PrevTxInvalid("prev_tx_malformed", f"truncated at byte {at}")
    first = b[at]
    if first < 0xFD:
        return first, at + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    if at + 1 + size > len(b):
        raise PrevTxInvalid("prev_tx_malformed", f"truncated at byte {at}")
    n = int.from_bytes(b[at + 1:at + 1 + size], "little")
    if n < (0xFD if size == 2 else 1 << (8 * size // 2)):
        raise PrevTxInvalid("prev_tx_malformed", "non-canonical compact size")
    return n, at + 1 + size


def _walk(raw: bytes, witness_allowed: bool, vouts=None) -> tuple[bytes, dict[int, PrevOut], int]:
    """(stripped bytes, outputs by vout — those in `vouts`, or all when None — and the output
    count) of `raw`; refuses trailing or missing bytes. Written flat (a peer walks up to
    CLUSTER_PREV_TXS_BYTES_MAX per request: its check time is measured in bench/cluster.py):
    a read past the end is an IndexError, a skip past it is found where the walk ends."""
    end = len(raw)
    if end < 10:
        raise PrevTxInvalid("prev_tx_malformed", f"{end} bytes")
    try:
        at = 4  # version
        witness = False
        if raw[4] == 0 and raw[5] == 1 and witness_allowed:
            witness = True
            at = 6
        start_ins = at
        n_in, at = _varint(raw, at)
        if n_in == 0:  # in the stripped form this byte would be a witness marker: never signed for
            raise PrevTxInvalid("prev_tx_malformed", "no inputs")
        for _ in range(n_in):
            v = raw[at + 36]  # after the prev txid and vout: the script_sig's length
            if v < 0xFD:
                at += 41 + v  # + the sequence
            else:
                v, at = _varint(raw, at + 36)
                at += v + 4
        n_out, at = _varint(raw, at)
        outputs = {}
        for n in range(n_out):
            v = raw[at + 8]  # after the value: the script_pubkey's length
            if v < 0xFD:
                script_at = at + 9
            else:
                v, script_at = _varint(raw, at + 8)
            if vouts is None or n in vouts:
                if script_at + v > end:
                    raise IndexError
                outputs[n] = PrevOut(int.from_bytes(raw[at:at + 8], "little"), raw[script_at:script_at + v])
            at = script_at + v
        end_outs = at
        if witness:
            for _ in range(n_in):
                items, at = _varint(raw, at)
                for _ in range(items):
                    v, at = _varint(raw, at)
                    at += v
    except IndexError:
        raise PrevTxInvalid("prev_tx_malformed", "truncated") from None
    at += 4  # locktime
    if at != end:
        raise PrevTxInvalid("prev_tx_malformed", "truncated" if at > end else f"{end - at} trailing bytes")
    stripped = raw[:4] + raw[start_ins:end_outs] + raw[-4:] if witness else raw
    return stripped, outputs, n_out


def parse_stripped(stripped: bytes, vouts=None, txid: str | None = None) -> PrevTx:
    """A previous transaction as a peer receives it: the txid it computes (`txid`: computed
    already by the caller, from these bytes) and its outputs at `vouts` (a set; None: all)."""
    _, outputs, count = _walk(stripped, witness_allowed=False, vouts=vouts)
    return PrevTx(txid or txid_of_stripped(stripped), outputs, count)


def strip(raw: bytes) -> bytes:
    """The stripped serialisation of a transaction as a node returns it (with witnesses or not)."""
    stripped, _, _ = _walk(raw, witness_allowed=True, vouts=frozenset())
    return stripped
