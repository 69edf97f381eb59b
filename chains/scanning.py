"""Block scanning shared by both chains: find the fork point, roll back what a reorg affected,
apply new blocks one transaction each, and report what it observed. It keeps no deposit
status: each applied block appends the payments to watched deposit addresses it holds
("seen": address, asset, amount, height, block hash) to the chain's observation log, and a
reorg appends "rollback to height h", in the same transaction as the blocks table change.
node/deposits/ reads the log after its cursor and decides (depth, void, flag).
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.errors import ChainError, ReorgTooDeep
from chains.state import OBSERVED_ROLLBACK, OBSERVED_SEEN, ChainState, DepositRow, StateTx, path_from_text
from node import limits
from node.log import get as get_log
from node.ports import Observation, ObservationPage, ScanResult

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
    `_apply_block(st, ref, payload) -> list[Observation]` (database only, no node call: it runs
    inside the block's transaction, after the block's hash is stored, and ends with
    `self._seen(st, payments)`, which appends them to the log and moves the head) and
    `_rollback(st, fork_height)`. `confirmations` (asset -> depth) is configuration the node's
    crediting applies (DepositSource); the scanner itself decides nothing by it."""

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

    # --- observations ----------------------------------------------------------------------
    def _seen(self, st: StateTx, rows: list[DepositRow]) -> list[Observation]:
        """Payments found in a newly applied block: appended to the log (no status: the node
        decides). Runs in the block's transaction, after its hash was stored."""
        seqs = st.observe(rows)
        return [self._observation(seq, OBSERVED_SEEN, r.block_height, r) for seq, r in zip(seqs, rows)]

    def _observation(self, seq: int, kind: str, height: int, r=None, block_hash: str | None = None) -> Observation:
        if r is None:
            return Observation(chain=self.chain, network=self.network, seq=seq, kind=kind, height=height)
        return Observation(chain=self.chain, network=self.network, seq=seq, kind=kind, height=height,
                           deposit_id=r.deposit_id, asset=r.asset, txid=r.txid, address=r.address, vault_id=r.vault_id,
                           path=tuple(r.path) if not isinstance(r.path, str) else path_from_text(r.path),
                           amount=int(r.amount), block_hash=r.block_hash if block_hash is None else block_hash)

    def observations(self, after_seq: int, limit: int) -> ObservationPage:
        """What the scanner observed after `after_seq`, oldest first, at most `limit`, with the
        head (last seq, scanned tip) they were read against: one transaction, so the tip and
        the observations agree (DepositSource)."""
        assert type(after_seq) is int and after_seq >= 0 and type(limit) is int and limit >= 1
        with self.state.begin() as st:
            last, tip_height, tip_hash = st.head()
            rows = st.observations_after(after_seq, last, limit) if last > after_seq else []
            calm = not rows or rows[-1].seq == last or not st.rollback_between(rows[-1].seq, last)
        items = tuple(self._observation(r.seq, r.kind, r.height, r if r.deposit_id is not None else None) for r in rows)
        return ObservationPage(last_seq=last, tip_height=tip_height, tip_hash=tip_hash, items=items, no_rollback_after=calm)

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
        events: list[Observation] = []
        rolled_back_to = None
        with self.state.begin() as st:
            local_tip = st.tip()
        if local_tip is not None:
            fork = self._find_fork(local_tip)
            if fork < local_tip[0]:
                with self.state.begin() as st:
                    st.lock_head()
                    raced = st.tip() != local_tip  # another scanner of the chain got here first
                    if not raced:
                        self._rollback(st, fork)
                        st.delete_blocks_above(fork)
                        [seq] = st.observe([], rollback_to=fork)
                if raced:
                    log.warning("scan_reorg_raced", chain=self.chain, fork_height=fork)
                    return ScanResult(tip_height=local_tip[0], tip_hash=local_tip[1], rolled_back_to=None, events=())
                events.append(self._observation(seq, OBSERVED_ROLLBACK, fork))
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
                    # the tip since we read it: then this one stops, having changed nothing. The
                    # head's lock first, so that on PostgreSQL too the tip is read after the
                    # other's commit.
                    st.lock_head()
                    now = st.tip()
                    if (now[0] if now else start - 1) != ref.height - 1:
                        log.warning("scan_tip_moved", chain=self.chain, height=ref.height)
                        break
                    st.put_block(ref.height, ref.hash, limits.CHAINS_BLOCK_HASHES_KEPT_COUNT)
                    events += self._apply_block(st, ref, payload)  # observes (and moves the head)
                parent_hash = ref.hash
        with self.state.begin() as st:
            tip = st.tip()
        tip = tip or (start - 1, "")
        return ScanResult(tip_height=tip[0], tip_hash=tip[1], rolled_back_to=rolled_back_to, events=tuple(events))

    def _stored_hash(self, height: int) -> str:
        with self.state.begin() as st:
            h = st.block_hash(height)
        assert h is not None
        return h
