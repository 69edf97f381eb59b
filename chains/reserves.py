"""node.ports.ReservesBalances over several chain adapters (one per chain), and the heights a
snapshot freezes liabilities at.

    reserves = ChainReserves({"bitcoin": btc_adapter, "ethereum": eth_adapter})
    reserves.heights()                      # -> (ChainHeight, ...): each adapter's scanned tip
    reserves.funded_addresses(heights)      # -> [ReservesAddress]: balances at those blocks
"""

from __future__ import annotations

from node import limits
from node.ports import ChainHeight, ReservesAddress

from chains.errors import ChainError


class ChainReserves:
    def __init__(self, adapters: dict):
        assert all(chain == a.chain for chain, a in adapters.items()), "adapters keyed by their chain"
        self.adapters = dict(adapters)

    def heights(self) -> tuple[ChainHeight, ...]:
        return tuple(self.adapters[c].reserves_height() for c in sorted(self.adapters))

    def funded_addresses(self, chains: tuple[ChainHeight, ...]) -> list[ReservesAddress]:
        unknown = {c.chain for c in chains} - set(self.adapters)
        if unknown:
            raise ChainError("reserves_chain_not_configured", ", ".join(sorted(unknown)))
        out: list[ReservesAddress] = []
        for chain in sorted(self.adapters):
            out.extend(self.adapters[chain].funded_addresses(chains))
            if len(out) > limits.POR_ADDRESSES_MAX:
                raise ChainError("too_many_funded_addresses", f"more than {limits.POR_ADDRESSES_MAX}")
        return out
