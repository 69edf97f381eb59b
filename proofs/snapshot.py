"""Reserves snapshots: freeze liabilities, build the tree, sign the reserves message for every
funded address, sign the header chained to the previous one, and keep the history.

    store = SnapshotStore(path)
    published = take_snapshot(liabilities, reserves_balances, signer, store, snapshot_key)
    store.proof(published.snapshot_id, "acct-alice")  # a user's proof, drawn on demand

Check twice at the boundary (STYLE): before anything is stored the root's sums are compared
with the frozen balances added up in Python ints, proofs drawn from the tree are verified by
the reference verifier, and every reserves signature is verified against its address.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import fcntl
import json
import os
import pathlib
import secrets as pysecrets
import shutil
import sqlite3
import threading
from dataclasses import dataclass

import numpy as np

from node import limits, log
from node.ports import FrozenLiabilities, LiabilitiesSource, ReservesBalances, ReservesSigner
from proofs import assets as ast
from proofs import header as hdr
from proofs import mst, tree

_log = log.get("proofs")
PROOFS_VERIFIED_BEFORE_PUBLISHING = 64


@dataclass(frozen=True)
class Published:
    seq: int
    snapshot_id: str
    signed_header: dict
    assets_doc: dict


def _rfc3339(now: dt.datetime) -> str:
    assert now.tzinfo is not None, "snapshot times are aware datetimes"
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _locked(method):
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class SnapshotStore:
    """The snapshot history (SQLite, one row per snapshot, in order) and each snapshot's tree
    (a directory of .npy arrays, memory-mapped when a proof is drawn). Also keeps each
    account's long-lived proof secret."""

    def __init__(self, path: str | os.PathLike):
        self._trees: dict[str, tree.FastTree] = {}  # the latest loaded tree(s), for serving proofs
        self.path = pathlib.Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # One connection shared by the API's worker threads, every use under the lock.
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path / "snapshots.sqlite3", isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS snapshots (
                seq INTEGER PRIMARY KEY,
                snapshot_id TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                header_hash TEXT NOT NULL UNIQUE,
                signed_header TEXT NOT NULL,
                assets_doc TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS proof_secrets (
                account_id TEXT PRIMARY KEY,
                secret BLOB NOT NULL CHECK (length(secret) = 32)
            );
            """
        )

    @_locked
    def close(self):
        self.db.close()

    # --- proof secrets -------------------------------------------------------------------
    @_locked
    def proof_secrets(self, account_ids: list[str]) -> np.ndarray:
        """(n, 32) secrets for the accounts, creating (and durably storing) missing ones."""
        have = {}
        for start in range(0, len(account_ids), 900):
            chunk = account_ids[start : start + 900]
            q = "SELECT account_id, secret FROM proof_secrets WHERE account_id IN (%s)" % ",".join("?" * len(chunk))
            have.update(self.db.execute(q, chunk).fetchall())
        missing = [a for a in account_ids if a not in have]
        if missing:
            new = {a: pysecrets.token_bytes(32) for a in missing}
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR IGNORE INTO proof_secrets VALUES (?, ?)", list(new.items()))
            # Re-read: a concurrent writer may have won for some account.
            for start in range(0, len(missing), 900):
                chunk = missing[start : start + 900]
                q = "SELECT account_id, secret FROM proof_secrets WHERE account_id IN (%s)" % ",".join("?" * len(chunk))
                have.update(self.db.execute(q, chunk).fetchall())
        return tree.secrets_array([bytes(have[a]) for a in account_ids])

    # --- history -------------------------------------------------------------------------
    @_locked
    def latest(self) -> Published | None:
        row = self.db.execute(
            "SELECT seq, snapshot_id, signed_header, assets_doc FROM snapshots ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return self._published(row)

    @_locked
    def get(self, snapshot_id: str) -> Published | None:
        row = self.db.execute(
            "SELECT seq, snapshot_id, signed_header, assets_doc FROM snapshots WHERE snapshot_id = ?", (snapshot_id,)
        ).fetchone()
        return self._published(row)

    @_locked
    def history(self, limit: int = 100, before_seq: int | None = None) -> list[Published]:
        if not 1 <= limit <= limits.POR_SNAPSHOTS_LISTED_MAX:
            raise ValueError(f"limit must be in 1..{limits.POR_SNAPSHOTS_LISTED_MAX}")
        rows = self.db.execute(
            "SELECT seq, snapshot_id, signed_header, assets_doc FROM snapshots WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            (before_seq if before_seq is not None else 1 << 62, limit),
        ).fetchall()
        return [self._published(r) for r in rows]

    @staticmethod
    def _published(row) -> Published | None:
        if row is None:
            return None
        return Published(row[0], row[1], json.loads(row[2]), json.loads(row[3]))

    @contextlib.contextmanager
    def taking(self):
        """Held while a snapshot is taken: one taker at a time per store, across processes
        (an advisory lock on a file in the store). Raises SnapshotRefused when another holds it."""
        with open(self.path / "taking.lock", "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise tree.SnapshotRefused("snapshot_in_progress", "another process is taking a snapshot") from None
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _tree_dir(self, snapshot_id: str) -> pathlib.Path:
        mst.parse_hex(snapshot_id, 16, "snapshot_id")
        return self.path / "trees" / snapshot_id

    @_locked
    def append(self, t: tree.FastTree, signed_header: dict, assets_doc: dict) -> Published:
        """Writes the tree, then the history row (the row is what makes a snapshot exist)."""
        header = signed_header["header"]
        latest = self.latest()
        expected_prev = hdr.header_hash(latest.signed_header["header"]) if latest else None
        assert header["prev"] == expected_prev, "a snapshot chains to the latest one"
        sid = header["snapshot_id"]
        final = self._tree_dir(sid)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {
            "perm": t.layout.perm, "u_account": t.layout.u_account, "u_part": t.layout.u_part, "keys": t.keys,
        }
        for level in range(t.depth + 1):
            arrays[f"hashes_{level}"] = t.hashes[level]
            arrays[f"sums_{level}"] = t.sums[level]
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
        (tmp / "meta.json").write_text(json.dumps({"assets": t.assets, "depth": t.depth, "account_ids": t.account_ids}))
        tmp.rename(final)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "INSERT INTO snapshots (snapshot_id, created_at, header_hash, signed_header, assets_doc) VALUES (?,?,?,?,?)",
                (sid, header["created_at"], hdr.header_hash(header), json.dumps(signed_header), json.dumps(assets_doc)),
            )
        return Published(cur.lastrowid, sid, signed_header, assets_doc)

    @_locked
    def load_tree(self, snapshot_id: str) -> tree.FastTree:
        """The stored tree, memory-mapped; the last POR_TREES_CACHED stay loaded."""
        cached = self._trees.get(snapshot_id)
        if cached is not None:
            return cached
        t = self._load_tree(snapshot_id)
        while len(self._trees) >= limits.POR_TREES_CACHED:
            self._trees.pop(next(iter(self._trees)))
        self._trees[snapshot_id] = t
        return t

    def _load_tree(self, snapshot_id: str) -> tree.FastTree:
        d = self._tree_dir(snapshot_id)
        meta = json.loads((d / "meta.json").read_text())
        t = tree.FastTree.__new__(tree.FastTree)
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r")  # noqa: E731
        t.sid = bytes.fromhex(snapshot_id)
        t.assets = meta["assets"]
        t.depth = meta["depth"]
        t.account_ids = meta["account_ids"]
        t.keys = load("keys")
        t.layout = tree.Layout(t.depth, np.asarray(load("perm")), np.asarray(load("u_account")), np.asarray(load("u_part")), None)
        t.hashes = [load(f"hashes_{level}") for level in range(t.depth + 1)]
        t.sums = [load(f"sums_{level}") for level in range(t.depth + 1)]
        t._leaves_by_account = None
        return t

    @_locked
    def proof(self, snapshot_id: str, account_id: str) -> dict | None:
        """The account's user proof for a stored snapshot, or None if it was not in it."""
        if self.get(snapshot_id) is None:
            return None
        t = self.load_tree(snapshot_id)
        position = bisect.bisect_left(t.account_ids, account_id)  # stored sorted
        if position == len(t.account_ids) or t.account_ids[position] != account_id:
            return None
        return t.proof(position)


def _clamp(frozen: FrozenLiabilities) -> tuple[list[str], list[list[int]], int]:
    n_assets = len(frozen.assets)
    ids = sorted(frozen.balances)
    rows, clamped = [], 0
    for a in ids:
        row = list(frozen.balances[a])
        if len(row) != n_assets or not all(isinstance(x, int) and not isinstance(x, bool) for x in row):
            raise tree.SnapshotRefused("balance_malformed", f"{a}: {len(row)} values for {n_assets} assets, ints only")
        for i, x in enumerate(row):
            if x < 0:
                clamped += 1
                row[i] = 0
        rows.append(row)
    return ids, rows, clamped


def take_snapshot(
    liabilities: LiabilitiesSource,
    reserves: ReservesBalances,
    signer: ReservesSigner,
    store: SnapshotStore,
    snapshot_key,
    now: dt.datetime | None = None,
) -> Published:
    """Takes, checks, signs and stores one snapshot. Raises SnapshotRefused (nothing stored)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    frozen = liabilities.freeze()
    if not 1 <= len(frozen.assets) <= limits.POR_ASSETS_MAX:
        raise tree.SnapshotRefused("asset_count_out_of_range", f"{len(frozen.assets)} assets")
    ids, rows, clamped = _clamp(frozen)
    sid = pysecrets.token_bytes(16)
    codes = [a.code for a in frozen.assets]
    t = tree.FastTree(sid, codes, ids, store.proof_secrets(ids), tree.plan_layout(tree.limbs_from_ints(rows)))

    # Check twice: the root against plain integer sums, and proofs drawn from the tree.
    totals = [sum(col) for col in zip(*rows)]
    assert t.root_sums == totals, "the tree's root does not add up to the frozen liabilities"
    sample = range(len(ids)) if len(ids) <= PROOFS_VERIFIED_BEFORE_PUBLISHING else [
        pysecrets.randbelow(len(ids)) for _ in range(PROOFS_VERIFIED_BEFORE_PUBLISHING)
    ]
    for k in sample:
        proof = t.proof(k)
        for encoded in (proof, mst.to_compact(proof)):  # the API serves either encoding
            verified = mst.verify_user_proof(json.loads(json.dumps(encoded)))
            assert list(verified.account_balances) == rows[k] and verified.root_hash == t.root_hash.hex()

    # Proof of assets: every funded address signs the reserves message; each checked here.
    root_hex = t.root_hash.hex()
    networks = {c.chain: c.network for c in frozen.chains}
    asset_chain = {a.code: a.chain for a in frozen.assets}
    funded = []
    for addr in sorted(reserves.funded_addresses(frozen.chains), key=lambda x: (x.chain, x.asset, x.address)):
        if addr.balance <= 0:
            continue
        if asset_chain.get(addr.asset) != addr.chain or addr.chain not in networks:
            raise tree.SnapshotRefused("reserves_asset_unknown", f"{addr.asset} on {addr.chain} is not in the snapshot")
        funded.append(addr)
    if len(funded) > limits.POR_ADDRESSES_MAX:
        raise tree.SnapshotRefused("too_many_funded_addresses", f"{len(funded)} > {limits.POR_ADDRESSES_MAX}")
    signatures = _sign_reserves(signer, funded, networks, sid.hex(), root_hex)
    entries = [
        {"chain": a.chain, "asset": a.asset, "address": a.address, "balance": str(a.balance), "signature": signatures[k]}
        for k, a in enumerate(funded)
    ]
    reserves_rows = []
    for code in codes:
        mine = [e for e in entries if e["asset"] == code]
        reserves_rows.append({"asset": code, "amount": str(sum(int(e["balance"]) for e in mine)), "addresses": len(mine)})

    latest = store.latest()
    header = {
        "format": mst.FORMAT,
        "snapshot_id": sid.hex(),
        "created_at": _rfc3339(now),
        "assets": [{"code": a.code, "chain": a.chain, "decimals": a.decimals} for a in frozen.assets],
        "chains": [
            {"chain": c.chain, "network": c.network, "height": c.height, "block_hash": c.block_hash} for c in frozen.chains
        ],
        "depth": t.depth,
        "root": {"hash": root_hex, "sums": [str(x) for x in t.root_sums]},
        "reserves": reserves_rows,
        "negative_balances_clamped": clamped,
        "prev": hdr.header_hash(latest.signed_header["header"]) if latest else None,
    }
    signed = hdr.sign_header(header, snapshot_key)
    assets_doc = {
        "format": ast.ASSETS_FORMAT,
        "snapshot_id": sid.hex(),
        "message": ast.reserves_message(sid.hex(), root_hex),
        "addresses": entries,
    }
    ast.verify_assets_file(assets_doc, header)  # the published file verifies, or nothing is published
    published = store.append(t, signed, assets_doc)
    _log.info("snapshot_published", snapshot=sid.hex(), seq=published.seq, accounts=len(ids), depth=t.depth,
              addresses=len(entries), clamped=clamped)
    return published


def _sign_reserves(signer: ReservesSigner, funded: list, networks: dict, sid_hex: str, root_hex: str) -> list[str]:
    """The encoded reserves signature of every funded address, each verified against its
    address before use. A signer with `sign_reserves_many` (the cluster) gets one request per
    (chain, vault) batch of distinct keys (an address holding ETH and a token signs once);
    a signature that does not verify is asked for again alone, up to POR_SIGN_ATTEMPTS_MAX."""
    by_key: dict[tuple, list[int]] = {}
    for k, a in enumerate(funded):
        by_key.setdefault((a.chain, a.vault_id, tuple(a.path), a.address), []).append(k)
    keys = list(by_key)
    got: dict[tuple, str] = {}
    many = getattr(signer, "sign_reserves_many", None)
    if many is not None:
        groups: dict[tuple, list[tuple]] = {}
        for key in keys:
            groups.setdefault(key[:2], []).append(key)
        for (chain, vault_id), members in groups.items():
            for start in range(0, len(members), limits.POR_RESERVES_PATHS_PER_REQUEST_MAX):
                batch = members[start : start + limits.POR_RESERVES_PATHS_PER_REQUEST_MAX]
                sigs = many(chain, vault_id, [key[2] for key in batch], sid_hex, root_hex)
                assert len(sigs) == len(batch), "one signature per path"
                for key, sig in zip(batch, sigs):
                    encoded = ast.encode_signature(chain, sig.r, sig.s, sig.recovery_id)
                    try:
                        ast.verify_address_signature(chain, networks[chain], key[3], sid_hex, root_hex, encoded)
                        got[key] = encoded
                    except ast.AssetsInvalid as exc:
                        _log.warning("reserves_signature_rejected", address=key[3], attempt="batch", reason=exc.reason)
    for key in keys:
        if key in got:
            continue
        chain, vault_id, path, address = key
        for attempt in range(1, limits.POR_SIGN_ATTEMPTS_MAX + 1):
            sig = signer.sign_reserves(chain, vault_id, path, sid_hex, root_hex)
            encoded = ast.encode_signature(chain, sig.r, sig.s, sig.recovery_id)
            try:
                ast.verify_address_signature(chain, networks[chain], address, sid_hex, root_hex, encoded)
                got[key] = encoded
                break
            except ast.AssetsInvalid as exc:
                _log.warning("reserves_signature_rejected", address=address, attempt=attempt, reason=exc.reason)
                if attempt == limits.POR_SIGN_ATTEMPTS_MAX:
                    raise tree.SnapshotRefused("reserves_signature_invalid", f"{address}: {exc}") from None
    out = [""] * len(funded)
    for key, ks in by_key.items():
        for k in ks:
            out[k] = got[key]
    return out


def snapshot_due(store: SnapshotStore, now: dt.datetime, interval_s: int) -> bool:
    """True when no snapshot exists or the latest is at least `interval_s` old."""
    assert interval_s >= limits.POR_SNAPSHOT_INTERVAL_S_MIN
    latest = store.latest()
    if latest is None:
        return True
    created = dt.datetime.strptime(latest.signed_header["header"]["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    return now - created.replace(tzinfo=dt.timezone.utc) >= dt.timedelta(seconds=interval_s)


def run_scheduled(liabilities, reserves, signer, store, snapshot_key, now: dt.datetime, interval_s: int) -> Published | None:
    """What the node's worker loop calls on each tick (under its leadership lock): takes a
    snapshot when one is due, else does nothing."""
    if not snapshot_due(store, now, interval_s):
        return None
    return take_snapshot(liabilities, reserves, signer, store, snapshot_key, now)
