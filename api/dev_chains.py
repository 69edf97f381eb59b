"""The local dev chains of `custody dev up`: btcd in regtest and Anvil, as child processes with
their data under `<data dir>/chains/`, and the faucets that `custody dev fund-btc|fund-eth`
pay from. Development only: every chain here is a local regtest / dev chain.

Layout of `<data dir>/chains/`:
    chains.json          what the fund commands read: RPC URLs, ports, the faucet's address
    btcd/                btcd's data and log; btcd.stdout; btcd.conf (0600: the RPC credentials,
                         passed as --configfile, never on a command line)
    btcd-rpc-password    0600, random on first start (the node config points at it)
    anvil/state.json     Anvil's state, dumped on exit and loaded on start (balances survive)
    faucet.seed          0600: the regtest faucet's seed. The faucet is an OUTSIDE wallet (the
                         stand-in for whoever pays our customers' deposit addresses), not a
                         custody key: custody keys exist only as shares in the signer peers.
                         Refused on any network but regtest.
    faucet.db            the faucet's own chain state (its UTXOs)

btcd mines to the faucet's address; 110 blocks make its first coinbases spendable. btcd
removes its regtest database whenever it starts, so every `dev up` runs a NEW bitcoin chain
(the faucet's state follows; the node's books keep what they had: delete the data dir for a
clean slate). Anvil's state is kept across restarts when `dev up` is stopped (Anvil dumps it on
exit); killed outright, the next Anvil is a new chain. The node rescans a replaced chain
(`forget_replaced_chains`). Anvil pays from its first unlocked dev account (no key in this
process).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import time

import httpx

import node.log
from node import limits

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
BTCD = TOOLS / "bin" / "btcd"
ANVIL = TOOLS / "npm" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
BTCD_RPC_USER = "custody-dev"
ANVIL_CHAIN_ID = 1337
COINBASE_MATURITY_BLOCKS = 100
FAUCET_PATH = (1, 0)
FAUCET_FEE_MAX_SATS = 100_000


class DevChainError(Exception):
    """An expected failure of the dev chains, named as a sentence in `code`."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def write_secret(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def dev_secrets_key(data_dir: pathlib.Path) -> pathlib.Path:
    """`<data dir>/api-secrets.key`: the API's secrets key (node/secretbox.py), made on first start."""
    from node.secretbox import write_new_key

    path = pathlib.Path(data_dir) / "api-secrets.key"
    if not path.exists():
        write_new_key(path)
    return path


def _rpc(url: str, method: str, params=(), auth=None, version: str = "2.0"):
    body = {"jsonrpc": version, "id": 1, "method": method, "params": list(params)}
    try:
        r = httpx.post(url, json=body, auth=auth, timeout=limits.DEV_CHAIN_RPC_TIMEOUT_S, trust_env=False)
        doc = r.json()
    except httpx.HTTPError as exc:
        raise DevChainError("chain_unreachable", f"{url} {method}: {exc}") from None
    except ValueError:
        raise DevChainError("chain_rpc_refused", f"{url} {method}: HTTP {r.status_code}, not JSON") from None
    if doc.get("error"):
        raise DevChainError("chain_rpc_refused", f"{method}: {doc['error']}")
    return doc["result"]


class _Child:
    """One child process: started in its own session, output to a log file, stopped by pid."""

    def __init__(self, name: str, argv: list, cwd: pathlib.Path, log_path: pathlib.Path):
        self.name, self.argv, self.cwd, self.log_path = name, [str(a) for a in argv], cwd, log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        finally:
            log.close()

    def wait_ready(self, ready, what: str) -> None:
        deadline = time.monotonic() + limits.DEV_CHAIN_READY_DEADLINE_S
        while True:
            if self.popen.poll() is not None:
                raise DevChainError("chain_process_exited",
                                    f"{self.name} exited ({self.popen.returncode}) before {what}; see {self.log_path}:\n"
                                    + _tail(self.log_path))
            try:
                if ready():
                    return
            except (httpx.HTTPError, DevChainError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise DevChainError("chain_not_ready", f"{self.name}: {what} not within {limits.DEV_CHAIN_READY_DEADLINE_S} s")
            time.sleep(limits.DEV_CHAIN_POLL_S)

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=limits.DEV_CHAIN_STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=limits.DEV_CHAIN_STOP_DEADLINE_S)


def _tail(path: pathlib.Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Faucet:
    """The regtest faucet: an outside wallet paying our deposit addresses (see the module
    docstring). Its adapter is the same BitcoinAdapter the node uses, on its own state."""

    def __init__(self, chains_dir: pathlib.Path, rpc_url: str, rpc_password: str):
        from bip32 import BIP32

        from chains.bitcoin.adapter import BitcoinAdapter
        from chains.bitcoin.rpc import BitcoinRpc
        from chains.keys import Bip32VaultKeys
        from chains.state import ChainState, make_engine
        from node.log import Secret

        seed = bytes.fromhex((chains_dir / "faucet.seed").read_text().strip())
        self._root = BIP32.from_seed(seed)
        self.keys = Bip32VaultKeys(self._root.pubkey, self._root.chaincode)
        self.engine = make_engine(f"sqlite:///{chains_dir / 'faucet.db'}")
        self.adapter = BitcoinAdapter(BitcoinRpc(rpc_url, BTCD_RPC_USER, Secret(rpc_password)),
                                      ChainState(self.engine, "bitcoin:regtest"), "regtest", confirmations=1,
                                      fee_rate_fallback_sat_vb=2, start_height=0)
        assert self.adapter.network == "regtest", "the dev faucet exists on regtest only"
        self.adapter.register_vault("faucet", self.keys)
        self.address = self.adapter.address("faucet", FAUCET_PATH)

    @staticmethod
    def address_of(chains_dir: pathlib.Path) -> str:
        from bip32 import BIP32

        from chains.bitcoin.tx import p2wpkh_address

        seed = bytes.fromhex((chains_dir / "faucet.seed").read_text().strip())
        return p2wpkh_address(BIP32.from_seed(seed).get_pubkey_from_path(list(FAUCET_PATH)), "regtest")

    def _sign(self, digests):
        import coincurve

        from node.ports import EcdsaSignature

        out = []
        for d in digests:
            priv = coincurve.PrivateKey(self._root.get_privkey_from_path(list(d.path)))
            sig = priv.sign_recoverable(d.digest, hasher=None)
            out.append(EcdsaSignature(r=int.from_bytes(sig[:32], "big"), s=int.from_bytes(sig[32:64], "big"),
                                      recovery_id=sig[64], public_key=priv.public_key.format(compressed=True)))
        return out

    def pay(self, address: str, amount_sats: int) -> str:
        from chains.errors import ChainError
        from node.ports import Payment, WithdrawalIntent

        self.adapter.scan()
        intent = WithdrawalIntent(f"faucet-{secrets.token_hex(8)}", "faucet", "bitcoin", "regtest", "BTC",
                                  (Payment(address, amount_sats),), FAUCET_FEE_MAX_SATS)
        try:
            utx = self.adapter.build_withdrawal(intent)
            signed = self.adapter.attach_signatures(utx, self._sign(self.adapter.digests(utx, intent)), intent)
            return self.adapter.broadcast(signed)
        except ChainError as exc:
            raise DevChainError("faucet_payment_refused", str(exc)) from None

    def close(self) -> None:
        self.engine.dispose()


class DevChains:
    """btcd (regtest) and Anvil under `<data dir>/chains/`."""

    def __init__(self, data_dir: pathlib.Path, btcd_rpc_port: int, btcd_p2p_port: int, anvil_port: int):
        self.dir = pathlib.Path(data_dir) / "chains"
        self.btcd_rpc_port, self.btcd_p2p_port, self.anvil_port = btcd_rpc_port, btcd_p2p_port, anvil_port
        self.btcd: _Child | None = None
        self.anvil: _Child | None = None
        self.btc_chain_restarted = False

    @property
    def btcd_url(self) -> str:
        return f"http://127.0.0.1:{self.btcd_rpc_port}"

    @property
    def anvil_url(self) -> str:
        return f"http://127.0.0.1:{self.anvil_port}"

    def ensure_initialised(self) -> None:
        for tool, what in ((BTCD, "btcd"), (ANVIL, "anvil")):
            if not tool.exists():
                raise DevChainError("tool_missing", f"{what} not found at {tool}: run `deploy/dev/tools.sh run` (or `make run`)")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "btcd-rpc-password").exists():
            write_secret(self.dir / "btcd-rpc-password", secrets.token_urlsafe(24))
        if not (self.dir / "faucet.seed").exists():
            write_secret(self.dir / "faucet.seed", secrets.token_hex(32))

    def rpc_password(self) -> str:
        return (self.dir / "btcd-rpc-password").read_text().strip()

    def _write_btcd_config(self) -> pathlib.Path:
        """btcd's ini config with the RPC credentials (btcctl reads the same keys from its own
        --configfile): a password on a command line is readable by every local user."""
        path = self.dir / "btcd" / "btcd.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        password = self.rpc_password()
        assert "\n" not in password
        write_secret(path, f"[Application Options]\nrpcuser={BTCD_RPC_USER}\nrpcpass={password}\n")
        return path

    def start(self) -> None:
        faucet_address = Faucet.address_of(self.dir)
        self.btcd = _Child("btcd", [
            BTCD, f"--configfile={self._write_btcd_config()}", "--regtest", f"--datadir={self.dir / 'btcd' / 'data'}",
            f"--logdir={self.dir / 'btcd' / 'log'}", f"--listen=127.0.0.1:{self.btcd_p2p_port}",
            f"--rpclisten=127.0.0.1:{self.btcd_rpc_port}", "--notls", f"--miningaddr={faucet_address}",
            # --addrindex: `custody-verify assets --bitcoin-rpc` re-reads the snapshot's balances
            "--nodnsseed", "--txindex", "--addrindex", "--debuglevel=info",
        ], self.dir / "btcd", self.dir / "btcd" / "btcd.stdout")
        self.btcd.start()
        self.btcd.wait_ready(lambda: self.btc_call("getblockcount") >= 0, "btcd answers getblockcount")
        height = self.btc_call("getblockcount")
        if height < COINBASE_MATURITY_BLOCKS + 10:
            self.btc_call("generate", COINBASE_MATURITY_BLOCKS + 10 - height)
        self.btc_chain_restarted = self._forget_a_previous_btc_chain()
        state = self.dir / "anvil" / "state.json"
        (self.dir / "anvil").mkdir(parents=True, exist_ok=True)
        argv = [ANVIL, "--host", "127.0.0.1", "--port", self.anvil_port, "--chain-id", ANVIL_CHAIN_ID, "--silent",
                "--accounts", "2", "--dump-state", state]
        if state.exists():
            argv += ["--load-state", state]
        self.anvil = _Child("anvil", argv, self.dir / "anvil", self.dir / "anvil" / "anvil.stdout")
        self.anvil.start()
        self.anvil.wait_ready(lambda: int(self.eth_call("eth_chainId"), 16) == ANVIL_CHAIN_ID, "Anvil answers eth_chainId")
        info = {"btcd_rpc_url": self.btcd_url, "btcd_rpc_user": BTCD_RPC_USER,
                "btcd_rpc_password_file": str(self.dir / "btcd-rpc-password"), "anvil_url": self.anvil_url,
                "anvil_chain_id": ANVIL_CHAIN_ID, "faucet_address": faucet_address,
                "btcd_block_1": self.btc_call("getblockhash", 1)}
        (self.dir / "chains.json").write_text(json.dumps(info, indent=2))

    def _forget_a_previous_btc_chain(self) -> bool:
        """btcd removes its regtest database at every start, so each `dev up` mines a new
        bitcoin chain. The faucet's state (its UTXOs) belongs to the old chain: dropped. The
        node's own bitcoin state and books are left as they are (a restarted dev chain looks to
        the node like a deep reorg); delete the data dir for a clean slate. True when a previous
        chain was found."""
        previous = self.dir / "chains.json"
        if not previous.exists():
            return False
        if json.loads(previous.read_text()).get("btcd_block_1") == self.btc_call("getblockhash", 1):
            return False
        (self.dir / "faucet.db").unlink(missing_ok=True)
        return True

    def btc_block_hash(self, height: int) -> str | None:
        return self.btc_call("getblockhash", height) if height <= self.btc_call("getblockcount") else None

    def eth_block_hash(self, height: int) -> str | None:
        block = self.eth_call("eth_getBlockByNumber", hex(height), False)
        return block["hash"] if block else None

    def btc_call(self, method: str, *params):
        return _rpc(self.btcd_url, method, params, auth=(BTCD_RPC_USER, self.rpc_password()), version="1.0")

    def eth_call(self, method: str, *params):
        return _rpc(self.anvil_url, method, params)

    def stop(self) -> None:
        for child in (self.anvil, self.btcd):
            if child is not None:
                child.stop()


# ---------------------------------------------------------------- funding (custody dev fund-*)
def _chains_info(data_dir: pathlib.Path) -> dict:
    path = pathlib.Path(data_dir) / "chains" / "chains.json"
    if not path.exists():
        raise DevChainError("dev_chains_not_started", f"no {path}: is `custody dev up` running with this --data-dir?")
    return json.loads(path.read_text())


def fund_btc(data_dir: pathlib.Path, address: str, amount_sats: int, blocks: int) -> dict:
    """The faucet pays `amount_sats` to `address`, then `blocks` blocks are mined on top."""
    if not 0 < amount_sats <= limits.DEV_FUND_BTC_SATS_MAX:
        raise DevChainError("amount_out_of_range", f"amount must be 1..{limits.DEV_FUND_BTC_SATS_MAX} sats")
    if not 0 <= blocks <= limits.DEV_MINE_BLOCKS_MAX:
        raise DevChainError("blocks_out_of_range", f"blocks must be 0..{limits.DEV_MINE_BLOCKS_MAX}")
    info = _chains_info(data_dir)
    password = pathlib.Path(info["btcd_rpc_password_file"]).read_text().strip()
    faucet = Faucet(pathlib.Path(data_dir) / "chains", info["btcd_rpc_url"], password)
    try:
        txid = faucet.pay(address, amount_sats)
    finally:
        faucet.close()
    auth = (info["btcd_rpc_user"], password)
    mined = _rpc(info["btcd_rpc_url"], "generate", [blocks], auth=auth, version="1.0") if blocks else []
    height = _rpc(info["btcd_rpc_url"], "getblockcount", [], auth=auth, version="1.0")
    return {"chain": "bitcoin", "txid": txid, "address": address, "amount": str(amount_sats), "blocks_mined": len(mined),
            "height": height}


def fund_eth(data_dir: pathlib.Path, address: str, amount_wei: int, blocks: int) -> dict:
    """Anvil's first dev account pays `amount_wei` to `address`, then `blocks` blocks are mined."""
    from chains.errors import ChainError
    from chains.ethereum.tx import checksum

    if not 0 < amount_wei <= limits.DEV_FUND_ETH_WEI_MAX:
        raise DevChainError("amount_out_of_range", f"amount must be 1..{limits.DEV_FUND_ETH_WEI_MAX} wei")
    if not 0 <= blocks <= limits.DEV_MINE_BLOCKS_MAX:
        raise DevChainError("blocks_out_of_range", f"blocks must be 0..{limits.DEV_MINE_BLOCKS_MAX}")
    try:
        to = checksum(address)
    except ChainError as exc:
        raise DevChainError("address_invalid", str(exc)) from None
    info = _chains_info(data_dir)
    url = info["anvil_url"]
    payer = _rpc(url, "eth_accounts")[0]
    txid = _rpc(url, "eth_sendTransaction", [{"from": payer, "to": to, "value": hex(amount_wei)}])
    deadline = time.monotonic() + limits.DEV_CHAIN_READY_DEADLINE_S
    while _rpc(url, "eth_getTransactionReceipt", [txid]) is None:
        if time.monotonic() > deadline:
            raise DevChainError("chain_not_ready", f"{txid} not mined within {limits.DEV_CHAIN_READY_DEADLINE_S} s")
        _rpc(url, "anvil_mine", ["0x1"])
    if blocks:
        _rpc(url, "anvil_mine", [hex(blocks)])
    return {"chain": "ethereum", "txid": txid, "address": to, "amount": str(amount_wei), "blocks_mined": blocks,
            "height": int(_rpc(url, "eth_blockNumber"), 16)}


def mine(data_dir: pathlib.Path, chain: str, blocks: int) -> dict:
    if not 0 < blocks <= limits.DEV_MINE_BLOCKS_MAX:
        raise DevChainError("blocks_out_of_range", f"blocks must be 1..{limits.DEV_MINE_BLOCKS_MAX}")
    info = _chains_info(data_dir)
    if chain == "bitcoin":
        auth = (info["btcd_rpc_user"], pathlib.Path(info["btcd_rpc_password_file"]).read_text().strip())
        _rpc(info["btcd_rpc_url"], "generate", [blocks], auth=auth, version="1.0")
        return {"chain": chain, "height": _rpc(info["btcd_rpc_url"], "getblockcount", [], auth=auth, version="1.0")}
    _rpc(info["anvil_url"], "anvil_mine", [hex(blocks)])
    return {"chain": chain, "height": int(_rpc(info["anvil_url"], "eth_blockNumber"), 16)}


# ---------------------------------------------------------------- the node config
def write_node_config(data_dir: pathlib.Path, chains: DevChains, cluster_file: pathlib.Path,
                      confirmations: dict[str, int], *, hot_vault_id: str, host: str, port: int,
                      reserves: dict | None = None) -> pathlib.Path:
    """`<data dir>/node.toml` in the format of api/node_root.py (the node process's config, a
    superset of api/withdrawals_root.py's): the store, the chains' state, the cluster, the dev
    chains' RPC, the vaults and the first policy (`vaults.json`, `policy.toml` in the data dir),
    the API (development: http:// webhook URLs to loopback allowed; its secrets key, made on
    first start), the workers' pace and, with `reserves` (api/reserves_root.py's section),
    proof-of-reserves snapshots."""
    data_dir = pathlib.Path(data_dir)
    secrets_key = dev_secrets_key(data_dir)
    q = json.dumps
    text = "\n".join([
        "# Written by `custody dev up` for the local dev chains; development only.",
        'environment = "production"',
        f"database_url = {q('sqlite:///' + str(data_dir / 'node.db'))}",
        f"chain_state_url = {q('sqlite:///' + str(data_dir / 'chains.db'))}",
        f"cluster_file = {q(str(cluster_file))}",
        f"vaults_file = {q(str(data_dir / 'vaults.json'))}",
        f"policy_file = {q(str(data_dir / 'policy.toml'))}",
        f"hot_vault_id = {q(hot_vault_id)}",
        "",
        "[api]",
        f"host = {q(host)}",
        f"port = {int(port)}",
        'environment = "development"',
        f"secrets_key_file = {q(str(secrets_key))}",
        "webhook_worker = true",
        "webhook_allow_insecure_urls = true",
        "",
        "[workers]",
        "scan_every_s = 1",
        "pipeline_every_s = 0.5",
        *([f"reserves_every_s = {reserves['every_s']}"] if reserves else []),
        "",
        "[confirmations]",
        f"bitcoin = {confirmations['bitcoin']}",
        f"ethereum = {confirmations['ethereum']}",
        "",
        "[bitcoin]",
        'network = "regtest"',
        f"rpc_url = {q(chains.btcd_url)}",
        f"rpc_user = {q(BTCD_RPC_USER)}",
        f"rpc_password_file = {q(str(chains.dir / 'btcd-rpc-password'))}",
        f"deposit_confirmations = {confirmations['bitcoin']}",
        "fee_rate_fallback_sat_vb = 2",
        "start_height = 0",
        "",
        "[ethereum]",
        f"chain_id = {ANVIL_CHAIN_ID}",
        f"rpc_url = {q(chains.anvil_url)}",
        f"deposit_confirmations = {confirmations['ethereum']}",
        "start_height = 0",
        "",
    ])
    if reserves:
        text += "\n".join([
            "[reserves]",
            f"store_dir = {q(reserves['store_dir'])}",
            f"node_id = {q(reserves['node_id'])}",
            f"snapshot_key_file = {q(reserves['snapshot_key_file'])}",
            f"passphrase_file = {q(reserves['passphrase_file'])}",
            f"interval_s = {int(reserves['interval_s'])}",
            'assets = [{ code = "BTC", chain = "bitcoin", decimals = 8 }, { code = "ETH", chain = "ethereum", decimals = 18 }]',
            "",
        ])
    path = data_dir / "node.toml"
    path.write_text(text)
    return path


KEPT_ON_RESET = ("chains_addresses", "chains_counters", "chains_observations", "chains_heads")


def forget_replaced_chains(data_dir: pathlib.Path, chains: DevChains) -> list[str]:
    """A dev chain can be replaced under the node by a new one: btcd mines a new regtest chain
    at every start, and Anvil starts a new chain when its state was not dumped (`dev up` killed
    outright, not stopped) or was deleted. To the node's scanner a replaced chain is a reorg
    deeper than any it follows, refused at every pass for good. So the node's stored view of
    it (blocks, UTXOs, nonces, transactions) is dropped and the new chain rescanned from its
    genesis; its observation log gets "rollback to -1" (every block left). The watched addresses
    and their counters stay (they derive from the keys, valid on any chain). The books are left alone: deposits credited on the old chain meet a
    deep reorg (flagged for staff by node.deposits, the customer never debited silently).

    A chain counts as replaced when the lowest block the node stored (the one above the genesis
    if it has both: every regtest chain has the same genesis) is not the running chain's block
    at that height. Returns the chain ids whose state was dropped."""
    import sqlalchemy as sa

    from chains import state as chain_state

    path = pathlib.Path(data_dir) / "chains.db"
    if not path.exists():
        return []
    engine = chain_state.make_engine(f"sqlite:///{path}")
    b = chain_state.blocks
    dropped = []
    try:
        for chain_id, hash_at in (("bitcoin:regtest", chains.btc_block_hash), (f"ethereum:{ANVIL_CHAIN_ID}", chains.eth_block_hash)):
            with engine.connect() as conn:
                rows = conn.execute(sa.select(b.c.height, b.c.hash).where(b.c.chain_id == chain_id)
                                    .order_by(b.c.height).limit(2)).all()
            if not rows:
                continue
            height, stored = rows[1] if len(rows) == 2 and rows[0].height == 0 else rows[0]
            if (hash_at(height) or "").lower() == stored.lower():
                continue
            with engine.begin() as conn:
                for table in chain_state.metadata.sorted_tables:
                    if table.name in KEPT_ON_RESET or "chain_id" not in table.c:
                        continue
                    conn.execute(sa.delete(table).where(table.c.chain_id == chain_id))
            # The observation log is the node's input (its cursor points into it): it stays, and
            # says that every block left the chain.
            with chain_state.ChainState(engine, chain_id).begin() as st:
                st.observe([], rollback_to=-1)
            node.log.get("api.dev_chains").warning("dev_chain_state_reset", chain=chain_id, height=height,
                                                   note="the dev chain was replaced by a new one; rescanning it")
            dropped.append(chain_id)
    finally:
        engine.dispose()
    return dropped
