"""node/deposits/ over a real store (SQLite file and a PostgreSQL schema): deposit addresses,
and crediting driven by the chain's observation log. The adapter here is a fake for one
function each (`address`, `observations`); the real btcd / Anvil / signer processes run in
tests/functional/deposits. Each booking is checked against the ledger, the webhook outbox and
the journal, and the invariant checker runs after every test."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import sqlalchemy as sa

from node import invariants, limits
from node.customers import Customers
from node.deposits import (REVIEW_REVERSAL_NEEDED, DepositError, Deposits, deposit_record_id)
from node.ledger import Ledger, LedgerKind
from node.ports import (DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED,
                        OBSERVED_ROLLBACK, OBSERVED_SEEN, DepositSource, Observation, ObservationPage)
from node.store import open_store
from node.store.api_models import webhook_events
from node.store.models import chain_head, journal
from node.wallets import Wallets
from tests.support.secrets_key import secret_box

BOX = secret_box()

TOKEN = "ERC20:0x5FbDB2315678afecb367f642d5dB9b4a52F0aA3A"


class FakeChain:
    """`address(vault, path)` names the path; `observations()` pages through the log the test
    writes (`pay`, `mine`, `rollback`), as a scanner would (chains/scanning.py, tested there)."""

    def __init__(self, chain: str, network: str, depth: int = 3):
        self.chain = chain
        self.network = network
        self.confirmations = {"BTC": depth} if chain == "bitcoin" else {"ETH": depth, TOKEN: depth}
        self.log: list[Observation] = []
        self.tip = 99
        self.registered: list[tuple[str, tuple]] = []
        self.pages = 0

    def address(self, vault_id, path):
        self.registered.append((vault_id, tuple(path)))
        prefix = "bcrt1q" if self.chain == "bitcoin" else "0x"
        return f"{prefix}{vault_id}{'x'.join(map(str, path))}"

    def observations(self, after_seq, limit):
        self.pages += 1
        items = tuple(o for o in self.log if o.seq > after_seq)[:limit]
        return ObservationPage(len(self.log), self.tip, f"{self.tip:064x}", items)

    def _append(self, kind, height, **kw):
        self.log.append(Observation(self.chain, self.network, len(self.log) + 1, kind, height, **kw))

    def pay(self, address, amount, *, n=1, asset=None, height=None, tag="a"):
        """A payment seen in block `height` (default: a new block on the tip)."""
        asset = asset or ("BTC" if self.chain == "bitcoin" else "ETH")
        height = self.tip + 1 if height is None else height
        self.tip = max(self.tip, height)
        did = f"{n:064x}:0"
        self._append(OBSERVED_SEEN, height, deposit_id=did, asset=asset, txid=f"{n:064x}", address=address,
                     vault_id="hot", path=(0, 0), amount=amount, block_hash=f"{tag}{height:063x}")
        return did

    def mine(self, k):
        self.tip += k

    def rollback(self, height):
        self._append(OBSERVED_ROLLBACK, height)
        self.tip = height


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"d_{uuid.uuid4().hex[:12]}"
    store = open_store(url, schema=schema)
    ledger = Ledger(store)
    for asset, scale in (("BTC", 8), ("ETH", 18), (TOKEN, 6)):
        ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor="test")
    Wallets(ledger).create_wallet("hot:BTC", "hot", "BTC", "hot", actor="test")
    c = Customers(ledger)
    c.create_customer("zoe", "Zoe", actor="test")
    c.create_customer("yan", "Yan", actor="test")
    btc, eth = FakeChain("bitcoin", "regtest"), FakeChain("ethereum", "1337")
    deps = Deposits(ledger, {"bitcoin": btc, "ethereum": eth}, vault_id="hot")
    yield deps, btc, eth
    violations = invariants.check(store)
    store.dispose()
    if schema:
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()
    assert not violations, violations


def head(deps):
    with deps.store.reading() as conn:
        return tuple(conn.execute(sa.select(chain_head.c.seq, chain_head.c.hash)).one())


def outbox(deps) -> list[tuple[str, str]]:
    import json

    with deps.store.reading() as conn:
        rows = conn.execute(sa.select(webhook_events.c.type, webhook_events.c.payload, webhook_events.c.client_id)
                            .order_by(webhook_events.c.seq)).all()
    return [(r.type, json.loads(r.payload)["data"]["id"], r.client_id) for r in rows]


def balance(deps, sub, asset):
    """(posted, pending credits) of the customer account."""
    from node.clients import ClientOps

    for b in ClientOps(deps.store).balances(sub):
        if b.asset == asset:
            return b.posted, b.pending_in
    return 0, 0


# ------------------------------------------------------------------ addresses
@pytest.mark.parametrize("sub, asset, configured, reason", [
    ("zoe.main", "DOGE", ("bitcoin", "ethereum"), "asset_not_supported"),
    ("zoe.main", "ERC20:", ("bitcoin", "ethereum"), "asset_not_supported"),
    ("zoe.main", "ETH", ("bitcoin",), "chain_not_configured"),
    ("nobody.main", "BTC", ("bitcoin", "ethereum"), "sub_account_not_found"),
    ("zoe.main", "BTC", ("bitcoin", "ethereum"), "client_id_invalid"),
    ("zoe.main", "ERC20:0x0000000000000000000000000000000000000001", ("bitcoin", "ethereum"), "ledger_not_found"),
])
def test_issue_refusals_are_named_and_change_nothing(world, sub, asset, configured, reason):
    deps, btc, eth = world
    deps.chains = {k: v for k, v in {"bitcoin": btc, "ethereum": eth}.items() if k in configured}
    before = head(deps)
    with pytest.raises(DepositError) as e:
        deps.issue_address(sub, asset, client_id="c" * 65 if reason == "client_id_invalid" else None, actor="test")
    assert e.value.reason == reason, (e.value.reason, reason)
    assert head(deps) == before
    assert btc.registered == [] and eth.registered == []


def test_addresses_are_fresh_children_per_chain_and_listed_in_order(world):
    deps, btc, eth = world
    a0 = deps.issue_address("zoe.main", "BTC", client_id="cl_1", actor="test")
    a1 = deps.issue_address("yan.main", "BTC", actor="test")
    e0 = deps.issue_address("zoe.main", TOKEN, actor="test")
    a2 = deps.issue_address("zoe.main", "BTC", actor="test")
    assert [a.path for a in (a0, a1, a2)] == [(0, 0), (0, 1), (0, 2)]
    assert e0.path == (0, 0) and e0.family == "ETH" and e0.chain == "ethereum"
    assert btc.registered == [("hot", (0, 0)), ("hot", (0, 1)), ("hot", (0, 2))]
    assert len({a0.address, a1.address, a2.address}) == 3
    mine = deps.addresses("zoe.main")
    assert [a.id for a in mine] == [a0.id, e0.id, a2.id]
    assert [a.id for a in deps.addresses("zoe.main", after_seq=mine[0].seq, limit=1)] == [e0.id]
    assert deps.get_address(a0.id) == a0 and a0.client_id == "cl_1"
    assert deps.address_of("bitcoin", a1.address) == a1
    with pytest.raises(DepositError) as e:
        deps.get_address("da_missing")
    assert e.value.reason == "deposit_address_not_found"
    for bad in (dict(limit=0), dict(limit=limits.DEPOSITS_PAGE_MAX + 1), dict(after_seq=-1)):
        with pytest.raises(DepositError):
            deps.addresses("zoe.main", **bad)


def test_a_taken_index_is_skipped_not_reused(world):
    """Two issuers racing for one index: the loser takes the next one."""
    deps, btc, _ = world
    first = deps.issue_address("zoe.main", "BTC", actor="test")
    real_next = deps._next_index
    deps._next_index = lambda conn, chain: 0  # a stale read: index 0 looks free
    try:
        second = deps.issue_address("zoe.main", "BTC", actor="test")
    finally:
        deps._next_index = real_next
    assert (first.path, second.path) == ((0, 0), (0, 1))


# ------------------------------------------------------------------ crediting
def test_pending_then_credited_with_outbox_and_idempotent_resync(world):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", client_id="cl_1", actor="test")
    did = btc.pay(a.address, 150_000)
    r = deps.sync(btc)
    assert (r.pending, r.credited) == (1, 0)
    dep_id = deposit_record_id("bitcoin", "regtest", did, 1)
    assert deps.get(dep_id).status == DEPOSIT_PENDING
    assert balance(deps, "zoe.main", "BTC") == (0, 150_000)
    assert deps.sync(btc).total == 0  # nothing new: nothing booked, no journal entry
    before = head(deps)
    deps.sync(btc)
    assert head(deps) == before

    btc.mine(1)
    assert deps.sync(btc).total == 0, "2 confirmations of 3"
    btc.mine(1)
    r = deps.sync(btc)
    assert (r.pending, r.credited) == (0, 1)
    assert balance(deps, "zoe.main", "BTC") == (150_000, 0)
    assert deps.get(dep_id).status == DEPOSIT_CREDITED
    assert outbox(deps) == [("deposit.pending", dep_id, "cl_1"), ("deposit.credited", dep_id, "cl_1")]
    assert deps.sync(btc).total == 0
    # the books: the vault's wallet holds what the customer is owed (deposit addresses are its
    # children); a vault without a wallet in the asset books it in its deposit wallet
    from node.wallets import Wallets

    assert Wallets(deps.ledger).holdings("BTC") == {"hot": 150_000, "cold": 0, "deposit": 0}
    assert [d.id for d in deps.list("zoe.main")] == [dep_id]


def test_first_seen_already_at_depth_is_credited_in_one_pass(world):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    btc.pay(a.address, 7_000)
    btc.mine(2)
    r = deps.sync(btc)
    assert (r.pending, r.credited) == (1, 1)
    assert balance(deps, "zoe.main", "BTC") == (7_000, 0)
    assert [t for t, _, c in outbox(deps)] == ["deposit.pending", "deposit.credited"]
    assert {c for _, _, c in outbox(deps)} == {"system"}  # issued without a client: the system's outbox


def test_reorg_before_depth_voids_and_a_remined_deposit_is_a_new_epoch(world):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    did = btc.pay(a.address, 9_000)
    deps.sync(btc)
    btc.rollback(99)
    assert deps.sync(btc).voided == 1
    assert balance(deps, "zoe.main", "BTC") == (0, 0)
    btc.pay(a.address, 9_000, tag="b")
    btc.mine(2)
    r = deps.sync(btc)
    assert (r.pending, r.credited, r.voided) == (1, 1, 0)
    assert [(d.epoch, d.status) for d in deps.list("zoe.main")] == [(1, DEPOSIT_VOIDED), (2, DEPOSIT_CREDITED)]
    assert balance(deps, "zoe.main", "BTC") == (9_000, 0)
    assert deposit_record_id("bitcoin", "regtest", did, 1) != deposit_record_id("bitcoin", "regtest", did, 2)


def test_a_missed_void_is_booked_when_the_next_epoch_shows_up(world):
    """No sync between the reorg and the deposit mined again (the log holds the rollback then
    the new sighting); and, as the upgrade's carried-over log can say it, a sighting in another
    block with no rollback read: epoch 1 is voided, epoch 2 pending, either way."""
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    btc.pay(a.address, 9_000)
    deps.sync(btc)
    btc.rollback(99)
    btc.pay(a.address, 9_000, tag="b")
    r = deps.sync(btc)
    assert (r.pending, r.voided) == (1, 1)
    assert balance(deps, "zoe.main", "BTC") == (0, 9_000)
    btc.pay(a.address, 9_000, height=100, tag="c")  # no rollback in between
    r = deps.sync(btc)
    assert [(d.epoch, d.status) for d in deps.list("zoe.main")] == [(1, DEPOSIT_VOIDED), (2, DEPOSIT_VOIDED),
                                                                    (3, DEPOSIT_PENDING)]
    assert (r.pending, r.voided) == (1, 1)
    assert balance(deps, "zoe.main", "BTC") == (0, 9_000)


def test_reorg_after_credit_is_flagged_for_staff_never_debited(world):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    did = btc.pay(a.address, 5_000)
    btc.mine(2)
    deps.sync(btc)
    btc.rollback(99)
    r = deps.sync(btc)
    assert r.flagged == 1
    rec = deps.get(deposit_record_id("bitcoin", "regtest", did, 1))
    assert (rec.status, rec.review) == (DEPOSIT_REORGED_AFTER_CREDIT, REVIEW_REVERSAL_NEEDED)
    assert balance(deps, "zoe.main", "BTC") == (5_000, 0)
    assert [d.id for d in deps.flagged()] == [rec.id]
    assert outbox(deps)[-1][0] == "deposit.reorged"
    with deps.store.reading() as conn:
        last = conn.execute(sa.select(journal.c.action, journal.c.body).order_by(journal.c.seq.desc()).limit(1)).one()
    assert last.action == "deposit.sync" and "deposit.reorged" in last.body and REVIEW_REVERSAL_NEEDED in last.body
    assert deps.sync(btc).total == 0


def test_reorged_while_still_pending_is_voided(world):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    btc.pay(a.address, 5_000)
    deps.sync(btc)
    btc.mine(5)  # at depth for the scanner, but never confirmed here before ...
    btc.rollback(99)  # ... the reorg: the tip read with the rollback is what counts
    assert deps.sync(btc).voided == 1
    assert balance(deps, "zoe.main", "BTC") == (0, 0)


def test_unmapped_addresses_and_foreign_assets_are_not_customer_credits(world):
    deps, btc, eth = world
    a = deps.issue_address("zoe.main", "ETH", actor="test")
    btc.pay("bcrt1qchangeorvaultwallet", 1_000, n=1)
    btc.mine(2)
    eth.pay(a.address, 10**20, n=2)  # 100 ETH: above 64 bits, exact
    eth.pay(a.address, 5, n=3, asset="ERC20:0x0000000000000000000000000000000000000009")  # no ledger
    eth.pay(a.address, 2_500_000, n=4, asset=TOKEN)
    eth.mine(2)
    assert deps.sync(btc).skipped == 1
    r = deps.sync(eth)
    assert (r.credited, r.skipped) == (2, 1)
    assert balance(deps, "zoe.main", "ETH") == (10**20, 0)
    assert balance(deps, "zoe.main", TOKEN) == (2_500_000, 0)
    from node.wallets import Wallets

    assert Wallets(deps.ledger).holdings("ETH") == {"hot": 0, "cold": 0, "deposit": 10**20}, "no hot ETH wallet here"


def test_sync_books_in_bounded_batches(world, monkeypatch):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    btc.confirmations = {"BTC": 10}
    for n in range(1, 6):
        btc.pay(a.address, 1_000 * n, n=n)
    monkeypatch.setattr(limits, "DEPOSITS_SYNC_BATCH_MAX", 2)
    monkeypatch.setattr(limits, "DEPOSITS_SYNC_PASSES_MAX", 2)
    before = head(deps)
    r = deps.sync(btc)
    assert (r.pending, r.more) == (4, True)
    with deps.store.reading() as conn:
        assert conn.execute(sa.select(journal.c.seq).where(journal.c.seq > before[0])).all().__len__() == 2, "two writes"
    r = deps.sync(btc)
    assert (r.pending, r.more) == (1, False)
    assert balance(deps, "zoe.main", "BTC") == (0, 15_000)


def test_the_fake_is_a_deposit_source():
    assert isinstance(FakeChain("bitcoin", "regtest"), DepositSource)
    assert dataclasses.is_dataclass(Observation)


@pytest.mark.parametrize("decision, funds_left, result, review", [
    ("bogus", 5_000, "decision_invalid", REVIEW_REVERSAL_NEEDED),
    ("reverse", 4_999, "exceeds_available_balance", REVIEW_REVERSAL_NEEDED),  # spent some: refused, nothing changed
    ("reverse", 5_000, None, "reversed"),
    ("write_off", 0, None, "written_off"),
    ("keep", 5_000, None, "kept"),  # mined again on the new branch: the chain holds it once more
])
def test_staff_resolve_a_reorged_credit(world, decision, funds_left, result, review):
    deps, btc, _ = world
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    did = btc.pay(a.address, 5_000)
    btc.mine(2)
    deps.sync(btc)
    if funds_left < 5_000:
        r = deps.customers.internal_transfer("spent", "zoe.main", "yan.main", "BTC", 5_000 - funds_left, actor="test")
        assert r.ok
    btc.rollback(99)
    deps.sync(btc)
    dep_id = deposit_record_id("bitcoin", "regtest", did, 1)
    from node.rebalance import _deposits_reorged_after_credit

    with deps.store.reading() as conn:
        assert _deposits_reorged_after_credit(conn) == {"BTC": (1, 5_000)}
    before = head(deps)
    if result is not None:
        with pytest.raises(DepositError) as e:
            deps.resolve_reversal(dep_id, decision, actor="staff:ops")
        assert e.value.reason == result
        assert head(deps) == before
    else:
        deps.resolve_reversal(dep_id, decision, actor="staff:ops")
        from node.wallets import Wallets

        held = Wallets(deps.ledger).holdings("BTC")["hot"]
        assert held == (5_000 if decision == "keep" else 0), "books give back what the chain lost"
        assert balance(deps, "zoe.main", "BTC")[0] == (0 if decision == "reverse" else funds_left)
        with deps.store.reading() as conn:
            assert _deposits_reorged_after_credit(conn) == {}, "no longer waiting for staff"
        with pytest.raises(DepositError) as e:
            deps.resolve_reversal(dep_id, decision, actor="staff:ops")
        assert e.value.reason == "deposit_not_flagged"
    assert deps.get(dep_id).review == review


def test_outbox_fans_out_to_the_clients_subscribed_endpoints_only(world):
    """The sync's events (written in one batch, webhooks.emit_many) get one delivery per
    enabled endpoint of the address's client that subscribes to their type."""
    from node import webhooks
    from node.store.api_models import webhook_deliveries

    deps, btc, _ = world
    ep_all, _ = webhooks.register_endpoint(deps.store.engine, "cl_1", "http://127.0.0.1:9/all", ["deposit.*"], True, box=BOX)
    ep_credit, _ = webhooks.register_endpoint(deps.store.engine, "cl_1", "http://127.0.0.1:9/c", ["deposit.credited"], True, box=BOX)
    webhooks.register_endpoint(deps.store.engine, "cl_2", "http://127.0.0.1:9/other", ["deposit.*"], True, box=BOX)
    a = deps.issue_address("zoe.main", "BTC", client_id="cl_1", actor="test")
    btc.pay(a.address, 1_000)
    btc.mine(2)
    deps.sync(btc)
    with deps.store.reading() as conn:
        rows = conn.execute(sa.select(webhook_deliveries.c.endpoint_id, webhook_events.c.type)
                            .join(webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id)
                            .order_by(webhook_deliveries.c.seq)).all()
    got = sorted((r.endpoint_id, r.type) for r in rows)
    assert got == sorted([(ep_all.id, "deposit.pending"), (ep_all.id, "deposit.credited"), (ep_credit.id, "deposit.credited")])
