"""Spend-once (issue 14, trust model 2) on a peer's durable records: one approved intent pays at
most once. Another transaction version of an intent is recorded only if it conflicts with every
earlier one (shares a spend with each: an RBF fee bump, an Ethereum replacement at the same
nonce); anything else, and the same intent id under another vault or chain, is
intent_already_signed. Every step below reopens the records the way a restarted peer does, so
the rule is shown to hold across restarts (and across compaction, further down)."""

from __future__ import annotations

import hashlib
import re

import pytest

from mpc.signer.records import IntentVersion
from mpc.wire.requests import Refused
from node import limits
from tests.support.records import T0_MS, open_records


def reopen(world):
    data, sealer, clock = world
    return open_records(data, sealer, clock)


def v(spends, payload: str, intent: str = "i-1", vault: str = "hot", chain: str = "bitcoin") -> IntentVersion:
    return IntentVersion(intent, vault, chain, frozenset(spends), hashlib.sha256(payload.encode()).hexdigest())


def outcome(fn) -> str:
    try:
        fn()
    except Refused as exc:
        return exc.reason
    return "recorded"


A, B, C = "aa" * 32 + ":0", "bb" * 32 + ":1", "cc" * 32 + ":0"  # bitcoin outpoints
N0, N1 = "0xSender:0", "0xSender:1"  # ethereum sender:nonce

SCENARIOS = [
    # (case, [(version, outcome)]): each step on records reopened
    ("an RBF fee bump spends the same inputs", [(v({A, B}, "tx1"), "recorded"), (v({A, B}, "tx1-bump"), "recorded"),
                                                (v({A, B}, "tx1-bump2"), "recorded")]),
    ("a replacement sharing one input with each earlier version", [(v({A, B}, "tx1"), "recorded"), (v({B}, "tx2"), "recorded")]),
    ("the same version again is a retry", [(v({A}, "tx1"), "recorded"), (v({A}, "tx1"), "recorded")]),
    ("other inputs: a second payment", [(v({A}, "tx1"), "recorded"), (v({C}, "tx2"), "intent_already_signed")]),
    ("a conflict with the first version only", [(v({A, B}, "tx1"), "recorded"), (v({B, C}, "tx2"), "recorded"),
                                                (v({A}, "tx3"), "intent_already_signed")]),
    ("the same intent id under another vault", [(v({A}, "tx1"), "recorded"), (v({A}, "tx1", vault="cold"), "intent_already_signed")]),
    ("the same intent id on another chain", [(v({A}, "tx1"), "recorded"), (v({N0}, "tx2", chain="ethereum"), "intent_already_signed")]),
    ("ethereum, a higher fee at the same nonce", [(v({N0}, "e1", chain="ethereum"), "recorded"),
                                                 (v({N0}, "e1-bump", chain="ethereum"), "recorded")]),
    ("ethereum, another nonce", [(v({N0}, "e1", chain="ethereum"), "recorded"), (v({N1}, "e2", chain="ethereum"), "intent_already_signed")]),
    ("another intent spending the same coins is not this rule's", [(v({A}, "tx1"), "recorded"), (v({A}, "tx2", intent="i-2"), "recorded")]),
]


@pytest.mark.parametrize("case,steps", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_spend_once_across_restarts(world, case, steps):
    for n, (version, expected) in enumerate(steps):
        with reopen(world) as r:
            assert outcome(lambda: r.check_intent(version)) == expected, f"step {n + 1}: check"
            assert outcome(lambda: r.record_intent(version)) == expected, f"step {n + 1}: record"


def test_a_refused_version_is_not_recorded_and_a_retry_writes_nothing(world):
    data = world[0]
    with reopen(world) as r:
        r.record_intent(v({A}, "tx1"))
    lines = (data / "records" / "log").read_text().count("\n")
    with reopen(world) as r:
        r.record_intent(v({A}, "tx1"))  # a retry of the same version
        assert outcome(lambda: r.record_intent(v({C}, "tx2"))) == "intent_already_signed"
        r.check_intent(v({A}, "tx1-bump"))  # a check only
    assert (data / "records" / "log").read_text().count("\n") == lines, "nothing written"
    with reopen(world) as r:  # and a refused version stays refused, its predecessor still rules
        assert outcome(lambda: r.record_intent(v({C}, "tx2"))) == "intent_already_signed"


def test_the_refusal_names_the_version_it_does_not_conflict_with(world):
    with reopen(world) as r:
        r.record_intent(v({A, B}, "tx1"))
        r.record_intent(v({B, C}, "tx2"))
        with pytest.raises(Refused) as e:
            r.record_intent(v({A}, "tx3"))
    sha2 = hashlib.sha256(b"tx2").hexdigest()
    assert e.value.detail == f"intent i-1: version 2 ({sha2[:16]}) spends nothing this one spends"


def test_versions_of_one_intent_are_bounded(world):
    with reopen(world) as r:
        for n in range(limits.RECORDS_INTENT_VERSIONS_MAX):
            r.record_intent(v({A}, f"bump-{n}"))
        assert outcome(lambda: r.record_intent(v({A}, "one-more"))) == "intent_versions_exceeded"
        r.record_intent(v({A}, "bump-0"))  # a retry of a recorded one is still free


def test_a_full_state_refuses_new_intents_rather_than_forget(world, monkeypatch):
    monkeypatch.setattr(limits, "RECORDS_INTENT_VERSIONS_LIVE_MAX", 2)
    with reopen(world) as r:
        r.record_intent(v({A}, "tx1", intent="i-1"))
        r.record_intent(v({B}, "tx2", intent="i-2"))
        assert outcome(lambda: r.record_intent(v({C}, "tx3", intent="i-3"))) == "intent_records_full"
    with reopen(world) as r:
        assert outcome(lambda: r.record_intent(v({C}, "tx1-other", intent="i-1"))) == "intent_already_signed"


def _intents_in(text: str) -> list[str]:
    return re.findall(r'"intent_id":"([^"]+)"', text)


def test_kept_across_compaction_for_the_retention_after_the_latest_version(world, monkeypatch):
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 8)
    data, sealer, clock = world
    kept_ms = limits.RECORDS_INTENT_KEPT_MS
    with reopen(world) as r:
        r.record_intent(v({A}, "tx1", intent="old"))
        r.record_intent(v({B}, "tx1", intent="bumped"))
        for n in range(4):
            r.mark_signed(f"r{n}")  # 7 records
        clock.ms = T0_MS + kept_ms - 1
        r.record_intent(v({B}, "tx1-bump", intent="bumped"))  # its latest version: kept from here
        r.mark_signed("r-late")  # 9 records: compacted; the signed ids of T0 are gone, both intents live
        text = (data / "records" / "log").read_text()
    assert text.count("\n") == 1 + 5, "header, snapshot, 3 intent versions, 1 signed id"
    assert sorted(_intents_in(text)) == ["bumped", "bumped", "old"]
    clock.ms = T0_MS + kept_ms  # "old" is past its retention, "bumped" is not
    with reopen(world) as r:
        assert outcome(lambda: r.record_intent(v({C}, "tx2", intent="bumped"))) == "intent_already_signed"
        assert outcome(lambda: r.record_intent(v({A, B}, "tx1-bump2", intent="bumped"))) == "recorded"
        # forgotten past RECORDS_INTENT_KEPT_MS (an approval max age must stay below it: issue 14)
        assert outcome(lambda: r.check_intent(v({C}, "tx2", intent="old"))) == "recorded"


def test_a_compacted_log_replays_to_the_same_state(world, monkeypatch):
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 8)
    data, sealer, clock = world
    with reopen(world) as r:
        r.record_intent(v({A, B}, "tx1"))
        r.record_intent(v({B, C}, "tx2"))
        r.record_intent(v({N0}, "e1", intent="i-eth", chain="ethereum"))
        for n in range(4):
            r.mark_signed(f"r{n}")
        clock.ms += limits.RECORDS_SIGNED_KEPT_MS + 1
        r.mark_signed("r-late")  # compacted to the snapshot, the 3 versions and r-late
        assert sorted(_intents_in((data / "records" / "log").read_text())) == ["i-1", "i-1", "i-eth"]
    with reopen(world) as r:
        assert outcome(lambda: r.record_intent(v({A}, "tx3"))) == "intent_already_signed"
        assert outcome(lambda: r.record_intent(v({B}, "tx3"))) == "recorded"
        assert outcome(lambda: r.record_intent(v({N1}, "e2", intent="i-eth", chain="ethereum"))) == "intent_already_signed"
        assert outcome(lambda: r.record_intent(v({N0}, "e1-bump", intent="i-eth", chain="ethereum"))) == "recorded"
