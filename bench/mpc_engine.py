"""Benchmark of the MPC engine: tss-lib through the Python binding vs tss-lib driven in Go.

What it measures: wall-clock time of 2-of-3 and 3-of-5 ECDSA signing (p50, p90) and of ECDSA
key generation, all parties in one process, every message through its wire bytes, through
the project's path — mpc.engine sessions over the cffi binding of the C shim, one Python
thread per party (mpc.local.run_local), each session re-parsing its key share.

Baseline, in the same run: bench/mpc_go, a small Go program that drives the same tss-lib
v3.0.0 protocols with the same session-nonce binding directly (WireBytes -> ParseWireMessage
-> Update, a goroutine per delivery as in tss-lib's own tests), also re-parsing the key share
per session. It is the honest floor: the same cryptography with nothing between the parties
but Go channels, so the ratio is exactly what the binding, the event queue and Python cost.
Runs alternate binding/Go in rounds after a warm-up of each, so machine noise hits both.

Key generation uses the fixture pre-parameters of tests/fixtures/preparams (fixture
pre-params: never in production) in both paths: the safe-prime search is not what is measured.

    python bench/mpc_engine.py            # full run (several minutes on 2 cores)
    python bench/mpc_engine.py --quick    # short run, same figures
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _common import figure, machine, median, percentile, progress  # noqa: E402

from mpc import engine  # noqa: E402
from mpc.local import run_local  # noqa: E402
from mpc.preparams import PreParams  # noqa: E402

BENCH = "mpc_engine"
FIXTURES = ROOT / "tests" / "fixtures" / "preparams"  # fixture pre-params: never in production


def build_go(out_dir: pathlib.Path) -> pathlib.Path:
    exe = out_dir / "mpc_go"
    env = dict(os.environ, GOFLAGS="-mod=readonly", CGO_ENABLED="0")
    subprocess.run(["go", "build", "-trimpath", "-o", str(exe), "."], cwd=ROOT / "bench" / "mpc_go", env=env, check=True)
    return exe


def fixture_files(count: int, offset: int) -> list[pathlib.Path]:
    files = sorted(FIXTURES.glob("preparams-*.json"))[offset : offset + count]
    assert len(files) == count, "not enough fixture pre-params"
    return files


def py_keygen(parties, threshold, pp_files) -> tuple[float, dict]:
    pps = [PreParams(f.read_bytes()) for f in pp_files]
    sid = engine.new_session_id()
    t0 = time.perf_counter()
    sessions = {p.id: engine.keygen_session(p.id, parties, threshold, pp, sid) for p, pp in zip(parties, pps)}
    run = run_local(sessions, timeout_s=600)
    elapsed = time.perf_counter() - t0
    for s in sessions.values():
        s.close()
    assert not run.errors, run.errors
    return elapsed, run.results


def py_sign(signers, shares, digest) -> float:
    sid = engine.new_session_id()
    t0 = time.perf_counter()
    sessions = {p.id: engine.sign_session(p.id, signers, shares[p.id], digest, sid) for p in signers}
    run = run_local(sessions, timeout_s=120)
    elapsed = time.perf_counter() - t0
    for s in sessions.values():
        s.close()
    assert not run.errors and len(run.results) == len(signers), run.errors
    return elapsed * 1000


def go_run(exe: pathlib.Path, job: dict) -> list[float]:
    out = subprocess.run([str(exe)], input=json.dumps(job).encode(), capture_output=True, check=False, timeout=1200)
    if out.returncode != 0:
        raise SystemExit(f"mpc_go failed: {out.stderr.decode()[-2000:]}")
    return [json.loads(line)["ms"] for line in out.stdout.decode().splitlines() if line.strip()]


def party_conf(parties) -> list[dict]:
    return [{"id": p.id, "key": str(p.key)} for p in parties]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and signatures; same figures")
    args = ap.parse_args()
    rounds = 2 if args.quick else 4
    per_round = 3 if args.quick else 6
    keygen_rounds = 1 if args.quick else 2  # 2-of-3; the 3-of-5 keygen runs once per path
    progress(f"[{BENCH}] machine: {machine()}")
    progress(f"[{BENCH}] rounds={rounds} signatures/round/path={per_round} keygen rounds={keygen_rounds}")

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-mpc-"))
    try:
        exe = build_go(tmp)
        digest = bytes.fromhex("9f" * 32)
        setups = {}
        keygen_py: dict[str, list[float]] = {"2of3": [], "3of5": []}
        keygen_go: dict[str, list[float]] = {"2of3": [], "3of5": []}
        for name, n, t, offset in (("2of3", 3, 1, 0), ("3of5", 5, 2, 3)):
            parties = [engine.PartyId.of(f"bench-{name}-{i}") for i in range(1, n + 1)]
            pp_files = fixture_files(n, offset)
            go_job = {"kind": "keygen", "parties": party_conf(parties), "threshold": t,
                      "preparams": {p.id: str(f) for p, f in zip(parties, pp_files)}, "count": 1}
            shares = None
            for r in range(keygen_rounds if name == "2of3" else 1):
                secs, shares_r = py_keygen(parties, t, pp_files)
                shares = shares or shares_r
                keygen_py[name].append(secs)
                keygen_go[name].extend(ms / 1000 for ms in go_run(exe, go_job))
                progress(f"[{BENCH}] keygen {name} round {r + 1}: binding {secs:.2f} s, go {keygen_go[name][-1]:.2f} s")
            key_files = {}
            for pid, share in shares.items():
                path = tmp / f"{pid}.json"
                path.write_bytes(share._key_data.reveal())  # bench keys (fixture pre-params), removed at exit
                key_files[pid] = str(path)
            signers = parties[: t + 1]
            setups[name] = (signers, shares, {"kind": "sign", "parties": party_conf(signers), "threshold": t,
                                              "keys": {p.id: key_files[p.id] for p in signers},
                                              "digest": digest.hex()})

        sign_py: dict[str, list[float]] = {"2of3": [], "3of5": []}
        sign_go: dict[str, list[float]] = {"2of3": [], "3of5": []}
        for name, (signers, shares, job) in setups.items():  # warm-up, not recorded
            py_sign(signers, shares, digest)
            go_run(exe, dict(job, count=1))
        for r in range(rounds):
            for name, (signers, shares, job) in setups.items():
                sign_py[name].extend(py_sign(signers, shares, digest) for _ in range(per_round))
                sign_go[name].extend(go_run(exe, dict(job, count=per_round)))
                progress(f"[{BENCH}] round {r + 1}/{rounds} {name}: binding p50 {percentile(sign_py[name], 50):.0f} ms, "
                         f"go p50 {percentile(sign_go[name], 50):.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for name in ("3of5", "2of3"):
        figure(BENCH, f"go_sign_{name}_p50_ms", round(percentile(sign_go[name], 50), 1), "ms")
        figure(BENCH, f"go_sign_{name}_p90_ms", round(percentile(sign_go[name], 90), 1), "ms")
        figure(BENCH, f"go_keygen_{name}_s", round(median(keygen_go[name]), 2), "s")
    figure(BENCH, "overhead_ratio_3of5", round(percentile(sign_py["3of5"], 50) / percentile(sign_go["3of5"], 50), 3), "ratio")
    figure(BENCH, "keygen_overhead_ratio_2of3", round(median(keygen_py["2of3"]) / median(keygen_go["2of3"]), 3), "ratio")
    for name in ("3of5", "2of3"):
        figure(BENCH, f"keygen_{name}_s", round(median(keygen_py[name]), 2), "s")
        figure(BENCH, f"sign_{name}_p50_ms", round(percentile(sign_py[name], 50), 1), "ms")
        figure(BENCH, f"sign_{name}_p90_ms", round(percentile(sign_py[name], 90), 1), "ms")
    figure(BENCH, "overhead_ratio", round(percentile(sign_py["2of3"], 50) / percentile(sign_go["2of3"], 50), 3), "ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
