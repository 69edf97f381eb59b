"""The intent check for Bitcoin, run by every signer peer (and by the node before it asks).

It trusts nothing the node computed: it parses the unsigned transaction itself, derives our own
addresses from the vault's public keys, matches each output against the approved payments or
our own change/sweep addresses, checks the fee, and computes the BIP143 digests itself. Change
is derived from the signing vault's keys; a sweep's or refill's own destinations from
`destination_keys` when the intent names another vault (`own_destination_vault`: the caller —
a signer peer, from its own policy — looked them up; without them that intent is refused).

Input amounts are proven, never taken on the node's word (issue 14, attack 2): each input's
amount and scriptPubKey are read from its previous transaction (`tx.prev_txs`, stripped), whose
txid is computed here and must be the input's outpoint txid; the script must be our own at the
input's path, and the amount the request states (InputKey.amount) must be that output's. A
BIP143 signature commits only to its own input's amount, so stated amounts alone would let two
sessions, each understating another input, combine into a transaction paying a fee nobody
approved. Refusals: `InputUnproven` (node/ports.py).
"""

from __future__ import annotations

import functools
from collections import Counter

from chains.bitcoin import prevtx
from chains.bitcoin import tx as btx
from chains.errors import ChainError
from chains.keys import InvalidPath, check_path
from node import limits
from node.ports import FeeTerms, InputUnproven, IntentMismatch, SigningDigest, UnsignedTransaction, VaultKeys, WithdrawalIntent

KINDS = ("withdrawal", "sweep", "refill")
# Input sequences we sign: BIP125-replaceable, non-replaceable, final. All have bit 31 set, so
# none is a BIP68 relative time lock.
ALLOWED_SEQUENCES = (btx.SEQUENCE_RBF, 0xFFFFFFFE, 0xFFFFFFFF)


class BitcoinIntentChecker:
    chain = "bitcoin"

    def rebuild(self, tx: UnsignedTransaction, keys: VaultKeys):
        """The bitcoinlib transaction for `tx`, with our keys and the proven input amounts."""
        parsed = _parse(tx)
        if len(parsed.inputs) != len(tx.inputs):
            raise IntentMismatch("inputs_mismatch", f"{len(parsed.inputs)} inputs, {len(tx.inputs)} keys")
        pubs = []
        for key in tx.inputs:
            try:
                pubs.append(keys.child_public_key(check_path(key.path)))
            except InvalidPath as exc:
                raise IntentMismatch("input_path_invalid", str(exc)) from None
            if not isinstance(key.amount, int) or isinstance(key.amount, bool) or key.amount <= 0:
                raise IntentMismatch("input_amount_invalid", repr(key.amount))
        amounts = proven_amounts(tx, parsed, pubs)
        ins = [btx.TxIn(txid, vout, amount, pub, seq) for (txid, vout, seq), pub, amount in zip(parsed.inputs, pubs, amounts)]
        t = btx.build(ins, parsed.outputs, tx.network, locktime=parsed.locktime, version=parsed.version)
        if btx.unsigned_bytes(t) != tx.payload:
            raise IntentMismatch("transaction_not_canonical")
        return t, parsed

    def check(self, tx: UnsignedTransaction, intent: WithdrawalIntent, keys: VaultKeys,
              destination_keys: VaultKeys | None = None) -> list[SigningDigest]:
        if tx.chain != self.chain or intent.chain != self.chain:
            raise IntentMismatch("chain_mismatch", f"{tx.chain}/{intent.chain}")
        if tx.network != intent.network:
            raise IntentMismatch("network_mismatch", f"{tx.network}/{intent.network}")
        if intent.asset != "BTC":
            raise IntentMismatch("asset_mismatch", intent.asset)
        if intent.kind not in KINDS:
            raise IntentMismatch("kind_unknown", intent.kind)
        if not 1 <= len(intent.payments) <= limits.CHAINS_BTC_PAYMENTS_PER_BATCH_MAX:
            raise IntentMismatch("payments_count_out_of_range", str(len(intent.payments)))
        if not 1 <= len(tx.inputs) <= limits.CHAINS_BTC_INPUTS_MAX:
            raise IntentMismatch("inputs_count_out_of_range", str(len(tx.inputs)))
        if tx.nonce_evidence:
            raise IntentMismatch("nonce_evidence_not_allowed", "a bitcoin transaction has no nonce")
        t, parsed = self.rebuild(tx, keys)
        # Only the shape the node builds: no absolute or relative time lock that could freeze
        # the coins (a DoS on our own funds), a standard version.
        if parsed.version not in (1, 2):
            raise IntentMismatch("version_not_allowed", str(parsed.version))
        if parsed.locktime != 0:
            raise IntentMismatch("locktime_not_allowed", str(parsed.locktime))
        for n, (_, _, sequence) in enumerate(parsed.inputs):
            if sequence not in ALLOWED_SEQUENCES:
                raise IntentMismatch("sequence_not_allowed", f"input {n}: {sequence:#x}")

        if intent.own_destination_vault and intent.own_destination_vault != intent.vault_id and destination_keys is None:
            raise IntentMismatch("own_destination_vault_unknown", intent.own_destination_vault)

        def own_scripts(paths, vault_keys: VaultKeys) -> dict[bytes, tuple]:
            out = {}
            for p in paths:
                try:
                    out[btx.p2wpkh_script_pubkey(vault_keys.child_public_key(check_path(p)))] = tuple(p)
                except InvalidPath as exc:
                    raise IntentMismatch("own_path_invalid", str(exc)) from None
            return out

        change_scripts = own_scripts(tx.change_paths, keys)  # change always returns to the signing vault
        # Own destinations (sweep, refill): derived here from the destination vault's public keys,
        # which the caller looked up in its own records, never taken from the request.
        own_destinations = own_scripts(intent.own_destination_paths, destination_keys or keys)
        if intent.kind == "refill" and not own_destinations:
            raise IntentMismatch("sweep_destination_not_ours", "a refill names the own address it pays")

        expected: Counter = Counter()
        for p in intent.payments:
            try:
                script = btx.script_pubkey_for(p.destination, intent.network)
            except ChainError as exc:
                raise IntentMismatch("destination_invalid", str(exc)) from None
            if intent.kind in ("sweep", "refill") and script not in own_destinations:
                raise IntentMismatch("sweep_destination_not_ours", p.destination)
            expected[(script, p.amount)] += 1

        for n, out in enumerate(parsed.outputs):
            if expected[(out.script_pubkey, out.amount)] > 0:
                expected[(out.script_pubkey, out.amount)] -= 1
            elif out.script_pubkey in change_scripts:
                continue
            elif any(s == out.script_pubkey for s, _ in expected):
                raise IntentMismatch("amount_mismatch", f"output {n} pays {out.amount}")
            else:
                raise IntentMismatch("destination_mismatch", f"output {n} pays {out.script_pubkey.hex()}, not ours")
        missing = [k for k, v in expected.items() if v > 0]
        if missing:
            raise IntentMismatch("payment_missing", f"{len(missing)} payment(s) not in the transaction")

        fee = sum(k.amount for k in tx.inputs) - sum(o.amount for o in parsed.outputs)
        if fee <= 0:
            raise IntentMismatch("fee_not_positive", str(fee))
        if fee > intent.fee_max:
            raise IntentMismatch("fee_exceeds_max", f"{fee} > {intent.fee_max}")
        return [SigningDigest(tuple(k.path), d) for k, d in zip(tx.inputs, btx.sighashes(t))]


    def fee_terms(self, tx: UnsignedTransaction) -> FeeTerms:
        parsed = _parse(tx)
        fee = sum(k.amount for k in tx.inputs) - sum(o.amount for o in parsed.outputs)
        return FeeTerms(fee, btx.vsize_estimate(len(parsed.inputs), [o.script_pubkey for o in parsed.outputs]))

    def spends(self, tx: UnsignedTransaction, keys: VaultKeys) -> frozenset[str]:
        """The outpoints `<txid>:<vout>` it spends (hex as the scanner reports prevouts,
        parse_signed_hex): a fee bump (RBF) spends the same ones, another payment other ones."""
        return frozenset(f"{txid}:{vout}" for txid, vout, _ in _parse(tx).inputs)


def proven_amounts(tx: UnsignedTransaction, parsed: btx.ParsedTx, public_keys: list[bytes]) -> list[int]:
    """Each input's amount, read from its previous transaction in `tx.prev_txs` (stripped; its
    txid computed here) at the input's outpoint, whose script must pay our key at the input's
    path (`public_keys`, in input order) and whose amount the request must state. Raises
    InputUnproven, in this order: prev_txs_too_large, prev_tx_too_large, prev_tx_malformed,
    prev_tx_duplicate, prev_tx_missing, prev_tx_mismatch, input_amount_mismatch, prev_tx_unused."""
    sizes = [len(raw) for raw in tx.prev_txs]
    if sum(sizes) > limits.CLUSTER_PREV_TXS_BYTES_MAX:
        raise InputUnproven("prev_txs_too_large", f"{sum(sizes)} > {limits.CLUSTER_PREV_TXS_BYTES_MAX} bytes")
    if len(sizes) > 1 and max(sizes) > limits.CLUSTER_PREV_TX_BYTES_MAX:
        raise InputUnproven("prev_tx_too_large", f"{max(sizes)} > {limits.CLUSTER_PREV_TX_BYTES_MAX} bytes beside others")
    wanted: dict[str, set[int]] = {}
    for txid, vout, _ in parsed.inputs:
        wanted.setdefault(txid, set()).add(vout)
    by_txid: dict[str, prevtx.PrevTx] = {}
    for n, raw in enumerate(tx.prev_txs):
        try:
            # only the outputs our inputs spend are read (the rest are walked over)
            txid = prevtx.txid_of_stripped(raw)
            p = prevtx.parse_stripped(raw, frozenset(wanted.get(txid, ())), txid)
        except prevtx.PrevTxInvalid as exc:
            raise InputUnproven(exc.reason, f"prev_txs[{n}]: {exc.detail}") from None
        if p.txid in by_txid:
            raise InputUnproven("prev_tx_duplicate", p.txid)
        by_txid[p.txid] = p
    amounts = []
    used = set()
    for n, ((txid, vout, _), pub, key) in enumerate(zip(parsed.inputs, public_keys, tx.inputs)):
        p = by_txid.get(txid)
        if p is None:
            raise InputUnproven("prev_tx_missing", f"input {n}: {txid}")
        used.add(txid)
        if vout >= p.outputs_count:
            raise InputUnproven("prev_tx_mismatch", f"input {n}: {txid} has no output {vout}")
        out = p.outputs[vout]
        if out.script_pubkey != btx.p2wpkh_script_pubkey(pub):
            raise InputUnproven("prev_tx_mismatch", f"input {n}: {txid}:{vout} does not pay our key at {tuple(key.path)}")
        if out.amount != key.amount:
            raise InputUnproven("input_amount_mismatch", f"input {n}: stated {key.amount}, {txid}:{vout} holds {out.amount}")
        amounts.append(out.amount)
    unused = set(by_txid) - used
    if unused:
        raise InputUnproven("prev_tx_unused", ", ".join(sorted(unused)))
    return amounts


def _parse(tx: UnsignedTransaction) -> btx.ParsedTx:
    """Parsed once per transaction for check, fee_terms and spends (a peer calls all three)."""
    try:
        return _parse_cached(tx.payload, tx.network)
    except ChainError as exc:
        raise IntentMismatch(exc.reason, exc.detail) from None


@functools.lru_cache(maxsize=limits.CHAINS_BTC_PARSED_CACHED_MAX)
def _parse_cached(payload: bytes, network: str) -> btx.ParsedTx:
    # ParsedTx is never changed by its readers; an exception is not cached (parsed again).
    return btx.parse_unsigned(payload, network)
