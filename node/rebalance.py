"""Hot/cold rebalancing and the reconciliation report.

Rebalancing (ARCHITECTURE.md, "Rebalancing"): when the hot wallet holds more than its high-water
mark, the excess above the target is swept to the cold vault's wallet address automatically
(a movement to our own cold storage is safe); below the low-water mark a cold -> hot refill up
to the target is proposed: it waits in pending_approval for the cold vault's quorum and delay.
Both intents name the vault they pay (`own_destination_vault`) and its wallet path: the signer
peers derive that address themselves from the public keys listed in their own policies.
Both are withdrawals of an internal kind, so they take the same exactly-once pipeline.

Reconciliation: per asset, customer liabilities in the ledger against what our addresses hold
on chain (and what the wallets hold in the books), with an alert on any shortfall or any
difference between books and chain.

`balances(asset, vault_id) -> int` reads on-chain holdings (the composition root wires it to
the chain adapters: node/ imports no adapter).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import and_, select

from node import withdrawals as wd
from node.ledger import AccountKind
from node.store.models import accounts, wallets

Balances = Callable[[str, str], int]


class Rebalancer:
    def __init__(self, withdrawals: wd.Withdrawals, balances: Balances, addresses: Callable[[str, str], str]):
        """`addresses(vault_id, asset)`: the vault wallet's receive address for that asset's chain."""
        self.w = withdrawals
        self.balances = balances
        self.addresses = addresses

    def _open(self, asset: str) -> bool:
        """A rebalance or refill of `asset` still in flight: wait for it (never two at once)."""
        for status in wd.ACTIVE:
            for x in self.w.with_status(status, 500):
                if x.asset == asset and x.kind in (wd.KIND_REBALANCE, wd.KIND_REFILL):
                    return True
        return False

    def run_once(self, *, actor: str = "system:rebalancer") -> list[wd.Withdrawal]:
        policy = self.w.policy()
        out = []
        for asset, marks in sorted(policy.rebalance.items()):
            if self._open(asset):
                continue
            hot = self.balances(asset, marks.hot_vault)
            fee_reserve = policy.fee_max[wd.chain_of(asset)] if asset in ("BTC", "ETH") else 0
            n = self.w.now_ns()
            if hot > marks.high_water:
                amount = hot - marks.target - fee_reserve
                if amount <= 0:
                    continue
                dest = self.addresses(marks.cold_vault, asset)
                # An own destination too: each hot peer derives the cold wallet's address from the
                # cold vault's public keys in its own policy, so "to cold" cannot be redirected.
                _, x = self.w.submit_internal(wd.KIND_REBALANCE, f"{marks.cold_vault}|rebalance:{asset}:{n}", asset, dest, amount,
                                              vault_id=marks.hot_vault, own_destination_paths=(wd.VAULT_WALLET_PATH,),
                                              own_destination_vault=marks.cold_vault, actor=actor)
                out.append(x)
            elif hot < marks.low_water:
                amount = marks.target - hot
                dest = self.addresses(marks.hot_vault, asset)
                # The intent names the hot vault and its wallet path: each cold peer derives the
                # address from the hot vault's public keys in its own policy before it signs.
                _, x = self.w.submit_internal(wd.KIND_REFILL, f"{marks.hot_vault}|refill:{asset}:{n}", asset, dest, amount,
                                              vault_id=marks.cold_vault, own_destination_paths=(wd.VAULT_WALLET_PATH,),
                                              own_destination_vault=marks.hot_vault, actor=actor)
                out.append(x)
        return out


def reconciliation(withdrawals: wd.Withdrawals, balances: Balances, assets: list[str] | None = None) -> list[dict]:
    """One row per asset: liabilities (customers' posted balances + amounts held for withdrawals
    in flight), books (wallet accounts), chain (our addresses on chain, per vault). `alert` when
    the chain holds less than the liabilities or books and chain differ."""
    store = withdrawals.store
    with store.reading(snapshot=True) as conn:
        rows = conn.execute(select(wallets.c.vault_id, wallets.c.asset, accounts.c.debits_posted, accounts.c.credits_posted)
                            .join(accounts, accounts.c.id == wallets.c.account_id)).all()
        assets = sorted({r.asset for r in rows}) if assets is None else assets
        reorged = _deposits_reorged_after_credit(conn)
        report = []
        for asset in assets:
            liab = 0
            for r in conn.execute(select(accounts.c.credits_posted, accounts.c.debits_posted).where(
                    and_(accounts.c.ledger == asset, accounts.c.kind == AccountKind.CUSTOMER.value))):
                liab += r.credits_posted - r.debits_posted
            books = sum(r.debits_posted - r.credits_posted for r in rows if r.asset == asset)
            vaults = sorted({r.vault_id for r in rows if r.asset == asset})
            chain_by_vault = {v: balances(asset, v) for v in vaults}
            chain = sum(chain_by_vault.values())
            alerts = []
            if chain < liab:
                alerts.append(f"chain_below_liabilities: short {liab - chain}")
            if chain != books:
                alerts.append(f"books_differ_from_chain: books {books}, chain {chain}, difference {chain - books}")
            n_flagged, flagged = reorged.get(asset, (0, 0))
            if n_flagged:
                alerts.append(f"deposits_reorged_after_credit: {n_flagged} for {flagged}, staff decide (custody withdrawals deposit-review)")
            report.append({"asset": asset, "liabilities": str(liab), "books": str(books), "chain": str(chain),
                           "chain_by_vault": {v: str(b) for v, b in chain_by_vault.items()},
                           "difference": str(chain - liab), "deposits_reversal_needed": str(reorged.get(asset, (0, 0))[1]),
                           "alert": bool(alerts), "alerts": alerts})
    return report


def _deposits_reorged_after_credit(conn) -> dict[str, tuple[int, int]]:
    """asset -> (count, amount) of credited deposits a reorg took out (node/deposits/)."""
    from node.deposits import REVIEW_REVERSAL_NEEDED
    from node.store.deposit_models import deposits

    out: dict[str, tuple[int, int]] = {}
    for r in conn.execute(select(deposits.c.asset, deposits.c.amount).where(deposits.c.review == REVIEW_REVERSAL_NEEDED)):
        n, total = out.get(r.asset, (0, 0))
        out[r.asset] = (n + 1, total + int(r.amount))
    return out
