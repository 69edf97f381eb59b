"""bench/api.py — the custody API's request throughput, against an unsigned hello-world.

What it measures: signed balance reads (GET /v1/sub-accounts/{id}/balances: signature check,
nonce written to the database, rate limit, a ledger read) and internal-transfer creates
(POST /v1/transfers: the same, plus one ledger write with its journal entry, the client
record and the webhook outbox event in one transaction), through a real `custody api serve`
process (uvicorn, one worker, SQLite with durable commits). Requests/s and p50/p99 latency.

Baseline: an unsigned FastAPI hello-world (GET / returning a small JSON object) served by
uvicorn with the same options, in the same run. That is the honest floor: it is what the same
server stack costs with no authentication, no database and no domain work, so the ratio says
what our per-request work costs on top of the framework itself.

Method: both servers run for the whole benchmark; rounds alternate baseline / signed reads /
transfer creates after a warm-up; each round runs CONCURRENCY client threads for a fixed time
over keep-alive connections. Requests are signed just before each round (fresh nonces and
timestamps inside the ±30 s window), so client-side signing is not timed — the figures are the
server's. The server processes' CPU time per request is reported too (`*_server_cpu_us`,
`signed_read_cpu_ratio` = hello's CPU per request ÷ a signed read's): on a machine shared with
other work, requests/s swing with the neighbours' load, CPU per request much less.

Withdrawal creates (POST /v1/withdrawals: signature, nonce, then one journaled write holding
the amount, the withdrawal row, the client's external_id record and the webhook event) run
against the node's API app with its withdrawal services (`--serve-withdrawals`: create_app
with a bitcoin network configured, as api/node_root.py builds it, without the chain workers,
which do not run on the request path), over the same kind of store, same uvicorn options.

    python bench/api.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import secrets
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
# This file is named like the `api` package: keep bench/ off the import path, import by package.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench._common import figure, machine, percentile, progress  # noqa: E402

BENCH = "api"
CONCURRENCY = 4


def serve_hello(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    def hello():
        return {"hello": "world"}

    # The same server options as `custody api serve` (api/cli_api.py): like with like.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools",
                timeout_keep_alive=5, limit_concurrency=1000)


def serve_withdrawals(port: int, url: str) -> None:
    """The node's API app with withdrawal services (a bitcoin network configured)."""
    import uvicorn

    from api.app import Services, create_app
    from api.settings import ApiSettings
    from node.client_withdrawals import ClientWithdrawals, evented_ledger
    from node.deposits import Deposits
    from node.store import open_store
    from node.withdrawals import Withdrawals

    store = open_store(url)
    ledger = evented_ledger(store)
    services = Services(ClientWithdrawals(Withdrawals(ledger, {"bitcoin": "regtest"})), Deposits(ledger, {}, vault_id="hot"))
    # CUSTODY_API_SECRETS_KEY_FILE: from the environment main() gives this process
    settings = ApiSettings(database_url=url, rate_limit_per_s=1_000_000, rate_limit_burst=1_000_000, webhook_worker=False)
    uvicorn.run(create_app(settings, store, services), host="127.0.0.1", port=port, log_level="warning", loop="uvloop",
                http="httptools", timeout_keep_alive=5, limit_concurrency=1000)


def setup_withdrawals(store) -> None:
    """A hot vault (public part only), its BTC wallet, a policy auto-approving everything the
    bench asks, and acme.main holding BTC (booked from the hot wallet, standing for deposits)."""
    from node.customers import CODE_DEPOSIT, Customers
    from node.ledger import Ledger, LedgerKind, TransferCreate, TransferResult
    from node.ports import Vault
    from node.wallets import Wallets
    from node.withdrawals import Withdrawals

    w = Withdrawals(Ledger(store), {"bitcoin": "regtest"})
    w.ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="bench")
    w.register_vault(Vault("hot", ("p1", "p2", "p3"), 1, bytes.fromhex("02" + "11" * 32), b"\x22" * 32), "hot", actor="bench")
    hot = Wallets(w.ledger).create_wallet("hot:BTC", "hot", "BTC", "hot", actor="bench").account_id
    w.bootstrap_policy('version = 1\n[fee_max]\nbitcoin = "100000"\n[[vaults]]\nid = "hot"\nkind = "hot"\ndelay_s = 0\n'
                       'bands = [{ asset = "BTC", amount_max = "100000000", approvals_min = 0 }]\n', actor="bench")
    cust = Customers(w.ledger).customer_account("acme.main", "BTC", actor="bench")
    [r] = w.ledger.create_transfers([TransferCreate("bench-btc", hot, cust, 10**15, "BTC", CODE_DEPOSIT)], actor="bench")
    assert r is TransferResult.ok, r


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode}) for {url}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} not ready after {timeout_s}s")


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds the server process has used (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(base_url: str, requests_for_thread, duration_s: float):
    """Each thread sends its prepared requests in order until the time is up."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration_s

    def worker(i):
        mine = []
        with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as c:
            for method, path, headers, body in requests_for_thread(i):
                if time.perf_counter() >= stop_at:
                    break
                t0 = time.perf_counter()
                r = c.request(method, path, headers=headers, content=body)
                mine.append(time.perf_counter() - t0)
                if r.status_code >= 300:
                    with lock:
                        errors[0] += 1
                        if errors[0] <= 3:
                            progress(f"  unexpected {r.status_code}: {r.text[:200]}")
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert errors[0] == 0, f"{errors[0]} requests failed"
    return len(latencies) / elapsed, latencies


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--serve-hello", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-withdrawals", nargs=2, metavar=("PORT", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return 0
    if args.serve_withdrawals:
        serve_withdrawals(int(args.serve_withdrawals[0]), args.serve_withdrawals[1])
        return 0

    from api.client import CustodyClient, generate_private_key, public_key_b64
    from api.signing import b64url_decode, sign_request
    from node import apikeys
    from node.customers import Customers
    from node.ledger import Ledger, LedgerKind
    from node.secretbox import write_new_key
    from node.store import open_store

    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    rounds, duration_s = (2, 1.5) if args.quick else (4, 3.0)
    progress(f"bench api: {machine()}; {rounds} rounds x {duration_s}s per path, concurrency {CONCURRENCY}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-api-"))
    url = f"sqlite:///{tmp / 'node.db'}"
    key_file = tmp / "api-secrets.key"
    write_new_key(key_file)
    store = open_store(url)
    key = generate_private_key()
    k = apikeys.create_api_key(
        store.engine, client_id=None, name="bench", scopes=["read", "withdraw", "admin"], public_key=b64url_decode(public_key_b64(key))
    )
    ledger = Ledger(store)
    ledger.create_ledger("USD", 2, LedgerKind.FIAT, actor="bench")
    cust = Customers(ledger)
    cust.create_customer("acme", "Acme", actor="bench")
    cust.create_customer("beta", "Beta", actor="bench")
    assert cust.fiat_deposit("dep-1", "acme.main", "USD", 10**15, "bench", actor="bench").ok
    setup_withdrawals(store)
    store.dispose()

    procs = []
    try:
        api_port, hello_port = free_port(), free_port()
        env = {
            **os.environ,
            "CUSTODY_API_DATABASE_URL": url,
            "CUSTODY_API_SECRETS_KEY_FILE": str(key_file),
            "CUSTODY_API_RATE_LIMIT_PER_S": "1000000",
            "CUSTODY_API_RATE_LIMIT_BURST": "1000000",
            "CUSTODY_API_WEBHOOK_WORKER": "false",
        }
        custody = pathlib.Path(sys.executable).parent / "custody"
        procs.append(subprocess.Popen([str(custody), "api", "serve", "--port", str(api_port)], env=env))
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-hello", str(hello_port)]))
        wd_port = free_port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-withdrawals", str(wd_port), url], env=env))
        api_url, hello_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{hello_port}"
        wd_url = f"http://127.0.0.1:{wd_port}"
        wait_ready(f"{wd_url}/v1/health", procs[2])
        wait_ready(f"{api_url}/v1/health", procs[0])
        wait_ready(f"{hello_url}/", procs[1])
        CustodyClient(api_url, k.id, key).balances("acme.main")  # the path works before timing it

        def signed(method, path, body=b""):
            ts = str(time.time_ns() // 1_000_000)
            nonce = secrets.token_urlsafe(18)
            h = {"X-Api-Key": k.id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": sign_request(key, method, path, ts, nonce, body)}
            if body:
                h["Content-Type"] = "application/json"
            return method, path, h, body

        per_thread_max = 20_000 if not args.quick else 5_000
        seq = [0]

        def hello_requests(_i):
            return (("GET", "/", {}, b"") for _ in range(per_thread_max))

        def read_requests_factory():
            batches = [[signed("GET", "/v1/sub-accounts/acme.main/balances") for _ in range(per_thread_max // 4)] for _ in range(CONCURRENCY)]
            return lambda i: iter(batches[i])

        def post_requests_factory(path, template):
            """Signed POSTs of `template` % a fresh sequence number, one batch per thread."""
            batches = []
            for _ in range(CONCURRENCY):
                b = []
                for _ in range(per_thread_max // 20):
                    seq[0] += 1
                    b.append(signed("POST", path, (template % seq[0]).encode()))
                batches.append(b)
            return lambda i: iter(batches[i])

        def transfer_requests_factory():
            return post_requests_factory("/v1/transfers", '{"external_id":"b-%d","from_sub_account_id":"acme.main",'
                                         '"to_sub_account_id":"beta.main","asset":"USD","amount":"1"}')

        def withdrawal_requests_factory():
            return post_requests_factory("/v1/withdrawals", '{"external_id":"w-%d","sub_account_id":"acme.main","asset":"BTC",'
                                         '"destination":"bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh","amount":"1000"}')

        progress("warm-up")
        run_round(wd_url, withdrawal_requests_factory(), 0.5)
        run_round(hello_url, hello_requests, 0.5)
        run_round(api_url, read_requests_factory(), 0.5)
        run_round(api_url, transfer_requests_factory(), 0.5)

        hello_rps, read_rps, write_rps = [], [], []
        read_lat, write_lat, hello_lat = [], [], []
        wd_rps, wd_lat = [], []
        cpu = {"hello": [0.0, 0], "read": [0.0, 0], "write": [0.0, 0], "withdrawal": [0.0, 0]}  # server CPU s, requests

        def timed_round(name, url, pid, factory):
            c0 = server_cpu_s(pid)
            rps, lat = run_round(url, factory, duration_s)
            cpu[name][0] += server_cpu_s(pid) - c0
            cpu[name][1] += len(lat)
            return rps, lat

        for r in range(rounds):
            rps, lat = timed_round("hello", hello_url, procs[1].pid, hello_requests)
            hello_rps.append(rps)
            hello_lat += lat
            rps, lat = timed_round("read", api_url, procs[0].pid, read_requests_factory())
            read_rps.append(rps)
            read_lat += lat
            rps, lat = timed_round("write", api_url, procs[0].pid, transfer_requests_factory())
            write_rps.append(rps)
            write_lat += lat
            rps, lat = timed_round("withdrawal", wd_url, procs[2].pid, withdrawal_requests_factory())
            wd_rps.append(rps)
            wd_lat += lat
            progress(f"round {r + 1}: withdrawal creates {wd_rps[-1]:.0f}/s")
            progress(f"round {r + 1}: hello {hello_rps[-1]:.0f}/s, signed reads {read_rps[-1]:.0f}/s, transfer creates {write_rps[-1]:.0f}/s")

        def mean(xs):
            return sum(xs) / len(xs)

        ms = 1000
        figure(BENCH, "baseline_hello_per_s", round(mean(hello_rps), 1), "requests/s")
        figure(BENCH, "baseline_hello_p50_ms", round(percentile(hello_lat, 50) * ms, 3), "ms")
        figure(BENCH, "signed_reads_per_s", round(mean(read_rps), 1), "requests/s")
        figure(BENCH, "signed_read_p50_ms", round(percentile(read_lat, 50) * ms, 3), "ms")
        figure(BENCH, "signed_read_p99_ms", round(percentile(read_lat, 99) * ms, 3), "ms")
        figure(BENCH, "transfer_creates_per_s", round(mean(write_rps), 1), "requests/s")
        figure(BENCH, "transfer_create_p50_ms", round(percentile(write_lat, 50) * ms, 3), "ms")
        figure(BENCH, "transfer_create_p99_ms", round(percentile(write_lat, 99) * ms, 3), "ms")
        figure(BENCH, "withdrawal_creates_per_s", round(mean(wd_rps), 1), "requests/s")
        figure(BENCH, "withdrawal_create_p50_ms", round(percentile(wd_lat, 50) * ms, 3), "ms")
        figure(BENCH, "withdrawal_create_p99_ms", round(percentile(wd_lat, 99) * ms, 3), "ms")
        figure(BENCH, "withdrawal_create_ratio", round(mean(wd_rps) / mean(hello_rps), 3), "ratio")
        # Server CPU per request: what the request costs the server itself, steadier than
        # requests/s when other work shares the machine (the client's share is left out).
        us = {k: round(c / n * 1e6, 1) for k, (c, n) in cpu.items()}
        figure(BENCH, "baseline_hello_server_cpu_us", us["hello"], "us/request")
        figure(BENCH, "signed_read_server_cpu_us", us["read"], "us/request")
        figure(BENCH, "transfer_create_server_cpu_us", us["write"], "us/request")
        figure(BENCH, "withdrawal_create_server_cpu_us", us["withdrawal"], "us/request")
        figure(BENCH, "signed_read_cpu_ratio", round(us["hello"] / us["read"], 3), "ratio")
        figure(BENCH, "signed_read_ratio", round(mean(read_rps) / mean(hello_rps), 3), "ratio")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
