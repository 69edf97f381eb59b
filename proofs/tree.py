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


def add_limbs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b element-wise on 128-bit limbs; raises sum_overflow when any sum reaches 2^128."""
    lo = a[..., 1] + b[..., 1]
    carry = (lo < a[..., 1]).astype(U64)
    hi = a[..., 0] + b[..., 0]
    over = hi < a[..., 0]
    hi2 = hi + carry
    over |= hi2 < hi
    if over.any():
        raise SnapshotRefused("sum_overflow", "a total reaches 2^128")
    return np.stack([hi2, lo], axis=-1)


def sub_limbs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b, asserting b <= a element-wise (a programmer error otherwise)."""
    lo = a[..., 1] - b[..., 1]
    borrow = (a[..., 1] < b[..., 1]).astype(U64)
    hi = a[..., 0] - b[..., 0] - borrow
    assert not ((a[..., 0] < b[..., 0]) | ((a[..., 0] == b[..., 0]) & (borrow == 1))).any(), "negative part"
    return np.stack([hi, lo], axis=-1)


def be_bytes(limbs: np.ndarray) -> np.ndarray:
    """(n, A, 2) limbs -> (n, 16*A) uint8: u128be(x0) ‖ ... ‖ u128be(x_{A-1}) per row."""
    n = limbs.shape[0]
    return limbs.astype(">u8").view(np.uint8).reshape(n, -1)


# --- leaf layout: random splits and a random order --------------------------------------


def _random_u32(count: int) -> np.ndarray:
    return np.frombuffer(os.urandom(4 * count), dtype=np.uint32).astype(U64) if count else np.zeros(0, U64)


def _random_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation from the OS CSPRNG: sort by 64-bit random keys (ties,
    probability < n^2 / 2^65, keep a stable order and so cost no randomness that matters)."""
    keys = np.frombuffer(os.urandom(8 * n), dtype=U64)
    return np.argsort(keys, kind="stable")


def _split_once(remaining: np.ndarray) -> np.ndarray:
    """A random part p with 0 <= p <= remaining, element-wise (remaining: (n, A, 2) limbs).

    Below 2^64: p = floor(x * r / 2^32) for a CSPRNG r < 2^32, in 32-bit pieces so numpy's
    uint64 never overflows. From 2^64 up (wei above ~18.4 ETH): Python ints, secrets-grade."""
    n, a, _ = remaining.shape
    hi = remaining[..., 0]
    lo = remaining[..., 1]
    r = _random_u32(n * a).reshape(n, a)
    part_lo = (lo >> U64(32)) * r + (((lo & U64(0xFFFFFFFF)) * r) >> U64(32))
    part = np.stack([np.zeros_like(part_lo), part_lo], axis=-1)
    big = np.nonzero(hi)
    if len(big[0]):
        import secrets

        for i, j in zip(*big):
            x = (int(hi[i, j]) << 64) | int(lo[i, j])
            p = secrets.randbelow(x + 1)
            part[i, j, 0] = p >> 64
            part[i, j, 1] = p & LIMB_MASK
    return part


@dataclass
class Layout:
    """Which account and part each leaf is, and its balances: leaf i is
    (leaf_account[i], leaf_part[i], leaf_balances[i])."""

    depth: int
    leaf_account: np.ndarray  # (L,) int64 index into the account list
    leaf_part: np.ndarray  # (L,) uint32
    leaf_balances: np.ndarray  # (L, A, 2) uint64 limbs

    def leaves_of(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, starts): leaf indexes grouped by account; account k's are
        order[starts[k]:starts[k+1]]."""
        order = np.argsort(self.leaf_account, kind="stable")
        n_accounts = int(self.leaf_account.max()) + 1 if len(self.leaf_account) else 0
        counts = np.bincount(self.leaf_account, minlength=n_accounts)
        starts = np.zeros(n_accounts + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return order, starts


def depth_for(n_accounts: int) -> int:
    if not 1 <= n_accounts <= limits.POR_ACCOUNTS_MAX:
        raise SnapshotRefused("account_count_out_of_range", f"{n_accounts} accounts, 1..{limits.POR_ACCOUNTS_MAX}")
    need = limits.POR_PARTS_MIN * n_accounts
    return max(1, (need - 1).bit_length())


def plan_layout(balances: np.ndarray) -> Layout:
    """Splits every account into >= 2 random parts that fill 2^depth leaves exactly, and
    places the leaves in a uniformly random order (CSPRNG)."""
    n, a, _ = balances.shape
    depth = depth_for(n)
    n_leaves = 1 << depth
    extra = n_leaves - limits.POR_PARTS_MIN * n
    # Each account gets 2 parts, plus extra // n, plus one more for `extra % n` random accounts.
    parts = np.full(n, limits.POR_PARTS_MIN + extra // n, dtype=np.int64)
    parts[_random_permutation(n)[: extra % n]] += 1
    assert parts.sum() == n_leaves and parts.max() <= limits.POR_PARTS_MAX
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(parts, out=starts[1:])
    account_of = np.repeat(np.arange(n, dtype=np.int64), parts)
    part_of = (np.arange(n_leaves, dtype=np.int64) - starts[account_of]).astype(np.uint32)
    split = np.empty((n_leaves, a, 2), dtype=U64)
    remaining = balances.copy()
    for k in range(int(parts.max()) - 1):
        more = np.nonzero(parts > k + 1)[0]  # accounts that still split off part k
        p = _split_once(remaining[more])
        split[starts[more] + k] = p
        remaining[more] = sub_limbs(remaining[more], p)
    split[starts[1:] - 1] = remaining  # the last part is what is left
    perm = _random_permutation(n_leaves)
    return Layout(depth, account_of[perm], part_of[perm], np.ascontiguousarray(split[perm]))


def layout_from_specs(account_ids: list[str], specs: list[mst.LeafSpec]) -> Layout:
    """An explicit layout (the test vector's)."""
    position = {a: i for i, a in enumerate(account_ids)}
    specs = sorted(specs, key=lambda s: s.index)
    n = len(specs)
    assert n >= 2 and n & (n - 1) == 0 and [s.index for s in specs] == list(range(n))
    return Layout(
        depth=n.bit_length() - 1,
        leaf_account=np.array([position[s.account_id] for s in specs], dtype=np.int64),
        leaf_part=np.array([s.part for s in specs], dtype=np.uint32),
        leaf_balances=limbs_from_ints([s.balances for s in specs]),
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
        chunk = limits.POR_BUILD_CHUNK_NODES

        # Per account: key = HMAC(secret, tag ‖ sid); uidc = H(tag ‖ account_id).
        key_msg = np.frombuffer(mst.TAG_KEY + sid, dtype=np.uint8)
        self.keys = hmac_rows(
            np.ascontiguousarray(proof_secrets, dtype=np.uint8),
            np.arange(n_accounts, dtype=np.int64),
            np.ascontiguousarray(np.broadcast_to(key_msg, (n_accounts, key_msg.size))),
        )
        uidc = uid_commitments(account_ids)

        # Leaves: HMAC(key, 0x00 ‖ sid ‖ uidc ‖ u32be(j) ‖ u128be(p_j[0]) ‖ ...), in chunks.
        n_leaves = 1 << self.depth
        width = 1 + 16 + 32 + 4 + 16 * n_assets
        leaf_hashes = np.empty((n_leaves, 32), dtype=np.uint8)
        for start in range(0, n_leaves, chunk):
            stop = min(n_leaves, start + chunk)
            acct = layout.leaf_account[start:stop]
            rows = np.empty((stop - start, width), dtype=np.uint8)
            rows[:, 0] = 0
            rows[:, 1:17] = np.frombuffer(sid, dtype=np.uint8)
            rows[:, 17:49] = uidc[acct]
            rows[:, 49:53] = layout.leaf_part[start:stop].astype(">u4").view(np.uint8).reshape(-1, 4)
            rows[:, 53:] = be_bytes(layout.leaf_balances[start:stop])
            leaf_hashes[start:stop] = hmac_rows(self.keys, acct, rows)
        del uidc
        self.hashes = [leaf_hashes]
        self.sums = [layout.leaf_balances]

        # Inner nodes: H(0x01 ‖ L.hash ‖ L.sums ‖ R.hash ‖ R.sums), sums added with carries.
        side = 32 + 16 * n_assets
        for _ in range(self.depth):
            below_h, below_s = self.hashes[-1], self.sums[-1]
            m = below_h.shape[0] // 2
            sums = add_limbs(below_s[0::2], below_s[1::2])
            hashes = np.empty((m, 32), dtype=np.uint8)
            for start in range(0, m, chunk):
                stop = min(m, start + chunk)
                left, right = slice(2 * start, 2 * stop, 2), slice(2 * start + 1, 2 * stop, 2)
                rows = np.empty((stop - start, 1 + 2 * side), dtype=np.uint8)
                rows[:, 0] = 1
                rows[:, 1:33] = below_h[left]
                rows[:, 33 : 1 + side] = be_bytes(below_s[left])
                rows[:, 1 + side : 33 + side] = below_h[right]
                rows[:, 33 + side :] = be_bytes(below_s[right])
                hashes[start:stop] = sha256_rows(rows)
            self.hashes.append(hashes)
            self.sums.append(sums)
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
        balances = ints_from_limbs(self.layout.leaf_balances[leaves])
        total = [sum(col) for col in zip(*balances)]
        out_leaves = []
        for n, index in enumerate(leaves.tolist()):
            out_leaves.append(
                {
                    "index": index,
                    "part": int(self.layout.leaf_part[index]),
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

