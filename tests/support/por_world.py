"""A small, real reserves snapshot for tests: liabilities from a table, funded addresses whose
keys are coincurve test keys, Ed25519 snapshot key generated per test.

Test keys: generated here, for tests only — in production the cluster signs through MPC and no
process holds these keys whole.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from dataclasses import dataclass

import coincurve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.ports import ChainHeight, EcdsaSignature, FrozenLiabilities, ReservesAddress, ReservesAsset
from proofs import assets as ast
from proofs import mst, snapshot

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "por"
ASSETS = (ReservesAsset("BTC", "bitcoin", 8), ReservesAsset("ETH", "ethereum", 18), ReservesAsset("USDT", "ethereum", 6))
CHAINS = (
    ChainHeight("bitcoin", "regtest", 812, "00" * 31 + "2a"),
    ChainHeight("ethereum", "1337", 4501, "ab" * 32),
)


class TableLiabilities:
    def __init__(self, balances: dict[str, tuple[int, ...]], assets=ASSETS, chains=CHAINS):
        self.balances, self.assets, self.chains = balances, assets, chains

    def freeze(self) -> FrozenLiabilities:
        return FrozenLiabilities(self.assets, self.chains, dict(self.balances), instant="table")


class TestKeyWallets:
    """ReservesBalances + ReservesSigner over plain secp256k1 test keys, one per (vault, path)."""

    def __init__(self, holdings: list[tuple[str, str, int, int]], wrong_key_for: set[str] = frozenset()):
        # holdings: (chain, asset, key index, balance)
        self.keys = {}
        self.addresses = []
        self.wrong_key_for = set(wrong_key_for)
        for chain, asset, idx, balance in holdings:
            key = coincurve.PrivateKey((idx + 1).to_bytes(32, "big"))
            self.keys[(0, idx)] = key
            address = ast.address_for(chain, key.public_key.format(), "regtest" if chain == "bitcoin" else "")
            self.addresses.append(ReservesAddress(chain, asset, address, "vault-hot", (0, idx), balance))

    def funded_addresses(self, chains):
        return list(self.addresses)

    def sign_reserves(self, chain, vault_id, path, snapshot_id, root_hash) -> EcdsaSignature:
        key = self.keys[path]
        address = next(a.address for a in self.addresses if a.path == path)
        if address in self.wrong_key_for:
            key = coincurve.PrivateKey(b"\x77" * 32)
        digest = ast.reserves_digest(chain, snapshot_id, root_hash)
        raw = key.sign_recoverable(digest, hasher=None)
        return EcdsaSignature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64], key.public_key.format())


BALANCES = {
    "acct-alice": (150_000_000, 2 * 10**18, 5_000_000),
    "acct-bob": (0, 5 * 10**17, 0),
    "acct-carol": (42, 0, 1),
    "acct-dave": (7, 3, 10**12),
    "acct-émile": (2**70, 0, 0),
}
HOLDINGS = [
    ("bitcoin", "BTC", 1, 100_000_000),
    ("bitcoin", "BTC", 2, 2**70 + 60_000_000),
    ("ethereum", "ETH", 3, 3 * 10**18),
    ("ethereum", "USDT", 3, 10**12 + 5_000_001),
]


@dataclass
class World:
    dir: pathlib.Path
    store: snapshot.SnapshotStore
    key: Ed25519PrivateKey
    public_key_hex: str
    published: snapshot.Published

    def write_files(self, account_id: str = "acct-alice") -> dict[str, pathlib.Path]:
        files = {
            "proof": self.dir / f"proof-{account_id}.json",
            "header": self.dir / "header.json",
            "assets": self.dir / "assets.json",
        }
        files["proof"].write_text(json.dumps(self.store.proof(self.published.snapshot_id, account_id), indent=1))
        files["header"].write_text(json.dumps(self.published.signed_header, indent=1))
        files["assets"].write_text(json.dumps(self.published.assets_doc, indent=1))
        return files


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def make_world(tmp: pathlib.Path, balances=BALANCES, holdings=HOLDINGS, now=None) -> World:
    key = Ed25519PrivateKey.generate()
    public = public_hex(key)
    store = snapshot.SnapshotStore(tmp / "store")
    wallets = TestKeyWallets(holdings)
    published = snapshot.take_snapshot(
        TableLiabilities(balances), wallets, wallets, store, key, now or dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    )
    return World(tmp, store, key, public, published)


# --- tampering: each case turns valid files into one the verifiers must reject ------------
# (name, which file is checked, mutate(docs) -> None, the reason code both verifiers report)


def _leaf(docs, part=0):
    return next(leaf for leaf in docs["proof"]["leaves"] if leaf["part"] == part)


def _swap_siblings(docs):
    path = _leaf(docs)["path"]
    path[0], path[1] = path[1], path[0]


def _other_key_signature(docs):
    entry = docs["assets"]["addresses"][0]
    other = coincurve.PrivateKey(b"\x55" * 32)
    sid, root = docs["assets"]["snapshot_id"], docs["header"]["header"]["root"]["hash"]
    raw = other.sign_recoverable(ast.reserves_digest(entry["chain"], sid, root), hasher=None)
    entry["signature"] = ast.encode_signature(
        entry["chain"], int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    )


def _set(path, value):
    def mutate(docs):
        obj = docs
        for p in path[:-1]:
            obj = obj[p] if not callable(p) else p(docs)
        obj[path[-1]] = value(obj[path[-1]]) if callable(value) else value

    return mutate


TAMPER_CASES = [
    ("tampered_root_sum", "proof", _set(["proof", "root", "sums", 0], lambda v: str(int(v) + 1)), "root_sums_mismatch"),
    ("tampered_sibling_sum", "proof", lambda d: _leaf(d)["path"][0]["sums"].__setitem__(0, str(int(_leaf(d)["path"][0]["sums"][0]) + 1)), "root_hash_mismatch"),
    ("tampered_leaf_balance", "proof", lambda d: _leaf(d)["balances"].__setitem__(1, str(int(_leaf(d)["balances"][1]) + 1)), "root_hash_mismatch"),
    ("swapped_siblings", "proof", _swap_siblings, "root_hash_mismatch"),
    ("negative_value", "proof", lambda d: _leaf(d)["path"][2]["sums"].__setitem__(0, "-1"), "amount_malformed"),
    ("value_not_below_2_128", "proof", lambda d: _leaf(d)["balances"].__setitem__(0, str(2**128)), "amount_out_of_range"),
    ("sum_overflows", "proof", lambda d: _leaf(d)["path"][0]["sums"].__setitem__(2, str(2**128 - 1)), "sum_overflow"),
    ("wrong_key", "proof", _set(["proof", "key"], "11" * 32), "root_hash_mismatch"),
    ("missing_part", "proof", lambda d: d["proof"]["leaves"].remove(_leaf(d, 0)), "parts_not_contiguous"),
    ("balances_overstated", "proof", _set(["proof", "account_balances", 0], lambda v: str(int(v) + 1)), "balances_mismatch"),
    ("header_signature_mismatch", "header", _set(["header", "header", "negative_balances_clamped"], 3), "header_signature_invalid"),
    ("header_root_changed", "header", _set(["header", "header", "root", "sums", 0], lambda v: str(int(v) - 1)), "header_signature_invalid"),
    ("header_other_key", "header", _set(["header", "signature", "public_key"], "22" * 32), "header_wrong_key"),
    ("assets_signature_wrong_key", "assets", _other_key_signature, "signature_wrong_key"),
    ("assets_balance_inflated", "assets", _set(["assets", "addresses", 0, "balance"], lambda v: str(int(v) + 1)), "reserves_mismatch"),
    ("assets_address_repeated", "assets", lambda d: d["assets"]["addresses"].append(dict(d["assets"]["addresses"][0])), "address_repeated"),
]


# The same tamperings of a por-mst/1-compact proof (proofs/por-mst-1-compact.md): `before`
# edits the por-mst/1 proof, which is then re-encoded; `after` edits the compact values. Then
# what only the compact encoding can get wrong. (A negative or 2^128 amount has no compact
# spelling: its case is the 17-byte amount.)


def _compact(before=None, after=None):
    def mutate(docs):
        if before:
            before(docs)
        docs["proof"] = mst.to_compact(docs["proof"])
        if after:
            after(docs)

    return mutate


_BOTH_ENCODINGS = ("tampered_root_sum", "tampered_sibling_sum", "tampered_leaf_balance", "swapped_siblings",
                   "sum_overflows", "wrong_key", "missing_part", "balances_overstated")
TAMPER_CASES += [(f"compact_{name}", kind, _compact(before=m), reason) for name, kind, m, reason in TAMPER_CASES
                 if name in _BOTH_ENCODINGS]
TAMPER_CASES += [
    ("compact_amount_of_17_bytes", "proof",
     _compact(after=lambda d: _leaf(d)["path"][2]["sums"].__setitem__(0, mst.b64u(b"\x01" + bytes(16)))), "amount_out_of_range"),
    ("compact_amount_leading_zero_byte", "proof",
     _compact(after=lambda d: _leaf(d)["balances"].__setitem__(0, mst.b64u(b"\x00\x2a"))), "amount_malformed"),
    ("compact_amount_padded", "proof", _compact(after=lambda d: _leaf(d)["balances"].__setitem__(0, "Kg==")), "amount_malformed"),
    ("compact_amount_trailing_bits", "proof", _compact(after=lambda d: _leaf(d)["balances"].__setitem__(0, "Kh")), "amount_malformed"),
    ("compact_amount_as_decimal", "proof",
     _compact(after=_set(["proof", "account_balances", 0], "150000000")), "amount_malformed"),
    ("compact_hash_standard_alphabet", "proof",
     _compact(after=lambda d: _leaf(d)["path"][0].__setitem__("hash", "+/" + _leaf(d)["path"][0]["hash"][2:])), "base64_malformed"),
    ("compact_key_in_hex", "proof", _compact(after=lambda d: d["proof"].__setitem__("key", "ab" * 32)), "base64_malformed"),
    ("compact_hash_of_31_bytes", "proof",
     _compact(after=lambda d: _leaf(d)["path"][1].__setitem__("hash", mst.b64u(bytes(31)))), "base64_malformed"),
    ("compact_format_on_a_por_mst_1_proof", "proof", _set(["proof", "format"], mst.FORMAT_COMPACT), "base64_malformed"),
]

# --- tampering of the JSON text itself: what a lenient parser would let through --------------
# (name, which file, edit(text) -> text, reason). Files are written with json.dumps' default
# separators (", " and ": "). JSON.parse keeps the last of two equal keys and reads 21.0 as
# 21; both verifiers must refuse such files as the reference does.


def _dup(key: str, first: str):
    def edit(text: str) -> str:
        needle = f'"{key}": '
        assert needle in text, needle
        return text.replace(needle, f'"{key}": {first}, "{key}": ', 1)

    return edit


RAW_TAMPER_CASES = [
    ("duplicate_key_in_proof", "proof", _dup("depth", "2"), "json_malformed"),
    ("duplicate_key_in_header", "header", _dup("prev", '"00"'), "json_malformed"),
    ("duplicate_key_in_assets", "assets", _dup("snapshot_id", '"00"'), "json_malformed"),
    ("fraction_in_proof", "proof", lambda t: re.sub(r'"depth": ([0-9]+)', r'"depth": \1.0', t, count=1), "json_malformed"),
    ("exponent_in_proof", "proof", lambda t: re.sub(r'"index": ([0-9]+)', r'"index": \1e0', t, count=1), "json_malformed"),
    ("trailing_content", "proof", lambda t: t + " {}", "json_malformed"),
]


def raw_tampered(files: dict, kind: str, edit, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Copies of `files` as json.dumps text with `edit` applied to the `kind` file."""
    out = {}
    for k in ("proof", "header", "assets"):
        text = json.dumps(json.loads(files[k].read_text()))
        out[k] = out_dir / f"raw-{k}.json"
        out[k].write_text(edit(text) if k == kind else text)
    return out
