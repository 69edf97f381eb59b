"""Chain adapters benchmark (shared/design/benchmarks.md form).

Measures, against a real btcd in regtest started here:
- scanning: `BitcoinAdapter.scan()` over the same blocks (each with several transactions
  paying many of our deposit addresses) — parse, match, UTXO set and deposit rows, one durable
  SQLite transaction per block. Baseline: fetching exactly those blocks over the same RPC
  (getblockhash + getblock verbosity 2) and nothing else. No scanner can avoid reading the
  blocks, so the fetch is the honest floor; `scan_overhead_ratio` = scan time / fetch time.
- the intent check a signer peer runs on a 2-input batched withdrawal: parse, derive our
  addresses, match outputs, fee, BIP143 digests. Baseline: the BIP143 digests alone with
  bitcoinlib (what signing needs at the least); `intent_check_ratio` = check / digests.
Rounds alternate adapter and baseline after a warm-up. Signatures for the setup come from a
plain test key (tests/support/test_signer.py), as in the functional tests.

    python bench/chains.py [--quick]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import figure, machine, median, progress  # noqa: E402
from chains.bitcoin import tx as btx  # noqa: E402
from chains.bitcoin.adapter import BitcoinAdapter  # noqa: E402
from chains.bitcoin.rpc import BitcoinRpc  # noqa: E402
from chains.state import ChainState, make_engine  # noqa: E402
from node.log import Secret  # noqa: E402
from node.ports import Payment, WithdrawalIntent  # noqa: E402
from tests.support import nodes  # noqa: E402
from tests.support.test_signer import PlainTestSigner  # noqa: E402

BENCH = "chains"
PROFILE = False  # set True to print where scan() spends its time


def adapter(node, workdir, name, signer, start_height):
    rpc = BitcoinRpc(node.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
    state = ChainState(make_engine(f"sqlite:///{workdir / (name + '.db')}"), "bitcoin:regtest")
    a = BitcoinAdapter(rpc, state, "regtest", confirmations=3, fee_rate_fallback_sat_vb=2, start_height=start_height)
    a.register_vault(name, signer.vault_keys())
    return a


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    blocks, txs_per_block, outputs_per_tx, rounds = (5, 4, 20, 3) if args.quick else (20, 5, 20, 5)
    progress(f"[chains] {machine()}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-chains-"))
    ours_signer, faucet_signer = PlainTestSigner("bench-ours"), PlainTestSigner("bench-faucet")
    faucet_path = (1, 0)
    faucet_addr = btx.p2wpkh_address(faucet_signer.vault_keys().child_public_key(faucet_path), "regtest")
    node = nodes.Btcd(work / "btcd", faucet_addr).start()
    try:
        faucet = adapter(node, work, "faucet", faucet_signer, 0)
        faucet.address("faucet", faucet_path)
        node.generate(101 + blocks * txs_per_block)
        while faucet.scan().tip_height < node.height():  # one scan reads a bounded number of blocks
            pass
        setup = adapter(node, work, "setup", ours_signer, 0)
        deposit_addrs = [setup.address("setup", (0, i)) for i in range(txs_per_block * outputs_per_tx)]
        first = node.height() + 1
        progress(f"[chains] setup: {blocks} blocks x {txs_per_block} txs x {outputs_per_tx} outputs to our addresses")
        n = 0
        for _ in range(blocks):
            for t in range(txs_per_block):
                pays = deposit_addrs[t * outputs_per_tx : (t + 1) * outputs_per_tx]
                it = WithdrawalIntent(f"fan-{n}", "faucet", "bitcoin", "regtest", "BTC",
                                      tuple(Payment(a, 100_000) for a in pays), 1_000_000)
                utx = faucet.build_withdrawal(it)
                faucet.broadcast(faucet.attach_signatures(utx, faucet_signer.sign(faucet.digests(utx, it)), it))
                n += 1
            node.generate(1)
        last = node.height()

        def fetch():
            rpc = BitcoinRpc(node.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
            t0 = time.perf_counter()
            for h in range(first, last + 1):
                rpc.call("getblock", rpc.call("getblockhash", h), 2)
            return time.perf_counter() - t0

        def scan(r):
            a = adapter(node, work, f"scan-{r}", ours_signer, first)
            for i in range(len(deposit_addrs)):
                a.address(f"scan-{r}", (0, i))
            t0 = time.perf_counter()
            if PROFILE and r == 0:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                res = prof.runcall(a.scan)
                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            else:
                res = a.scan()
            dt = time.perf_counter() - t0
            pending = [e for e in res.events if e.kind == "seen"]
            assert res.tip_height == last and len(pending) == len(deposit_addrs) * blocks, (res.tip_height, len(pending))
            return dt

        fetch(), scan("warm")
        fetch_s, scan_s = [], []
        for r in range(rounds):
            fetch_s.append(fetch())
            scan_s.append(scan(r))
            progress(f"[chains] round {r}: fetch {fetch_s[-1]:.3f}s scan {scan_s[-1]:.3f}s")
        n_blocks = last - first + 1
        figure(BENCH, "scan_fetch_only_s", round(median(fetch_s), 4), "s")
        figure(BENCH, "scan_s", round(median(scan_s), 4), "s")
        figure(BENCH, "scan_blocks_per_s", round(n_blocks / median(scan_s), 1), "blocks/s")
        figure(BENCH, "scan_outputs_per_s", round(n_blocks * txs_per_block * outputs_per_tx / median(scan_s)), "outputs/s")

        # The intent check on a batched withdrawal with change, vs its digests alone.
        ours = adapter(node, work, "ours", ours_signer, first)
        for i in range(len(deposit_addrs)):
            ours.address("ours", (0, i))
        ours.scan()
        node.generate(3)
        ours.scan()
        dests = [faucet.address("faucet", (1, 10 + i)) for i in range(5)]
        it = WithdrawalIntent("bench-check", "ours", "bitcoin", "regtest", "BTC",
                              tuple(Payment(d, 150_000) for d in dests), 1_000_000)
        utx = ours.build_withdrawal(it)
        keys = ours_signer.vault_keys()
        t_btc, _ = ours.checker.rebuild(utx, keys)
        reps = 50 if args.quick else 200
        check_s, digest_s = [], []
        for _ in range(10):
            ours.checker.check(utx, it, keys), btx.sighashes(t_btc)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                ours.checker.check(utx, it, keys)
            check_s.append((time.perf_counter() - t0) / reps)
            t0 = time.perf_counter()
            for _ in range(reps):
                btx.sighashes(t_btc)
            digest_s.append((time.perf_counter() - t0) / reps)
        progress(f"[chains] intent check: {len(utx.inputs)} inputs, {len(dests) + len(utx.change_paths)} outputs")
        figure(BENCH, "intent_check_ms", round(median(check_s) * 1000, 3), "ms")
        figure(BENCH, "intent_digests_only_ms", round(median(digest_s) * 1000, 3), "ms")
        # Ratios per round (adapter and baseline ran side by side), then the median.
        figure(BENCH, "intent_check_ratio", round(median([c / d for c, d in zip(check_s, digest_s)]), 2), "ratio")
        figure(BENCH, "scan_overhead_ratio", round(median([s / f for s, f in zip(scan_s, fetch_s)]), 2), "ratio")
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
