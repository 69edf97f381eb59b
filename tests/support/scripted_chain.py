"""A chain whose blocks the test writes (heights -> (hash, [(deposit_id, amount)])), scanned by
the real Scanner into a real ChainState: the scanner's logic and its observation log without a
node process. The real btcd / Anvil runs are in tests/functional/chains and deposits."""

from __future__ import annotations

from chains.scanning import BlockRef, Scanner
from chains.state import DepositRow

ADDRESS = "addr"


class ScriptedChain(Scanner):
    chain = "test"
    network = "scripted"

    def __init__(self, state, confirmations=3, pay_to=ADDRESS, asset="COIN", chain=None, network=None):
        self.state = state
        self.asset = asset
        self.pay_to = pay_to
        self.chain = chain or self.chain
        self.network = network or self.network
        self.confirmations = self._check_confirmations({asset: confirmations})
        self.start_height = 0
        self.blocks: list[tuple[str, list[tuple[str, int]]]] = []

    def address(self, vault_id, path):
        """Deposit address `path` of the vault (what node.deposits.issue_address asks for)."""
        return f"{vault_id}-{path[0]}-{path[1]}"

    def extend(self, n, deposits=(), tag="a"):
        """`n` blocks; the first pays `deposits`: (deposit_id, amount[, address]) each."""
        for i in range(n):
            h = len(self.blocks)
            self.blocks.append((f"{tag}{h}", list(deposits) if i == 0 else []))

    def reorg(self, depth, n_new, tag):
        del self.blocks[len(self.blocks) - depth :]
        self.extend(n_new, tag=tag)

    def _node_tip_height(self):
        return len(self.blocks) - 1

    def _node_block_hash(self, height):
        return self.blocks[height][0]

    def _fetch_blocks(self, start, end):
        for h in range(start, end + 1):
            parent = self.blocks[h - 1][0] if h else ""
            yield BlockRef(h, self.blocks[h][0], parent), self.blocks[h][1]

    def _apply_block(self, st, ref, deposits):
        return self._seen(
            st,
            [DepositRow(d[0], self.asset, d[0], d[2] if len(d) > 2 else self.pay_to, "v", (0, 0), d[1], ref.height, ref.hash)
             for d in deposits],
        )

    def _rollback(self, st, fork_height):
        pass
