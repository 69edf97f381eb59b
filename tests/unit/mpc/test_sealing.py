"""Sealing: round trip, and every way a sealed blob must refuse to open (table, in the order the
checks run); the environment bound into the blob (a version 1 blob, sealed by the code before
that binding, opens only as "production"); the KDF cost bounded before argon2 runs. Test-only
KDF cost (argon2id t=1, 1 MiB) to keep the table fast; production uses the provider's defaults."""

from __future__ import annotations

import json
import struct
import time

import pytest

from mpc import sealing
from node import limits

FAST = dict(time_cost=1, memory_kib=1024, parallelism=1)  # test-only KDF cost
PASS = "correct horse battery staple"


def sealer(passphrase=PASS, key_id="kid-1", environment="production"):
    return sealing.Sealer(sealing.PassphraseKeyProvider(passphrase, key_id, **FAST), environment=environment)


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
    ("other environment", lambda b: b, {"environment": "test"}, sealing.SealedForAnotherEnvironment),
    ("other key id", lambda b: b, {"key_id": "kid-2"}, sealing.WrongKey),
    ("other party", lambda b: b, {"party": "signer-2"}, sealing.SealedForAnother),
    ("other purpose", lambda b: b, {"purpose": "preparams"}, sealing.SealedForAnother),
    ("other name", lambda b: b, {"name": "vault-2"}, sealing.SealedForAnother),
    ("wrong passphrase", lambda b: b, {"passphrase": "not the passphrase!"}, sealing.WrongKey),
    ("party edited in header", lambda b: edit_header(b, party="signer-2"), {"party": "signer-2"}, sealing.SealedDataTampered),
    ("environment edited in header", lambda b: edit_header(b, environment="test"), {"environment": "test"},
     sealing.SealedDataTampered),
    ("ciphertext bit flipped", lambda b: b[:-1] + bytes([b[-1] ^ 1]), {}, sealing.SealedDataTampered),
]


@pytest.mark.parametrize("what,transform,opener,exc", CASES, ids=[c[0] for c in CASES])
def test_refuses(what, transform, opener, exc):
    opener = dict(opener)
    kw = dict(party="signer-1", purpose="key-share", name="vault-1")
    s = sealer(opener.pop("passphrase", PASS), opener.pop("key_id", "kid-1"), opener.pop("environment", "production"))
    kw.update(opener)
    with pytest.raises(exc):
        s.open(transform(blob()), **kw)


def test_secrets_have_no_defaults_and_do_not_print():
    with pytest.raises(ValueError, match="passphrase_too_short"):
        sealing.PassphraseKeyProvider("short", "kid")
    p = sealing.PassphraseKeyProvider(PASS, "kid", **FAST)
    assert PASS not in repr(p) and PASS not in repr(sealing.Sealer(p, environment="test"))
    with pytest.raises(ValueError, match="environment_required"):
        sealing.Sealer(p, environment="")


# Sealed by the code before the environment binding (format version 1, no "environment" in its
# header): PASS, key id "kid-1", FAST cost, b"share bytes" for signer-1/key-share/vault-1.
V1_BLOB = bytes.fromhex(
    "434e5345414c01000001467b22616c67223a224145532d3235362d47434d222c226b65795f6964223a226b69642d31222c226e61"
    "6d65223a227661756c742d31222c226e6f6e6365223a22346562633535643033326532313131623762303135393961222c227061"
    "727479223a227369676e65722d31222c22707572706f7365223a226b65792d7368617265222c2276223a312c2277726170706564"
    "223a2230383731636264666231353337306235393438323264643736396430383562653030303030303031303030303034303030"
    "30303030303031363536633864313331393465383233373636653332376264643738356537393731653038376335363736646230"
    "64633664623237363266303235663830373830346363316464373830393566646531303433306133666335393630653365623738"
    "6233303534306364303133396462303463373038633839227ded1b136703f941bd998b5a24cf421278180fb7e534c144fa65298e"
)

ENVIRONMENT_CASES = [
    # (what, blob, opener's environment, plaintext or expected exception)
    ("v2 production under production", lambda: blob(), "production", b"share bytes"),
    ("v2 test under test", lambda: sealer(environment="test").seal(b"share bytes", party="signer-1", purpose="key-share",
                                                                    name="vault-1"), "test", b"share bytes"),
    ("v2 production under test", lambda: blob(), "test", sealing.SealedForAnotherEnvironment),
    ("v2 test under production", lambda: sealer(environment="test").seal(b"share bytes", party="signer-1",
                                                                          purpose="key-share", name="vault-1"),
     "production", sealing.SealedForAnotherEnvironment),
    ("v1 under production", lambda: V1_BLOB, "production", b"share bytes"),
    ("v1 under test", lambda: V1_BLOB, "test", sealing.SealedForAnotherEnvironment),
    ("v1 claiming an environment", lambda: edit_header(V1_BLOB, environment="test"), "test", sealing.SealedDataTampered),
    # a test blob relabelled version 1 to pass as production: the header is associated data
    ("v2 test blob relabelled v1", lambda: relabel_v1(sealer(environment="test").seal(
        b"share bytes", party="signer-1", purpose="key-share", name="vault-1")), "production", sealing.SealedDataTampered),
]


def relabel_v1(b: bytes) -> bytes:
    start = len(sealing.MAGIC) + 5
    hlen = int.from_bytes(b[len(sealing.MAGIC) + 1 : start], "big")
    h = json.loads(b[start : start + hlen])
    del h["environment"]
    h["v"] = 1
    nh = json.dumps(h, sort_keys=True, separators=(",", ":")).encode()
    return sealing.MAGIC + b"\x01" + len(nh).to_bytes(4, "big") + nh + b[start + hlen :]


@pytest.mark.parametrize("what,make,environment,want", ENVIRONMENT_CASES, ids=[c[0] for c in ENVIRONMENT_CASES])
def test_environment_is_bound(what, make, environment, want):
    kw = dict(party="signer-1", purpose="key-share", name="vault-1")
    if isinstance(want, bytes):
        assert sealer(environment=environment).open(make(), **kw) == want
        return
    with pytest.raises(want) as e:
        sealer(environment=environment).open(make(), **kw)
    if want is sealing.SealedForAnotherEnvironment:
        assert e.value.expected == environment and e.value.sealed != environment, str(e.value)


def with_kdf_cost(b: bytes, t: int, m: int, p: int) -> bytes:
    """The blob with its wrapped data key's KDF cost (unauthenticated, read before argon2) changed."""
    start = len(sealing.MAGIC) + 5
    hlen = int.from_bytes(b[len(sealing.MAGIC) + 1 : start], "big")
    wrapped = bytearray.fromhex(json.loads(b[start : start + hlen])["wrapped"])
    struct.pack_into(">III", wrapped, 16, t, m, p)
    return edit_header(b, wrapped=wrapped.hex())


GIB_KIB = 1024 * 1024
KDF_COSTS_REFUSED = [
    # (what, time_cost, memory_kib, parallelism)
    ("4 GiB of memory", 1, 4 * GIB_KIB, 1),
    ("memory one above the maximum", 1, limits.MPC_KDF_MEMORY_KIB_MAX + 1, 1),
    ("memory below argon2's 8 KiB per lane", 1, 8 * 4 - 1, 4),
    ("time cost one above the maximum", limits.MPC_KDF_TIME_COST_MAX + 1, 1024, 1),
    ("time cost zero", 0, 1024, 1),
    ("parallelism one above the maximum", 1, 1024 * 1024 // 4, limits.MPC_KDF_PARALLELISM_MAX + 1),
    ("parallelism zero", 1, 1024, 0),
]


@pytest.mark.parametrize("what,t,m,p", KDF_COSTS_REFUSED, ids=[c[0] for c in KDF_COSTS_REFUSED])
def test_kdf_cost_is_bounded_before_argon2_runs(monkeypatch, what, t, m, p):
    tampered = with_kdf_cost(blob(), t, m, p)
    opener = sealer()

    def argon2_called(*args, **kwargs):
        raise AssertionError(f"argon2 was called with {kwargs}")

    monkeypatch.setattr(sealing, "hash_secret_raw", argon2_called)
    started = time.monotonic()
    with pytest.raises(sealing.KdfParametersOutOfRange, match="kdf_parameters_out_of_range"):
        opener.open(tampered, party="signer-1", purpose="key-share", name="vault-1")
    assert time.monotonic() - started < 1.0, "refused without deriving anything"
    # The same cost is refused when a provider is made with it.
    with pytest.raises(ValueError, match="argon2_parameters_out_of_range"):
        sealing.PassphraseKeyProvider(PASS, "kid-1", time_cost=t, memory_kib=m, parallelism=p)


def test_the_default_kdf_cost_is_within_the_bounds():
    defaults = (limits.MPC_KDF_TIME_COST_DEFAULT, limits.MPC_KDF_MEMORY_KIB_DEFAULT, limits.MPC_KDF_PARALLELISM_DEFAULT)
    assert defaults == (3, 64 * 1024, 4)  # RFC 9106's second recommendation
    assert sealing.kdf_parameters_in_range(*defaults)
    assert sealing.kdf_parameters_in_range(limits.MPC_KDF_TIME_COST_MAX, limits.MPC_KDF_MEMORY_KIB_MAX,
                                           limits.MPC_KDF_PARALLELISM_MAX)
