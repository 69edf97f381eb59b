"""Envelope checks, signatures, evidence and the broadcast echo book: one row per refusal, in
precedence order; real P-256 keys made here (tls.make_identity), as each peer has."""

from __future__ import annotations

import pytest

from mpc.proto import signer_pb2 as pb
from mpc.transport import tls
from mpc.transport.envelope import (EchoBook, MessageSigner, PeerKeys, SessionView, check_envelope, check_evidence, echo_digest,
                                    envelope_digest, header_of, message_kind, party_peer, payload_hash)
from node import limits

SID = "11" * 16
IDS = {n: tls.make_identity(n) for n in ("peer-1", "peer-2", "peer-3", "peer-4")}
KEYS = PeerKeys({n: i.cert_pem for n, i in IDS.items()})
SIGNERS = {n: MessageSigner(i.key_pem) for n, i in IDS.items()}


def signed(e, by=None):
    e.signature = SIGNERS[by or party_peer(e.sender)].sign(envelope_digest(e))
    return e


def view():
    return SessionView(SID, "sign", frozenset({"peer-1:0", "peer-2:0", "peer-3:0"}), frozenset({"peer-1:0"}))


def env(**kw):
    payload = kw.pop("payload", b"tss-wire")
    base = dict(session_id=SID, protocol="sign", round=3, sender="peer-2:0", recipients=["peer-1:0", "peer-3:0"],
                payload_hash=payload_hash(payload), payload=payload, is_broadcast=True, kind=message_kind(payload))
    base.update(kw)
    return pb.Envelope(**base) if "signature" in kw else signed(pb.Envelope(**base))


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
    ("kind not the payload's", env(kind="tss:other"), "peer-2", True, False, "kind_mismatch"),
    ("unsigned", env(signature=b""), "peer-2", True, False, "signature_invalid"),
    ("signed by another peer", signed(env(), by="peer-3"), "peer-2", True, False, "signature_invalid"),
    ("round range", env(round=99), "peer-2", True, False, "round_out_of_range"),
    ("broadcast to part of the session", env(recipients=["peer-1:0"]), "peer-2", True, False, "broadcast_not_to_a_committee"),
    ("accepted", env(), "peer-2", True, False, None),
]


@pytest.mark.parametrize("name,e,auth,has_view,finished,expected", CASES, ids=[c[0] for c in CASES])
def test_check_envelope(name, e, auth, has_view, finished, expected):
    assert check_envelope(e, auth, view() if has_view else None, finished, keys=KEYS) == expected


def test_a_signature_covers_every_header_field():
    e = env()
    for field, value in (("round", 4), ("recipients", ["peer-3:0", "peer-1:0", "peer-4:0"]), ("payload_hash", b"X" * 32),
                         ("is_broadcast", False), ("session_id", "22" * 16), ("protocol", "keygen"),
                         ("kind", "tag:2")):
        moved = pb.Envelope()
        moved.CopyFrom(e)
        if field == "recipients":
            del moved.recipients[:]
            moved.recipients.extend(value)
        else:
            setattr(moved, field, value)
        assert KEYS.envelope_signed(e) and not KEYS.envelope_signed(moved), field


def test_one_peer_cannot_flood_a_session_with_envelopes(monkeypatch):
    monkeypatch.setattr(limits, "CLUSTER_ENVELOPES_PER_PEER_SESSION_MAX", 2)
    v = view()
    assert check_envelope(env(round=1), "peer-2", v, keys=KEYS) is None
    assert check_envelope(env(round=2), "peer-2", v, keys=KEYS) is None
    assert check_envelope(env(round=3), "peer-2", v, keys=KEYS) == "envelope_limit_reached"
    assert check_envelope(env(round=3, sender="peer-3:0", recipients=["peer-1:0", "peer-2:0"]), "peer-3", v, keys=KEYS) is None


def test_a_reshare_broadcast_may_go_to_one_committee():
    v = SessionView(SID, "reshare", frozenset({"peer-1:0", "peer-2:0", "peer-2:1", "peer-4:1"}), frozenset({"peer-2:0", "peer-2:1"}))
    to_new = env(protocol="reshare", sender="peer-1:0", recipients=["peer-2:1", "peer-4:1"])
    assert check_envelope(to_new, "peer-1", v, keys=KEYS) is None
    mixed = env(protocol="reshare", sender="peer-1:0", recipients=["peer-2:0", "peer-4:1"])
    assert check_envelope(mixed, "peer-1", v, keys=KEYS) == "broadcast_not_to_a_committee"


def test_a_copy_of_a_delivered_envelope_is_refused():
    v = view()
    assert check_envelope(env(), "peer-2", v) is None
    assert check_envelope(env(), "peer-2", v) == "duplicate_message"
    # The same round's p2p message is a different message, not a copy.
    assert check_envelope(env(is_broadcast=False, recipients=["peer-1:0"]), "peer-2", v) is None


def test_party_ids_name_their_peer():
    assert party_peer("peer-2:0") == "peer-2"
    assert party_peer("peer-12:3") == "peer-12"


RECIPIENTS = ["peer-1:0", "peer-3:0", "peer-4:0"]


def bcast(payload: bytes, sender="peer-2:0", rnd=1, recipients=RECIPIENTS, by=None):
    payload = b"\x02" + payload  # one kind (a chain-code commit): one slot per sender and round
    return env(payload=payload, sender=sender, round=rnd, recipients=recipients) if by is None else \
        signed(env(payload=payload, sender=sender, round=rnd, recipients=recipients), by=by)


def echo_of(header, echoer: str) -> pb.Echo:
    e = pb.Echo(session_id=SID, echoer=echoer, broadcast=header_of(header))
    e.signature = SIGNERS[echoer].sign(echo_digest(e))
    return e


def book_for(me="peer-1"):
    return EchoBook(me, pb.Evidence)


def take(book, e):
    """What participant.echo does once the echoer's signature and session were checked."""
    assert KEYS.echo_signed(e)
    return book.record_echo(e, KEYS.envelope_signed(e.broadcast))


def test_echo_book_agreement():
    book = book_for()
    a = bcast(b"A")
    assert book.record_own(a) == {"peer-3", "peer-4"}
    assert book.verdict() is None and book.missing() == {"peer-3", "peer-4"}
    take(book, echo_of(a, "peer-3"))
    assert book.verdict() is None and book.missing() == {"peer-4"}
    take(book, echo_of(a, "peer-4"))
    assert book.verdict() == ("ok", ())


def test_two_signed_broadcasts_of_one_slot_prove_equivocation_to_anyone():
    book = book_for()
    a, b = bcast(b"A"), bcast(b"B")  # peer-2 signed both: to peer-1 A, to peer-3 B
    book.record_own(a)
    take(book, echo_of(b, "peer-3"))
    assert book.verdict() == ("equivocation", ("peer-2",))
    (ev,) = book.evidence()
    assert (ev.kind, ev.culprit, len(ev.envelopes)) == ("equivocation", "peer-2", 2)
    assert check_evidence(ev, KEYS, {SID}) == "peer-2"  # a third party reaches the same answer
    assert check_evidence(ev, KEYS, {"22" * 16}) is None  # ... for this session only
    ev.culprit = "peer-3"
    assert check_evidence(ev, KEYS, {SID}) is None  # the evidence names whom it proves


def test_an_echo_of_a_bogus_hash_names_the_echoer_never_the_sender():
    """peer-3 echoes a hash peer-2 never sent: it cannot sign it as peer-2, so its echo proves
    its own lie (the 7 Dec finding: the honest sender was named)."""
    book = book_for()
    a = bcast(b"A")
    book.record_own(a)
    forged = bcast(b"bogus", by="peer-3")  # peer-2's header, with a hash peer-2 never signed
    take(book, echo_of(forged, "peer-3"))
    take(book, echo_of(a, "peer-4"))
    assert book.verdict() == ("forged_echo", ("peer-3",))
    (ev,) = book.evidence()
    assert check_evidence(ev, KEYS, {SID}) == "peer-3"
    # an unsigned header is no better than a wrongly signed one
    book2 = book_for()
    book2.record_own(a)
    unsigned = bcast(b"bogus")
    unsigned.signature = b""
    take(book2, echo_of(unsigned, "peer-3"))
    assert book2.verdict() == ("forged_echo", ("peer-3",))


def test_one_broadcast_of_each_kind_per_round_is_no_conflict():
    """keygen round 1: tss-lib's message and the chain-code commit, both broadcast."""
    book = book_for()
    tss, commit = env(payload=b"\x01\x0a\x03KG1rest", round=1), env(payload=b"\x02" + b"c" * 32, round=1)
    assert (tss.kind, commit.kind) == ("tss:KG1", "tag:2")
    book.record_own(tss)
    book.record_own(commit)
    for e in (tss, commit):
        take(book, echo_of(e, "peer-3"))
        take(book, echo_of(e, "peer-4"))
    assert book.verdict() == ("ok", ())


def test_evidence_that_proves_nothing_names_nobody():
    a = bcast(b"A")
    same = pb.Evidence(kind="equivocation", culprit="peer-2")
    same.envelopes.add().CopyFrom(header_of(a))
    same.envelopes.add().CopyFrom(header_of(a))  # one message twice is no conflict
    assert check_evidence(same, KEYS, {SID}) is None
    other_slot = pb.Evidence(kind="equivocation", culprit="peer-2")
    other_slot.envelopes.add().CopyFrom(header_of(a))
    other_slot.envelopes.add().CopyFrom(header_of(bcast(b"B", rnd=2)))  # another round: another message
    assert check_evidence(other_slot, KEYS, {SID}) is None
    unsigned_pair = pb.Evidence(kind="equivocation", culprit="peer-2")
    unsigned_pair.envelopes.add().CopyFrom(header_of(a))
    unsigned_pair.envelopes.add().CopyFrom(header_of(bcast(b"B", by="peer-3")))  # peer-3 made this one
    assert check_evidence(unsigned_pair, KEYS, {SID}) is None
    honest_echo = pb.Evidence(kind="forged_echo", culprit="peer-3")
    honest_echo.echo.CopyFrom(echo_of(a, "peer-3"))  # a true echo incriminates nobody
    assert check_evidence(honest_echo, KEYS, {SID}) is None
    assert check_evidence(pb.Evidence(kind="hearsay", culprit="peer-2"), KEYS, {SID}) is None


def test_an_echo_of_the_header_we_checked_ourselves_needs_no_second_check():
    book = book_for()
    a = bcast(b"A")
    book.record_own(a)
    assert book.have(header_of(a))
    resigned = header_of(a)
    resigned.signature = SIGNERS["peer-3"].sign(envelope_digest(resigned))  # same header, not peer-2's signature
    assert not book.have(resigned) and not book.have(header_of(bcast(b"B")))


def test_echo_before_own_copy_is_kept():
    book = book_for()
    c = bcast(b"C", rnd=2, recipients=["peer-1:0", "peer-3:0"])
    take(book, echo_of(c, "peer-3"))
    book.record_own(c)
    assert book.verdict() == ("ok", ())


def test_one_sender_two_broadcasts_in_a_round_to_different_committees():
    """A reshare's new party peer-3:1 sends the old committee one message and the new committee
    another in the same round: two slots. peer-2 hosts a party in each (peer-2:0 and peer-2:1),
    so it gets both; peer-1 (old only) echoes only the first, peer-4 (new only) the second."""
    to_old = bcast(b"O", sender="peer-3:1", rnd=2, recipients=["peer-1:0", "peer-2:0"])
    to_new = bcast(b"N", sender="peer-3:1", rnd=2, recipients=["peer-2:1", "peer-4:1"])
    book = book_for("peer-2")
    assert book.record_own(to_old) == {"peer-1"}
    assert book.record_own(to_new) == {"peer-4"}
    take(book, echo_of(to_old, "peer-1"))
    assert book.verdict() is None and book.missing() == {"peer-4"}
    take(book, echo_of(to_new, "peer-4"))
    assert book.verdict() == ("ok", ()) and book.missing() == set()

    lied = book_for("peer-2")
    lied.record_own(to_old)
    lied.record_own(to_new)
    other = bcast(b"X", sender="peer-3:1", rnd=2, recipients=["peer-2:1", "peer-4:1"])  # peer-4 got other signed bytes
    take(lied, echo_of(other, "peer-4"))
    assert lied.verdict() == ("equivocation", ("peer-3",))


def test_an_echo_from_a_peer_no_message_was_addressed_to_is_not_waited_for():
    book = book_for()
    a = bcast(b"A", recipients=["peer-1:0", "peer-3:0"])
    book.record_own(a)
    take(book, echo_of(a, "peer-4"))  # peer-4 was not a recipient
    assert book.verdict() is None and book.missing() == {"peer-3"}
    take(book, echo_of(a, "peer-3"))
    assert book.verdict() == ("ok", ())


def test_echoes_held_from_one_peer_are_bounded(monkeypatch):
    monkeypatch.setattr(limits, "CLUSTER_ECHOES_PER_PEER_SESSION_MAX", 3)
    book = book_for()
    for rnd in range(3):
        assert take(book, echo_of(bcast(b"A", rnd=rnd), "peer-3")) is None
    assert take(book, echo_of(bcast(b"A", rnd=4), "peer-3")) == "echo_limit_reached"
    assert take(book, echo_of(bcast(b"A", rnd=4), "peer-4")) is None
