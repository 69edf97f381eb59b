"""The deposit records and addresses as the node keeps them, and the names both the booking
and the reads use."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from node import limits
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED, Path
from node.withdrawals import DEPOSIT_BRANCH

# Deposit addresses are (DEPOSIT_BRANCH, i) below the vault's group key (node.withdrawals).
REVIEW_REVERSAL_NEEDED = "reversal_needed"
STATUSES = (DEPOSIT_PENDING, DEPOSIT_CREDITED, DEPOSIT_VOIDED, DEPOSIT_REORGED_AFTER_CREDIT)
ERC20_PREFIX = "ERC20:"


def family_of(asset: str) -> tuple[str, str]:
    """(chain, address family) of an asset: BTC on bitcoin; ETH and ERC-20 tokens on ethereum."""
    if asset == "BTC":
        return "bitcoin", "BTC"
    if asset == "ETH" or (asset.startswith(ERC20_PREFIX) and len(asset) > len(ERC20_PREFIX)):
        return "ethereum", "ETH"
    raise DepositError("asset_not_supported", asset)


def deposit_record_id(chain: str, network: str, chain_deposit_id: str, epoch: int) -> str:
    """The deposit's id, also its pending transfer's id (<= 44 chars, so suffixes fit 64)."""
    h = hashlib.sha256(f"custody-deposit-v1\0{chain}\0{network}\0{chain_deposit_id}\0{epoch}".encode()).hexdigest()
    return "dep_" + h[:40]


class DepositError(Exception):
    """An expected refusal named as a sentence (`sub_account_not_found`, ...); nothing changed."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DepositAddress:
    id: str
    seq: int
    sub_account_id: str
    client_id: str | None
    chain: str
    network: str
    family: str  # BTC | ETH (one ethereum address receives ETH and every token)
    vault_id: str
    path: Path
    address: str
    created_at_ns: int

    def public(self) -> dict:
        return {"id": self.id, "sub_account_id": self.sub_account_id, "chain": self.chain, "network": self.network,
                "assets": self.family, "address": self.address, "created_at_ns": self.created_at_ns}


@dataclass(frozen=True)
class DepositRecord:
    id: str
    seq: int
    chain: str
    network: str
    chain_deposit_id: str
    epoch: int
    asset: str
    txid: str
    address: str
    address_id: str
    sub_account_id: str
    vault_id: str
    amount: int
    block_height: int
    block_hash: str
    status: str
    review: str | None
    swept_by: str | None
    created_at_ns: int
    updated_at_ns: int

    def public(self) -> dict:
        return {"id": self.id, "sub_account_id": self.sub_account_id, "address_id": self.address_id,
                "address": self.address, "chain": self.chain, "network": self.network, "asset": self.asset,
                "amount": str(self.amount), "txid": self.txid, "chain_deposit_id": self.chain_deposit_id,
                "epoch": self.epoch, "block_height": self.block_height, "status": self.status, "review": self.review,
                "created_at_ns": self.created_at_ns, "updated_at_ns": self.updated_at_ns}


@dataclass
class SyncReport:
    """What one sync pass booked. `more`: changes were left for the next pass (batch bound)."""

    pending: int = 0
    credited: int = 0
    voided: int = 0
    flagged: int = 0
    skipped: int = 0  # deposits to addresses not issued here, or in assets without a ledger
    more: bool = False
    observations: int = 0  # log entries consumed
    rows_read: int = 0  # rows the pass read (cursor, head, observations, deposits): bounded, not history
    changed: list[str] = field(default_factory=list)  # deposit ids, in booking order

    @property
    def total(self) -> int:
        return self.pending + self.credited + self.voided + self.flagged


def _address(r) -> DepositAddress:
    return DepositAddress(r.id, r.seq, r.sub_account_id, r.client_id, r.chain, r.network, r.family, r.vault_id,
                          (DEPOSIT_BRANCH, int(r.path_index)), r.address, r.created_at_ns)


def _record(r) -> DepositRecord:
    return DepositRecord(r.id, r.seq, r.chain, r.network, r.chain_deposit_id, r.epoch, r.asset, r.txid, r.address,
                         r.address_id, r.sub_account_id, r.vault_id, int(r.amount), r.block_height, r.block_hash, r.status,
                         r.review, r.swept_by, r.created_at_ns, r.updated_at_ns)


def _check_page(after_seq, limit) -> None:
    if type(after_seq) is not int or after_seq < 0:
        raise DepositError("after_seq_invalid", "a non-negative integer")
    if type(limit) is not int or not 1 <= limit <= limits.DEPOSITS_PAGE_MAX:
        raise DepositError("limit_out_of_range", f"1..{limits.DEPOSITS_PAGE_MAX}")


def family_of_safe(asset: str) -> str | None:
    try:
        return family_of(asset)[1]
    except DepositError:
        return None



