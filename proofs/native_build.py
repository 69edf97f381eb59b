"""Builds `proofs._native._mstfast`: the fast builder's hashing loops in C over OpenSSL's SHA-256.

Why C: the tree for 1,000,000 accounts has 2^21 leaves (each an HMAC) and 2^21 inner nodes;
driven from Python, hashlib costs ~2 µs per HMAC and ~0.6 µs per node in call overhead alone,
which puts the build above its 8 s goal. Here one call hashes a whole level. The bytes hashed
are laid out by numpy in `proofs.tree` and are exactly the format's (design/por-format.md);
the property tests check this output against the reference implementation (`proofs.mst`).

Built with cffi in API mode against libcrypto (OpenSSL's SHA-256 uses the CPU's SHA
extensions). Run `python -m proofs.native_build`; `proofs.tree` also runs it on first use when
the library is missing or older than this file. Needs a C compiler and OpenSSL's headers
(Debian: gcc, libssl-dev). The output lands in proofs/_native/ and is never committed.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT_DIR = HERE / "_native"

CDEF = """
int mst_sha256_rows(const uint8_t *rows, size_t n, size_t width, uint8_t *out);
int mst_sha256_ranges(const uint8_t *prefix, size_t prefix_len, const uint8_t *data,
                      const int64_t *offsets, size_t n, uint8_t *out);
int mst_hmac_rows(const uint8_t *keys, size_t n_keys, const int64_t *key_index,
                  const uint8_t *rows, size_t n, size_t width, uint8_t *out);
int mst_split(const uint64_t *balances, size_t n, size_t n_assets, const int64_t *starts,
              const uint64_t *random, size_t n_random, uint64_t *out);
int mst_leaves(const uint8_t *keys, size_t n_keys, const uint8_t *uidc, const uint8_t *sid,
               const int64_t *perm, const int64_t *account_of, const uint32_t *part_of,
               const uint64_t *split, size_t n_assets, size_t n_leaves,
               uint8_t *out_hashes, uint64_t *out_sums);
int mst_level(const uint8_t *hashes, const uint64_t *sums, size_t n_assets, size_t m,
              uint8_t *out_hashes, uint64_t *out_sums);
"""

SOURCE = r"""
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

/* SHA-256 through the low-level API: OpenSSL 3's one-shot SHA256() fetches the algorithm on
   every call, which costs more than hashing a node. */
static void sha256_once(const uint8_t *data, size_t len, uint8_t *out) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

/* out[i] = SHA-256(rows[i]) for n rows of `width` bytes. */
int mst_sha256_rows(const uint8_t *rows, size_t n, size_t width, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        sha256_once(rows + i * width, width, out + 32 * i);
    }
    return 0;
}

/* out[i] = SHA-256(prefix || data[offsets[i] .. offsets[i+1])). */
int mst_sha256_ranges(const uint8_t *prefix, size_t prefix_len, const uint8_t *data,
                      const int64_t *offsets, size_t n, uint8_t *out) {
    SHA256_CTX base, c;
    SHA256_Init(&base);
    SHA256_Update(&base, prefix, prefix_len);
    for (size_t i = 0; i < n; i++) {
        if (offsets[i + 1] < offsets[i]) return -1;
        c = base;
        SHA256_Update(&c, data + offsets[i], (size_t)(offsets[i + 1] - offsets[i]));
        SHA256_Final(out + 32 * i, &c);
    }
    return 0;
}

/* out[i] = HMAC-SHA256(keys[key_index[i]] (32 bytes), rows[i] (`width` bytes)), RFC 2104. */
int mst_hmac_rows(const uint8_t *keys, size_t n_keys, const int64_t *key_index,
                  const uint8_t *rows, size_t n, size_t width, uint8_t *out) {
    uint8_t ipad[64], opad[64], inner[32];
    SHA256_CTX c;
    for (size_t i = 0; i < n; i++) {
        int64_t k = key_index[i];
        if (k < 0 || (size_t)k >= n_keys) return -1;
        const uint8_t *key = keys + 32 * (size_t)k;
        for (int j = 0; j < 32; j++) { ipad[j] = key[j] ^ 0x36; opad[j] = key[j] ^ 0x5c; }
        memset(ipad + 32, 0x36, 32);
        memset(opad + 32, 0x5c, 32);
        SHA256_Init(&c);
        SHA256_Update(&c, ipad, 64);
        SHA256_Update(&c, rows + i * width, width);
        SHA256_Final(inner, &c);
        SHA256_Init(&c);
        SHA256_Update(&c, opad, 64);
        SHA256_Update(&c, inner, 32);
        SHA256_Final(out + 32 * i, &c);
    }
    return 0;
}

#define MST_ASSETS_MAX 64

static void put_u64be(uint8_t *p, uint64_t x) {
    x = __builtin_bswap64(x);  /* little-endian hosts; the assert in build() checks the byte order */
    memcpy(p, &x, 8);
}


/* u128be of each of n_assets (hi, lo) limb pairs. */
static void put_sums(uint8_t *p, const uint64_t *limbs, size_t n_assets) {
    for (size_t a = 0; a < n_assets; a++) {
        put_u64be(p + 16 * a, limbs[2 * a]);
        put_u64be(p + 16 * a + 8, limbs[2 * a + 1]);
    }
}

/* Splits account k's balance vector into starts[k+1]-starts[k] parts written at out[starts[k]..]:
   part j = floor(remaining * r / 2^64) for a fresh random 64-bit r, the last part the rest.
   Every part is in [0, remaining], so the parts are non-negative and add up exactly. */
int mst_split(const uint64_t *balances, size_t n, size_t n_assets, const int64_t *starts,
              const uint64_t *random, size_t n_random, uint64_t *out) {
    size_t used = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t s = starts[k + 1] - starts[k];
        if (s < 2) return -1;
        for (size_t a = 0; a < n_assets; a++) {
            const uint64_t *b = balances + 2 * (k * n_assets + a);
            unsigned __int128 rem = ((unsigned __int128)b[0] << 64) | b[1];
            for (int64_t j = 0; j < s; j++) {
                unsigned __int128 p;
                if (j == s - 1) {
                    p = rem;
                } else {
                    if (used >= n_random) return -2;
                    uint64_t r = random[used++];
                    uint64_t hi = (uint64_t)(rem >> 64), lo = (uint64_t)rem;
                    p = (unsigned __int128)hi * r + (((unsigned __int128)lo * r) >> 64);
                }
                rem -= p;
                uint64_t *o = out + 2 * ((size_t)(starts[k] + j) * n_assets + a);
                o[0] = (uint64_t)(p >> 64);
                o[1] = (uint64_t)p;
            }
        }
    }
    return used == n_random ? 0 : -3;
}

/* Leaf i is split-row u = perm[i]: hash = HMAC(keys[account_of[u]], 0x00 || sid || uidc ||
   u32be(part_of[u]) || u128be(...)), sums = split[u]. */
int mst_leaves(const uint8_t *keys, size_t n_keys, const uint8_t *uidc, const uint8_t *sid,
               const int64_t *perm, const int64_t *account_of, const uint32_t *part_of,
               const uint64_t *split, size_t n_assets, size_t n_leaves,
               uint8_t *out_hashes, uint64_t *out_sums) {
    if (n_assets == 0 || n_assets > MST_ASSETS_MAX) return -1;
    uint8_t msg[53 + 16 * MST_ASSETS_MAX], ipad[64], opad[64], inner[32];
    size_t width = 53 + 16 * n_assets;
    SHA256_CTX c;
    msg[0] = 0x00;
    memcpy(msg + 1, sid, 16);
    for (size_t i = 0; i < n_leaves; i++) {
        int64_t u = perm[i];
        if (u < 0 || (size_t)u >= n_leaves) return -2;
        int64_t acct = account_of[u];
        if (acct < 0 || (size_t)acct >= n_keys) return -3;
        const uint64_t *limbs = split + 2 * n_assets * (size_t)u;
        memcpy(msg + 17, uidc + 32 * (size_t)acct, 32);
        uint32_t part = part_of[u];
        msg[49] = (uint8_t)(part >> 24); msg[50] = (uint8_t)(part >> 16);
        msg[51] = (uint8_t)(part >> 8); msg[52] = (uint8_t)part;
        put_sums(msg + 53, limbs, n_assets);
        memcpy(out_sums + 2 * n_assets * i, limbs, 16 * n_assets);
        const uint8_t *key = keys + 32 * (size_t)acct;
        for (int j = 0; j < 32; j++) { ipad[j] = key[j] ^ 0x36; opad[j] = key[j] ^ 0x5c; }
        memset(ipad + 32, 0x36, 32);
        memset(opad + 32, 0x5c, 32);
        SHA256_Init(&c);
        SHA256_Update(&c, ipad, 64);
        SHA256_Update(&c, msg, width);
        SHA256_Final(inner, &c);
        SHA256_Init(&c);
        SHA256_Update(&c, opad, 64);
        SHA256_Update(&c, inner, 32);
        SHA256_Final(out_hashes + 32 * i, &c);
    }
    return 0;
}

/* One level up: m parents of 2m children. hash = H(0x01 || L.hash || L.sums || R.hash || R.sums),
   sums = L.sums + R.sums; returns 1 (and stops) if any sum reaches 2^128. */
int mst_level(const uint8_t *hashes, const uint64_t *sums, size_t n_assets, size_t m,
              uint8_t *out_hashes, uint64_t *out_sums) {
    if (n_assets == 0 || n_assets > MST_ASSETS_MAX) return -1;
    uint8_t msg[1 + 2 * (32 + 16 * MST_ASSETS_MAX)];
    size_t side = 32 + 16 * n_assets;
    msg[0] = 0x01;
    for (size_t i = 0; i < m; i++) {
        const uint64_t *ls = sums + 2 * n_assets * (2 * i), *rs = sums + 2 * n_assets * (2 * i + 1);
        uint64_t *os = out_sums + 2 * n_assets * i;
        for (size_t a = 0; a < n_assets; a++) {
            unsigned __int128 l = ((unsigned __int128)ls[2 * a] << 64) | ls[2 * a + 1];
            unsigned __int128 r = ((unsigned __int128)rs[2 * a] << 64) | rs[2 * a + 1];
            unsigned __int128 t = l + r;
            if (t < l) return 1;
            os[2 * a] = (uint64_t)(t >> 64);
            os[2 * a + 1] = (uint64_t)t;
        }
        memcpy(msg + 1, hashes + 32 * (2 * i), 32);
        put_sums(msg + 33, ls, n_assets);
        memcpy(msg + 1 + side, hashes + 32 * (2 * i + 1), 32);
        put_sums(msg + 33 + side, rs, n_assets);
        sha256_once(msg, 1 + 2 * side, out_hashes + 32 * i);
    }
    return 0;
}
"""

# The module name carries a digest of the C code, so a stale build is never loaded.
VERSION = hashlib.sha256((CDEF + SOURCE).encode()).hexdigest()[:12]
MODULE = f"_mstfast_{VERSION}"


def build() -> pathlib.Path:
    import cffi

    # put_u64be byte-swaps: it assumes a little-endian host (x86-64, arm64 as deployed).
    assert sys.byteorder == "little", "proofs/native_build.py assumes a little-endian host"

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(f"proofs._native.{MODULE}", SOURCE, libraries=["crypto"], extra_compile_args=["-O2"])
    OUT_DIR.mkdir(exist_ok=True)
    build_dir = OUT_DIR / "build"
    path = ffi.compile(tmpdir=str(build_dir), verbose=False)
    built = pathlib.Path(path)
    target = OUT_DIR / built.name
    if built != target:
        built.replace(target)
    return target


if __name__ == "__main__":
    print(build())
    sys.exit(0)
