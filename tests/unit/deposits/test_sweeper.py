"""The sweeper's decisions over a real store (SQLite and PostgreSQL), with the chain side given
as plain functions (the real btcd, Anvil and signer cluster sweep in
tests/functional/deposits): the per-asset minimum, one movement in flight per address, a token
address's gas top-up before its sweep, and the paths every signer peer checks."""

from __future__ import annotations

import pytest

from node.deposits import Sweeper
from node.ports import Vault
from node.withdrawals import ACTIVE, VAULT_WALLET_PATH, Withdrawals
from tests.unit.deposits.test_deposits import TOKEN, world  # noqa: F401 - the store fixture
from tests.unit.withdrawals.test_state_machine import KEYS

HOT_BTC, HOT_ETH = "bcrt1qhotwallet", "0xHotWallet"


def policy() -> str:
    apr = "\n".join(f'{a} = "{k.verify_key.encode().hex()}"' for a, k in KEYS.items())
    return f"""version = 1
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
ethereum = "{10**16}"
[[vaults]]
id = "hot"
kind = "hot"
bands = [{{ asset = "BTC", amount_max = "100000000", approvals_min = 0 }}]
"""


@pytest.fixture
def sweeper(world):  # noqa: F811
    deps, btc, eth = world
    import coincurve

    w = Withdrawals(deps.ledger, {"bitcoin": "regtest", "ethereum": "1337"})
    pub = coincurve.PrivateKey(b"\x07" * 32).public_key.format()
    w.register_vault(Vault("hot", ("peer-1:0", "peer-2:0", "peer-3:0"), 1, pub, b"\x01" * 32), "hot", actor="test")
    w.bootstrap_policy(policy(), actor="test")
    chain = {"sweepable": {}, "gas": {}}
    sw = Sweeper(deps, w, minimums={"BTC": 10_000, TOKEN: 100},
                 sweepable=lambda a, asset: chain["sweepable"].get((a.address, asset), 0),
                 gas_missing=lambda a, asset: chain["gas"].get((a.address, asset), 0),
                 wallet_address=lambda vault, asset: HOT_BTC if asset == "BTC" else HOT_ETH)
    return deps, btc, eth, w, sw, chain


def test_below_the_minimum_nothing_then_one_sweep_in_flight_per_address(sweeper):
    deps, btc, _, w, sw, chain = sweeper
    a = deps.issue_address("zoe.main", "BTC", actor="test")
    btc.pay(a.address, 9_999, n=1)
    btc.mine(2)  # at depth
    deps.sync(btc)
    chain["sweepable"][(a.address, "BTC")] = 9_000
    assert sw.run_once() == [], "below the BTC minimum"
    btc.pay(a.address, 1, n=2)
    btc.mine(2)  # at depth
    deps.sync(btc)
    [x] = sw.run_once()
    assert (x.kind, x.asset, x.amount, x.destination, x.source_path) == ("sweep", "BTC", 9_000, HOT_BTC, a.path)
    assert x.intent.own_destination_paths == (VAULT_WALLET_PATH,) and x.intent.kind == "sweep"
    assert {d.swept_by for d in deps.list("zoe.main")} == {x.id}
    btc.pay(a.address, 50_000, n=3)
    btc.mine(2)  # at depth
    deps.sync(btc)
    assert sw.run_once() == [], "never a second movement while one is in flight"
    w.cancel(x.id, actor="test")
    [y] = sw.run_once()
    assert y.id != x.id and y.status in ACTIVE


def test_a_token_address_gets_gas_first_then_its_sweep(sweeper):
    deps, _, eth, w, sw, chain = sweeper
    a = deps.issue_address("zoe.main", TOKEN, actor="test")
    eth.pay(a.address, 500, n=1, asset=TOKEN)
    eth.mine(2)  # at depth
    deps.sync(eth)
    chain["gas"][(a.address, TOKEN)] = 777
    chain["sweepable"][(a.address, TOKEN)] = 500
    [topup] = sw.run_once()
    assert (topup.asset, topup.amount, topup.destination, topup.source_path) == ("ETH", 777, a.address, VAULT_WALLET_PATH)
    assert topup.intent.own_destination_paths == (a.path,), "the peers check the top-up pays our deposit address"
    assert [d.swept_by for d in deps.list("zoe.main")] == [None], "the deposit is not swept by a top-up"
    assert sw.run_once() == [], "the token sweep waits for its gas"
    w.cancel(topup.id, actor="test")  # stands for: the top-up ended (here: cancelled), gas now there
    chain["gas"].clear()
    [x] = sw.run_once()
    assert (x.asset, x.amount, x.destination, x.source_path) == (TOKEN, 500, HOT_ETH, a.path)


def test_assets_without_a_minimum_are_never_swept(sweeper):
    deps, _, eth, _, sw, chain = sweeper
    a = deps.issue_address("zoe.main", "ETH", actor="test")
    eth.pay(a.address, 10**18, n=1)
    eth.mine(2)  # at depth
    deps.sync(eth)
    chain["sweepable"][(a.address, "ETH")] = 10**18
    assert sw.run_once() == []
