"""Withdrawal pipeline benchmark (shared/design/benchmarks.md form).

Measures, with everything real and started here (3 `custody signer` processes over gRPC + mTLS,
2-of-3; btcd in regtest; the node's store on SQLite, or PostgreSQL with --pg):
- pipeline: a BTC withdrawal from the request (`Withdrawals.submit`: the ledger hold) through
  screening, the auto-approval band, the build, signing by the cluster, attaching the
  signature and the broadcast to btcd (status `confirming`): p50 request -> broadcast, and
  end-to-end withdrawals/s over a batch submitted at once.
- baseline: cluster signing alone (`ClusterClient.sign`) of a transaction of the same shape
  (one P2WPKH input, payment + change) with the same vault: the MPC ceremony, the peers'
  request checks and the client's verification. A withdrawal cannot be cheaper than its
  signature, so that is the honest floor; `pipeline_overhead_ratio` = pipeline p50 / signing p50.
Rounds alternate pipeline and baseline after a warm-up.

    python bench/withdrawals.py [--quick] [--pg postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import figure, machine, median, percentile, progress  # noqa: E402

BENCH = "withdrawals"
BTC = 100_000_000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", help="PostgreSQL URL for the node's store (default: SQLite in a temp dir)")
    ap.add_argument("--profile", action="store_true", help="print where the pipeline's own time goes (cProfile)")
    args = ap.parse_args()
    rounds = 4 if args.quick else 12
    batch = 4 if args.quick else 10
    progress(f"machine: {machine()}")

    from api.withdrawals_root import fee_of
    from chains.bitcoin import tx as btx
    from chains.bitcoin.adapter import BitcoinAdapter
    from chains.bitcoin.rpc import BitcoinRpc
    from chains.keys import Bip32VaultKeys
    from chains.state import ChainState, make_engine
    from node.customers import CODE_DEPOSIT, Customers
    from node.ledger import Ledger, LedgerKind, TransferCreate
    from node.log import Secret
    from node.pipeline import Pipeline
    from node.ports import Payment, WithdrawalIntent
    from node.store import open_store
    from node.wallets import Wallets
    from node.withdrawals import Withdrawals
    from tests.support import nodes
    from tests.support.cluster import LocalCluster
    from tests.support.test_signer import PlainTestSigner

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-withdrawals-"))
    faucet_signer = PlainTestSigner("bench-faucet")  # the outside world paying us (test key)
    btcd = nodes.Btcd(work / "btcd", btx.p2wpkh_address(faucet_signer.vault_keys().child_public_key((1, 0)), "regtest")).start()
    cluster = LocalCluster(work / "cluster", 3, 1)
    for name in cluster.names:  # the peers' own policy: no approvals below 0.1 BTC (the hot band)
        with open(cluster.dir / name / "policy.toml", "a") as f:
            f.write('\n[[bands]]\nasset = "BTC"\namount_max = "10000000"\napprovals_min = 0\n')
    cluster.start_all()
    try:
        btcd.generate(110)
        rpc = lambda: BitcoinRpc(btcd.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))  # noqa: E731
        faucet = BitcoinAdapter(rpc(), ChainState(make_engine(f"sqlite:///{work / 'faucet.db'}"), "bitcoin:regtest"), "regtest",
                                confirmations=1, fee_rate_fallback_sat_vb=2, start_height=0)
        faucet.register_vault("faucet", faucet_signer.vault_keys())
        faucet.address("faucet", (1, 0))
        faucet.scan()
        client = cluster.client()
        progress("keygen of the hot vault")
        vault = client.keygen("hot", tuple(cluster.names), 1)
        keys = Bip32VaultKeys(vault.public_key, vault.chain_code)
        if args.pg:
            store = open_store(args.pg, schema=f"bench_{uuid.uuid4().hex[:10]}")
        else:
            store = open_store(f"sqlite:///{work / 'node.db'}")
        ledger = Ledger(store)
        ours = BitcoinAdapter(rpc(), ChainState(make_engine(f"sqlite:///{work / 'chains.db'}"), "bitcoin:regtest"), "regtest",
                              confirmations=1, fee_rate_fallback_sat_vb=2, start_height=btcd.height())
        ours.register_vault("hot", keys)
        wd = Withdrawals(ledger, {"bitcoin": "regtest"})
        wd.register_vault(vault, "hot", actor="bench")
        approvers = {a: cluster.approver(a).verify_key.encode().hex() for a in ("approver-1", "approver-2")}
        wd.bootstrap_policy(_policy(approvers), actor="bench")
        ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="bench")
        hot = Wallets(ledger).create_wallet("hot:BTC", "hot", "BTC", "hot", actor="bench")
        customers = Customers(ledger)
        customers.create_customer("c", "c", actor="bench")
        wd.set_profile("c.main", "standard", actor="bench")
        # One coin per withdrawal (unconfirmed change is not spent): a batch from the faucet.
        n_coins = 2 * rounds + batch + 4
        payments = tuple(Payment(ours.address("hot", (0, i)), BTC // 10) for i in range(n_coins))
        it = WithdrawalIntent("bench-fund", "faucet", "bitcoin", "regtest", "BTC", payments, 1_000_000)
        utx = faucet.build_withdrawal(it)
        faucet.broadcast(faucet.attach_signatures(utx, faucet_signer.sign(faucet.digests(utx, it)), it))
        btcd.generate(1)
        ours.scan()
        cust = customers.customer_account("c.main", "BTC", actor="bench")
        ledger.create_transfers([TransferCreate("dep:bench", hot.account_id, cust, n_coins * BTC // 10, "BTC", CODE_DEPOSIT)], actor="bench")
        outsider = PlainTestSigner("bench-outside")
        dests = iter(btx.p2wpkh_address(outsider.vault_keys().child_public_key((7, i)), "regtest") for i in range(10_000))
        pipeline = Pipeline(wd, {"bitcoin": ours}, client, {"bitcoin": 1}, lambda c, t, w: fee_of(ours, t, w))

        def one_withdrawal() -> float:
            dest = next(dests)
            wd.whitelist("c.main", "BTC", dest, actor="bench")
            t0 = time.perf_counter()
            _, w = wd.submit("c.main", uuid.uuid4().hex, "BTC", dest, 1_000_000, vault_id="hot", actor="client:c")
            while wd.get(w.id).status != "confirming":
                pipeline.run_once()
                assert wd.get(w.id).status not in ("failed", "rejected", "blocked"), wd.get(w.id)
            elapsed = time.perf_counter() - t0
            settle()
            return elapsed

        def settle() -> None:
            """Untimed: mine and complete what was broadcast, so later rounds do not pay for
            watching earlier withdrawals (their own confirmation is not what is measured)."""
            btcd.generate(1)
            ours.scan()
            while wd.with_status("confirming"):
                pipeline.run_once()

        from tests.support.cluster import btc_withdrawal

        def one_signing() -> float:
            tx, intent = btc_withdrawal(keys, "hot", amount_sats=1_000_000)
            t0 = time.perf_counter()
            client.sign(vault, tx, intent, ())
            return time.perf_counter() - t0

        progress("warm-up")
        one_withdrawal()
        one_signing()
        pipe, sign = [], []
        for r in range(rounds):
            pipe.append(one_withdrawal())
            sign.append(one_signing())
            progress(f"round {r + 1}/{rounds}: pipeline {pipe[-1] * 1000:.0f} ms, signing {sign[-1] * 1000:.0f} ms")
        progress(f"throughput: {batch} withdrawals submitted at once")
        ids = []
        t0 = time.perf_counter()
        for _ in range(batch):
            dest = next(dests)
            wd.whitelist("c.main", "BTC", dest, actor="bench")
            ids.append(wd.submit("c.main", uuid.uuid4().hex, "BTC", dest, 1_000_000, vault_id="hot", actor="client:c")[1].id)
        while any(wd.get(i).status != "confirming" for i in ids):
            pipeline.run_once()
        elapsed = time.perf_counter() - t0
        settle()
        t1 = time.perf_counter()
        for _ in range(batch):
            one_signing()
        sign_elapsed = time.perf_counter() - t1
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            one_withdrawal()
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
        figure(BENCH, "signing_p50_ms", round(median(sign) * 1000, 1), "ms")
        figure(BENCH, "pipeline_p90_ms", round(percentile(pipe, 90) * 1000, 1), "ms")
        figure(BENCH, "signing_per_s", round(batch / sign_elapsed, 3), "1/s")
        figure(BENCH, "withdrawals_per_s", round(batch / elapsed, 3), "1/s")
        figure(BENCH, "pipeline_p50_ms", round(median(pipe) * 1000, 1), "ms")
        figure(BENCH, "pipeline_overhead_ratio", round(median(pipe) / median(sign), 3), "ratio")
        store.dispose()
        return 0
    finally:
        cluster.stop_all()
        btcd.stop()


def _policy(approvers: dict[str, str]) -> str:
    apr = "\n".join(f'{k} = "{v}"' for k, v in approvers.items())
    return f"""version = 1
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
[kyc_tiers.standard.BTC]
per_withdrawal_max = "{BTC}"
day_max = "{1000 * BTC}"
month_max = "{1000 * BTC}"
[whitelist]
required = true
timelock_s = 0
[[vaults]]
id = "hot"
kind = "hot"
bands = [{{ asset = "BTC", amount_max = "{BTC}", approvals_min = 0 }}]
"""


if __name__ == "__main__":
    sys.exit(main())
