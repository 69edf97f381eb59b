"""Sweeps: a deposit address whose credited, unswept funds reach the asset's minimum is swept
to the hot vault's wallet through the withdrawal pipeline; ERC-20 addresses get their gas
top-up first. It reads the same deposit records the booking (node/deposits/booking.py) keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, select

from node import limits
from node.deposits.records import DepositAddress, _address
from node.log import get as get_log
from node.ports import DEPOSIT_CREDITED
from node.store import WriteTx
from node.store.deposit_models import deposit_addresses, deposits
from node.store.withdrawal_models import withdrawals as withdrawals_table
from node.withdrawals import ACTIVE, KIND_SWEEP, VAULT_WALLET_PATH

log = get_log("node.deposits")

# ---------------------------------------------------------------------- sweeps
# What the composition root gives the sweeper (node/ imports no adapter):
#   sweepable(address, asset) -> int: what a sweep of everything of `asset` at the deposit
#       address would pay to the hot wallet after its own fee (bitcoin: the address's coins minus
#       the fee; ETH: the balance minus the gas; a token: its balance), 0 when nothing;
#   gas_missing(address, asset) -> int: wei the address lacks to pay for sweeping `asset`
#       (0 for BTC and ETH, which pay their fee from the amount);
#   wallet_address(vault_id, asset) -> str: the vault wallet's receive address on that chain.
Sweepable = Callable[[DepositAddress, str], int]
GasMissing = Callable[[DepositAddress, str], int]
WalletAddress = Callable[[str, str], str]

SWEEP_PREFIX = "sweep:"


@dataclass(frozen=True)
class SweepCandidate:
    address: DepositAddress
    asset: str
    credited_unswept: int
    deposit_ids: tuple[str, ...]


class Sweeper:
    """One pass: every deposit address holding credited, unswept funds of an asset at or above
    `minimums[asset]` (assets without a minimum are never swept automatically) gets one sweep
    through the withdrawal pipeline; ERC-20 addresses get their gas top-up first."""

    def __init__(self, deposits, withdrawals, *, minimums: dict[str, int], sweepable: Sweepable,
                 gas_missing: GasMissing, wallet_address: WalletAddress):
        for asset, m in minimums.items():
            assert type(m) is int and m > 0, f"sweep minimum of {asset}: {m!r}"
        self.d = deposits
        self.w = withdrawals
        self.minimums = dict(minimums)
        self.sweepable = sweepable
        self.gas_missing = gas_missing
        self.wallet_address = wallet_address

    def candidates(self) -> list[SweepCandidate]:
        """Credited, unswept deposits per (address, asset), oldest address first (bounded)."""
        with self.d.store.reading() as conn:
            rows = conn.execute(select(deposits.c.id, deposits.c.address_id, deposits.c.asset, deposits.c.amount)
                                .where(and_(deposits.c.status == DEPOSIT_CREDITED, deposits.c.swept_by.is_(None)))
                                .order_by(deposits.c.seq).limit(limits.DEPOSITS_PAGE_MAX)).all()
            addrs = {r.id: _address(r) for r in conn.execute(select(deposit_addresses).where(
                deposit_addresses.c.id.in_(sorted({r.address_id for r in rows}) or [""])))}
        grouped: dict[tuple[str, str], list] = {}
        for r in rows:
            grouped.setdefault((r.address_id, r.asset), []).append(r)
        return [SweepCandidate(addrs[aid], asset, sum(int(r.amount) for r in rs), tuple(r.id for r in rs))
                for (aid, asset), rs in grouped.items()]

    def in_flight(self, address_id: str) -> bool:
        """A sweep or gas top-up of this address that has not ended: never two at once (one
        nonce / one set of coins per address)."""
        wt = withdrawals_table
        with self.d.store.reading() as conn:
            return conn.execute(select(wt.c.id).where(and_(
                wt.c.kind == KIND_SWEEP, wt.c.status.in_(ACTIVE),
                wt.c.external_id.like(f"{SWEEP_PREFIX}{address_id}:%")))).first() is not None

    def run_once(self, *, actor: str = "system:sweeper") -> list:
        out = []
        for c in self.candidates():
            if len(out) >= limits.DEPOSITS_SWEEPS_PER_PASS_MAX:
                break
            minimum = self.minimums.get(c.asset)
            if minimum is None or c.credited_unswept < minimum or self.in_flight(c.address.id):
                continue
            a = c.address
            n = self.w.now_ns()
            gas = self.gas_missing(a, c.asset)
            if gas > 0:
                _, x = self.w.submit_internal(KIND_SWEEP, f"{SWEEP_PREFIX}{a.id}:gas:{n}", "ETH", a.address, gas,
                                              vault_id=a.vault_id, source_path=VAULT_WALLET_PATH,
                                              own_destination_paths=(a.path,), actor=actor)
                log.info("sweep_gas_topup", address=a.address, asset=c.asset, wei=gas, withdrawal=x.id)
                out.append(x)
                continue  # the token sweep follows once the top-up completed
            amount = self.sweepable(a, c.asset)
            if amount <= 0:
                continue
            _, x = self.w.submit_internal(KIND_SWEEP, f"{SWEEP_PREFIX}{a.id}:{c.asset}:{n}", c.asset,
                                          self.wallet_address(a.vault_id, c.asset), amount, vault_id=a.vault_id,
                                          source_path=a.path, own_destination_paths=(VAULT_WALLET_PATH,), actor=actor)
            self._mark(c, x.id, actor)
            log.info("sweep_submitted", address=a.address, asset=c.asset, amount=str(amount), withdrawal=x.id)
            out.append(x)
        return out

    def _mark(self, c: SweepCandidate, withdrawal_id: str, actor: str) -> None:
        """The deposits the sweep covers (informational: the ledger books the sweep itself on
        completion). A crash before this mark only makes a later pass consider the address
        again, where the in-flight check or an empty address stops a second sweep."""

        def fn(tx: WriteTx):
            tx.conn.execute(deposits.update().where(and_(deposits.c.id.in_(c.deposit_ids), deposits.c.swept_by.is_(None)))
                            .values(swept_by=withdrawal_id))
            return None, {"sweep": withdrawal_id, "deposits": list(c.deposit_ids)}

        self.d.store.write(actor, "deposit.swept_by", fn)
