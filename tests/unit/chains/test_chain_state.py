"""The adapters' state store on SQLite and PostgreSQL, and the scanner's deposit state machine
driven by a scripted chain (a stand-in for one function's inputs; the real nodes are in
tests/functional/chains)."""

from __future__ import annotations

import uuid

import pytest

from chains.errors import ReorgTooDeep
from chains.scanning import BlockRef, Scanner
from chains.state import ChainState, DepositRow, Utxo, make_engine
from node import limits
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED

BIG_WEI = 2**255 + 12345  # far beyond 64 bits; a float would lose it


@pytest.fixture(params=["sqlite", "postgres"])
def state(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        yield ChainState(engine, f"test:{uuid.uuid4().hex[:12]}")
        engine.dispose()
        return
    # PostgreSQL: a schema of its own, dropped afterwards.
    url = request.getfixturevalue("pg_url")
    schema = f"chains_unit_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(url).execution_options(schema_translate_map={None: schema})
    try:
        yield ChainState(engine, f"test:{uuid.uuid4().hex[:12]}")
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def test_amounts_round_trip_as_exact_ints(state):
    row = DepositRow("tx:0", "ETH", "0xab", "0xaddr", "v", (0, 1), BIG_WEI, 5, "0xh", DEPOSIT_PENDING, 1)
    with state.begin() as st:
        st.insert_deposit(row)
    with state.begin() as st:
        got = st.deposit("tx:0")
    assert got == row and type(got.amount) is int and got.amount == BIG_WEI


def test_utxo_rollback_undoes_outputs_and_spends_above_the_fork(state):
    with state.begin() as st:
        st.add_utxo(Utxo("a" * 64, 0, "addr", "v", (0, 0), 1000, 10, False))
        st.add_utxo(Utxo("b" * 64, 1, "addr", "v", (0, 0), 2000, 12, False))
        assert st.spend_utxo("a" * 64, 0, "c" * 64, 12)
        assert not st.spend_utxo("d" * 64, 0, "c" * 64, 12), "not ours: nothing to spend"
    with state.begin() as st:
        st.rollback_utxos_above(11)
    with state.begin() as st:
        assert [(u.txid, u.amount) for u in st.unspent_utxos()] == [("a" * 64, 1000)]


def test_a_failed_transaction_changes_nothing(state):
    with pytest.raises(RuntimeError):
        with state.begin() as st:
            st.put_block(1, "h1", 10)
            raise RuntimeError("crash mid-block")
    with state.begin() as st:
        assert st.tip() is None


def test_nonce_claims_release_and_reuse(state):
    with state.begin() as st:
        st.claim_nonce("0xA", 0, "i1")
        st.claim_nonce("0xA", 1, "i2")
        st.release_nonce("0xA", "i2")
        assert st.released_nonce("0xA") == 1
        st.claim_nonce("0xA", 1, "i3")
        assert (st.nonce_of("0xA", "i3"), st.released_nonce("0xA"), st.highest_nonce("0xA")) == (1, None, 1)
        st.claim_nonce("0xA", 2, "i5")
        st.claim_nonce("0xA", 3, "i6")
        st.release_nonce("0xA", "i5")
        st.release_nonce("0xA", "i6")
        assert (st.released_nonce("0xA"), st.released_nonce("0xA", minimum=3)) == (2, 3), "stale ones are skipped"
        with pytest.raises(AssertionError):
            st.claim_nonce("0xA", 0, "i4")  # owned: a programmer error, never a silent reuse


class ScriptedChain(Scanner):
    """A chain whose blocks the test writes: heights -> (hash, [(deposit_id, amount)])."""

    chain = "test"
    network = "scripted"

    def __init__(self, state, confirmations=3):
        self.state = state
        self.confirmations = self._check_confirmations({"COIN": confirmations})
        self.start_height = 0
        self.blocks: list[tuple[str, list[tuple[str, int]]]] = []

    def extend(self, n, deposits=(), tag="a"):
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
            [DepositRow(d, "COIN", d, "addr", "v", (0, 0), amount, ref.height, ref.hash, "", 0) for d, amount in deposits],
        )

    def _rollback(self, st, fork_height):
        pass


def kinds(result):
    return [(e.kind, e.deposit.deposit_id, e.deposit.epoch) for e in result.events]


def test_deposit_state_machine_through_reorgs(state):
    chain = ScriptedChain(state)
    chain.extend(5)
    assert kinds(chain.scan()) == []
    chain.extend(1, deposits=[("d1", 10)])
    assert kinds(chain.scan()) == [(DEPOSIT_PENDING, "d1", 1)]
    chain.extend(1)
    assert kinds(chain.scan()) == []
    # A reorg before the depth voids it ...
    chain.reorg(2, 3, tag="b")
    r = chain.scan()
    assert (r.rolled_back_to, kinds(r)) == (4, [(DEPOSIT_VOIDED, "d1", 1)])
    # ... and when it is mined again it is a new pending deposit, epoch 2, credited at depth.
    chain.extend(1, deposits=[("d1", 10)], tag="c")
    assert kinds(chain.scan()) == [(DEPOSIT_PENDING, "d1", 2)]
    chain.extend(2, tag="c")
    assert kinds(chain.scan()) == [(DEPOSIT_CREDITED, "d1", 2)]
    # A reorg after the depth is flagged, never silently undone.
    chain.reorg(4, 5, tag="d")
    assert kinds(chain.scan()) == [(DEPOSIT_REORGED_AFTER_CREDIT, "d1", 2)]
    assert kinds(chain.scan()) == []


def test_a_reorg_deeper_than_the_limit_stops_the_scan(state):
    chain = ScriptedChain(state)
    chain.extend(limits.CHAINS_REORG_DEPTH_MAX + 5)
    while chain.scan().tip_height < len(chain.blocks) - 1:
        pass
    chain.blocks = [(f"x{h}", []) for h in range(len(chain.blocks) + 1)]
    with pytest.raises(ReorgTooDeep):
        chain.scan()
    with state.begin() as st:
        assert st.tip()[1] == f"a{len(chain.blocks) - 2}", "nothing rolled back"


def test_two_scanners_of_one_chain_never_apply_a_block_twice(state):
    first, second = ScriptedChain(state), ScriptedChain(state)
    second.blocks = first.blocks  # the same node
    first.extend(3, deposits=[("d1", 10)])
    fetch = second._fetch_blocks

    def racing(start, end):
        fetched = list(fetch(start, end))
        # The other scanner (an overlapping restart) applies the same blocks first.
        assert kinds(first.scan()) == [(DEPOSIT_PENDING, "d1", 1), (DEPOSIT_CREDITED, "d1", 1)]
        yield from fetched

    second._fetch_blocks = racing
    assert kinds(second.scan()) == [], "the stale scanner stops without applying anything"
    with state.begin() as st:
        assert [(d.deposit_id, d.status) for d in st.all_deposits()] == [("d1", DEPOSIT_CREDITED)]
        assert st.tip() == (2, "a2")
