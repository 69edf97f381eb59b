"""The ports the adapters implement, and the value types that cross them.

node/ depends on these only; mpc/ and chains/ implement them and are wired together by the
composition root (api/). Amounts are int base units (satoshi, wei, token unit); never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import rfc8785

# A non-hardened BIP32 path below the vault's group key, e.g. (0, 17) for deposit address 17.
Path = tuple[int, ...]


@dataclass(frozen=True)
class Payment:
    """One output the intent asks for: `amount` base units of the intent's asset to `destination`."""

    destination: str
    amount: int

    def __post_init__(self):
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"payment amount must be a positive int in base units, got {self.amount!r}")


@dataclass(frozen=True)
class WithdrawalIntent:
    """What the approvers approved and what each signer peer checks the transaction against.

    `kind`: "withdrawal" (to outside addresses), "sweep" (deposit address -> hot, hot -> cold:
    every payment goes to one of our own addresses, named by path in `own_destination_paths`),
    or "refill" (cold -> hot).
    `asset`: "BTC", "ETH", or an ERC-20 as "ERC20:<EIP-55 contract address>".
    `own_destination_vault`: the vault whose keys `own_destination_paths` are derived from when
    it is not the signing vault (a refill pays the hot vault's wallet). Each signer peer looks its
    public keys up in its own policy (`[own_destinations]`), never in the request. Empty: the
    signing vault; then it is left out of the canonical bytes (older approvals stay valid).
    """

    intent_id: str
    vault_id: str
    chain: str  # "bitcoin" | "ethereum"
    network: str  # bitcoin: "mainnet" | "testnet" | "regtest"; ethereum: the decimal chain id
    asset: str
    payments: tuple[Payment, ...]
    fee_max: int  # base units of the chain's fee asset (sats, wei), the most this may pay
    kind: str = "withdrawal"
    own_destination_paths: tuple[Path, ...] = ()
    own_destination_vault: str = ""

    def canonical(self) -> dict:
        d = {
            "intent_id": self.intent_id,
            "vault_id": self.vault_id,
            "chain": self.chain,
            "network": self.network,
            "asset": self.asset,
            "payments": [{"destination": p.destination, "amount": str(p.amount)} for p in self.payments],
            "fee_max": str(self.fee_max),
            "kind": self.kind,
            "own_destination_paths": [list(p) for p in self.own_destination_paths],
        }
        if self.own_destination_vault:
            d["own_destination_vault"] = self.own_destination_vault
        return d

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes: what approvers sign (Ed25519) and the node signs into requests."""
        return rfc8785.dumps(self.canonical())

    def band_amount(self) -> int:
        """What an approval band and an hourly amount limit count (issue 14)."""
        return band_amount(self.chain, self.asset, sum(p.amount for p in self.payments), self.fee_max)


# The asset each chain's fees are paid in (fee_max is in its base units).
FEE_ASSETS = {"bitcoin": "BTC", "ethereum": "ETH"}


def band_amount(chain: str, asset: str, amount: int, fee_max: int) -> int:
    """The amount an approval band and an hourly amount limit count: what the transaction can
    take out in `asset`. Paid in the chain's fee asset (BTC, ETH): the payments plus fee_max,
    the most the fee may be. A token (ERC-20): its amount alone; its fee is ETH, counted by a
    peer against its separate hourly fee budget."""
    return amount + fee_max if FEE_ASSETS.get(chain) == asset else amount


@dataclass(frozen=True)
class InputKey:
    """A key the transaction must be signed with: our child key at `path`.

    Bitcoin: one per input, with the value of the output it spends (`amount`, BIP143 commits to
    it); a checker holds it against the input's previous transaction (`prev_txs`) and refuses a
    stated amount that differs (`input_amount_mismatch`). Ethereum: exactly one (the sender),
    `amount` 0.
    """

    path: Path
    amount: int = 0


@dataclass(frozen=True)
class UnsignedTransaction:
    """The full unsigned transaction as the node built it, for the peers to parse themselves.

    `payload`: bitcoin, the unsigned transaction in network serialisation (no witnesses);
    ethereum, the unsigned typed transaction (EIP-2718 type byte ‖ RLP payload).
    `change_paths`: paths of outputs that pay back to our own addresses (bitcoin change).
    `prev_txs`: bitcoin, the transactions whose outputs the inputs spend, stripped (no witness:
    the bytes whose double SHA-256 is the txid), each once: what proves each input's amount and
    script to a peer (chains/bitcoin/prevtx.py). Ethereum: none.
    `nonce_evidence`: ethereum, a transaction from the same sender signed by the vault's key at
    a nonce >= this one's - CLUSTER_ETH_NONCE_WINDOW (empty below the window): what lets a peer
    sign a nonce it did not see the vault reach. Bitcoin: empty.
    """

    chain: str
    network: str
    payload: bytes
    inputs: tuple[InputKey, ...]
    change_paths: tuple[Path, ...] = ()
    prev_txs: tuple[bytes, ...] = field(default=(), repr=False)
    nonce_evidence: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class SigningDigest:
    """One 32-byte digest to sign with the child key at `path` (one per bitcoin input)."""

    path: Path
    digest: bytes


class IntentMismatch(Exception):
    """The transaction does not do what the intent says; `reason` is a sentence-like code,
    e.g. `destination_mismatch`, `amount_mismatch`, `change_not_ours`, `fee_exceeds_max`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InputUnproven(IntentMismatch):
    """An input's amount or script is not proven by the previous transactions sent with it:
    `prev_tx_missing`, `prev_tx_malformed`, `prev_tx_too_large`, `prev_txs_too_large`,
    `prev_tx_duplicate`, `prev_tx_unused`, `prev_tx_mismatch` (no such output, or not our
    script at the input's path), `input_amount_mismatch` (the stated amount is not the output's).
    A peer refuses it under that name."""


class NonceUnproven(IntentMismatch):
    """An Ethereum nonce at or past CLUSTER_ETH_NONCE_WINDOW without evidence the vault is
    near it: `nonce_evidence_missing`, `nonce_evidence_invalid` (not a signed transaction of
    this chain from this sender), `nonce_beyond_window` (the evidence is more than the window
    below). A peer refuses it under that name."""


@runtime_checkable
class VaultKeys(Protocol):
    """Public key material of one vault: enough to derive our own addresses, no secret."""

    def child_public_key(self, path: Path) -> bytes:
        """33-byte compressed secp256k1 public key at the non-hardened `path`."""
        ...


@dataclass(frozen=True)
class FeeTerms:
    """What a transaction can cost, as its own bytes say (a checker parses them): a peer holds
    these against its own fee limits. Bitcoin: `fee` = inputs - outputs (sat), `vsize` its
    signed virtual size (vB, P2WPKH estimate). Ethereum: `fee` = gas limit x maxFeePerGas (wei),
    the most it can pay; `priority_fee_per_gas` its maxPriorityFeePerGas (wei)."""

    fee: int
    vsize: int = 0
    priority_fee_per_gas: int = 0


@runtime_checkable
class IntentChecker(Protocol):
    """Implemented per chain by chains/; called by every signer peer before it signs."""

    chain: str

    def check(self, tx: UnsignedTransaction, intent: WithdrawalIntent, keys: VaultKeys,
              destination_keys: VaultKeys | None = None) -> list[SigningDigest]:
        """Parses `tx` independently, confirms it pays exactly the intent's payments in the
        intent's asset, that every other output goes to our own addresses (derived from `keys`
        at `tx.change_paths`; own destinations at `intent.own_destination_paths` from
        `destination_keys` — the keys of `intent.own_destination_vault`, which the caller looked
        up itself — or from `keys` when there is none), that the fee stays within
        `intent.fee_max`, and returns the digests to sign, computed here. Raises IntentMismatch."""
        ...

    def fee_terms(self, tx: UnsignedTransaction) -> FeeTerms:
        """What `tx` can cost, parsed from its bytes (call after `check` accepted it)."""
        ...

    def spends(self, tx: UnsignedTransaction, keys: VaultKeys) -> frozenset[str]:
        """What `tx` consumes on chain, parsed here, as strings: two transactions conflict (at
        most one of them can ever be mined) when their sets share an element. Bitcoin: its
        input outpoints `<txid>:<vout>`; Ethereum: `<sender EIP-55 address>:<nonce>` (the
        sender derived from `keys` at the one input path). A signer peer's spend-once rule
        (issue 14) compares these across the versions it signed for one intent. Call it on a
        transaction `check` accepted; raises IntentMismatch on one it cannot parse."""
        ...


@dataclass(frozen=True)
class EcdsaSignature:
    """A secp256k1 signature from outside (the MPC cluster): low-S, with its recovery id."""

    r: int
    s: int
    recovery_id: int
    public_key: bytes = field(default=b"", repr=False)  # 33-byte compressed key it verifies under


# --- the chain port (chains/bitcoin, chains/ethereum) --------------------------------------
# A watcher calls `scan()` on a timer. The scanner only reports what it observed, in an
# append-only log per chain: a payment to a watched deposit address in a block ("seen"), and
# "rollback" (every block above `height` left the chain). node/deposits/ reads the log after its
# cursor and owns every deposit status below: `pending` records a pending credit, `credited`
# posts it (at the asset's depth), `voided` voids it (a reorg before the depth),
# `reorged_after_credit` flags a posted deposit that left the chain for staff.

DEPOSIT_PENDING = "pending"
DEPOSIT_CREDITED = "credited"
DEPOSIT_VOIDED = "voided"
DEPOSIT_REORGED_AFTER_CREDIT = "reorged_after_credit"

OBSERVED_SEEN = "seen"
OBSERVED_ROLLBACK = "rollback"
OBSERVED_LEFT = "left"  # this deposit's inclusion is gone (only the upgrade from per-deposit statuses writes it)


@dataclass(frozen=True)
class Observation:
    """One entry of a chain's observation log, `seq` increasing by one per chain.

    "seen": `deposit_id` (bitcoin `<txid>:<vout>`, ethereum `<tx hash>:<log index>` or
    `<tx hash>:value`) paid `amount` of `asset` to `address` (of `vault_id` at `path`) in block
    `height` / `block_hash`. "rollback": the blocks above `height` left the chain (the deposit
    fields are empty). "left": the deposit's current inclusion left the chain."""

    chain: str
    network: str
    seq: int
    kind: str
    height: int
    deposit_id: str = ""
    asset: str = ""
    txid: str = ""
    address: str = ""
    vault_id: str = ""
    path: Path = ()
    amount: int = 0
    block_hash: str = ""


@dataclass(frozen=True)
class ObservationPage:
    """Observations after a cursor, read in one transaction with the head they agree with: the
    log's `last_seq` and the scanned tip at that seq (None before the first block)."""

    last_seq: int
    tip_height: int | None
    tip_hash: str | None
    items: tuple[Observation, ...]
    no_rollback_after: bool = False  # no "rollback" follows the items up to last_seq

    @property
    def complete(self) -> bool:
        """Whether the page reaches the head."""
        return not self.items or self.items[-1].seq == self.last_seq

    @property
    def tip_applies(self) -> bool:
        """Whether the tip describes the blocks of every item read: the page reaches the head,
        or nothing after it rolled back (then confirmations may be counted against it)."""
        return self.complete or self.no_rollback_after


@dataclass(frozen=True)
class ScanResult:
    """What one `scan()` saw: the tip it reached, the blocks it rolled back, and what it
    appended to the observation log."""

    tip_height: int
    tip_hash: str
    rolled_back_to: int | None  # the fork height when a reorg was found, else None
    events: tuple[Observation, ...]


@runtime_checkable
class DepositSource(Protocol):
    """A chain adapter's observation log, read by the node after its own cursor (so nothing
    depends on one scan's return value, and a pass reads only what is new). `confirmations`:
    the configured depth per asset (node/deposits/ applies it)."""

    chain: str
    network: str
    confirmations: dict[str, int]

    def observations(self, after_seq: int, limit: int) -> ObservationPage: ...


@dataclass(frozen=True)
class SignedTransaction:
    chain: str
    network: str
    txid: str  # bitcoin txid (hex, display order); ethereum transaction hash (0x hex)
    raw: bytes


TX_UNKNOWN = "unknown"  # the node has never heard of it (or dropped it)
TX_MEMPOOL = "mempool"
TX_CONFIRMED = "confirmed"
TX_FAILED = "failed"  # ethereum: mined but reverted


@dataclass(frozen=True)
class TxStatus:
    txid: str
    state: str
    confirmations: int = 0
    block_height: int | None = None


@dataclass(frozen=True)
class FeeEstimate:
    """Bitcoin: `fee_rate` in sat/vB. Ethereum: `max_fee_per_gas` and `max_priority_fee_per_gas`
    in wei. `source` says where it came from: "node" or "fallback" (the configured rate)."""

    source: str
    fee_rate: int = 0
    max_fee_per_gas: int = 0
    max_priority_fee_per_gas: int = 0


@runtime_checkable
class ChainAdapter(Protocol):
    """One chain and network. Never holds a private key: it builds unsigned transactions, gives
    the digests to sign, and attaches signatures made outside (the MPC cluster), verifying each
    against our child public key before anything is broadcast."""

    chain: str
    network: str

    def register_vault(self, vault_id: str, keys: VaultKeys) -> None: ...

    def address(self, vault_id: str, path: Path) -> str:
        """Our address at `path`; also starts watching it (deposit addresses: deposits are
        reported; internal ones, e.g. change or the hot wallet, are only tracked as funds)."""
        ...

    def scan(self) -> ScanResult: ...

    def estimate_fee(self) -> FeeEstimate: ...

    def build_withdrawal(self, intent: WithdrawalIntent, source_path: Path | None = None) -> UnsignedTransaction: ...

    def digests(self, tx: UnsignedTransaction, intent: WithdrawalIntent) -> list[SigningDigest]:
        """The intent check run locally (the same code the signer peers run)."""
        ...

    def attach_signatures(self, tx: UnsignedTransaction, signatures: list[EcdsaSignature], intent: WithdrawalIntent) -> SignedTransaction: ...

    def broadcast(self, signed: SignedTransaction) -> str: ...

    def status(self, txid: str) -> TxStatus: ...


# --- the signing cluster (implemented by mpc/: mpc.client.ClusterClient) -----------------


APPROVE_AT_DOMAIN = b"custody/withdrawal-approve-at/v1\n"


@dataclass(frozen=True)
class Approval:
    """An approver's Ed25519 signature over `WithdrawalIntent.canonical_bytes()`, or, with
    `approved_at_ms` (the approver's own clock, Unix ms), over `approval_message(intent, at)`:
    the time is signed, so a peer can enforce a cold vault's delay without trusting the node."""

    approver_id: str
    signature: bytes
    approved_at_ms: int | None = None

    def message(self, intent: WithdrawalIntent) -> bytes:
        return approval_message(intent, self.approved_at_ms)


def approval_message(intent: WithdrawalIntent, approved_at_ms: int | None = None) -> bytes:
    """What an approver signs: the intent's canonical bytes; a timed approval puts its time in
    front under its own domain, so an untimed signature is never read as a timed one."""
    raw = intent.canonical_bytes()
    if approved_at_ms is None:
        return raw
    assert type(approved_at_ms) is int and approved_at_ms >= 0
    return APPROVE_AT_DOMAIN + str(approved_at_ms).encode() + b"\n" + raw


@dataclass(frozen=True)
class Vault:
    """One MPC key: who holds it (any threshold+1 of the committee sign) and its public part."""

    vault_id: str
    committee: tuple[str, ...]  # party ids "<peer>:<generation>" (a reshare makes generation + 1)
    threshold: int
    public_key: bytes  # 33-byte compressed group key
    chain_code: bytes  # 32 bytes, agreed at key generation (BIP32 non-hardened derivation)


class SigningRefused(Exception):
    """The cluster did not sign (or did not run a ceremony): `reason` is sentence-like, e.g.
    `approvals_below_quorum`, `transaction_does_not_match_intent`, `signing_failed`;
    `culprits` names peers blamed for aborted sessions. Nothing was signed."""

    def __init__(self, reason: str, culprits: tuple[str, ...] = ()):
        super().__init__(f"{reason} (culprits: {', '.join(culprits)})" if culprits else reason)
        self.reason = reason
        self.culprits = tuple(culprits)


@runtime_checkable
class SigningCluster(Protocol):
    """The MPC signer cluster as the node sees it. Every call is node-signed; every peer checks
    it against its own policy; results are verified before they are returned."""

    def keygen(self, vault_id: str, committee: tuple[str, ...], threshold: int) -> Vault:
        """A new vault held by `committee` (peer names)."""
        ...

    def sign(self, vault: Vault, tx: UnsignedTransaction, intent: WithdrawalIntent,
             approvals: tuple[Approval, ...]) -> list[tuple[SigningDigest, EcdsaSignature]]:
        """One signature per digest (per bitcoin input), in the transaction's input order,
        each verified under the vault's child key at its path. Raises SigningRefused."""
        ...

    def reshare(self, vault: Vault, new_committee: tuple[str, ...], new_threshold: int) -> Vault:
        """Moves the vault to `new_committee` (peer names); same public key and chain code."""
        ...
# --- proof of reserves (proofs/) -----------------------------------------------------------


@dataclass(frozen=True)
class ReservesAsset:
    """One asset of a snapshot: `code` as the ledger names it, the chain holding it, decimals."""

    code: str
    chain: str
    decimals: int


@dataclass(frozen=True)
class ChainHeight:
    """The block a snapshot's on-chain balances are read at (and its deposits credited up to)."""

    chain: str
    network: str
    height: int
    block_hash: str


@dataclass(frozen=True)
class FrozenLiabilities:
    """Customer balances per asset at one instant, with the chain heights that instant saw.

    `balances[account_id][a]` is in the base unit of `assets[a]`; a negative value (should one
    ever exist) is clamped to zero by the snapshot and counted in its header."""

    assets: tuple[ReservesAsset, ...]
    chains: tuple[ChainHeight, ...]
    balances: dict[str, tuple[int, ...]]
    instant: str = ""  # what names the instant in the ledger, e.g. its journal sequence


@runtime_checkable
class LiabilitiesSource(Protocol):
    """Implemented over the ledger: freezes customer balances and chain heights consistently
    (the heights are those whose deposits the balances include)."""

    def freeze(self) -> FrozenLiabilities: ...


@dataclass(frozen=True)
class ReservesAddress:
    """An address of ours holding `balance` of `asset` at the snapshot height; `path` names its
    key below the vault's group key (what the cluster signs with)."""

    chain: str
    asset: str
    address: str
    vault_id: str
    path: Path
    balance: int


@runtime_checkable
class ReservesBalances(Protocol):
    """Implemented by chains/: every address of ours that holds funds at the given heights."""

    def funded_addresses(self, chains: tuple[ChainHeight, ...]) -> list[ReservesAddress]: ...


@runtime_checkable
class ReservesSigner(Protocol):
    """Implemented by the signer cluster: signs the reserves message of (snapshot_id, root_hash)
    with the key of `address`. Each peer builds the message and its digest itself
    (proofs.assets.reserves_digest) and signs nothing else."""

    def sign_reserves(self, chain: str, vault_id: str, path: Path, snapshot_id: str, root_hash: str) -> EcdsaSignature: ...
