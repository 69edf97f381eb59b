"""A peer's own check of a `reserves` request (mpc/signer/policy.py): the digest is computed
from the message, never taken from the request; anything but the reserves form is refused."""

from __future__ import annotations

import pytest

from nacl.signing import SigningKey

from mpc.wire import requests as rq
from mpc.wire.requests import Refused
from proofs import assets as ast
from tests.unit.cluster.test_policy import KEYS, policy, signed, verifier

MESSAGE = ast.reserves_message("ab" * 16, "cd" * 32)


def test_each_path_gets_the_digest_the_peer_computed(records):
    v = verifier(records).verify_sign(*signed(rq.reserves_request("v1", "ethereum", [(0, 1), (0, 2)], MESSAGE)), KEYS)
    digest = ast.reserves_digest("ethereum", "ab" * 16, "cd" * 32)
    assert [(d.path, d.digest) for d in v.digests] == [((0, 1), digest), ((0, 2), digest)]
    assert (v.asset, v.amount, v.opaque) == ("", 0, False)


@pytest.mark.parametrize("chain, paths, message, reason", [
    ("bitcoin", [(0, 1)], MESSAGE + " ", "message_not_reserves"),
    ("bitcoin", [(0, 1)], "por-mst/1 withdraw 1 BTC", "message_not_reserves"),
    ("bitcoin", [(0, 1)], b"x", "request_malformed"),
    ("dogecoin", [(0, 1)], MESSAGE, "chain_not_supported"),
    ("bitcoin", [], MESSAGE, "request_malformed"),
    ("bitcoin", [[-1]], MESSAGE, "request_malformed"),
])
def test_refusals(chain, paths, message, reason, records):
    body = rq.reserves_request("v1", chain, paths, "")
    body["message"] = 7 if isinstance(message, bytes) else message  # bytes: stands for "not a string"
    with pytest.raises(Refused) as e:
        verifier(records).verify_sign(*signed(body), KEYS)
    assert e.value.reason == reason


def test_a_policy_may_disable_reserves_and_signature_is_checked_first(records):
    with pytest.raises(Refused) as e:
        verifier(records, ceremonies={"reserves_allowed": False}).verify_sign(*signed(rq.reserves_request("v1", "bitcoin", [(0,)], MESSAGE)), KEYS)
    assert e.value.reason == "reserves_not_allowed"
    assert policy().reserves_allowed is True
    with pytest.raises(Refused) as e:
        verifier(records).verify_sign(*signed(rq.reserves_request("v1", "bitcoin", [(0,)], MESSAGE), SigningKey.generate()), KEYS)
    assert e.value.reason == "node_signature_invalid"


def test_reserves_requests_count_toward_the_rate_limit(records):
    v = verifier(records, rate_limits={"signatures_per_hour": 2})
    for _ in range(2):
        v.verify_sign(*signed(rq.reserves_request("v1", "bitcoin", [(0,)], MESSAGE)), KEYS)
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(rq.reserves_request("v1", "bitcoin", [(0,)], MESSAGE)), KEYS)
    assert e.value.reason == "rate_limit_exceeded"


def test_a_reserves_request_id_reused_for_another_message_is_refused(records):
    v = verifier(records)
    first = rq.reserves_request("v1", "bitcoin", [(0,)], MESSAGE)
    v.verify_sign(*signed(first), KEYS)
    v.verify_sign(*signed({**first, "created_at_ms": first["created_at_ms"] + 1}), KEYS)  # a node retry: free
    other = rq.reserves_request("v1", "bitcoin", [(0,)], ast.reserves_message("ef" * 16, "cd" * 32), request_id=first["request_id"])
    with pytest.raises(Refused) as e:
        v.verify_sign(*signed(other), KEYS)
    assert e.value.reason == "request_id_reused"
