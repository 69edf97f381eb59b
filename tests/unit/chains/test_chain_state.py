"""The adapters' state store on SQLite and PostgreSQL, and the scanner's observation log
driven by a scripted chain (a stand-in for one function's inputs; the real nodes are in
tests/functional/chains)."""

from __future__ import annotations

import uuid

import pytest

from chains.errors import ReorgTooDeep
from chains.state import ChainState, DepositRow, Utxo, make_engine
from node import limits
from node.ports import OBSERVED_ROLLBACK, OBSERVED_SEEN
from tests.support.scripted_chain import ScriptedChain

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
    row = DepositRow("tx:0", "ETH", "0xab", "0xaddr", "v", (0, 1), BIG_WEI, 5, "0xh")
    with state.begin() as st:
        st.put_block(5, "0xh", 10)
        assert st.observe([row]) == [1]
    with state.begin() as st:
        assert st.head() == (1, 5, "0xh")
        [got] = st.observations_after(0, 1, 10)
    assert (got.deposit_id, got.kind, got.height, got.block_hash) == ("tx:0", OBSERVED_SEEN, 5, "0xh")
    assert type(got.amount) is int and got.amount == BIG_WEI


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


def kinds(result):
    return [(o.kind, o.deposit_id, o.height) for o in result.events]


def logged(chain, after=0):
    return [(o.seq, o.kind, o.deposit_id, o.height) for o in chain.observations(after, 100).items]


def test_the_scanner_reports_observations_through_reorgs_and_keeps_no_status(state):
    chain = ScriptedChain(state)
    chain.extend(5)
    assert kinds(chain.scan()) == []
    chain.extend(1, deposits=[("d1", 10)])
    assert kinds(chain.scan()) == [(OBSERVED_SEEN, "d1", 5)]
    chain.extend(3)
    assert kinds(chain.scan()) == [], "depth is the node's business: nothing more to report"
    page = chain.observations(0, 100)
    assert (page.last_seq, page.tip_height, page.tip_hash) == (1, 8, "a8")
    chain.reorg(4, 5, tag="b")
    r = chain.scan()
    assert (r.rolled_back_to, kinds(r)) == (4, [(OBSERVED_ROLLBACK, "", 4)])
    chain.extend(1, deposits=[("d1", 10)], tag="c")
    assert kinds(chain.scan()) == [(OBSERVED_SEEN, "d1", 10)]
    assert logged(chain) == [(1, OBSERVED_SEEN, "d1", 5), (2, OBSERVED_ROLLBACK, "", 4), (3, OBSERVED_SEEN, "d1", 10)]
    assert logged(chain, after=2) == [(3, OBSERVED_SEEN, "d1", 10)]
    [seen] = chain.observations(2, 100).items
    assert (seen.block_hash, seen.amount, seen.address, seen.asset) == ("c10", 10, "addr", "COIN")
    assert [o.seq for o in chain.observations(0, 2).items] == [1, 2] and not chain.observations(0, 2).complete


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
    assert logged(chain) == [], "no rollback reported"


def test_two_scanners_of_one_chain_never_apply_a_block_twice(state):
    first, second = ScriptedChain(state), ScriptedChain(state)
    second.blocks = first.blocks  # the same node
    first.extend(3, deposits=[("d1", 10)])
    fetch = second._fetch_blocks

    def racing(start, end):
        fetched = list(fetch(start, end))
        # The other scanner (an overlapping restart) applies the same blocks first.
        assert kinds(first.scan()) == [(OBSERVED_SEEN, "d1", 0)]
        yield from fetched

    second._fetch_blocks = racing
    assert kinds(second.scan()) == [], "the stale scanner stops without applying anything"
    assert logged(first) == [(1, OBSERVED_SEEN, "d1", 0)], "observed once"
    with state.begin() as st:
        assert st.tip() == (2, "a2")
