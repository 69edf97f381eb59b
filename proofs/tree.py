"""The fast por-mst/1 builder: flat buffers, numpy for the sums, C (proofs.native_build) for
the hashing. Produces exactly the bytes of the reference implementation (`proofs.mst`); the
property tests hold the two together, and every proof drawn from a tree is checked by the
reference verifier before a snapshot is published.

Layout in memory (1,000,000 accounts x 8 assets -> 2^21 leaves, ~0.9 GB at the peak):
- balances and sums are 128-bit integers as two uint64 limbs, shape (n, assets, 2) with
  [..., 0] the high limb and [..., 1] the low limb; additions carry explicitly and any carry
  out of the high limb is `sum_overflow` (the format's range rule);
- each level's hashes are one (n, 32) uint8 array; levels are kept for drawing proofs.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np

from node import limits
from proofs import mst

U64 = np.uint64
LIMB_MASK = (1 << 64) - 1


class SnapshotRefused(Exception):
    """The inputs cannot make a valid snapshot; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- the native hasher -------------------------------------------------------------------

_native = None


def native():
    """The compiled hashing loops (built on first use if missing)."""
    global _native
    if _native is None:
        from proofs import native_build

        try:
            _native = importlib.import_module(f"proofs._native.{native_build.MODULE}")
        except ImportError:
            native_build.build()
            importlib.invalidate_caches()
            _native = importlib.import_module(f"proofs._native.{native_build.MODULE}")
    return _native


def _ptr(ffi, arr: np.ndarray, ctype: str):
    assert arr.flags["C_CONTIGUOUS"]
    return ffi.cast(ctype, ffi.from_buffer(arr))


def sha256_rows(rows: np.ndarray) -> np.ndarray:
    """SHA-256 of each row of a (n, width) uint8 array -> (n, 32)."""
    mod = native()
    n, width = rows.shape
    out = np.empty((n, 32), dtype=np.uint8)
    rc = mod.lib.mst_sha256_rows(_ptr(mod.ffi, rows, "uint8_t *"), n, width, _ptr(mod.ffi, out, "uint8_t *"))
    assert rc == 0
    return out


def hmac_rows(keys: np.ndarray, key_index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """HMAC-SHA256(keys[key_index[i]], rows[i]) -> (n, 32)."""
    mod = native()
    n, width = rows.shape
    key_index = np.ascontiguousarray(key_index, dtype=np.int64)
    assert key_index.shape == (n,) and keys.shape[1] == 32
    out = np.empty((n, 32), dtype=np.uint8)
    rc = mod.lib.mst_hmac_rows(
        _ptr(mod.ffi, keys, "uint8_t *"),
        keys.shape[0],
        _ptr(mod.ffi, key_index, "int64_t *"),
        _ptr(mod.ffi, rows, "uint8_t *"),
        n,
        width,
        _ptr(mod.ffi, out, "uint8_t *"),
    )
    assert rc == 0, "key index out of range"
    return out


def uid_commitments(account_ids: list[str]) -> np.ndarray:
    mod = native()
    encoded = [a.encode("utf-8") for a in account_ids]
    data = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    out = np.empty((len(encoded), 32), dtype=np.uint8)
    prefix = mst.TAG_UID
    rc = mod.lib.mst_sha256_ranges(
        prefix, len(prefix), _ptr(mod.ffi, data, "uint8_t *"), _ptr(mod.ffi, offsets, "int64_t *"),
        len(encoded), _ptr(mod.ffi, out, "uint8_t *"),
    )
    assert rc == 0
    return out


# --- 128-bit limbs -------------------------------------------------------------------------


def limbs_from_ints(rows) -> np.ndarray:
    """[[int, ...], ...] (each 0 <= x < 2^128) -> (n, A, 2) uint64 limbs."""
    rows = list(rows)
    n = len(rows)
    a = len(rows[0]) if n else 0
    flat = [x for row in rows for x in row]
    for x in flat:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < mst.U128_LIMIT:
            raise SnapshotRefused("balance_out_of_range", f"{x!r} is not an int in [0, 2^128)")
    hi = np.fromiter((x >> 64 for x in flat), dtype=U64, count=len(flat))
    lo = np.fromiter((x & LIMB_MASK for x in flat), dtype=U64, count=len(flat))
    return np.stack([hi, lo], axis=-1).reshape(n, a, 2)


def ints_from_limbs(limbs: np.ndarray) -> list:
    """(..., 2) limbs -> nested lists of ints (same leading shape)."""
    hi = limbs[..., 0].tolist()
    lo = limbs[..., 1].tolist()

    def join(h, l):
        if isinstance(h, list):
            return [join(a, b) for a, b in zip(h, l)]
        return (h << 64) | l

    return join(hi, lo)


# --- leaf layout: random splits and a random order --------------------------------------


def _random_u64(count: int) -> np.ndarray:
    return np.frombuffer(os.urandom(8 * count), dtype=U64) if count else np.zeros(0, U64)


def _random_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation from the OS CSPRNG: sort by 64-bit random keys (ties,
    probability < n^2 / 2^65, keep a stable order and so cost no randomness that matters)."""
    return np.argsort(_random_u64(n), kind="stable")


@dataclass
class Layout:
    """The leaves before and after shuffling. Row u of the `u_*` arrays is part u_part[u] of
    account u_account[u] with balances u_balances[u] (rows grouped by account); the leaf at
    tree index i is row perm[i]."""

    depth: int
    perm: np.ndarray  # (L,) int64
    u_account: np.ndarray  # (L,) int64 index into the account list
    u_part: np.ndarray  # (L,) uint32
    u_balances: np.ndarray | None  # (L, A, 2) uint64 limbs; None once a FastTree is built

    @property
    def leaf_account(self) -> np.ndarray:
        return self.u_account[self.perm]

    @property
    def leaf_part(self) -> np.ndarray:
        return self.u_part[self.perm]

    def leaves_of(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, starts): tree leaf indexes grouped by account; account k's are
        order[starts[k]:starts[k+1]]."""
        inverse = np.empty_like(self.perm)
        inverse[self.perm] = np.arange(len(self.perm), dtype=self.perm.dtype)
        order = inverse[np.argsort(self.u_account, kind="stable")]
        n_accounts = int(self.u_account.max()) + 1
        starts = np.zeros(n_accounts + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.u_account, minlength=n_accounts), out=starts[1:])
        return order, starts


def depth_for(n_accounts: int) -> int:
    if not 1 <= n_accounts <= limits.POR_ACCOUNTS_MAX:
        raise SnapshotRefused("account_count_out_of_range", f"{n_accounts} accounts, 1..{limits.POR_ACCOUNTS_MAX}")
    need = limits.POR_PARTS_MIN * n_accounts
    return max(1, (need - 1).bit_length())


def plan_layout(balances: np.ndarray) -> Layout:
    """Splits every account into >= 2 random parts that fill 2^depth leaves exactly, and
    places the leaves in a uniformly random order (CSPRNG). Part j of an account is
    floor(rest * r / 2^64) of what the earlier parts left, for a fresh CSPRNG r; the last
    part is the rest, so the parts are non-negative and add up exactly."""
    n, a, _ = balances.shape
    assert balances.dtype == U64
    depth = depth_for(n)
    n_leaves = 1 << depth
    extra = n_leaves - limits.POR_PARTS_MIN * n
    # Each account gets 2 parts, plus extra // n, plus one more for `extra % n` random accounts.
    parts = np.full(n, limits.POR_PARTS_MIN + extra // n, dtype=np.int64)
    parts[_random_permutation(n)[: extra % n]] += 1
    assert parts.sum() == n_leaves and parts.max() <= limits.POR_PARTS_MAX
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(parts, out=starts[1:])
    u_account = np.repeat(np.arange(n, dtype=np.int64), parts)
    u_part = (np.arange(n_leaves, dtype=np.int64) - starts[u_account]).astype(np.uint32)
    u_balances = np.empty((n_leaves, a, 2), dtype=U64)
    random = _random_u64(int((parts - 1).sum()) * a)
    mod = native()
    rc = mod.lib.mst_split(
        _ptr(mod.ffi, np.ascontiguousarray(balances), "uint64_t *"), n, a, _ptr(mod.ffi, starts, "int64_t *"),
        _ptr(mod.ffi, random, "uint64_t *"), len(random), _ptr(mod.ffi, u_balances, "uint64_t *"),
    )
    assert rc == 0, rc
    return Layout(depth, _random_permutation(n_leaves), u_account, u_part, u_balances)


def layout_from_specs(account_ids: list[str], specs: list[mst.LeafSpec]) -> Layout:
    """An explicit layout (the test vector's): no shuffle, rows in leaf order."""
    position = {a: i for i, a in enumerate(account_ids)}
    specs = sorted(specs, key=lambda s: s.index)
    n = len(specs)
    assert n >= 2 and n & (n - 1) == 0 and [s.index for s in specs] == list(range(n))
    return Layout(
        depth=n.bit_length() - 1,
        perm=np.arange(n, dtype=np.int64),
        u_account=np.array([position[s.account_id] for s in specs], dtype=np.int64),
        u_part=np.array([s.part for s in specs], dtype=np.uint32),
        u_balances=limbs_from_ints([s.balances for s in specs]),
    )


# --- the tree ----------------------------------------------------------------------------


class FastTree:
    """Builds every level of the tree for `layout`; draws user proofs from it."""

    def __init__(self, sid: bytes, assets: list[str], account_ids: list[str], proof_secrets: np.ndarray, layout: Layout):
        assert len(sid) == 16 and proof_secrets.shape == (len(account_ids), 32)
        assert 1 <= len(assets) <= limits.POR_ASSETS_MAX
        self.sid = sid
        self.assets = list(assets)
        self.account_ids = account_ids
        self.layout = layout
        self.depth = layout.depth
        n_accounts = len(account_ids)
        n_assets = len(assets)
        n_leaves = 1 << self.depth
        mod = native()
        ffi = mod.ffi

        # Per account: key = HMAC(secret, tag ‖ sid); uidc = H(tag ‖ account_id).
        key_msg = np.frombuffer(mst.TAG_KEY + sid, dtype=np.uint8)
        self.keys = hmac_rows(
            np.ascontiguousarray(proof_secrets, dtype=np.uint8),
            np.arange(n_accounts, dtype=np.int64),
            np.ascontiguousarray(np.broadcast_to(key_msg, (n_accounts, key_msg.size))),
        )
        uidc = uid_commitments(account_ids)

        # Leaves: HMAC(key, 0x00 ‖ sid ‖ uidc ‖ u32be(j) ‖ u128be(p_j[0]) ‖ ...), in tree order.
        hashes = np.empty((n_leaves, 32), dtype=np.uint8)
        sums = np.empty((n_leaves, n_assets, 2), dtype=U64)
        sid_arr = np.frombuffer(sid, dtype=np.uint8).copy()
        rc = mod.lib.mst_leaves(
            _ptr(ffi, self.keys, "uint8_t *"), n_accounts, _ptr(ffi, uidc, "uint8_t *"), _ptr(ffi, sid_arr, "uint8_t *"),
            _ptr(ffi, np.ascontiguousarray(layout.perm, dtype=np.int64), "int64_t *"),
            _ptr(ffi, np.ascontiguousarray(layout.u_account, dtype=np.int64), "int64_t *"),
            _ptr(ffi, np.ascontiguousarray(layout.u_part, dtype=np.uint32), "uint32_t *"),
            _ptr(ffi, np.ascontiguousarray(layout.u_balances, dtype=U64), "uint64_t *"),
            n_assets, n_leaves, _ptr(ffi, hashes, "uint8_t *"), _ptr(ffi, sums, "uint64_t *"),
        )
        assert rc == 0, rc
        del uidc
        # The tree takes the layout over: its balances now live, in tree order, in sums[0].
        layout.u_balances = None
        self.hashes = [hashes]
        self.sums = [sums]

        # Inner nodes: H(0x01 ‖ L.hash ‖ L.sums ‖ R.hash ‖ R.sums), sums = L.sums + R.sums.
        for _ in range(self.depth):
            m = self.hashes[-1].shape[0] // 2
            up_h = np.empty((m, 32), dtype=np.uint8)
            up_s = np.empty((m, n_assets, 2), dtype=U64)
            rc = mod.lib.mst_level(
                _ptr(ffi, self.hashes[-1], "uint8_t *"), _ptr(ffi, self.sums[-1], "uint64_t *"), n_assets, m,
                _ptr(ffi, up_h, "uint8_t *"), _ptr(ffi, up_s, "uint64_t *"),
            )
            if rc == 1:
                raise SnapshotRefused("sum_overflow", "a total reaches 2^128")
            assert rc == 0, rc
            self.hashes.append(up_h)
            self.sums.append(up_s)
        self._leaves_by_account = None

    @property
    def root_hash(self) -> bytes:
        return self.hashes[-1][0].tobytes()

    @property
    def root_sums(self) -> list[int]:
        return ints_from_limbs(self.sums[-1][0])

    def leaves_of(self, account: int) -> np.ndarray:
        if self._leaves_by_account is None:
            self._leaves_by_account = self.layout.leaves_of()
        order, starts = self._leaves_by_account
        return order[starts[account] : starts[account + 1]]

    def paths(self, leaf_indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sibling hashes (k, depth, 32) and sums (k, depth, A, 2) for k leaves, vectorised."""
        k = len(leaf_indexes)
        hashes = np.empty((k, self.depth, 32), dtype=np.uint8)
        sums = np.empty((k, self.depth, len(self.assets), 2), dtype=U64)
        for level in range(self.depth):
            sib = (leaf_indexes >> level) ^ 1
            hashes[:, level] = self.hashes[level][sib]
            sums[:, level] = self.sums[level][sib]
        return hashes, sums

    def proof(self, account: int) -> dict:
        """The user proof (design/por-format.md) of the account at position `account`."""
        leaves = np.sort(self.leaves_of(account))
        sib_hashes, sib_sums = self.paths(leaves)
        sib_sums = ints_from_limbs(sib_sums)
        balances = ints_from_limbs(self.sums[0][leaves])
        parts = self.layout.u_part[self.layout.perm[leaves]].tolist()
        total = [sum(col) for col in zip(*balances)]
        out_leaves = []
        for n, index in enumerate(leaves.tolist()):
            out_leaves.append(
                {
                    "index": index,
                    "part": parts[n],
                    "balances": [str(x) for x in balances[n]],
                    "path": [
                        {"hash": sib_hashes[n, level].tobytes().hex(), "sums": [str(x) for x in sib_sums[n][level]]}
                        for level in range(self.depth)
                    ],
                }
            )
        return {
            "format": mst.FORMAT,
            "snapshot_id": self.sid.hex(),
            "assets": list(self.assets),
            "depth": self.depth,
            "root": {"hash": self.root_hash.hex(), "sums": [str(x) for x in self.root_sums]},
            "account_id": self.account_ids[account],
            "account_balances": [str(x) for x in total],
            "key": self.keys[account].tobytes().hex(),
            "leaves": out_leaves,
        }


def secrets_array(secrets: list[bytes]) -> np.ndarray:
    assert all(len(s) == 32 for s in secrets)
    return np.frombuffer(b"".join(secrets), dtype=np.uint8).reshape(len(secrets), 32).copy()

