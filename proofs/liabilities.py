"""The LiabilitiesSource over the ledger (node.customers): customer balances per asset at one
instant of the journal, with the chain heights that instant saw.

Consistency: each asset is read in a snapshot transaction that also returns the journal
sequence it saw; the chain heights are read before and after. The freeze is accepted only
when every asset saw the same journal sequence and the heights did not move in between
(deposits are credited by height, so balances and heights then describe one instant);
otherwise it is read again, at most POR_FREEZE_ATTEMPTS_MAX times.
"""

from __future__ import annotations

from typing import Callable

from node import limits
from node.ports import ChainHeight, FrozenLiabilities, ReservesAsset
from proofs.tree import SnapshotRefused


class LedgerLiabilities:
    def __init__(self, customers, assets: tuple[ReservesAsset, ...], heights: Callable[[], tuple[ChainHeight, ...]]):
        """`customers`: a node.customers.Customers; `heights`: the chain watchers' current
        (credited-up-to) heights."""
        self.customers = customers
        self.assets = tuple(assets)
        self.heights = heights

    def freeze(self) -> FrozenLiabilities:
        for _ in range(limits.POR_FREEZE_ATTEMPTS_MAX):
            before = tuple(self.heights())
            reads = [self.customers.customer_balances_snapshot(a.code) for a in self.assets]
            after = tuple(self.heights())
            seqs = {seq for seq, _, _ in reads}
            if len(seqs) != 1 or before != after:
                continue
            balances: dict[str, list[int]] = {}
            for a, (_, _, rows) in enumerate(reads):
                for customer_id, amount in rows:
                    balances.setdefault(customer_id, [0] * len(self.assets))[a] = amount
            return FrozenLiabilities(
                self.assets, before, {k: tuple(v) for k, v in balances.items()}, instant=f"journal:{seqs.pop()}"
            )
        raise SnapshotRefused("liabilities_not_stable", f"no consistent read in {limits.POR_FREEZE_ATTEMPTS_MAX} attempts")
