"""The Ethereum adapter with its state on PostgreSQL (NUMERIC(78,0)): a deposit of 100 ETH —
far beyond 64 bits in wei — is observed exactly and goes pending -> credited
(the node's books on PostgreSQL too), and the nonce sequence survives a
restart. A fresh Anvil and a fresh PostgreSQL schema for this module; plain test key."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from chains.ethereum import tx as etx
from chains.ethereum.adapter import EthereumAdapter
from chains import state as chain_state
from chains.state import ChainState, make_engine
from node.ports import DEPOSIT_CREDITED, OBSERVED_SEEN, TX_CONFIRMED, Payment, WithdrawalIntent
from tests.functional.chains.conftest import ETH_CONFIRMATIONS, GWEI, Books
from tests.support import nodes
from tests.support.procs import wait_until
from tests.support.test_signer import PlainTestSigner

pytestmark = [pytest.mark.functional, pytest.mark.postgres]

ETH = 10**18


@pytest.fixture(scope="module")
def pg_schema(pg_url):
    schema = f"chains_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg_url)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(pg_url).execution_options(schema_translate_map={None: schema})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(scope="module")
def world(workdir, pg_schema):
    node = nodes.Anvil(workdir / "anvil-pg").start()
    signer = PlainTestSigner("custody-test-vault-pg")

    def adapter():
        a = EthereumAdapter.connect(
            node.url, ChainState(pg_schema, f"ethereum:{node.CHAIN_ID}"), node.CHAIN_ID,
            confirmations={"ETH": ETH_CONFIRMATIONS}, max_fee_per_gas_fallback=50 * GWEI,
            max_priority_fee_per_gas_fallback=2 * GWEI, start_height=0,
        )
        a.register_vault("ours", signer.vault_keys())
        return a

    try:
        yield node, signer, adapter
    finally:
        node.stop()


def test_a_large_wei_deposit_is_exact_on_postgres(world, pg_schema, pg_url):
    node, signer, adapter = world
    ours = adapter()
    schema = f"node_{uuid.uuid4().hex[:10]}"
    books = Books(pg_url, ours, {"ETH": 18}, schema=schema)  # the node's store on PostgreSQL too
    try:
        dep = books.issue("ETH")
        payer = node.call("eth_accounts")[0]
        node.set_balance(payer, 1000 * ETH)
        txh = node.call("eth_sendTransaction", {"from": payer, "to": dep, "value": hex(100 * ETH)})
        assert [(o.txid, o.amount) for o in ours.scan().events if o.kind == OBSERVED_SEEN] == [(txh, 100 * ETH)]
        assert books.sync().pending == 1
        node.mine(ETH_CONFIRMATIONS - 1)
        ours.scan()
        assert books.sync().credited == 1
        assert books.of(txh) == [(DEPOSIT_CREDITED, 1, 100 * ETH, dep)]
        with pg_schema.connect() as c:
            # Raw NUMERIC from the driver (no type conversion): a Decimal equal to the exact wei.
            stored = c.execute(sa.select(sa.literal_column("amount")).select_from(chain_state.observations)).scalar_one()
        assert stored == 100 * ETH and 100 * ETH > 2**63, "NUMERIC(78,0) holds it exactly"
    finally:
        books.store.dispose()
        admin = make_engine(pg_url)
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def test_nonces_survive_a_restart_on_postgres(world):
    node, signer, adapter = world
    ours = adapter()
    hot = ours.address("ours", (1, 0))
    node.set_balance(hot, 10 * ETH)
    dest = node.call("eth_accounts")[1]
    intents = [WithdrawalIntent(f"pg-{i}", "ours", "ethereum", str(node.CHAIN_ID), "ETH", (Payment(dest, 1000 + i),), 10**16) for i in range(3)]
    first = ours.build_withdrawal(intents[0], source_path=(1, 0))
    restarted = adapter()
    rest = [restarted.build_withdrawal(it, source_path=(1, 0)) for it in intents]
    assert rest[0].payload == first.payload
    assert [etx.parse_unsigned(u.payload).nonce for u in rest] == [0, 1, 2]
    for utx, it in zip(rest, intents):
        signed = restarted.attach_signatures(utx, signer.sign(restarted.digests(utx, it)), it)
        txid = restarted.broadcast(signed)
    wait_until(lambda: restarted.status(txid).state == TX_CONFIRMED, 10, "the last one mined")
