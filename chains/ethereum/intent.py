"""The intent check for Ethereum, run by every signer peer (and by the node before it asks).

Parses the unsigned EIP-1559 transaction itself and confirms: the chain id is the intent's
network; the sender is our key at the one input path; ETH pays exactly the destination and
amount with no calldata; an ERC-20 calls `transfer(destination, amount)` on the intent's token
contract with no ETH attached; a sweep's or refill's destination is one of our own addresses
(derived from `destination_keys` when the intent names another vault, e.g. a refill paying the
hot wallet; the caller looked those keys up in its own records); the most it
can pay in fees (gas x maxFeePerGas) stays within `fee_max`. Returns keccak256 of the payload,
computed here.
"""

from __future__ import annotations

from chains.errors import ChainError
from chains.ethereum import tx as etx
from chains.keys import InvalidPath, check_path
from node import limits
from node.ports import FeeTerms, IntentMismatch, NonceUnproven, SigningDigest, UnsignedTransaction, VaultKeys, WithdrawalIntent

KINDS = ("withdrawal", "sweep", "refill")


def asset_contract(asset: str) -> str | None:
    """None for ETH, the EIP-55 contract for "ERC20:<address>"."""
    if asset == "ETH":
        return None
    if asset.startswith("ERC20:"):
        return etx.checksum(asset[len("ERC20:") :])
    raise ChainError("asset_not_supported", asset)


class EthereumIntentChecker:
    chain = "ethereum"

    def check(self, tx: UnsignedTransaction, intent: WithdrawalIntent, keys: VaultKeys,
              destination_keys: VaultKeys | None = None) -> list[SigningDigest]:
        if tx.chain != self.chain or intent.chain != self.chain:
            raise IntentMismatch("chain_mismatch", f"{tx.chain}/{intent.chain}")
        if tx.network != intent.network:
            raise IntentMismatch("network_mismatch", f"{tx.network}/{intent.network}")
        if intent.kind not in KINDS:
            raise IntentMismatch("kind_unknown", intent.kind)
        try:
            contract = asset_contract(intent.asset)
        except ChainError:
            raise IntentMismatch("asset_mismatch", intent.asset) from None
        if len(intent.payments) != 1:
            raise IntentMismatch("payments_count_out_of_range", "one payment per ethereum transaction")
        if len(tx.inputs) != 1:
            raise IntentMismatch("inputs_mismatch", "exactly one sender")
        if tx.prev_txs:
            raise IntentMismatch("prev_txs_not_allowed", "an ethereum transaction spends no outputs")
        try:
            t = etx.parse_unsigned(tx.payload)
        except ChainError as exc:
            raise IntentMismatch(exc.reason, exc.detail) from None
        if str(t.chain_id) != intent.network:
            raise IntentMismatch("chain_id_mismatch", f"{t.chain_id} != {intent.network}")
        try:
            check_path(tx.inputs[0].path)
            for p in intent.own_destination_paths:
                check_path(p)
        except InvalidPath as exc:
            raise IntentMismatch("path_invalid", str(exc)) from None
        payment = intent.payments[0]
        try:
            destination = etx.checksum(payment.destination)
        except ChainError as exc:
            raise IntentMismatch("destination_invalid", str(exc)) from None
        if intent.own_destination_vault and intent.own_destination_vault != intent.vault_id and destination_keys is None:
            raise IntentMismatch("own_destination_vault_unknown", intent.own_destination_vault)
        if intent.kind in ("sweep", "refill"):
            # Derived here from the destination vault's public keys (the caller's own records).
            dkeys = destination_keys or keys
            own = {etx.address_of(dkeys.child_public_key(tuple(p))) for p in intent.own_destination_paths}
            if destination not in own:
                raise IntentMismatch("sweep_destination_not_ours", destination)

        if contract is None:
            if t.to != destination:
                raise IntentMismatch("destination_mismatch", f"{t.to} != {destination}")
            if t.data:
                raise IntentMismatch("data_not_allowed", "an ETH payment carries no calldata")
            if t.value != payment.amount:
                raise IntentMismatch("amount_mismatch", f"{t.value} != {payment.amount}")
        else:
            if t.to != contract:
                raise IntentMismatch("asset_mismatch", f"calls {t.to}, not the token {contract}")
            if t.value != 0:
                raise IntentMismatch("value_not_allowed", "a token transfer attaches no ETH")
            try:
                to, amount = etx.parse_erc20_transfer(t.data)
            except ChainError as exc:
                raise IntentMismatch(exc.reason) from None
            if to != destination:
                raise IntentMismatch("destination_mismatch", f"{to} != {destination}")
            if amount != payment.amount:
                raise IntentMismatch("amount_mismatch", f"{amount} != {payment.amount}")
        try:
            etx.check_gas(t)
        except ChainError as exc:
            raise IntentMismatch(exc.reason, exc.detail) from None
        if t.fee_max > intent.fee_max:
            raise IntentMismatch("fee_exceeds_max", f"{t.fee_max} > {intent.fee_max}")
        check_nonce_window(t, tx.nonce_evidence, etx.address_of(keys.child_public_key(tuple(tx.inputs[0].path))))
        return [SigningDigest(tuple(tx.inputs[0].path), etx.digest_of(tx.payload))]

    def fee_terms(self, tx: UnsignedTransaction) -> FeeTerms:
        try:
            t = etx.parse_unsigned(tx.payload)
        except ChainError as exc:
            raise IntentMismatch(exc.reason, exc.detail) from None
        return FeeTerms(t.fee_max, priority_fee_per_gas=t.max_priority_fee_per_gas)

    def spends(self, tx: UnsignedTransaction, keys: VaultKeys) -> frozenset[str]:
        """`<sender>:<nonce>`: the sender is our key at the one input path (EIP-55), so a
        replacement at the same nonce conflicts and a transaction at another nonce does not."""
        if len(tx.inputs) != 1:
            raise IntentMismatch("inputs_mismatch", "exactly one sender")
        try:
            t = etx.parse_unsigned(tx.payload)
            path = check_path(tx.inputs[0].path)
        except ChainError as exc:
            raise IntentMismatch(exc.reason, exc.detail) from None
        except InvalidPath as exc:
            raise IntentMismatch("path_invalid", str(exc)) from None
        return frozenset({f"{etx.address_of(keys.child_public_key(path))}:{t.nonce}"})


def check_nonce_window(t: etx.Eip1559Tx, evidence: bytes, sender: str) -> None:
    """Nonce n is signed only within CLUSTER_ETH_NONCE_WINDOW above evidence: a transaction of
    this chain from `sender` (our key at the input path), signed by it — only the vault's
    quorum can make one — at a nonce >= n - W. Below W none is needed. So a node cannot collect
    signatures far ahead of the vault's real nonce to spend them later, and a peer left out of
    earlier quorums still signs the next nonce. Raises NonceUnproven."""
    w = limits.CLUSTER_ETH_NONCE_WINDOW
    if t.nonce < w:
        return
    if not evidence:
        raise NonceUnproven("nonce_evidence_missing", f"nonce {t.nonce} >= {w} needs a signed transaction at >= {t.nonce - w}")
    try:
        e, sig = etx.parse_signed(evidence)
        signer = etx.recover_address(etx.digest_of(etx.unsigned_payload(e)), sig)
    except ChainError as exc:
        raise NonceUnproven("nonce_evidence_invalid", f"{exc.reason} {exc.detail}".strip()) from None
    if e.chain_id != t.chain_id or signer != sender:
        raise NonceUnproven("nonce_evidence_invalid", f"signed by {signer} on chain {e.chain_id}, not {sender} on {t.chain_id}")
    if e.nonce < t.nonce - w:
        raise NonceUnproven("nonce_beyond_window", f"nonce {t.nonce}, evidence at {e.nonce}, window {w}")
