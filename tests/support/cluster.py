"""A local signer cluster for tests: `custody cluster init` files, each peer a real
`custody signer` process over gRPC + mTLS on 127.0.0.1, and helpers to build signed requests.

Shortcuts, each said where it is used: fixture pre-params (tests/fixtures/preparams/: never in
production); environment = "test" configs (opaque digests allowed for the benchmark only).
"""

from __future__ import annotations

import json
import pathlib
import sys
import urllib.request

from nacl.signing import SigningKey

from chains.bitcoin import tx as btx
from mpc.client import ClusterClient
from mpc.cluster_cli import init_cluster
from mpc.wire import requests as rq
from node.ports import InputKey, Payment, UnsignedTransaction, WithdrawalIntent
from tests.support.procs import Proc, free_port, tail

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE_PREPARAMS = ROOT / "tests" / "fixtures" / "preparams"
CUSTODY = [sys.executable, "-m", "api.cli"]


def fixture_preparams() -> list[pathlib.Path]:
    files = sorted(FIXTURE_PREPARAMS.glob("preparams-*.json"))
    assert files, f"no fixture pre-params in {FIXTURE_PREPARAMS} (they come with the MPC engine)"
    return files


ROGUE = "tests.functional.adversarial.rogue:RogueParticipant"


class LocalCluster:
    """`rogues`: peer name -> its first faults ({} for none). Those peers run the test-only
    RogueParticipant (tests/functional/adversarial/rogue.py); every other peer runs the
    production class."""

    def __init__(self, workdir: pathlib.Path, peers: int, threshold: int, round_timeout_ms: int = 5_000,
                 test_extra: dict | None = None, rogues: dict[str, dict] | None = None, with_preparams: bool = True):
        self.dir = pathlib.Path(workdir)
        self.ports = [free_port() for _ in range(peers)]
        self.metrics_ports = [free_port() for _ in range(peers)]
        extra = {"intent_checkers": []}
        extra.update(test_extra or {})
        self.info = init_cluster(self.dir, peers, threshold, self.ports, self.metrics_ports, environment="test",
                                 preparams_fixtures=fixture_preparams() if with_preparams else None,
                                 round_timeout_ms=round_timeout_ms, test_extra=extra)
        self.names = [p["name"] for p in self.info["peers"]]
        self.procs: dict[str, Proc] = {}
        self.rogues: set[str] = set()
        for name, faults in (rogues or {}).items():
            self.make_rogue(name, faults)

    # ---------------------------------------------------------------- processes
    def config(self, name: str) -> pathlib.Path:
        return self.dir / name / "signer.toml"

    def faults_file(self, name: str) -> pathlib.Path:
        return self.dir / name / "faults.json"

    def make_rogue(self, name: str, faults: dict | None = None) -> None:
        """From its next start, `name` runs the test-only RogueParticipant with `faults`."""
        if name not in self.rogues:
            with self.config(name).open("a") as f:  # [test] is the config's last table
                f.write(f"participant = {json.dumps(ROGUE)}\n")
            self.rogues.add(name)
        self.set_faults(name, faults)

    def set_faults(self, name: str, faults: dict | None) -> None:
        """A rogue peer's faults (test fault injection), read again at its next Join."""
        assert name in self.rogues, f"{name} is not a rogue peer of this cluster"
        self.faults_file(name).write_text(json.dumps(faults or {}))

    def start(self, name: str, wait: bool = True) -> Proc:
        old = self.procs.get(name)
        if old is not None and old.alive():
            raise AssertionError(f"{name} is already running")
        env = {"CUSTODY_LOG_LEVEL": "info", "PYTHONPATH": str(ROOT)}
        if name in self.rogues:
            env["CUSTODY_ROGUE_FAULTS"] = str(self.faults_file(name))
        p = Proc(name, [*CUSTODY, "signer", "--config", self.config(name)], self.dir / "logs", env=env)
        p.start()
        self.procs[name] = p
        if wait:
            self.wait_ready(name)
        return p

    def wait_ready(self, name: str, timeout_s: float = 60) -> None:
        self.procs[name].wait_ready(lambda: self.health(name).get("ready"), timeout_s, "health says ready")

    def start_all(self) -> None:
        for n in self.names:
            self.start(n, wait=False)
        for n in self.names:
            self.wait_ready(n)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.stop()

    def metrics_port(self, name: str) -> int:
        return self.metrics_ports[self.names.index(name)]

    def health(self, name: str) -> dict:
        url = f"http://127.0.0.1:{self.metrics_port(name)}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def metrics(self, name: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port(name)}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, name: str, metric: str, **labels) -> float:
        """The value of one sample (0 when absent) from a peer's /metrics."""
        total = 0.0
        for line in self.metrics(name).splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == metric or (key.startswith(metric + "{") and all(f'{k}="{v}"' in key for k, v in labels.items())):
                total += float(value)
        return total

    def signatures_total(self) -> int:
        return int(sum(self.metric(n, "custody_signer_signatures_total") for n in self.names if self.procs.get(n) and self.procs[n].alive()))

    def stderr(self, name: str) -> str:
        return tail(self.procs[name].stderr_path, 200_000)

    # ---------------------------------------------------------------- node side
    def add_policy(self, toml: str, peers=None) -> None:
        """Appends tables to the peers' policy files (before they start, or before a restart)."""
        for name in peers or self.names:
            with (self.dir / name / "policy.toml").open("a") as f:
                f.write("\n" + toml.strip() + "\n")

    def client(self, coordinators=None) -> ClusterClient:
        """The node's client; its key ceremonies are approved by every dev approver (DevApprovers)."""
        return ClusterClient.from_cluster_dir(self.info, coordinators, dev_approvals=True)

    def node_key(self) -> SigningKey:
        return SigningKey(bytes.fromhex(pathlib.Path(self.info["node"]["signing_key"]).read_text().strip()))

    def approver(self, approver_id: str) -> SigningKey:
        return SigningKey(bytes.fromhex(pathlib.Path(self.info["approvers"][approver_id]).read_text().strip()))


def funding_tx(label: str, outputs) -> bytes:
    """A stripped transaction paying `outputs` [(script_pubkey, amount)], spending an outpoint
    named by `label` (never on any chain: the peers check only its txid and outputs)."""
    import hashlib

    def compact(n: int) -> bytes:
        if n < 0xFD:
            return bytes([n])
        assert n <= 0xFFFF
        return b"\xfd" + n.to_bytes(2, "little")

    raw = (2).to_bytes(4, "little") + compact(1) + hashlib.sha256(label.encode()).digest() + (0).to_bytes(4, "little")
    raw += compact(0) + (0xFFFFFFFF).to_bytes(4, "little") + compact(len(outputs))
    for script, amount in outputs:
        raw += amount.to_bytes(8, "little") + compact(len(script)) + script
    return raw + (0).to_bytes(4, "little")


def btc_withdrawal(vault_keys, vault_id: str, amount_sats: int = 50_000, destination_path=(9, 9), fee_sats: int = 1_000,
                   n_inputs: int = 1, tamper: str | None = None, funding: str = "funding", intent: WithdrawalIntent | None = None,
                   in_amounts: tuple[int, ...] | None = None, fee_max: int = 5_000):
    """A real unsigned regtest P2WPKH transaction spending our inputs to an outside destination
    (a key at `destination_path` of an unrelated test key), with change back to us, plus its
    intent. `tamper="destination"|"amount"` builds a transaction that pays something else.
    Input i spends output 0 of its own funding transaction (`funding_tx`, sent as its proof
    in `prev_txs`), paying our key at (0, i) `in_amounts[i]` (default 5 BTC each); `funding`
    names them (another name: other outpoints); `intent`: another version of that approved
    intent (the same payment, e.g. a fee bump with a higher fee_sats)."""
    import hashlib

    from bip32 import BIP32

    outsider = BIP32.from_seed(hashlib.sha256(b"outsider").digest())
    dest_pub = outsider.get_pubkey_from_path(list(destination_path))
    destination = btx.p2wpkh_address(dest_pub, "regtest")
    in_amounts = tuple(in_amounts or (500_000_000,) * n_inputs)
    n_inputs = len(in_amounts)
    our_scripts = [btx.p2wpkh_script_pubkey(vault_keys.child_public_key((0, i))) for i in range(n_inputs)]
    prev_txs = tuple(funding_tx(f"{funding}-{i}", [(our_scripts[i], a)]) for i, a in enumerate(in_amounts))
    ins = [btx.TxIn(btx.txid_of(raw), 0, a, vault_keys.child_public_key((0, i))) for i, (raw, a) in enumerate(zip(prev_txs, in_amounts))]
    change = sum(in_amounts) - amount_sats - fee_sats
    pay_script = btx.script_pubkey_for(destination, "regtest")
    pay_amount = amount_sats
    if tamper == "destination":
        pay_script = btx.p2wpkh_script_pubkey(outsider.get_pubkey_from_path([6, 6, 6]))
    elif tamper == "amount":
        pay_amount, change = amount_sats + 10_000, change - 10_000
    outs = [btx.TxOut(pay_script, pay_amount), btx.TxOut(btx.p2wpkh_script_pubkey(vault_keys.child_public_key((1, 0))), change)]
    t = btx.build(ins, outs, "regtest")
    tx = UnsignedTransaction("bitcoin", "regtest", btx.unsigned_bytes(t),
                             tuple(InputKey((0, i), a) for i, a in enumerate(in_amounts)), change_paths=((1, 0),),
                             prev_txs=prev_txs)
    if intent is None:
        intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id=vault_id, chain="bitcoin", network="regtest", asset="BTC",
                                  payments=(Payment(destination, amount_sats),), fee_max=fee_max)
    return tx, intent


def eth_withdrawal(vault_keys, vault_id: str, amount_wei: int = 10**17, tamper: str | None = None, nonce: int = 0,
                   max_fee_per_gas: int = 2 * 10**9, fee_max: int = 21_000 * 2 * 10**9, intent: WithdrawalIntent | None = None):
    """A real unsigned EIP-1559 transfer (chain id 1337) from our key at (0, 0), and its intent
    (`intent`: another version of that approved intent, e.g. at another nonce or a higher fee)."""
    from chains.ethereum import tx as etx

    destination = etx.checksum("0x" + "ab" * 20)
    t = etx.Eip1559Tx(chain_id=1337, nonce=nonce, max_priority_fee_per_gas=10**9, max_fee_per_gas=max_fee_per_gas, gas=21_000,
                      to=destination, value=amount_wei + (1 if tamper == "amount" else 0))
    tx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey((0, 0)),))
    if intent is None:
        intent = WithdrawalIntent(intent_id=rq.new_request_id(), vault_id=vault_id, chain="ethereum", network="1337", asset="ETH",
                                  payments=(Payment(destination, amount_wei),), fee_max=fee_max)
    return tx, intent
