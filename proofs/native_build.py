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
"""

SOURCE = r"""
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

/* out[i] = SHA-256(rows[i]) for n rows of `width` bytes. */
int mst_sha256_rows(const uint8_t *rows, size_t n, size_t width, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        SHA256(rows + i * width, width, out + 32 * i);
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
"""

# The module name carries a digest of the C code, so a stale build is never loaded.
VERSION = hashlib.sha256((CDEF + SOURCE).encode()).hexdigest()[:12]
MODULE = f"_mstfast_{VERSION}"


def build() -> pathlib.Path:
    import cffi

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
