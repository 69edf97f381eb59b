"""bench/cluster.py — threshold signing over the signer cluster vs. in-process tss-lib.

What it measures: ECDSA signing through the whole cluster path — the node's client signs a
request, the coordinator peer checks it, picks a quorum, every peer checks it again and runs
its tss-lib party in its own OS process, all messages over gRPC with mTLS (envelopes checked,
broadcasts echo-checked) — for 2-of-3 and 3-of-5: latency p50/p90 of one signature, and
sustained signatures/s with several concurrent sessions. Also the DKG time (pre-params ready),
and an approved reshare 2-of-3 -> 3-of-5 against a key generation of the same size
(`--ceremonies-only` runs just that).

Baseline, in the same run, alternating round by round after a warm-up: the same tss-lib
protocol with all parties in one process, each party driven exactly as a signer peer drives
its own (a polling thread and an inbox thread), every message through its wire bytes, but no
network, no TLS, no checks, no coordinator. It is the honest floor: the cluster runs exactly
this protocol with the same drivers and can only add transport, checks and process
boundaries. (mpc.local.run_local delivers inside the sender's polling thread, which
serialises parties; measured against it the cluster looked faster than the floor.)

Requests use opaque digests, allowed only because the benchmark's cluster configs say
environment = "test" (the request checks themselves are measured in bench/chains.py). Also
reported: the durable records' write cost per signature at each peer (its fsynced appends,
from the peers' own custody_signer_records_append_seconds histograms), and the envelope
signatures' cost per signing session, all peers together (every envelope and echo signed by its
sender's pinned key and checked by its receiver: the peers' custody_signer_message_signature_seconds).

Check time (issue 14): a peer's whole check of the worst-case Bitcoin request the limits allow
(RequestVerifier.verify_sign, as at Join: CLUSTER_DIGESTS_PER_REQUEST_MAX inputs and
CLUSTER_PREV_TXS_BYTES_MAX of previous transactions, each at CLUSTER_PREV_TX_BYTES_MAX and as
dense as a transaction gets — empty-script outputs, ours last), p99 over its samples, against
the 2-of-3 sign p50 (goal <= 5 %).

    python bench/cluster.py [--quick] [--check-only]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import figure, machine, median, percentile, progress  # noqa: E402

BENCH = "cluster"


def inprocess_keygen(n: int, t: int, offset: int):
    from mpc import engine
    from mpc.local import run_local
    from tests.support.preparams import fixture_preparams  # fixture pre-params: bench only

    parties = [engine.PartyId.of(f"bench-{i}") for i in range(n)]
    pps = fixture_preparams(n, offset)
    sid = engine.new_session_id()
    run = run_local({p.id: engine.keygen_session(p.id, parties, t, pp, sid) for p, pp in zip(parties, pps)}, 600)
    assert not run.errors, run.errors
    return parties, run.results


def run_inprocess(sessions: dict, timeout_s: float) -> dict:
    """All parties in this process, driven like the signer daemon drives one: per party a
    driver thread polling next_event and an inbox thread calling deliver, so one party's
    tss-lib round work never blocks another's polling. Messages pass as wire bytes, no network."""
    import queue

    from mpc.engine import Done, MpcError

    inbox = {p: queue.Queue() for p in sessions}
    results, errors = {}, {}
    stop = threading.Event()

    def drive(p, s):
        try:
            while not stop.is_set():
                ev = s.next_event(0.05)
                if ev is None:
                    continue
                if isinstance(ev, Done):
                    results[p] = ev.result
                    return
                for r in (ev.recipients if ev.recipients is not None else [q for q in sessions if q != p]):
                    if r != p:
                        inbox[r].put((ev.wire, p, ev.is_broadcast))
        except MpcError as exc:
            errors[p] = exc
            stop.set()

    def receive(p, s):
        while not stop.is_set() and p not in results:
            try:
                wire, sender, bc = inbox[p].get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                s.deliver(wire, sender, bc)
            except MpcError as exc:
                errors[p] = exc
                stop.set()

    for s in sessions.values():
        s.start()
    threads = [threading.Thread(target=f, args=(p, s), daemon=True) for p, s in sessions.items() for f in (drive, receive)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout_s
    while len(results) < len(sessions) and not errors and time.monotonic() < deadline:
        time.sleep(0.001)
    stop.set()
    for s in sessions.values():
        s.close()
    assert not errors and len(results) == len(sessions), (errors, len(results))
    return results


def inprocess_sign(parties, shares, t: int) -> float:
    from mpc import engine

    signers = parties[: t + 1]
    digest = os.urandom(32)
    sid = engine.new_session_id()
    t0 = time.perf_counter()
    run_inprocess({p.id: engine.sign_session(p.id, signers, shares[p.id], digest, sid, (0, 7)) for p in signers}, 120)
    return time.perf_counter() - t0


def cluster_sign(client, vault) -> float:
    from node.ports import SigningDigest

    t0 = time.perf_counter()
    out = client.sign(vault, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))], coordinator="peer-1")
    dt = time.perf_counter() - t0
    assert len(out) == 1
    return dt


def throughput(fn, concurrency: int, total: int) -> float:
    """Signatures/s with `concurrency` sessions in flight until `total` are done."""
    lock = threading.Lock()
    left = [total]
    errors = []

    def worker():
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                fn()
            except Exception as exc:  # recorded and re-raised below: a failed signature is a failed bench
                errors.append(exc)
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return total / (time.perf_counter() - t0)


def run_size(tmp: pathlib.Path, n: int, t: int, rounds: int, concurrency: int, total: int, fixture_offset: int) -> dict:
    from tests.support.cluster import LocalCluster

    label = f"{t + 1}of{n}"
    progress(f"[{label}] in-process keygen (baseline shares)")
    parties, shares = inprocess_keygen(n, t, fixture_offset)
    cluster = LocalCluster(tmp / label, n, t, round_timeout_ms=30_000)
    try:
        cluster.start_all()
        client = cluster.client()
        progress(f"[{label}] cluster keygen (pre-params ready)")
        t0 = time.perf_counter()
        vault = client.keygen(f"bench-{label}", tuple(cluster.names), t)
        dkg_s = time.perf_counter() - t0
        progress(f"[{label}] DKG {dkg_s:.2f} s; warm-up")
        for _ in range(2):
            inprocess_sign(parties, shares, t)
            cluster_sign(client, vault)
        def sig_totals():
            return tuple(sum(cluster.metric(nm, f"custody_signer_message_signature_seconds_{k}", op=op) for nm in cluster.names)
                         for op in ("sign", "verify") for k in ("count", "sum"))

        sig_before = sig_totals()
        base, clus = [], []
        for i in range(rounds):  # alternate, so both see the same machine load
            base.append(inprocess_sign(parties, shares, t))
            clus.append(cluster_sign(client, vault))
            progress(f"[{label}] round {i + 1}/{rounds}: in-process {base[-1] * 1000:.0f} ms, cluster {clus[-1] * 1000:.0f} ms")
        progress(f"[{label}] throughput, {concurrency} concurrent sessions, {total} signatures each side")
        tp_base = throughput(lambda: inprocess_sign(parties, shares, t), concurrency, total)
        tp_clus = throughput(lambda: cluster_sign(client, vault), concurrency, total)
        sessions = rounds + total  # one digest each: one tss session per signing
        signs, sign_s, verifies, verify_s = (a - b for a, b in zip(sig_totals(), sig_before))
        tp_base2 = throughput(lambda: inprocess_sign(parties, shares, t), concurrency, total)
        tp_base = (tp_base + tp_base2) / 2  # baseline before and after: the load drifts
        # The durable records' cost (admit + signed, fsynced, at every peer of the quorum), from
        # the peers' own histograms: seconds and appends per signature a peer took part in.
        sigs = sum(cluster.metric(nm, "custody_signer_signatures_total") for nm in cluster.names)
        append_s = sum(cluster.metric(nm, "custody_signer_records_append_seconds_sum") for nm in cluster.names)
        appends = sum(cluster.metric(nm, "custody_signer_records_append_seconds_count") for nm in cluster.names)
        return {"dkg_s": dkg_s, "base_p50": median(base), "base_p90": percentile(base, 90), "clus_p50": median(clus),
                "clus_p90": percentile(clus, 90), "tp_base": tp_base, "tp_clus": tp_clus,
                "records_ms_per_sig": 1000 * append_s / sigs, "records_appends_per_sig": appends / sigs,
                "msg_signs_per_session": signs / sessions, "msg_verifies_per_session": verifies / sessions,
                "msg_sig_ms_per_session": 1000 * (sign_s + verify_s) / sessions}
    finally:
        cluster.stop_all()


def run_ceremonies(tmp: pathlib.Path, rounds: int) -> dict:
    """An approved reshare 2-of-3 -> 3-of-5 (peers 1-3 -> 1-5: the approvals checked by every
    peer, the two-step commit with the new committee's confirmation signature) against a key
    generation of the same size (3-of-5 on peers 1-5), alternating on one five-peer cluster."""
    from tests.support.cluster import LocalCluster

    cluster = LocalCluster(tmp / "ceremonies", 5, 2, round_timeout_ms=30_000)
    keygen_s, reshare_s = [], []
    try:
        cluster.start_all()
        client = cluster.client()  # ceremonies approved by the dev approvers
        for i in range(rounds):
            t0 = time.perf_counter()
            client.keygen(f"bench-kg-{i}", tuple(cluster.names), 2)
            keygen_s.append(time.perf_counter() - t0)
            old = client.keygen(f"bench-rs-{i}", tuple(cluster.names[:3]), 1)
            t0 = time.perf_counter()
            new = client.reshare(old, tuple(cluster.names), 2)
            reshare_s.append(time.perf_counter() - t0)
            assert new.public_key == old.public_key
            progress(f"[ceremonies] round {i + 1}/{rounds}: keygen 3of5 {keygen_s[-1]:.2f} s, reshare 2of3->3of5 {reshare_s[-1]:.2f} s")
    finally:
        cluster.stop_all()
    return {"keygen": keygen_s, "reshare": reshare_s}


def report_ceremonies(r: dict) -> None:
    figure(BENCH, "keygen_3of5_p50_s", round(median(r["keygen"]), 3), "s")
    figure(BENCH, "reshare_2of3_to_3of5_p50_s", round(median(r["reshare"]), 3), "s")
    figure(BENCH, "reshare_to_keygen_ratio", round(median(r["reshare"]) / median(r["keygen"]), 3), "ratio")


def worst_case_request(n_inputs: int, prev_bytes_total: int, prev_bytes_each: int):
    """(RequestVerifier, raw, node signature, vault keys) for the worst case the limits allow."""
    import coincurve
    from nacl.signing import SigningKey

    from chains.bitcoin import tx as btx
    from chains.bitcoin.intent import BitcoinIntentChecker
    from mpc.signer.policy import Policy, RequestVerifier
    from mpc.wire import requests as rq
    from mpc.wire.parties import RecordKeys
    from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent
    from tests.support.cluster import funding_tx

    node_key, approver = SigningKey.generate(), SigningKey.generate()
    keys = RecordKeys(coincurve.PrivateKey().public_key.format(), os.urandom(32))
    n_prev = max(1, prev_bytes_total // prev_bytes_each)
    ours = {j: [i for i in range(n_inputs) if i % n_prev == j] for j in range(n_prev)}
    prevs, fillers = [], []
    for j in range(n_prev):
        mine = [(btx.p2wpkh_script_pubkey(keys.child_public_key((0, i))), 10_000_000) for i in ours[j]]
        fillers.append((prev_bytes_each - 200 - 31 * len(mine)) // 9)  # 9-byte outputs (empty script): the most to walk
        prevs.append(funding_tx(f"bench-{j}", [(b"", 0)] * fillers[-1] + mine))
        assert len(prevs[-1]) <= prev_bytes_each, len(prevs[-1])
    ins, inputs = [], []
    for j, raw in enumerate(prevs):
        for k, i in enumerate(ours[j]):  # ours last: every output walked
            base = fillers[j]
            ins.append(btx.TxIn(btx.txid_of(raw), base + k, 10_000_000, keys.child_public_key((0, i))))
            inputs.append(InputKey((0, i), 10_000_000))
    dest = btx.p2wpkh_address(keys.child_public_key((9, 9)), "regtest")
    change = btx.p2wpkh_script_pubkey(keys.child_public_key((1, 0)))
    outs = [btx.TxOut(btx.script_pubkey_for(dest, "regtest"), 50_000), btx.TxOut(change, n_inputs * 10_000_000 - 60_000)]
    tx = UnsignedTransaction("bitcoin", "regtest", btx.unsigned_bytes(btx.build(ins, outs, "regtest")), tuple(inputs), ((1, 0),),
                             tuple(prevs))
    intent = WithdrawalIntent("bench-worst", "v1", "bitcoin", "regtest", "BTC", (Payment(dest, 50_000),), 10_000)
    policy = Policy.from_dict({
        "node": {"public_key": node_key.verify_key.encode().hex()}, "approvers": {"a": approver.verify_key.encode().hex()},
        "bands": [{"asset": "BTC", "amount_max": 10**9, "approvals_min": 1}], "rate_limits": {"signatures_per_hour": 100_000},
        "networks": {"bitcoin": ["regtest"]}, "fees": {"bitcoin": {"fee_max": 100_000, "fee_rate_sat_vb_max": 100}}})

    def body():
        return rq.sign_body(rq.sign_request("v1", tx, intent, [rq.approve(intent, "a", approver)]), node_key)

    return policy, body, keys, RequestVerifier, BitcoinIntentChecker


def check_ms(samples: int) -> list[float]:
    """A peer's check of the worst-case request, `samples` times (each a new request id, as
    admitted requests are; records on a temp dir with the test KDF cost: bench only)."""
    from node import limits
    from tests.support.records import open_records

    policy, body, keys, verifier_cls, checker_cls = worst_case_request(
        limits.CLUSTER_DIGESTS_PER_REQUEST_MAX, limits.CLUSTER_PREV_TXS_BYTES_MAX, limits.CLUSTER_PREV_TX_BYTES_MAX)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-check-"))
    records = open_records(tmp / "data")
    try:
        v = verifier_cls(policy, "production", {"bitcoin": checker_cls()}, records)
        out = []
        for _ in range(samples):
            raw, sig = body()
            t0 = time.perf_counter()
            verified = v.verify_sign(raw, sig, keys)
            out.append((time.perf_counter() - t0) * 1000)
            assert len(verified.digests) == limits.CLUSTER_DIGESTS_PER_REQUEST_MAX
        progress(f"worst-case check: {len(raw)} request bytes, p50 {median(out):.1f} ms, p99 {percentile(out, 99):.1f} ms")
        return out
    finally:
        records.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (same figures, same baseline)")
    ap.add_argument("--ceremonies-only", action="store_true", help="only the reshare vs keygen figures")
    ap.add_argument("--check-only", action="store_true", help="only the worst-case check time (no cluster)")
    args = ap.parse_args()
    rounds, total = (5, 6) if args.quick else (15, 16)
    concurrency = 4
    progress(f"machine: {machine()}")
    checks = check_ms(50 if args.quick else 200)
    figure(BENCH, "check_worst_p50_ms", round(median(checks), 1), "ms")
    figure(BENCH, "check_worst_p99_ms", round(percentile(checks, 99), 1), "ms")
    figure(BENCH, "check_ms", round(percentile(checks, 99), 1), "ms (p99, worst-case request)")  # the fixed name (design/benchmarks.md)
    if args.check_only:
        return 0
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        if args.ceremonies_only:
            report_ceremonies(run_ceremonies(tmp, 3))
            return 0
        r3 = run_size(tmp, 3, 1, rounds, concurrency, total, 0)
        r5 = run_size(tmp, 5, 2, max(3, rounds // 2), concurrency, max(4, total // 2), 3)
        rc = run_ceremonies(tmp, 3 if args.quick else 5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report_ceremonies(rc)
    for label, r in (("2of3", r3), ("3of5", r5)):
        figure(BENCH, f"dkg_{label}_s", round(r["dkg_s"], 3), "s")
        figure(BENCH, f"inprocess_sign_{label}_p50_ms", round(r["base_p50"] * 1000, 1), "ms")
        figure(BENCH, f"cluster_sign_{label}_p50_ms", round(r["clus_p50"] * 1000, 1), "ms")
        figure(BENCH, f"cluster_sign_{label}_p90_ms", round(r["clus_p90"] * 1000, 1), "ms")
        figure(BENCH, f"inprocess_sign_{label}_per_s", round(r["tp_base"], 3), "signatures/s")
        figure(BENCH, f"cluster_sign_{label}_per_s", round(r["tp_clus"], 3), "signatures/s")
        figure(BENCH, f"p50_ratio_{label}", round(r["clus_p50"] / r["base_p50"], 3), "ratio")
        figure(BENCH, f"throughput_ratio_{label}", round(r["tp_clus"] / r["tp_base"], 3), "ratio")
        figure(BENCH, f"records_appends_per_signature_{label}", round(r["records_appends_per_sig"], 2), "appends/peer")
        figure(BENCH, f"records_write_ms_per_signature_{label}", round(r["records_ms_per_sig"], 3), "ms/peer")
        figure(BENCH, f"envelope_signatures_made_per_session_{label}", round(r["msg_signs_per_session"], 1), "signatures")
        figure(BENCH, f"envelope_signatures_checked_per_session_{label}", round(r["msg_verifies_per_session"], 1), "checks")
        figure(BENCH, f"envelope_signatures_ms_per_session_{label}", round(r["msg_sig_ms_per_session"], 2), "ms (all peers, CPU)")
        figure(BENCH, f"envelope_signatures_share_of_p50_{label}", round(r["msg_sig_ms_per_session"] / 1000 / r["clus_p50"], 4), "ratio")
    figure(BENCH, "p50_ratio", round(r3["clus_p50"] / r3["base_p50"], 3), "ratio")
    figure(BENCH, "throughput_ratio", round(r3["tp_clus"] / r3["tp_base"], 3), "ratio")
    figure(BENCH, "check_worst_p99_to_sign_2of3_p50", round(percentile(checks, 99) / (r3["clus_p50"] * 1000), 4), "ratio (goal <= 0.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
