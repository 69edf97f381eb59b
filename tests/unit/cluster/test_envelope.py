"""Envelope checks and the broadcast echo book: one row per refusal, in precedence order."""

from __future__ import annotations

import pytest

from mpc.proto import signer_pb2 as pb
from mpc.transport.envelope import EchoBook, SessionView, check_envelope, party_peer, payload_hash

SID = "11" * 16


def view():
    return SessionView(SID, "sign", frozenset({"peer-1:0", "peer-2:0", "peer-3:0"}), frozenset({"peer-1:0"}))


def env(**kw):
    payload = kw.pop("payload", b"tss-wire")
    base = dict(session_id=SID, protocol="sign", round=3, sender="peer-2:0", recipients=["peer-1:0", "peer-3:0"],
                payload_hash=payload_hash(payload), payload=payload, is_broadcast=True)
    base.update(kw)
    return pb.Envelope(**base)


CASES = [
    # (name, envelope, authenticated peer, view present, finished, expected)
    ("not authenticated", env(), None, True, False, "peer_not_authenticated"),
    ("forged sender", env(sender="peer-3:0"), "peer-2", True, False, "sender_not_authenticated_peer"),
    ("other session (replay)", env(session_id="22" * 16), "peer-2", False, False, "unknown_session"),
    ("finished session (replay)", env(), "peer-2", False, True, "session_finished"),
    ("protocol", env(protocol="keygen"), "peer-2", True, False, "protocol_mismatch"),
    ("sender outside session", env(sender="peer-2:7"), "peer-2", True, False, "sender_not_in_session"),
    ("recipient outside session", env(recipients=["peer-1:0", "peer-9:0"]), "peer-2", True, False, "recipient_not_in_session"),
    ("not for us", env(recipients=["peer-3:0"]), "peer-2", True, False, "recipient_not_here"),
    ("payload hash", env(payload_hash=b"\0" * 32), "peer-2", True, False, "payload_hash_mismatch"),
    ("round range", env(round=99), "peer-2", True, False, "round_out_of_range"),
    ("accepted", env(), "peer-2", True, False, None),
]


@pytest.mark.parametrize("name,e,auth,has_view,finished,expected", CASES, ids=[c[0] for c in CASES])
def test_check_envelope(name, e, auth, has_view, finished, expected):
    assert check_envelope(e, auth, view() if has_view else None, finished) == expected


def test_a_copy_of_a_delivered_envelope_is_refused():
    v = view()
    assert check_envelope(env(), "peer-2", v) is None
    assert check_envelope(env(), "peer-2", v) == "duplicate_message"
    # The same round's p2p message is a different message, not a copy.
    assert check_envelope(env(is_broadcast=False, recipients=["peer-1:0"]), "peer-2", v) is None


def test_party_ids_name_their_peer():
    assert party_peer("peer-2:0") == "peer-2"
    assert party_peer("peer-12:3") == "peer-12"


def test_echo_book_agreement_and_equivocation():
    recipients = ["peer-1:0", "peer-3:0", "peer-4:0"]
    book = EchoBook("peer-1")
    to = book.record_own("peer-2:0", 1, b"A" * 32, recipients)
    assert to == {"peer-3", "peer-4"}
    assert book.verdict() is None and book.missing() == {"peer-3", "peer-4"}
    book.record_echo("peer-3", "peer-2:0", 1, b"A" * 32)
    assert book.verdict() is None and book.missing() == {"peer-4"}
    book.record_echo("peer-4", "peer-2:0", 1, b"A" * 32)
    assert book.verdict() == ("ok", ())

    bad = EchoBook("peer-1")
    bad.record_own("peer-2:0", 1, b"A" * 32, recipients)
    bad.record_echo("peer-3", "peer-2:0", 1, b"B" * 32)  # peer-2 sent peer-3 something else
    assert bad.verdict() == ("equivocation", ("peer-2",))


def test_echo_before_own_copy_is_kept():
    book = EchoBook("peer-1")
    book.record_echo("peer-3", "peer-2:0", 2, b"C" * 32)
    book.record_own("peer-2:0", 2, b"C" * 32, ["peer-1:0", "peer-3:0"])
    assert book.verdict() == ("ok", ())


def test_one_sender_two_broadcasts_in_a_round_to_different_committees():
    """A reshare's new party peer-3:1 sends the old committee one message and the new committee
    another in the same round. peer-2 hosts a party in each (peer-2:0 and peer-2:1), so it gets
    both; peer-1 (old only) echoes only the first, peer-4 (new only) only the second."""
    to_old = ["peer-1:0", "peer-2:0"]
    to_new = ["peer-2:1", "peer-4:1"]
    book = EchoBook("peer-2")
    assert book.record_own("peer-3:1", 2, b"O" * 32, to_old) == {"peer-1"}
    assert book.record_own("peer-3:1", 2, b"N" * 32, to_new) == {"peer-4"}
    book.record_echo("peer-1", "peer-3:1", 2, b"O" * 32)
    assert book.verdict() is None and book.missing() == {"peer-4"}
    book.record_echo("peer-4", "peer-3:1", 2, b"N" * 32)
    assert book.verdict() == ("ok", ()) and book.missing() == set()

    lied = EchoBook("peer-2")
    lied.record_own("peer-3:1", 2, b"O" * 32, to_old)
    lied.record_own("peer-3:1", 2, b"N" * 32, to_new)
    lied.record_echo("peer-4", "peer-3:1", 2, b"X" * 32)  # peer-4 got other bytes than peer-2
    assert lied.verdict() == ("equivocation", ("peer-3",))


def test_an_echo_from_a_peer_no_message_was_addressed_to_is_not_counted():
    book = EchoBook("peer-1")
    book.record_own("peer-2:0", 1, b"A" * 32, ["peer-1:0", "peer-3:0"])
    book.record_echo("peer-5", "peer-2:0", 1, b"Z" * 32)  # peer-5 was not a recipient
    book.record_echo("peer-3", "peer-2:0", 1, b"A" * 32)
    assert book.verdict() == ("ok", ())
