"""What a more compact proof encoding would weigh — an estimate for a format decision, not a format.

por-mst/1 fixes the JSON of a user proof: hashes as hex, sums as decimal strings. At 1,000,000
accounts x 8 assets (depth 21) a 2-part proof is ~9.3 KB against the 8 KB goal of
shared/design/benchmarks.md, and the README's "Proof of reserves" shows why the format cannot
get under it. This script builds bench/por.py's tree (same seeded data) and re-encodes the same
2-part proofs with hashes, keys and every sum as base64url of their minimal big-endian bytes
(what a por-mst/2 could do), printing both sizes. Nothing here is published or verified.

    python bench/por_encoding.py
"""

from __future__ import annotations

import base64
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import por as bench_por  # noqa: E402
from _common import figure, progress  # noqa: E402

BENCH = "por_encoding"
SAMPLE = 200


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _compact(o):
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if k in ("hash", "key"):
                out[k] = _b64(bytes.fromhex(v))
            elif k in ("sums", "balances", "account_balances"):
                out[k] = [_b64(int(x).to_bytes((int(x).bit_length() + 7) // 8, "big")) for x in v]
            else:
                out[k] = _compact(v)
        return out
    if isinstance(o, list):
        return [_compact(x) for x in o]
    return o


def main() -> int:
    import numpy as np

    n = bench_por.N_ACCOUNTS
    progress(f"building the {n:,} x {bench_por.N_ASSETS} tree (bench/por.py's data, seed 1)")
    t, layout, _ = bench_por.build_tree(n, 1)
    order, starts = layout.leaves_of()
    t._leaves_by_account = (order, starts)
    rng = np.random.default_rng(2)
    v1, v2 = [], []
    for k in (int(k) for k in rng.integers(0, n, size=SAMPLE)):
        if starts[k + 1] - starts[k] != 2:
            continue
        proof = t.proof(k)
        v1.append(len(json.dumps(proof, separators=(",", ":"))))
        v2.append(len(json.dumps(_compact(proof), separators=(",", ":"))))
    figure(BENCH, "por_mst_1_proof_bytes", int(statistics.median(v1)), "bytes")
    figure(BENCH, "base64_sums_proof_bytes", int(statistics.median(v2)), "bytes")
    figure(BENCH, "base64_sums_ratio", round(statistics.median(v2) / statistics.median(v1), 3), "ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
