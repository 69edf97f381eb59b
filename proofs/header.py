"""The signed snapshot header (design/por-format.md, "Signed snapshot header"): RFC 8785 bytes
signed with the node's Ed25519 snapshot key, chained to the previous header by SHA-256.

Verification needs the standard library and `cryptography` (Ed25519 through OpenSSL: already a
dependency of the node, a wheel on every platform, no compiler needed; the alternative, pynacl,
would be a second native library for the same job).
"""

from __future__ import annotations

import hashlib
import re

from proofs import jcs, mst

_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_HEADER_KEYS = {"format", "snapshot_id", "created_at", "assets", "chains", "depth", "root", "reserves",
                "negative_balances_clamped", "prev"}


def header_bytes(header: dict) -> bytes:
    return jcs.dumps(header)


def header_hash(header: dict) -> str:
    """What the next header's `prev` holds."""
    return hashlib.sha256(header_bytes(header)).hexdigest()


def sign_header(header: dict, private_key) -> dict:
    """`private_key`: a cryptography Ed25519PrivateKey (the node's snapshot key)."""
    from cryptography.hazmat.primitives import serialization

    check_header_shape(header)
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = private_key.sign(header_bytes(header))
    return {"header": header, "signature": {"alg": "ed25519", "public_key": public.hex(), "sig": sig.hex()}}


def check_header_shape(h) -> None:
    """Every field present and well formed; raises ProofInvalid."""
    P = mst.ProofInvalid
    if not isinstance(h, dict) or set(h) != _HEADER_KEYS:
        raise P("header_malformed", f"fields must be exactly {sorted(_HEADER_KEYS)}")
    if h["format"] != mst.FORMAT:
        raise P("format_unknown", repr(h["format"]))
    mst.parse_hex(h["snapshot_id"], 16, "snapshot_id")
    if not isinstance(h["created_at"], str) or not _RFC3339_UTC.fullmatch(h["created_at"]):
        raise P("header_malformed", "created_at must be RFC 3339 UTC")
    assets = h["assets"]
    if not isinstance(assets, list) or not assets or not all(
        isinstance(a, dict) and set(a) == {"code", "chain", "decimals"} and isinstance(a["code"], str)
        and isinstance(a["chain"], str) and isinstance(a["decimals"], int) for a in assets
    ):
        raise P("header_malformed", "assets: [{code, chain, decimals}, ...]")
    chains = h["chains"]
    if not isinstance(chains, list) or not all(
        isinstance(c, dict) and set(c) == {"chain", "network", "height", "block_hash"} and isinstance(c["height"], int)
        and c["height"] >= 0 for c in chains
    ):
        raise P("header_malformed", "chains: [{chain, network, height, block_hash}, ...]")
    if not isinstance(h["depth"], int) or isinstance(h["depth"], bool) or not 1 <= h["depth"] <= 64:
        raise P("header_malformed", "depth")
    root = h["root"]
    if not isinstance(root, dict) or set(root) != {"hash", "sums"}:
        raise P("header_malformed", "root: {hash, sums}")
    mst.parse_hex(root["hash"], 32, "root.hash")
    if not isinstance(root["sums"], list) or len(root["sums"]) != len(assets):
        raise P("asset_count_mismatch", "root.sums")
    for i, x in enumerate(root["sums"]):
        mst.parse_amount(x, f"root.sums[{i}]")
    if not isinstance(h["reserves"], list) or not all(
        isinstance(r, dict) and set(r) == {"asset", "amount", "addresses"} and isinstance(r["addresses"], int)
        for r in h["reserves"]
    ):
        raise P("header_malformed", "reserves: [{asset, amount, addresses}, ...]")
    for r in h["reserves"]:
        mst.parse_amount(r["amount"], f"reserves.{r['asset']}")
    if not isinstance(h["negative_balances_clamped"], int) or h["negative_balances_clamped"] < 0:
        raise P("header_malformed", "negative_balances_clamped")
    if h["prev"] is not None:
        mst.parse_hex(h["prev"], 32, "prev")


def verify_signed_header(doc, public_key_hex: str, prev: dict | None = None) -> dict:
    """Returns the header if `doc` is signed by the pinned `public_key_hex` (and, given the
    previous signed header, chains to it); raises ProofInvalid otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    P = mst.ProofInvalid
    if not isinstance(doc, dict) or set(doc) != {"header", "signature"}:
        raise P("header_malformed", "expected {header, signature}")
    sig = doc["signature"]
    if not isinstance(sig, dict) or sig.get("alg") != "ed25519":
        raise P("signature_malformed", "alg must be ed25519")
    pinned = mst.parse_hex(public_key_hex, 32, "the pinned public key")
    if sig.get("public_key") != pinned.hex():
        raise P("header_wrong_key", "the header names another public key than the pinned one")
    raw_sig = mst.parse_hex(sig.get("sig"), 64, "signature.sig")
    header = doc["header"]
    check_header_shape(header)
    try:
        Ed25519PublicKey.from_public_bytes(pinned).verify(raw_sig, header_bytes(header))
    except InvalidSignature:
        raise P("header_signature_invalid", "the Ed25519 signature does not verify") from None
    if prev is not None:
        if header["prev"] != header_hash(prev["header"] if "signature" in prev else prev):
            raise P("header_chain_broken", "prev is not the SHA-256 of the previous header")
    return header
