"""node.ports.ReservesBalances over several chain adapters (one per chain), and the heights a
snapshot freezes liabilities at.

    reserves = ChainReserves({"bitcoin": btc_adapter, "ethereum": eth_adapter})
    reserves.heights()                      # -> (ChainHeight, ...): each adapter's scanned tip
    reserves.funded_addresses(heights)      # -> [ReservesAddress]: balances at those blocks
"""

from __future__ import annotations

from chains.errors import ChainError
from node import limits
from node.ports import ChainHeight, ReservesAddress


class ChainReserves:
    def __init__(self, adapters: dict, assets: set[str] | None = None):
        """`assets`: the snapshot's asset codes; funds in anything else an adapter tracks (a
        token not in the snapshot) are left out instead of refusing the snapshot."""
        assert all(chain == a.chain for chain, a in adapters.items()), "adapters keyed by their chain"
        self.adapters = dict(adapters)
        self.assets = None if assets is None else set(assets)

    def heights(self) -> tuple[ChainHeight, ...]:
        return tuple(self.adapters[c].reserves_height() for c in sorted(self.adapters))

    def funded_addresses(self, chains: tuple[ChainHeight, ...]) -> list[ReservesAddress]:
        unknown = {c.chain for c in chains} - set(self.adapters)
        if unknown:
            raise ChainError("reserves_chain_not_configured", ", ".join(sorted(unknown)))
        out: list[ReservesAddress] = []
        for chain in sorted(self.adapters):
            out.extend(a for a in self.adapters[chain].funded_addresses(chains) if self.assets is None or a.asset in self.assets)
            if len(out) > limits.POR_ADDRESSES_MAX:
                raise ChainError("too_many_funded_addresses", f"more than {limits.POR_ADDRESSES_MAX}")
        return out
