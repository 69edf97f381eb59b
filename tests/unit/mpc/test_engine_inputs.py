"""Bad input to the engine gets a clear, named error before anything starts; the native
boundary turns bad calls into errors, never crashes."""

from __future__ import annotations

import json

import coincurve
import pytest
from support.preparams import fixture_preparams

from mpc import _native, engine

P = [engine.PartyId.of(f"s-{i}") for i in (1, 2, 3)]
G = coincurve.PrivateKey(b"\x11" * 32).public_key.format()  # any curve point, for shape only


def fake_share(party="s-1", threshold=1):
    # key_data is never reached: every case below is refused before the native call
    return engine.KeyShare(party, P, threshold, G, b"\x22" * 32, b"{}")


SID = b"\x00" * 32
DIGEST = b"\x01" * 32


def test_party_key_is_derived_from_the_id():
    a, b = engine.PartyId.of("signer-1"), engine.PartyId.of("signer-1")
    assert a == b and 0 < a.key < engine.SECP256K1_N
    assert engine.PartyId.of("signer-2").key != a.key


KEYGEN_CASES = [
    ("session_id_length_out_of_range", dict(session_id=b"short")),
    ("parties_count_out_of_range", dict(parties=P[:1])),
    ("parties_must_be_distinct", dict(parties=[P[0], P[0], P[1]])),
    ("self_not_among_parties", dict(self_id="nobody")),
    ("threshold_out_of_range", dict(threshold=3)),
    ("threshold_out_of_range", dict(threshold=0)),
    ("preparams_required", dict(preparams=None)),
]


@pytest.mark.parametrize("code,change", KEYGEN_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(KEYGEN_CASES)])
def test_keygen_refuses(code, change):
    args = dict(self_id="s-1", parties=P, threshold=1, preparams=object(), session_id=SID)
    if code != "preparams_required":
        args["preparams"] = None  # never reached
    args.update(change)
    with pytest.raises(engine.InvalidSessionRequest) as e:
        engine.keygen_session(**args)
    assert e.value.code == code


SIGN_CASES = [
    ("session_id_length_out_of_range", dict(session_id=b"x" * 65)),
    ("signers_count_out_of_range", dict(signers=P[:1])),
    ("key_share_required", dict(share=None)),
    ("share_belongs_to_another_party", dict(self_id="s-2")),
    ("signers_must_be_threshold_plus_one", dict(signers=P)),
    ("signer_not_in_committee", dict(signers=[P[0], engine.PartyId.of("outsider")])),
    ("digest_must_be_32_bytes", dict(digest=b"\x01" * 31)),
    ("digest_out_of_range", dict(digest=b"\xff" * 32)),
    ("digest_out_of_range", dict(digest=b"\x00" * 32)),
    ("hd_path_too_deep", dict(path=(0,) * 17)),
    ("hd_index_must_be_non_hardened", dict(path=(2**31,))),
]


@pytest.mark.parametrize("code,change", SIGN_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(SIGN_CASES)])
def test_sign_refuses(code, change):
    args = dict(self_id="s-1", signers=P[:2], share=fake_share(), digest=DIGEST, session_id=SID)
    args.update(change)
    with pytest.raises(engine.InvalidSessionRequest) as e:
        engine.sign_session(**args)
    assert e.value.code == code


def test_keyshare_from_garbage_is_a_named_error():
    for raw in (b"", b"CNKS\x01", b"CNKS\x01\x00\x00\x00\x05{}", b"not a share"):
        with pytest.raises(engine.InvalidSessionRequest) as e:
            engine.KeyShare.from_bytes(raw)
        assert e.value.code == "key_share_does_not_parse"


def test_der_encoding_matches_libsecp256k1():
    key = coincurve.PrivateKey(b"\x07" * 32)
    der = key.sign(DIGEST, hasher=None)
    compact = key.sign_recoverable(DIGEST, hasher=None)
    sig = engine.Signature(int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:64], "big"), compact[64], key.public_key.format())
    assert sig.der() == der
    engine.check_signature(sig, DIGEST)


def test_check_signature_refuses_high_s_and_wrong_recovery_id():
    key = coincurve.PrivateKey(b"\x07" * 32)
    c = key.sign_recoverable(DIGEST, hasher=None)
    r, s, v = int.from_bytes(c[:32], "big"), int.from_bytes(c[32:64], "big"), c[64]
    pub = key.public_key.format()
    with pytest.raises(ValueError, match="low_s"):
        engine.check_signature(engine.Signature(r, engine.SECP256K1_N - s, v, pub), DIGEST)
    with pytest.raises(ValueError, match="recovery"):
        engine.check_signature(engine.Signature(r, s, v ^ 1, pub), DIGEST)


NATIVE_CASES = [
    ("keygen", b"not json"),
    ("signing", b"{}"),
    ("resharing", b'{"old": [], "new": []}'),
    ("eddsa-someday", b"{}"),
    ("keygen", json.dumps({"self": "a", "parties": [{"id": "a", "key": "-5"}], "threshold": 1,
                           "session_id": "00" * 32, "event_max": 10}).encode()),
]


@pytest.mark.parametrize("kind,config", NATIVE_CASES)
def test_native_refuses_bad_sessions_without_crashing(kind, config):
    with pytest.raises(_native.NativeError) as e:
        _native.session_new(kind, config)
    assert e.value.message


def test_native_unknown_handle_and_bad_preparams():
    with pytest.raises(_native.NativeError, match="unknown session handle"):
        _native.session_start(987654321)
    with pytest.raises(_native.NativeError):
        _native.preparams_check(b'{"NTildei": 5}')
    _native.session_free(987654321)  # freeing an unknown handle is harmless
    assert _native.version()["tss_lib"] == "v3.0.0"


def test_fixture_preparams_load_and_print_redacted():
    (pp,) = fixture_preparams(1)  # fixture pre-params: never in production
    assert repr(pp) == "PreParams(<redacted>)"
