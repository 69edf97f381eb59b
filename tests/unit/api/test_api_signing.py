"""The signing rules of design/api-conventions.md, as tables.

Ed25519 itself is checked against RFC 8032 §7.1 TEST 1 (the empty message), so the library and
key encoding we use are the standard ones; the rest pins the string-to-sign byte for byte."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api import signing

# RFC 8032, section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_rfc8032_vector():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert key.sign(b"") == RFC8032_SIG_EMPTY
    assert signing.verify_request.__module__ == "api.signing"


STRING_TO_SIGN = [
    # (method, path?query, ts, nonce, body, expected)
    ("get", "/v1/whoami", "1700000000000", "n" * 16, b"", f"GET\n/v1/whoami\n1700000000000\n{'n' * 16}\n{EMPTY_SHA256}"),
    ("POST", "/v1/withdrawals?limit=10", "1", "abcdefghijklmnop", b'{"a":1}',
     "POST\n/v1/withdrawals?limit=10\n1\nabcdefghijklmnop\n" + hashlib.sha256(b'{"a":1}').hexdigest()),
    ("GET", "/v1/transfers?external_id=a%20b", "2", "x" * 64, b"",
     f"GET\n/v1/transfers?external_id=a%20b\n2\n{'x' * 64}\n{EMPTY_SHA256}"),
]


@pytest.mark.parametrize("method,pq,ts,nonce,body,expected", STRING_TO_SIGN)
def test_string_to_sign(method, pq, ts, nonce, body, expected):
    assert signing.string_to_sign(method, pq, ts, nonce, body) == expected.encode()


def test_sign_then_verify_and_every_field_is_bound():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    args = ("POST", "/v1/transfers", "1700000000000", "n" * 16, b"{}")
    sig = signing.b64url_decode(signing.sign_request(key, *args))
    assert signing.verify_request(RFC8032_PUBLIC, sig, *args)
    for i, changed in enumerate(["GET", "/v1/transfers?x=1", "1700000000001", "m" * 16, b"{ }"]):
        other = list(args)
        other[i] = changed
        assert not signing.verify_request(RFC8032_PUBLIC, sig, *other), f"field {i} is not bound"


ED25519_L = 2**252 + 27742317777372353535851937790883648493  # the group order (RFC 8032 §5.1)


def _verify_rows():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    args = ("GET", "/v1/whoami", "1700000000000", "n" * 16, b"")
    sig = signing.b64url_decode(signing.sign_request(key, *args))
    s_plus_l = (int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return [
        # (case, public key, signature, accepted)
        ("valid", RFC8032_PUBLIC, sig, True),
        ("RFC 8032 TEST 1 over its own message is not a request signature", RFC8032_PUBLIC, RFC8032_SIG_EMPTY, False),
        ("another key", other, sig, False),
        ("R flipped", RFC8032_PUBLIC, bytes([sig[0] ^ 1]) + sig[1:], False),
        ("non-canonical S (S + L): malleated, refused", RFC8032_PUBLIC, sig[:32] + s_plus_l, False),
        ("short signature", RFC8032_PUBLIC, sig[:63], False),
        ("short public key", RFC8032_PUBLIC[:31], sig, False),
        ("all-zero public key (small order)", bytes(32), sig, False),
    ], args


@pytest.mark.parametrize("row", range(8))
def test_verify_request_table(row):
    rows, args = _verify_rows()
    case, public_key, sig, accepted = rows[row]
    assert signing.verify_request(public_key, sig, *args) is accepted, case


B64 = [
    ("", b"", True),
    ("AA", b"\x00", True),
    ("_-8", b"\xff\xef", True),
    ("AA==", None, False),  # padded
    ("A+/", None, False),  # standard alphabet
    ("AB", None, False),  # non-canonical: trailing bits set
    ("A", None, False),
    ("é", None, False),
]


@pytest.mark.parametrize("text,raw,ok", B64)
def test_b64url_decode_is_strict(text, raw, ok):
    if ok:
        assert signing.b64url_decode(text) == raw
        assert signing.b64url(raw) == text
    else:
        with pytest.raises(ValueError):
            signing.b64url_decode(text)


WEBHOOK = [
    # (header builder, now, expected reason)
    (lambda b: signing.webhook_signature("s3cret", 1000, b), 1000, None),
    (lambda b: signing.webhook_signature("s3cret", 1000, b), 1300, None),
    (lambda b: signing.webhook_signature("s3cret", 1000, b), 1301, "signature_too_old"),
    (lambda b: signing.webhook_signature("other", 1000, b), 1000, "signature_mismatch"),
    (lambda b: signing.webhook_signature("s3cret", 1000, b + b" "), 1000, "signature_mismatch"),
    (lambda b: "t=1000", 1000, "malformed_signature_header"),
    (lambda b: "garbage", 1000, "malformed_signature_header"),
    (lambda b: "t=x,v1=00", 1000, "malformed_signature_header"),
    # Two v1 values (e.g. during a rotation): any match is enough.
    (lambda b: signing.webhook_signature("s3cret", 1000, b) + ",v1=" + "0" * 64, 1000, None),
]


@pytest.mark.parametrize("build,now,reason", WEBHOOK)
def test_webhook_signature(build, now, reason):
    body = b'{"id":"evt_1"}'
    assert signing.verify_webhook("s3cret", build(body), body, now, 300) == reason


def test_webhook_signature_format():
    # t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    import hmac

    want = hmac.new(b"k", b"5.{}", hashlib.sha256).hexdigest()
    assert signing.webhook_signature("k", 5, b"{}") == f"t=5,v1={want}"
