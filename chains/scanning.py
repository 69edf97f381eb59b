"""Block scanning shared by both chains: find the fork point, roll back what a reorg affected,
apply new blocks one transaction each, and move deposits through their states.

    pending (seen in a block: 1 confirmation) -> credited (at the asset's depth)
    pending  --reorg--> voided                 (the ledger voids the pending credit)
    credited --reorg--> reorged_after_credit   (flagged for staff: the credit was posted)
    voided   --mined again--> pending, epoch + 1
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chains.errors import ChainError, ReorgTooDeep
from chains.state import ChainState, DepositRow, StateTx
from node import limits
from node.log import get as get_log
from node.ports import (
    DEPOSIT_CREDITED,
    DEPOSIT_PENDING,
    DEPOSIT_REORGED_AFTER_CREDIT,
    DEPOSIT_VOIDED,
    Deposit,
    DepositEvent,
    ScanResult,
)

ROLE_DEPOSIT = "deposit"
ROLE_INTERNAL = "internal"

log = get_log("chains")


@dataclass(frozen=True)
class BlockRef:
    height: int
    hash: str
    parent_hash: str


class Scanner:
    """Mixin for adapters. The adapter provides `_node_tip_height()`, `_node_block_hash(h)`,
    `_fetch_blocks(start, end) -> list[(BlockRef, payload)]` (all node reads happen here),
    `_apply_block(st, ref, payload) -> list[DepositEvent]` (database only, no node call: it runs
    inside the block's transaction) and `_rollback(st, fork_height)`."""

    chain: str
    network: str
    state: ChainState
    confirmations: dict[str, int]
    start_height: int | None

    def _check_confirmations(self, confirmations: dict[str, int]) -> dict[str, int]:
        for asset, n in confirmations.items():
            if not isinstance(n, int) or not 1 <= n <= limits.CHAINS_CONFIRMATIONS_MAX:
                raise ChainError("confirmations_out_of_range", f"{asset}: {n!r}")
        return dict(confirmations)

    def confirmations_for(self, asset: str) -> int:
        try:
            return self.confirmations[asset]
        except KeyError:
            raise ChainError("asset_not_configured", asset) from None

    # --- deposits -------------------------------------------------------------------------
    def _deposit(self, row: DepositRow, tip_height: int | None = None) -> Deposit:
        confs = 0
        if tip_height is not None and row.status in (DEPOSIT_PENDING, DEPOSIT_CREDITED):
            confs = max(0, tip_height - row.block_height + 1)
        return Deposit(
            chain=self.chain,
            network=self.network,
            asset=row.asset,
            deposit_id=row.deposit_id,
            txid=row.txid,
            address=row.address,
            vault_id=row.vault_id,
            path=row.path,
            amount=row.amount,
            block_height=row.block_height,
            block_hash=row.block_hash,
            status=row.status,
            epoch=row.epoch,
            confirmations=confs,
        )

    def _seen(self, st: StateTx, rows: list[DepositRow]) -> list[DepositEvent]:
        """Deposits found in a newly applied block (one lookup, one batched insert)."""
        events = []
        known = st.deposits_by_id([r.deposit_id for r in rows])
        new = []
        for row in rows:
            old = known.get(row.deposit_id)
            if old is None:
                row = replace(row, status=DEPOSIT_PENDING, epoch=1)
                new.append(row)
                events.append(DepositEvent(DEPOSIT_PENDING, self._deposit(row, row.block_height)))
            elif old.status == DEPOSIT_VOIDED:
                row = replace(row, status=DEPOSIT_PENDING, epoch=old.epoch + 1)
                st.update_deposit(
                    row.deposit_id, status=row.status, epoch=row.epoch, block_height=row.block_height, block_hash=row.block_hash
                )
                events.append(DepositEvent(DEPOSIT_PENDING, self._deposit(row, row.block_height)))
            elif old.status == DEPOSIT_REORGED_AFTER_CREDIT:
                # Mined again after a reorg took it out: staff already have the flag; keep the
                # block it is in now so that a status read shows where it lives.
                st.update_deposit(row.deposit_id, block_height=row.block_height, block_hash=row.block_hash)
                log.warning("deposit_reincluded_after_flag", chain=self.chain, deposit=row.deposit_id, height=row.block_height)
            else:
                # pending or credited and seen again: only if one block were applied twice.
                assert old.block_hash != row.block_hash, f"block {row.block_hash} applied twice"
        st.insert_deposits(new)
        return events

    def _rollback_deposits(self, st: StateTx, fork_height: int) -> list[DepositEvent]:
        events = []
        for row in st.deposits_above(fork_height):
            if row.status == DEPOSIT_PENDING:
                st.update_deposit(row.deposit_id, status=DEPOSIT_VOIDED)
                events.append(DepositEvent(DEPOSIT_VOIDED, self._deposit(replace(row, status=DEPOSIT_VOIDED))))
            elif row.status == DEPOSIT_CREDITED:
                st.update_deposit(row.deposit_id, status=DEPOSIT_REORGED_AFTER_CREDIT)
                flagged = replace(row, status=DEPOSIT_REORGED_AFTER_CREDIT)
                log.error("deposit_reorged_after_credit", chain=self.chain, deposit=row.deposit_id, amount=str(row.amount))
                events.append(DepositEvent(DEPOSIT_REORGED_AFTER_CREDIT, self._deposit(flagged)))
        return events

    def _confirm(self, st: StateTx, tip_height: int) -> list[DepositEvent]:
        events = []
        for row in st.deposits_with_status(DEPOSIT_PENDING):
            if tip_height - row.block_height + 1 >= self.confirmations_for(row.asset):
                events.append(DepositEvent(DEPOSIT_CREDITED, self._deposit(replace(row, status=DEPOSIT_CREDITED), tip_height)))
        st.set_deposits_status([e.deposit.deposit_id for e in events], DEPOSIT_CREDITED)
        return events

    def deposits(self) -> list[Deposit]:
        with self.state.begin() as st:
            tip = st.tip()
            return [self._deposit(r, tip[0] if tip else None) for r in st.all_deposits()]

    # --- the scan -------------------------------------------------------------------------
    def _find_fork(self, st_tip: tuple[int, str]) -> int:
        """Highest height where our stored hash is still on the node's chain."""
        # No database transaction is held across node calls: a slow node never blocks writers.
        height = st_tip[0]
        node_tip = self._node_tip_height()
        while True:
            if st_tip[0] - height > limits.CHAINS_REORG_DEPTH_MAX:
                raise ReorgTooDeep(f"no common block within {limits.CHAINS_REORG_DEPTH_MAX} of {st_tip[0]}")
            with self.state.begin() as st:
                ours = st.block_hash(height)
            if ours is None:
                raise ReorgTooDeep(f"no stored hash at height {height}")
            if height <= node_tip and self._node_block_hash(height) == ours:
                return height
            height -= 1

    def scan(self) -> ScanResult:
        events: list[DepositEvent] = []
        rolled_back_to = None
        with self.state.begin() as st:
            local_tip = st.tip()
        if local_tip is not None:
            fork = self._find_fork(local_tip)
            if fork < local_tip[0]:
                with self.state.begin() as st:
                    events += self._rollback_deposits(st, fork)
                    self._rollback(st, fork)
                    st.delete_blocks_above(fork)
                rolled_back_to = fork
                log.warning("reorg", chain=self.chain, network=self.network, fork_height=fork, old_tip=local_tip[0])
                local_tip = (fork, self._stored_hash(fork))
        node_tip = self._node_tip_height()
        if local_tip is None:
            start = node_tip if self.start_height is None else self.start_height
            parent_hash = None
        else:
            start, parent_hash = local_tip[0] + 1, local_tip[1]
        end = min(node_tip, start + limits.CHAINS_SCAN_BLOCKS_PER_CALL_MAX - 1)
        if start <= end:
            for ref, payload in self._fetch_blocks(start, end):
                if parent_hash is not None and ref.parent_hash != parent_hash:
                    # The chain moved under us mid-scan; the next scan finds the fork.
                    log.info("scan_parent_mismatch", chain=self.chain, height=ref.height)
                    break
                with self.state.begin() as st:
                    # Another scanner of the same chain (an overlapping restart) may have moved
                    # the tip since we read it: then this one stops, having changed nothing.
                    now = st.tip()
                    if (now[0] if now else start - 1) != ref.height - 1:
                        log.warning("scan_tip_moved", chain=self.chain, height=ref.height)
                        break
                    events += self._apply_block(st, ref, payload)
                    st.put_block(ref.height, ref.hash, limits.CHAINS_BLOCK_HASHES_KEPT_COUNT)
                parent_hash = ref.hash
        with self.state.begin() as st:
            tip = st.tip()
            if tip is not None:
                events += self._confirm(st, tip[0])
        tip = tip or (start - 1, "")
        return ScanResult(tip_height=tip[0], tip_hash=tip[1], rolled_back_to=rolled_back_to, events=tuple(events))

    def _stored_hash(self, height: int) -> str:
        with self.state.begin() as st:
            h = st.block_hash(height)
        assert h is not None
        return h
