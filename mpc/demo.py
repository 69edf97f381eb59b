"""`custody demo`: a local threshold key generation and signing demo, all parties in one
process, every message through its wire bytes (mpc.local).

It generates fresh pre-parameters for each party (tens of seconds: safe-prime searches), runs
an ECDSA keygen, signs a digest with two different signer subsets and for a BIP32 child key,
and verifies every signature with coincurve against the group (or child) public key. No share
is written anywhere and no key is ever reconstructed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import os
import sys
import time

import coincurve

from node import limits


def add_arguments(parser) -> None:
    parser.add_argument("--parties", type=int, default=3, help="committee size n (default 3)")
    parser.add_argument("--threshold", type=int, default=1, help="tss-lib's t: any t+1 parties sign (default 1)")
    parser.add_argument("--message", default="custody-node demo", help="text whose SHA-256 is signed")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="deadline in seconds for each step (pre-parameters, keygen, each signing)")


def say(*parts) -> None:
    print(*parts, flush=True)


def run(args) -> int:
    from mpc.preparams import PreParamsError

    try:
        return _run(args)
    except (TimeoutError, PreParamsError) as e:
        print(f"demo: {e} (a busy machine slows the safe-prime search: try --timeout 1200)", file=sys.stderr)
        return 1


def _run(args) -> int:
    from mpc import engine, preparams
    from mpc.local import run_local

    n, t = args.parties, args.threshold
    if not 2 <= n <= limits.MPC_PARTIES_MAX or not 1 <= t < n:
        print(f"demo: need 2 <= parties <= {limits.MPC_PARTIES_MAX} and 1 <= threshold < parties", file=sys.stderr)
        return 2
    parties = [engine.PartyId.of(f"signer-{i}") for i in range(1, n + 1)]
    say(f"[demo] {t + 1}-of-{n} threshold ECDSA (secp256k1) with tss-lib {_tss_version()}")

    say(f"[demo] generating {n} pre-parameter sets (safe primes + Paillier key, one per party) ...")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(preparams.generate, min(limits.MPC_PREPARAMS_TIMEOUT_S, args.timeout)) for _ in range(n)]
        for done, f in enumerate(concurrent.futures.as_completed(futures), 1):
            state = "failed" if f.exception() else "ready"
            say(f"[demo]   {done}/{n} {state} after {time.monotonic() - t0:.1f} s")
        pps = [f.result() for f in futures]
    say(f"[demo]   done in {time.monotonic() - t0:.1f} s")

    say("[demo] distributed key generation (every message as wire bytes) ...")
    t0 = time.monotonic()
    sid = engine.new_session_id()
    run_ = run_local({p.id: engine.keygen_session(p.id, parties, t, pp, sid) for p, pp in zip(parties, pps)},
                     timeout_s=args.timeout)
    if run_.errors:
        print(f"demo: keygen failed: {run_.errors}", file=sys.stderr)
        return 1
    shares = run_.results
    public_keys = {s.public_key for s in shares.values()}
    assert len(public_keys) == 1 and len({s.chain_code for s in shares.values()}) == 1
    group_key = public_keys.pop()
    say(f"[demo]   done in {time.monotonic() - t0:.1f} s, {run_.messages} messages, {run_.wire_bytes} bytes")
    say(f"[demo]   group public key {group_key.hex()}")
    say(f"[demo]   each party holds only its share: {shares[parties[0].id]!r}")

    digest = hashlib.sha256(args.message.encode()).digest()
    subsets = list(itertools.combinations(parties, t + 1))
    plan = [(subsets[0], ()), (subsets[-1], ()), (subsets[0], (0, 7))]
    for signers, path in plan:
        ids = [p.id for p in signers]
        label = f"child m/{'/'.join(map(str, path))}" if path else "group key"
        t0 = time.monotonic()
        sid = engine.new_session_id()
        r = run_local({p.id: engine.sign_session(p.id, signers, shares[p.id], digest, sid, path) for p in signers},
                      timeout_s=args.timeout)
        if r.errors:
            print(f"demo: signing failed: {r.errors}", file=sys.stderr)
            return 1
        sigs = list(r.results.values())
        sig = sigs[0]
        assert all(s == sig for s in sigs)
        key = shares[signers[0].id].child_public_key(path) if path else group_key
        ok = coincurve.PublicKey(key).verify(sig.der(), digest, hasher=None)
        say(f"[demo] signed by {ids} for the {label} in {time.monotonic() - t0:.2f} s: "
            f"verifies={ok} low_s={sig.s <= engine.SECP256K1_N // 2} recovery_id={sig.recovery_id}")
        if not ok:
            return 1
    say("[demo] ok")
    return 0


def _tss_version() -> str:
    from mpc import _native

    return _native.version().get("tss_lib", "?")
