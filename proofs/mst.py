"""por-mst/1, the reference implementation: the hashes, a plain tree builder and the user-proof
verifier (`../shared/design/por-format.md`, normative), for both encodings of a user proof:
por-mst/1 itself and por-mst/1-compact (proofs/por-mst-1-compact.md: the same proof, hashes
and sums in base64url).

Standard library only, and deliberately simple: this is the code the public verifier runs and
the code the fast builder (`proofs.tree`) is checked against. It favours being obviously right
over being fast; nothing here is on the node's hot path except `verify_user_proof`, which every
published proof goes through before the root is released.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

from node import limits

FORMAT = "por-mst/1"
FORMAT_COMPACT = "por-mst/1-compact"  # the same user proof, hashes and sums in base64url
U128_LIMIT = 1 << 128

TAG_KEY = b"por-mst/1/key"
TAG_UID = b"por-mst/1/uid"
PREFIX_LEAF = b"\x00"
PREFIX_NODE = b"\x01"


class ProofInvalid(Exception):
    """A proof (or a file claiming to be one) does not verify. `reason` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- encodings ---------------------------------------------------------------------------


def u32be(x: int) -> bytes:
    assert 0 <= x < 1 << 32, x
    return x.to_bytes(4, "big")


def sums_bytes(sums) -> bytes:
    return b"".join([x.to_bytes(16, "big") for x in sums])  # to_bytes refuses x < 0 or x >= 2^128


def parse_amount(text, what: str) -> int:
    """A canonical decimal string (`"0"`, `"42"`) in [0, 2^128); anything else is refused."""
    if not isinstance(text, str) or not text or len(text) > 39 or not text.isascii() or not text.isdigit():
        raise ProofInvalid("amount_malformed", f"{what}: {text!r} is not a canonical decimal string")
    if len(text) > 1 and text[0] == "0":
        raise ProofInvalid("amount_malformed", f"{what}: {text!r} has a leading zero")
    value = int(text)
    if value >= U128_LIMIT:
        raise ProofInvalid("amount_out_of_range", f"{what}: {text} is not below 2^128")
    return value


def parse_hex(text, n_bytes: int, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != 2 * n_bytes or text != text.lower():
        raise ProofInvalid("hex_malformed", f"{what}: expected {n_bytes} bytes of lowercase hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ProofInvalid("hex_malformed", f"{what}: not hex") from None


def b64u(data: bytes) -> str:
    """base64url (RFC 4648 section 5) without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_amount(x: int) -> str:
    """por-mst/1-compact: an amount as base64url of its minimal big-endian bytes (0 is "")."""
    assert 0 <= x < U128_LIMIT, x
    return b64u(x.to_bytes((x.bit_length() + 7) // 8, "big"))


_B64U_TEXT = re.compile(r"[A-Za-z0-9_-]*")
_B64_PAD = ("", "", "==", "=")
# The last character of a 4k+2 (4k+3) character text carries 4 (2) unused bits: canonical
# base64url has them zero, so that every byte string has exactly one spelling.
_B64U_LAST_OK = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def parse_b64u(text, what: str, reason: str) -> bytes:
    """Canonical unpadded base64url only: the alphabet A-Z a-z 0-9 - _, no '=', no length of
    4k+1, unused trailing bits zero."""
    if not isinstance(text, str) or not _B64U_TEXT.fullmatch(text):
        raise ProofInvalid(reason, f"{what}: {text!r} is not unpadded base64url")
    tail = len(text) & 3
    if tail == 1 or (tail and text[-1] not in _B64U_LAST_OK[tail]):
        raise ProofInvalid(reason, f"{what}: {text!r} is not canonical base64url")
    return binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + _B64_PAD[tail])


def parse_compact_amount(text, what: str) -> int:
    """An amount of por-mst/1-compact: minimal big-endian bytes (no leading zero byte, "" for
    0), at most 16 bytes."""
    raw = parse_b64u(text, what, "amount_malformed")
    if len(raw) > 16:
        raise ProofInvalid("amount_out_of_range", f"{what}: {len(raw)} bytes is not below 2^128")
    if raw[:1] == b"\x00":
        raise ProofInvalid("amount_malformed", f"{what}: {text!r} has a leading zero byte")
    return int.from_bytes(raw, "big")


def parse_compact_hash(text, n_bytes: int, what: str) -> bytes:
    raw = parse_b64u(text, what, "base64_malformed")
    if len(raw) != n_bytes:
        raise ProofInvalid("base64_malformed", f"{what}: expected {n_bytes} bytes of base64url, got {len(raw)}")
    return raw


def parse_amounts(values: list, what: str) -> list[int]:
    return [parse_amount(v, f"{what}[{i}]") for i, v in enumerate(values)]


def parse_compact_amounts(values: list, what: str) -> list[int]:
    """parse_compact_amount over a list: read as lanes (_fast_compact_lanes, which accepts
    exactly what this accepts); on any doubt value by value, so that the fault is named."""
    lanes = _fast_compact_lanes(values, len(values)) if isinstance(values, list) else None
    if lanes is not None:
        return [int.from_bytes(lanes[i:i + 16], "big") for i in range(0, len(lanes), 16)]
    out = [parse_compact_amount(text, f"{what}[{i}]") for i, text in enumerate(values)]
    raise AssertionError(f"parse_compact_amount accepted {out} that the lanes parser refused")  # pragma: no cover


def _fast_compact_hash(text) -> bytes | None:
    """parse_compact_hash(text, 32)'s happy path, for the ~40 path hashes of a proof: the 32
    bytes, or None when in any doubt (then parse_compact_hash names the fault)."""
    if isinstance(text, str) and len(text) == 43 and text[-1] in _B64U_LAST_OK[3] and _B64U_TEXT.fullmatch(text):
        return binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "=")
    return None


def _fast_compact_lanes(values, n: int) -> bytes | None:
    """A compact sums list's happy path: its n amounts as 16-byte big-endian lanes (what the
    node hash takes), or None when in any doubt (then parse_compact_amounts names the fault).
    It accepts exactly what parse_compact_amounts accepts."""
    if not isinstance(values, list) or len(values) != n:
        return None
    try:
        if not _B64U_TEXT.fullmatch("".join(values)):  # the alphabet, for all at once
            return None
    except TypeError:  # a value that is not a string
        return None
    lanes, last_ok, pad, a2b = [], _B64U_LAST_OK, _B64_PAD, binascii.a2b_base64
    for text in values:
        tail = len(text) & 3
        if tail and (tail == 1 or text[-1] not in last_ok[tail]):
            return None
        raw = a2b(text.replace("-", "+").replace("_", "/") + pad[tail])
        if len(raw) > 16 or raw[:1] == b"\x00":
            return None
        lanes.append(raw.rjust(16, b"\x00"))
    return b"".join(lanes)


class _Codec(NamedTuple):
    """How one encoding of a user proof spells hashes (and the key) and lists of amounts."""

    hash: Callable[[object, int, str], bytes]
    amounts: Callable[[list, str], list[int]]


CODECS = {FORMAT: _Codec(parse_hex, parse_amounts), FORMAT_COMPACT: _Codec(parse_compact_hash, parse_compact_amounts)}


def to_compact(proof: dict) -> dict:
    """A por-mst/1 user proof re-encoded as por-mst/1-compact: the same fields in the same
    order; the root, sibling and key hashes as base64url of their 32 bytes, every amount as
    base64url of its minimal big-endian bytes. snapshot_id stays hex, as in the header and URLs."""
    assert proof["format"] == FORMAT, proof["format"]

    def sums(values) -> list[str]:
        return [compact_amount(int(v)) for v in values]

    def h(text: str) -> str:
        return b64u(bytes.fromhex(text))

    out = dict(proof)
    out["format"] = FORMAT_COMPACT
    out["root"] = {"hash": h(proof["root"]["hash"]), "sums": sums(proof["root"]["sums"])}
    out["account_balances"] = sums(proof["account_balances"])
    out["key"] = h(proof["key"])
    out["leaves"] = [
        {
            **leaf,
            "balances": sums(leaf["balances"]),
            "path": [{"hash": h(sib["hash"]), "sums": sums(sib["sums"])} for sib in leaf["path"]],
        }
        for leaf in proof["leaves"]
    ]
    return out


# --- the hashes --------------------------------------------------------------------------


def snapshot_key(proof_secret: bytes, sid: bytes) -> bytes:
    """key = HMAC(proof_secret, "por-mst/1/key" ‖ sid)."""
    assert len(proof_secret) == 32 and len(sid) == 16
    return hmac.digest(proof_secret, TAG_KEY + sid, "sha256")


def uid_commitment(account_id: str) -> bytes:
    """uidc = H("por-mst/1/uid" ‖ utf8(account_id))."""
    return hashlib.sha256(TAG_UID + account_id.encode("utf-8")).digest()


def leaf_hash(key: bytes, sid: bytes, uidc: bytes, part: int, balances) -> bytes:
    return hmac.digest(key, PREFIX_LEAF + sid + uidc + u32be(part) + sums_bytes(balances), "sha256")


def node_hash(left_hash: bytes, left_sums, right_hash: bytes, right_sums) -> bytes:
    return node_hash_of_bytes(left_hash, sums_bytes(left_sums), right_hash, sums_bytes(right_sums))


def node_hash_of_bytes(left_hash: bytes, left_sums_bytes: bytes, right_hash: bytes, right_sums_bytes: bytes) -> bytes:
    """node = H(0x01 ‖ left hash ‖ left sums ‖ right hash ‖ right sums), the sums as sums_bytes."""
    return hashlib.sha256(PREFIX_NODE + left_hash + left_sums_bytes + right_hash + right_sums_bytes).digest()


def add_sums(a, b) -> list[int]:
    out = [x + y for x, y in zip(a, b, strict=True)]
    for x in out:
        if x >= U128_LIMIT:
            raise ProofInvalid("sum_overflow", "a sum reaches 2^128")
    return out


# The verifier adds sums as one integer per list: n 128-bit lanes, lane 0 the most significant,
# which is what sums_bytes writes (so the hashed bytes are `packed.to_bytes(16 * n)`). A lane
# that reaches 2^128 carries into the bit above it: the carries of a + b are (a + b) ^ a ^ b.
def _lane_edges(n: int) -> int:
    """The lowest bit of every lane but the last, and the bit above the first lane."""
    return sum(1 << (128 * k) for k in range(1, n + 1))


def _add_lanes(a: int, b: int, edges: int) -> int:
    total = a + b
    if (total ^ a ^ b) & edges:
        raise ProofInvalid("sum_overflow", "a sum reaches 2^128")
    return total


# --- a plain tree, built from an explicit leaf layout ------------------------------------


@dataclass(frozen=True)
class LeafSpec:
    """Leaf `index` is part `part` of `account_id`, holding `balances` (ints)."""

    index: int
    account_id: str
    part: int
    balances: tuple[int, ...]


class ReferenceTree:
    """All levels kept as lists: levels[0] are the leaves, levels[depth] == [root]."""

    def __init__(self, sid: bytes, assets: list[str], proof_secrets: dict[str, bytes], layout: list[LeafSpec]):
        n = len(layout)
        assert n >= 2 and n & (n - 1) == 0, "the tree is full: 2^depth leaves, depth >= 1"
        assert sorted(spec.index for spec in layout) == list(range(n))
        self.sid = sid
        self.assets = list(assets)
        self.depth = n.bit_length() - 1
        self.layout = sorted(layout, key=lambda s: s.index)
        self.keys = {a: snapshot_key(secret, sid) for a, secret in proof_secrets.items()}
        leaves = []
        for spec in self.layout:
            h = leaf_hash(self.keys[spec.account_id], sid, uid_commitment(spec.account_id), spec.part, spec.balances)
            leaves.append((h, list(spec.balances)))
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [
                    (node_hash(lh, ls, rh, rs), add_sums(ls, rs))
                    for (lh, ls), (rh, rs) in zip(below[0::2], below[1::2], strict=True)
                ]
            )

    @property
    def root(self) -> tuple[bytes, list[int]]:
        return self.levels[-1][0]

    def proof(self, account_id: str, account_balances) -> dict:
        leaves = []
        for spec in self.layout:
            if spec.account_id != account_id:
                continue
            path = []
            for level in range(self.depth):
                h, s = self.levels[level][(spec.index >> level) ^ 1]
                path.append({"hash": h.hex(), "sums": [str(x) for x in s]})
            leaves.append(
                {"index": spec.index, "part": spec.part, "balances": [str(x) for x in spec.balances], "path": path}
            )
        root_hash, root_sums = self.root
        return {
            "format": FORMAT,
            "snapshot_id": self.sid.hex(),
            "assets": list(self.assets),
            "depth": self.depth,
            "root": {"hash": root_hash.hex(), "sums": [str(x) for x in root_sums]},
            "account_id": account_id,
            "account_balances": [str(x) for x in account_balances],
            "key": self.keys[account_id].hex(),
            "leaves": leaves,
        }


# --- the user-proof verifier -------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedProof:
    snapshot_id: str
    account_id: str
    assets: tuple[str, ...]
    account_balances: tuple[int, ...]
    root_hash: str
    root_sums: tuple[int, ...]
    depth: int
    format: str


def _field(obj, name: str, kind, what: str = "proof"):
    if not isinstance(obj, dict) or name not in obj:
        raise ProofInvalid("field_missing", f"{what}.{name}")
    value = obj[name]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ProofInvalid("field_malformed", f"{what}.{name} must be {getattr(kind, '__name__', kind)}")
    return value


def _amounts(values, n: int, what: str, parse=parse_amounts) -> list[int]:
    if not isinstance(values, list):
        raise ProofInvalid("field_malformed", f"{what} must be a list")
    if len(values) != n:
        raise ProofInvalid("asset_count_mismatch", f"{what} has {len(values)} values for {n} assets")
    return parse(values, what)


def verify_user_proof(proof) -> VerifiedProof:
    """Checks a user proof (parsed JSON, por-mst/1 or por-mst/1-compact) completely; returns
    what it proves or raises ProofInvalid.

    Order: shape and ranges first (nothing is hashed from a malformed file), then each leaf's
    path up to the root, then the parts and the account's balances."""
    if not isinstance(proof, dict):
        raise ProofInvalid("field_malformed", "a proof is a JSON object")
    codec = CODECS.get(proof.get("format")) if isinstance(proof.get("format"), str) else None
    if codec is None:
        raise ProofInvalid("format_unknown", f"format must be {FORMAT!r} or {FORMAT_COMPACT!r}, got {proof.get('format')!r}")
    parse_hash, parse_value = codec
    compact = proof["format"] == FORMAT_COMPACT
    sid = parse_hex(_field(proof, "snapshot_id", str), 16, "snapshot_id")
    assets = _field(proof, "assets", list)
    if not 1 <= len(assets) <= limits.POR_ASSETS_MAX or not all(isinstance(a, str) and a for a in assets):
        raise ProofInvalid("field_malformed", f"assets: 1..{limits.POR_ASSETS_MAX} non-empty strings")
    if len(set(assets)) != len(assets):
        raise ProofInvalid("field_malformed", "assets: repeated asset code")
    n_assets = len(assets)
    depth = _field(proof, "depth", int)
    if not 1 <= depth <= limits.POR_DEPTH_MAX:
        raise ProofInvalid("depth_out_of_range", f"depth {depth} not in 1..{limits.POR_DEPTH_MAX}")
    root = _field(proof, "root", dict)
    root_hash = parse_hash(_field(root, "hash", str, "root"), 32, "root.hash")
    root_sums = _amounts(_field(root, "sums", list, "root"), n_assets, "root.sums", parse_value)
    account_id = _field(proof, "account_id", str)
    if not account_id:
        raise ProofInvalid("field_malformed", "account_id is empty")
    account_balances = _amounts(_field(proof, "account_balances", list), n_assets, "account_balances", parse_value)
    key = parse_hash(_field(proof, "key", str), 32, "key")
    leaves = _field(proof, "leaves", list)
    if not 2 <= len(leaves) <= limits.POR_PARTS_MAX:
        raise ProofInvalid("too_few_parts" if len(leaves) < 2 else "too_many_parts", f"{len(leaves)} leaves")

    parsed = []
    for n, leaf in enumerate(leaves):
        what = f"leaves[{n}]"
        index = _field(leaf, "index", int, what)
        part = _field(leaf, "part", int, what)
        if not 0 <= index < 1 << depth:
            raise ProofInvalid("index_out_of_range", f"{what}.index {index} not below 2^{depth}")
        if not 0 <= part < limits.POR_PARTS_MAX:
            raise ProofInvalid("part_out_of_range", f"{what}.part {part}")
        balances = _amounts(_field(leaf, "balances", list, what), n_assets, f"{what}.balances", parse_value)
        path = _field(leaf, "path", list, what)
        if len(path) != depth:
            raise ProofInvalid("path_length_mismatch", f"{what}.path has {len(path)} entries, depth is {depth}")
        siblings = []  # (hash, sums as 16-byte lanes)
        for level, sib in enumerate(path):
            if compact and isinstance(sib, dict):  # the happy path first, without naming anything
                sib_hash, sib_lanes = _fast_compact_hash(sib.get("hash")), _fast_compact_lanes(sib.get("sums"), n_assets)
                if sib_hash is not None and sib_lanes is not None:
                    siblings.append((sib_hash, sib_lanes))
                    continue
            sw = f"{what}.path[{level}]"
            siblings.append(
                (
                    parse_hash(_field(sib, "hash", str, sw), 32, f"{sw}.hash"),
                    sums_bytes(_amounts(_field(sib, "sums", list, sw), n_assets, f"{sw}.sums", parse_value)),
                )
            )
        parsed.append((index, part, balances, siblings))

    if len({p[0] for p in parsed}) != len(parsed):
        raise ProofInvalid("indexes_not_distinct", "two leaves claim the same index")
    if sorted(p[1] for p in parsed) != list(range(len(parsed))):
        raise ProofInvalid("parts_not_contiguous", "the parts must be exactly 0..s-1")

    uidc = uid_commitment(account_id)
    total = [0] * n_assets
    width, edges = 16 * n_assets, _lane_edges(n_assets)
    for index, part, balances, siblings in parsed:
        h = leaf_hash(key, sid, uidc, part, balances)
        s_bytes = sums_bytes(balances)
        s = int.from_bytes(s_bytes, "big")
        for level, (sib_hash, sib_bytes) in enumerate(siblings):
            if (index >> level) & 1 == 0:
                h = node_hash_of_bytes(h, s_bytes, sib_hash, sib_bytes)
            else:
                h = node_hash_of_bytes(sib_hash, sib_bytes, h, s_bytes)
            s = _add_lanes(s, int.from_bytes(sib_bytes, "big"), edges)
            s_bytes = s.to_bytes(width, "big")
        if not hmac.compare_digest(h, root_hash):
            raise ProofInvalid("root_hash_mismatch", f"leaf {index} (part {part}) does not hash to the root")
        if s_bytes != sums_bytes(root_sums):
            raise ProofInvalid("root_sums_mismatch", f"leaf {index} (part {part}) does not sum to the root")
        total = add_sums(total, balances)
    if total != account_balances:
        raise ProofInvalid("balances_mismatch", "the leaves do not add up to account_balances")
    return VerifiedProof(
        snapshot_id=sid.hex(),
        account_id=account_id,
        assets=tuple(assets),
        account_balances=tuple(account_balances),
        root_hash=root_hash.hex(),
        root_sums=tuple(root_sums),
        depth=depth,
        format=proof["format"],
    )


def load_json(data: bytes, max_bytes: int):
    """Parses a JSON file no larger than `max_bytes`, refusing duplicate keys and floats."""
    if len(data) > max_bytes:
        raise ProofInvalid("file_too_large", f"{len(data)} bytes, at most {max_bytes}")

    def no_dupes(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise ProofInvalid("json_malformed", f"duplicate key {k!r}")
            out[k] = v
        return out

    def no_float(text):
        raise ProofInvalid("json_malformed", f"non-integer number {text}")

    def no_constant(text):
        raise ProofInvalid("json_malformed", f"{text} is not JSON")

    try:
        return json.loads(data, object_pairs_hook=no_dupes, parse_float=no_float, parse_constant=no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProofInvalid("json_malformed", str(exc)) from None
