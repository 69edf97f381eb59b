"""The Bitcoin adapter on a node without a transaction index (bitcoind's default): the status
of our mined withdrawal comes from our own scanned UTXO set. A separate btcd, without --txindex.
Signatures come from a plain test key, as in test_bitcoin_node.py."""

from __future__ import annotations

import pytest

from chains.errors import RpcError
from node.ports import TX_CONFIRMED, TX_MEMPOOL, TX_UNKNOWN, Payment, WithdrawalIntent
from tests.functional.chains.conftest import BtcWorld

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def btc_plain(workdir):
    world = BtcWorld(workdir, txindex=False)
    try:
        yield world
    finally:
        world.node.stop()


def test_status_of_our_mined_withdrawal_without_a_transaction_index(btc_plain):
    btc = btc_plain
    btc.node.generate(101)
    btc.faucet.scan()
    btc.ours.scan()
    dep = btc.ours.address("ours", (0, 0))
    it = WithdrawalIntent("fund", "faucet", "bitcoin", "regtest", "BTC", (Payment(dep, 50_000_000),), 100_000)
    utx = btc.faucet.build_withdrawal(it)
    txid = btc.faucet.broadcast(btc.faucet.attach_signatures(utx, btc.faucet_signer.sign(btc.faucet.digests(utx, it)), it))
    assert btc.faucet.status(txid).state == TX_MEMPOOL, "a mempool transaction is found without an index"
    btc.node.generate(2)
    with pytest.raises(RpcError):
        btc.faucet.rpc.call("getrawtransaction", txid, 1)  # no index: the node cannot find it
    assert btc.faucet.status(txid).state == TX_UNKNOWN, "not scanned yet: the node alone cannot tell"
    btc.faucet.scan()
    status = btc.faucet.status(txid)
    assert (status.state, status.confirmations) == (TX_CONFIRMED, 2), status
