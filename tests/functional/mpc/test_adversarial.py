"""Bad messages: tampered, truncated, from a non-member, replayed from another session. Each is
rejected naming the culprit where tss-lib can, and no signature comes out."""

from __future__ import annotations

import threading

import pytest
from support.mpc_ceremonies import random_digest

from mpc import engine
from mpc.local import run_local

SIGNERS = ("signer-1", "signer-2")


def sessions_for(committee, digest, sid=None, signers=SIGNERS):
    by_id = {p.id: p for p in committee.parties}
    ps = [by_id[i] for i in signers]
    sid = sid or engine.new_session_id()
    return {p.id: engine.sign_session(p.id, ps, committee.shares[p.id], digest, sid) for p in ps}


def close_all(sessions):
    for s in sessions.values():
        s.close()


def first_p2p_from(victim_sender: str, victim_recipient: str, mutate):
    """A route that mutates the first direct message sender -> recipient (once)."""
    done = threading.Event()

    def route(sender, recipient, ev):
        if sender == victim_sender and recipient == victim_recipient and not ev.is_broadcast and not done.is_set():
            done.set()
            return [(mutate(ev.wire), ev.is_broadcast)]
        return [(ev.wire, ev.is_broadcast)]

    return route, done


def test_tampered_message_aborts_naming_the_sender(committee_2of3):
    digest = random_digest()
    sessions = sessions_for(committee_2of3, digest)

    def flip_last_byte(wire: bytes) -> bytes:
        # inside the last big integer of the range proof: the bytes still parse
        return wire[:-1] + bytes([wire[-1] ^ 0x01])

    route, done = first_p2p_from("signer-2", "signer-1", flip_last_byte)
    run = run_local(sessions, timeout_s=60, route=route)
    assert done.is_set(), "the route never saw the message it should tamper with"
    assert run.results == {}, f"a signature came out: {run.results}"
    err = run.errors["signer-1"]
    assert err.task == "signing" and err.culprits == ("signer-2",), err
    assert err.round >= 1
    # the session stays failed: no later event, no later delivery succeeds
    with pytest.raises(engine.MpcError):
        sessions["signer-1"].next_event(0)
    close_all(sessions)


def test_truncated_message_is_rejected_naming_the_sender(committee_2of3):
    digest = random_digest()
    sessions = sessions_for(committee_2of3, digest)
    route, done = first_p2p_from("signer-2", "signer-1", lambda w: w[: len(w) // 2])
    run = run_local(sessions, timeout_s=60, route=route)
    assert done.is_set()
    assert run.results == {}, f"a signature came out: {run.results}"
    err = run.errors["signer-1"]
    assert err.culprits == ("signer-2",) and "does not parse" in err.message, err
    # bytes that do not parse changed nothing in the receiver: it still waits for signer-2
    assert "signer-2" in sessions["signer-1"].waiting_for()
    close_all(sessions)


def test_message_from_non_member_is_rejected_and_changes_nothing(committee_2of3):
    digest = random_digest()
    sessions = sessions_for(committee_2of3, digest)
    s1 = sessions["signer-1"]
    s1.start()
    first = s1.next_event(5)
    assert isinstance(first, engine.Outgoing)
    # signer-3 holds a share of this key but is not a signer of this session; mallory is nobody
    for outsider in ("signer-3", "mallory"):
        with pytest.raises(engine.MpcError) as e:
            s1.deliver(first.wire, outsider, first.is_broadcast)
        assert e.value.culprits == (outsider,) and "not a member" in e.value.message
    # the session is unharmed: finishing it with the honest peer still gives a good signature
    close_all(sessions)
    sessions = sessions_for(committee_2of3, digest)
    with pytest.raises(engine.MpcError):
        sessions["signer-1"].deliver(b"\x01garbage", "mallory", True)
    run = run_local(sessions, timeout_s=60)
    assert not run.errors and len(run.results) == 2
    close_all(sessions)


def test_message_replayed_from_another_session_is_rejected(committee_2of3):
    digest = random_digest()
    # Session A runs to completion; every message signer-2 sent to signer-1 is recorded.
    recorded: list = []

    def record(sender, recipient, ev):
        if sender == "signer-2" and recipient == "signer-1":
            recorded.append((ev.wire, ev.is_broadcast))
        return [(ev.wire, ev.is_broadcast)]

    a = sessions_for(committee_2of3, digest)
    run_a = run_local(a, timeout_s=60, route=record)
    assert not run_a.errors and len(run_a.results) == 2
    close_all(a)
    assert len(recorded) >= 9

    # Session B (same signers, same digest, another session id): signer-1 gets session A's
    # messages from signer-2 instead of B's, in order.
    replay = iter(recorded)

    def replayed(sender, recipient, ev):
        if sender == "signer-2" and recipient == "signer-1":
            wire, bc = next(replay)
            return [(wire, bc)]
        return [(ev.wire, ev.is_broadcast)]

    b = sessions_for(committee_2of3, digest)
    run_b = run_local(b, timeout_s=60, route=replayed)
    assert run_b.results.get("signer-1") is None, "signer-1 produced a signature from replayed messages"
    assert not run_b.results, f"a signature came out: {run_b.results}"
    err = run_b.errors["signer-1"]
    assert err.culprits == ("signer-2",), err
    close_all(b)


def test_keygen_chain_code_reveal_must_match_commitment():
    """A party that reveals another chain-code contribution than it committed to is named."""
    tampered = threading.Event()

    def route(sender, recipient, ev):
        if sender == "p-2" and ev.wire[0] == engine.TAG_CHAINCODE_REVEAL:
            tampered.set()
            return [(ev.wire[:-1] + bytes([ev.wire[-1] ^ 0xFF]), ev.is_broadcast)]
        return [(ev.wire, ev.is_broadcast)]

    parties = [engine.PartyId.of(n) for n in ("p-1", "p-2", "p-3")]
    from support.preparams import fixture_preparams

    pps = fixture_preparams(3, offset=0)  # fixture pre-params: never in production
    sid = engine.new_session_id()
    sessions = {p.id: engine.keygen_session(p.id, parties, 1, pp, sid) for p, pp in zip(parties, pps)}
    run = run_local(sessions, timeout_s=240, route=route)
    close_all(sessions)
    assert tampered.is_set()
    assert run.results == {}, "a key share came out of a keygen with a bad chain-code reveal"
    errs = [e for p, e in run.errors.items() if p != "p-2"]
    assert errs and all(e.culprits == ("p-2",) for e in errs), run.errors
