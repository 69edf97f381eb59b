"""Bitcoin fee estimation: the node's estimate in sat/vB (rounded up, from BTC/kvB as Decimal,
never a float), the configured fallback when the node has none (btcd), the limits.
The RPC here is a stand-in for one method's answers; btcd itself is in tests/functional/chains."""

from __future__ import annotations

import decimal

import pytest

from chains.bitcoin.adapter import BitcoinAdapter
from chains.errors import ChainError, RpcError
from chains.state import ChainState, make_engine


class AnswersOnce:
    def __init__(self, answer):
        self.answer = answer

    def call(self, method, *params):
        assert method == "estimatesmartfee", method
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def adapter(tmp_path, answer, fallback=3):
    state = ChainState(make_engine(f"sqlite:///{tmp_path / 's.db'}"), "bitcoin:regtest")
    return BitcoinAdapter(AnswersOnce(answer), state, "regtest", confirmations=1, fee_rate_fallback_sat_vb=fallback)


@pytest.mark.parametrize(
    "answer,expected",
    [
        ({"feerate": decimal.Decimal("0.00012"), "blocks": 6}, ("node", 12)),
        ({"feerate": decimal.Decimal("0.000123"), "blocks": 6}, ("node", 13)),  # 12.3 rounds up
        ({"feerate": decimal.Decimal("0.000001"), "blocks": 6}, ("node", 1)),  # below the floor: the floor
        ({"errors": ["Insufficient data or no feerate found"], "blocks": 0}, ("fallback", 3)),
        (RpcError("estimatesmartfee", -32601, "Method not found"), ("fallback", 3)),
    ],
)
def test_fee_estimate(tmp_path, answer, expected):
    est = adapter(tmp_path, answer).estimate_fee()
    assert (est.source, est.fee_rate) == expected and isinstance(est.fee_rate, int)


def test_a_node_estimate_above_the_limit_is_refused(tmp_path):
    with pytest.raises(ChainError) as exc:
        adapter(tmp_path, {"feerate": decimal.Decimal("1.0")}).estimate_fee()
    assert exc.value.reason == "fee_rate_out_of_range"


@pytest.mark.parametrize("fallback", [0, 10**6])
def test_a_fallback_out_of_range_is_refused(tmp_path, fallback):
    with pytest.raises(ChainError) as exc:
        adapter(tmp_path, {}, fallback=fallback)
    assert exc.value.reason == "fee_rate_out_of_range"
