"""Sealing: round trip, and every way a sealed blob must refuse to open (table, in the order the
checks run). Test-only KDF cost (argon2id t=1, 1 MiB) to keep the table fast; production uses
the provider's defaults."""

from __future__ import annotations

import json

import pytest

from mpc import sealing

FAST = dict(time_cost=1, memory_kib=1024, parallelism=1)  # test-only KDF cost
PASS = "correct horse battery staple"


def sealer(passphrase=PASS, key_id="kid-1"):
    return sealing.Sealer(sealing.PassphraseKeyProvider(passphrase, key_id, **FAST))


def blob() -> bytes:
    return sealer().seal(b"share bytes", party="signer-1", purpose="key-share", name="vault-1")


def edit_header(b: bytes, **changes) -> bytes:
    start = len(sealing.MAGIC) + 5
    hlen = int.from_bytes(b[len(sealing.MAGIC) + 1 : start], "big")
    h = json.loads(b[start : start + hlen])
    h.update(changes)
    nh = json.dumps(h, sort_keys=True, separators=(",", ":")).encode()
    return b[: len(sealing.MAGIC) + 1] + len(nh).to_bytes(4, "big") + nh + b[start + hlen :]


def test_round_trip():
    assert sealer().open(blob(), party="signer-1", purpose="key-share", name="vault-1") == b"share bytes"


def test_each_seal_is_fresh():
    assert blob() != blob()


CASES = [
    # (what, blob transform, opener kwargs, expected exception)
    ("truncated to nothing", lambda b: b[:3], {}, sealing.SealedDataTampered),
    ("bad magic", lambda b: b"XXXXXX" + b[6:], {}, sealing.SealedDataTampered),
    ("truncated ciphertext", lambda b: b[:-20], {}, sealing.SealedDataTampered),
    ("other key id", lambda b: b, {"key_id": "kid-2"}, sealing.WrongKey),
    ("other party", lambda b: b, {"party": "signer-2"}, sealing.SealedForAnother),
    ("other purpose", lambda b: b, {"purpose": "preparams"}, sealing.SealedForAnother),
    ("other name", lambda b: b, {"name": "vault-2"}, sealing.SealedForAnother),
    ("wrong passphrase", lambda b: b, {"passphrase": "not the passphrase!"}, sealing.WrongKey),
    ("party edited in header", lambda b: edit_header(b, party="signer-2"), {"party": "signer-2"}, sealing.SealedDataTampered),
    ("ciphertext bit flipped", lambda b: b[:-1] + bytes([b[-1] ^ 1]), {}, sealing.SealedDataTampered),
]


@pytest.mark.parametrize("what,transform,opener,exc", CASES, ids=[c[0] for c in CASES])
def test_refuses(what, transform, opener, exc):
    opener = dict(opener)
    kw = dict(party="signer-1", purpose="key-share", name="vault-1")
    s = sealer(opener.pop("passphrase", PASS), opener.pop("key_id", "kid-1")) if opener else sealer()
    kw.update(opener)
    with pytest.raises(exc):
        s.open(transform(blob()), **kw)


def test_secrets_have_no_defaults_and_do_not_print():
    with pytest.raises(ValueError, match="passphrase_too_short"):
        sealing.PassphraseKeyProvider("short", "kid")
    p = sealing.PassphraseKeyProvider(PASS, "kid", **FAST)
    assert PASS not in repr(p) and PASS not in repr(sealing.Sealer(p))
