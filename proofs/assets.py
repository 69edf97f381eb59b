"""Proof of assets (design/por-format.md, "Proof of assets"): the reserves message, its
per-chain digests (BIP-137 on Bitcoin, EIP-191 on Ethereum), the signature encodings, and
the checks a verifier makes.

The signer peers call `parse_reserves_message` / `reserves_digest` themselves: a reserves
signing request names (chain, snapshot_id, root hash), the peer builds the message and its
digest here and signs nothing else ("sign only a message of exactly that form").

Dependencies: the standard library, coincurve (secp256k1 public-key recovery) and
pycryptodome's Keccak-256 (Ethereum addresses and EIP-191; hashlib's sha3_256 is not Keccak).
RIPEMD-160 comes from hashlib when OpenSSL offers it, else from pycryptodome.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from node import limits
from proofs import mst

ASSETS_FORMAT = "por-mst/1-assets"
_ERC20_CODE_RE = re.compile(r"ERC20:(0x[0-9a-fA-F]{40})")  # the ledger's code of a token names its contract
_MESSAGE_RE = re.compile(r"por-mst/1 reserves ([0-9a-f]{32}) ([0-9a-f]{64})")
BIP137_P2WPKH_HEADER_BASE = 39  # 27 + 12: compressed key, P2WPKH (BIP-137)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CHAINS = ("bitcoin", "ethereum")


class AssetsInvalid(Exception):
    """An assets file, an entry or a signature does not verify; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- the message -------------------------------------------------------------------------


def reserves_message(snapshot_id: str, root_hash: str) -> str:
    msg = f"por-mst/1 reserves {snapshot_id} {root_hash}"
    assert _MESSAGE_RE.fullmatch(msg), "snapshot_id is 16 bytes and root 32 bytes, lowercase hex"
    return msg


def parse_reserves_message(message: str | bytes) -> tuple[str, str]:
    """(snapshot_id hex, root hash hex) of a reserves message; AssetsInvalid for anything else."""
    if isinstance(message, bytes):
        try:
            message = message.decode("ascii")
        except UnicodeDecodeError:
            raise AssetsInvalid("message_not_reserves", "not ASCII") from None
    m = _MESSAGE_RE.fullmatch(message) if isinstance(message, str) else None
    if m is None:
        raise AssetsInvalid("message_not_reserves", "not 'por-mst/1 reserves <sid hex> <root hex>'")
    return m.group(1), m.group(2)


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    return b"\xfe" + n.to_bytes(4, "little")


def bip137_digest(message: bytes) -> bytes:
    """SHA256d(varint ‖ "Bitcoin Signed Message:\\n" ‖ varint(len) ‖ message)."""
    prefix = b"Bitcoin Signed Message:\n"
    data = _varint(len(prefix)) + prefix + _varint(len(message)) + message
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def keccak256(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(data=data, digest_bits=256).digest()


def eip191_digest(message: bytes) -> bytes:
    """keccak256("\\x19Ethereum Signed Message:\\n" ‖ decimal len ‖ message) (personal_sign)."""
    return keccak256(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)


def reserves_digest(chain: str, snapshot_id: str, root_hash: str) -> bytes:
    """The 32-byte digest a signer peer signs for a reserves request on `chain`. Safe on
    untrusted input: anything but 16 + 32 bytes of lowercase hex is AssetsInvalid."""
    if not isinstance(snapshot_id, str) or not isinstance(root_hash, str):
        raise AssetsInvalid("message_not_reserves", "snapshot_id and root_hash are hex strings")
    message = f"por-mst/1 reserves {snapshot_id} {root_hash}"
    parse_reserves_message(message)
    return message_digest(chain, message.encode("ascii"))


def reserves_request_digest(chain: str, message: bytes | str) -> tuple[str, str, bytes]:
    """For a signer peer given a whole message: (snapshot_id, root_hash, digest) if `message`
    is exactly a reserves message, else AssetsInvalid. The peer signs `digest` and nothing
    else; it never signs a digest it was handed."""
    sid, root = parse_reserves_message(message)
    return sid, root, reserves_digest(chain, sid, root)


def message_digest(chain: str, message: bytes) -> bytes:
    if chain == "bitcoin":
        return bip137_digest(message)
    if chain == "ethereum":
        return eip191_digest(message)
    raise AssetsInvalid("chain_unknown", repr(chain))


# --- signature encodings -----------------------------------------------------------------


def _check_rs(r: int, s: int, recovery_id: int):
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2 and recovery_id in (0, 1, 2, 3)):
        raise AssetsInvalid("signature_malformed", "r, s out of range, high S, or bad recovery id")


def bip137_encode(r: int, s: int, recovery_id: int) -> str:
    """Base64 of header ‖ r ‖ s, header 39 + recid (P2WPKH)."""
    _check_rs(r, s, recovery_id)
    raw = bytes([BIP137_P2WPKH_HEADER_BASE + recovery_id]) + r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return base64.b64encode(raw).decode("ascii")


def eip191_encode(r: int, s: int, recovery_id: int) -> str:
    """0x-hex of r ‖ s ‖ v with v = 27 + recid (65 bytes)."""
    _check_rs(r, s, recovery_id)
    if recovery_id > 1:
        raise AssetsInvalid("signature_malformed", "Ethereum signatures carry recovery id 0 or 1")
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recovery_id])).hex()


def _decode(chain: str, signature: str) -> tuple[int, int, int]:
    if not isinstance(signature, str):
        raise AssetsInvalid("signature_malformed", "not a string")
    if chain == "bitcoin":
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            raise AssetsInvalid("signature_malformed", "not base64") from None
        if len(raw) != 65 or not BIP137_P2WPKH_HEADER_BASE <= raw[0] < BIP137_P2WPKH_HEADER_BASE + 4:
            raise AssetsInvalid("signature_malformed", "not a 65-byte BIP-137 P2WPKH signature")
        recid = raw[0] - BIP137_P2WPKH_HEADER_BASE
        r, s = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:65], "big")
    else:
        if not re.fullmatch(r"0x[0-9a-f]{130}", signature):
            raise AssetsInvalid("signature_malformed", "not 0x + 65 bytes of lowercase hex")
        raw = bytes.fromhex(signature[2:])
        if raw[64] not in (27, 28):
            raise AssetsInvalid("signature_malformed", "v must be 27 or 28")
        r, s, recid = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64] - 27
    _check_rs(r, s, recid)
    return r, s, recid


def recover_public_key(digest: bytes, r: int, s: int, recovery_id: int) -> bytes:
    """The 33-byte compressed key that signed `digest`."""
    import coincurve

    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery_id])
    try:
        return coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None).format(compressed=True)
    except Exception:
        raise AssetsInvalid("signature_invalid", "no public key recovers from it") from None


# --- addresses ---------------------------------------------------------------------------

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_HRP = {"mainnet": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}


def _bech32_polymod(values) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _convertbits(data: bytes, frombits: int, tobits: int) -> list[int]:
    acc = bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if bits:
        out.append((acc << (tobits - bits)) & maxv)
    return out


def segwit_v0_address(hrp: str, program: bytes) -> str:
    """BIP-173 bech32 address of a witness v0 program."""
    data = [0] + _convertbits(program, 8, 5)
    hrp_exp = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod(hrp_exp + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum)


def hash160(data: bytes) -> bytes:
    sha = hashlib.sha256(data).digest()
    try:
        return hashlib.new("ripemd160", sha).digest()
    except ValueError:  # OpenSSL 3 without the legacy provider
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(sha).digest()


def p2wpkh_address(public_key: bytes, network: str) -> str:
    assert len(public_key) == 33
    return segwit_v0_address(BECH32_HRP[network], hash160(public_key))


def eth_address(public_key: bytes) -> str:
    """EIP-55 checksummed address of a secp256k1 key."""
    import coincurve

    raw = coincurve.PublicKey(public_key).format(compressed=False)[1:]
    lower = keccak256(raw)[12:].hex()
    check = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(check[i], 16) >= 8 else c for i, c in enumerate(lower))


def address_for(chain: str, public_key: bytes, network: str) -> str:
    return p2wpkh_address(public_key, network) if chain == "bitcoin" else eth_address(public_key)


def encode_signature(chain: str, r: int, s: int, recovery_id: int) -> str:
    return bip137_encode(r, s, recovery_id) if chain == "bitcoin" else eip191_encode(r, s, recovery_id)


def verify_address_signature(chain: str, network: str, address: str, snapshot_id: str, root_hash: str, signature: str):
    """Raises AssetsInvalid unless `signature` over the reserves message recovers `address`."""
    if chain not in CHAINS:
        raise AssetsInvalid("chain_unknown", repr(chain))
    r, s, recid = _decode(chain, signature)
    public_key = recover_public_key(reserves_digest(chain, snapshot_id, root_hash), r, s, recid)
    derived = address_for(chain, public_key, network)
    same = derived.lower() == address.lower() if chain == "ethereum" else derived == address
    if not same:
        raise AssetsInvalid("signature_wrong_key", f"signature is by {derived}, not {address}")


# --- the assets file ---------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedAssets:
    snapshot_id: str
    reserves: dict[str, int]  # asset -> base units
    addresses: dict[str, int]  # asset -> funded addresses counted


def verify_assets_file(doc, header: dict) -> VerifiedAssets:
    """Checks every entry of an assets file against a (verified) header: the message is the
    header's, each signature recovers its address, no address is counted twice for an asset,
    and the totals per asset equal the header's `reserves`."""
    if not isinstance(doc, dict) or doc.get("format") != ASSETS_FORMAT:
        raise AssetsInvalid("format_unknown", f"format must be {ASSETS_FORMAT!r}")
    sid, root_hash = header["snapshot_id"], header["root"]["hash"]
    if doc.get("snapshot_id") != sid:
        raise AssetsInvalid("snapshot_mismatch", "the assets file is for another snapshot")
    if doc.get("message") != reserves_message(sid, root_hash):
        raise AssetsInvalid("message_mismatch", "the message is not this snapshot's reserves message")
    entries = doc.get("addresses")
    if not isinstance(entries, list) or len(entries) > limits.POR_ADDRESSES_MAX:
        raise AssetsInvalid("field_malformed", f"addresses: a list of at most {limits.POR_ADDRESSES_MAX}")
    networks = {c["chain"]: c["network"] for c in header["chains"]}
    asset_chain = {a["code"]: a["chain"] for a in header["assets"]}
    totals = {code: 0 for code in asset_chain}
    counts = {code: 0 for code in asset_chain}
    seen = set()
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("chain", "asset", "address", "balance", "signature")):
            raise AssetsInvalid("field_malformed", f"addresses[{n}] needs chain, asset, address, balance, signature")
        if e["asset"] not in asset_chain:
            raise AssetsInvalid("asset_unknown", f"addresses[{n}]: {e['asset']!r} is not in the header")
        if asset_chain[e["asset"]] != e["chain"] or e["chain"] not in networks:
            raise AssetsInvalid("chain_mismatch", f"addresses[{n}]: {e['asset']} is not on {e['chain']!r}")
        key = (e["chain"], e["asset"], e["address"].lower() if e["chain"] == "ethereum" else e["address"])
        if key in seen:
            raise AssetsInvalid("address_repeated", f"addresses[{n}]: {e['address']} counted twice for {e['asset']}")
        seen.add(key)
        try:
            balance = mst.parse_amount(e["balance"], f"addresses[{n}].balance")
        except mst.ProofInvalid as exc:
            raise AssetsInvalid(exc.reason, exc.detail) from None
        verify_address_signature(e["chain"], networks[e["chain"]], e["address"], sid, root_hash, e["signature"])
        totals[e["asset"]] += balance
        counts[e["asset"]] += 1
    for r in header["reserves"]:
        if totals.get(r["asset"]) != int(r["amount"]) or counts.get(r["asset"]) != r["addresses"]:
            raise AssetsInvalid("reserves_mismatch", f"{r['asset']}: the entries do not add up to the header's reserves")
    return VerifiedAssets(sid, totals, counts)


def ratio_text(reserves: int, liabilities: int, places: int = 4) -> str:
    """reserves ÷ liabilities as a decimal string, truncated, in integer arithmetic."""
    if liabilities == 0:
        return "inf" if reserves else "n/a"
    scaled = reserves * 10**places // liabilities
    return f"{scaled // 10**places}.{scaled % 10**places:0{places}d}"


# --- re-reading balances from a node the verifier trusts ----------------------------------


def _eth_rpc(url: str, method: str, params: list):
    import json
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=limits.POR_BALANCE_READ_TIMEOUT_S) as resp:
            reply = json.loads(resp.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise AssetsInvalid("node_unreachable", f"{url}: {exc}") from None
    if not isinstance(reply, dict) or "error" in reply or "result" not in reply:
        raise AssetsInvalid("node_error", f"{method}: {reply.get('error') if isinstance(reply, dict) else reply!r}")
    return reply["result"]


def reread_ethereum(doc, header: dict, rpc_url: str) -> list[str]:
    """Re-reads every ETH entry's balance at the header's Ethereum height from `rpc_url` (a
    node the verifier trusts), after checking the node is on the header's chain and block;
    and every token entry whose asset code is `ERC20:<contract>` with balanceOf at that block.
    Returns report lines; raises AssetsInvalid on any difference. Tokens under other codes
    (the header names no contract for them) are not re-read: the report says so."""
    eth = next((c for c in header["chains"] if c["chain"] == "ethereum"), None)
    if eth is None:
        return ["ethereum: not in this snapshot"]
    chain_id = int(_eth_rpc(rpc_url, "eth_chainId", []), 16)
    if str(chain_id) != eth["network"]:
        raise AssetsInvalid("node_chain_mismatch", f"the node is on chain {chain_id}, the header on {eth['network']}")
    height = hex(eth["height"])
    block = _eth_rpc(rpc_url, "eth_getBlockByNumber", [height, False])
    if not block or block.get("hash", "").lower() != "0x" + eth["block_hash"].lower():
        raise AssetsInvalid("node_block_mismatch", f"block {eth['height']} on the node is not {eth['block_hash']}")
    checked, tokens, skipped = 0, {}, set()
    for e in doc["addresses"]:
        if e["chain"] != "ethereum":
            continue
        token = _ERC20_CODE_RE.fullmatch(e["asset"])
        if e["asset"] == "ETH":
            on_chain = int(_eth_rpc(rpc_url, "eth_getBalance", [e["address"], height]), 16)
        elif token:  # the asset code names the contract: balanceOf(address) at the height
            data = "0x70a08231" + bytes.fromhex(e["address"][2:]).rjust(32, b"\0").hex()
            out = _eth_rpc(rpc_url, "eth_call", [{"to": token.group(1), "data": data}, height])
            if not isinstance(out, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", out):
                raise AssetsInvalid("node_error", f"balanceOf on {token.group(1)} returned {out!r}")
            on_chain = int(out, 16)
        else:
            skipped.add(e["asset"])
            continue
        if on_chain != int(e["balance"]):
            raise AssetsInvalid("balance_differs_on_chain", f"{e['address']} holds {on_chain} {e['asset']} at {eth['height']}, the file says {e['balance']}")
        if token:
            tokens[e["asset"]] = tokens.get(e["asset"], 0) + 1
        else:
            checked += 1
    lines = [f"valid: {checked} ETH balances re-read from the node at height {eth['height']}"]
    lines += [f"valid: {n} {code} balances re-read from the node at height {eth['height']}" for code, n in sorted(tokens.items())]
    lines += [f"{code}: token balances not re-read (the header names no contract)" for code in sorted(skipped)]
    return lines


def _btc_rpc(url: str, method: str, params: list):
    """JSON-RPC 1.0 to a bitcoind/btcd the verifier trusts (credentials in the URL's userinfo).
    Numbers with a fraction come back as Decimal (exact), never float."""
    import base64 as b64
    import decimal
    import json
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    plain = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + b64.b64encode(token.encode()).decode()
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(plain, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=limits.POR_BALANCE_READ_TIMEOUT_S) as resp:
            reply = json.loads(resp.read(64 << 20), parse_float=decimal.Decimal)
    except urllib.error.HTTPError as exc:  # bitcoind answers RPC errors with HTTP 500 + a body
        try:
            reply = json.loads(exc.read(1 << 20), parse_float=decimal.Decimal)
        except ValueError:
            raise AssetsInvalid("node_error", f"{method}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise AssetsInvalid("node_unreachable", f"{plain}: {exc}") from None
    if not isinstance(reply, dict) or reply.get("error") or "result" not in reply:
        return None if _no_transactions(reply) else _raise_node_error(method, reply)
    return reply["result"]


def _no_transactions(reply) -> bool:
    # btcd answers searchrawtransactions for an address it never saw with error -5.
    err = reply.get("error") if isinstance(reply, dict) else None
    return isinstance(err, dict) and err.get("code") == -5 and "No information available" in str(err.get("message"))


def _raise_node_error(method, reply):
    raise AssetsInvalid("node_error", f"{method}: {reply.get('error') if isinstance(reply, dict) else reply!r}")


def _sats(value) -> int:
    import decimal

    if isinstance(value, int) and not isinstance(value, bool):
        return value * 100_000_000
    if not isinstance(value, decimal.Decimal):
        raise AssetsInvalid("node_error", f"amount {value!r} is not a number")
    sats = value * 100_000_000
    if sats != sats.to_integral_value():
        raise AssetsInvalid("node_error", f"amount {value} has more than 8 decimals")
    return int(sats)


def bitcoin_balance_at(rpc_url: str, address: str, height: int) -> int:
    """Satoshis `address` held at the end of block `height`, from a node with an address index
    (btcd --addrindex: searchrawtransactions): outputs paying it in blocks <= height, minus
    those spent in blocks <= height."""
    heights: dict[str, int] = {}

    def height_of(block_hash: str) -> int:
        if block_hash not in heights:
            heights[block_hash] = int(_btc_rpc(rpc_url, "getblockheader", [block_hash, True])["height"])
        return heights[block_hash]

    txs, skip = [], 0
    while True:
        page = _btc_rpc(rpc_url, "searchrawtransactions", [address, 1, skip, limits.POR_BTC_TXS_PAGE, 0, False]) or []
        txs.extend(page)
        skip += len(page)
        if len(page) < limits.POR_BTC_TXS_PAGE:
            break
        if skip >= limits.POR_BTC_TXS_MAX:
            raise AssetsInvalid("address_too_busy", f"{address}: more than {limits.POR_BTC_TXS_MAX} transactions")
    confirmed = [tx for tx in txs if tx.get("blockhash") and height_of(tx["blockhash"]) <= height]
    received: dict[tuple[str, int], int] = {}
    for tx in confirmed:
        for out in tx.get("vout", []):
            if address in (out.get("scriptPubKey", {}).get("addresses") or []):
                received[(tx["txid"], int(out["n"]))] = _sats(out["value"])
    spent = {(i["txid"], int(i["vout"])) for tx in confirmed for i in tx.get("vin", []) if "txid" in i}
    return sum(v for k, v in received.items() if k not in spent)


def reread_bitcoin(doc, header: dict, rpc_url: str) -> list[str]:
    """Re-reads every BTC entry's balance at the header's Bitcoin height from `rpc_url`, after
    checking the node has the header's block at that height. Raises AssetsInvalid on any
    difference."""
    btc = next((c for c in header["chains"] if c["chain"] == "bitcoin"), None)
    if btc is None:
        return ["bitcoin: not in this snapshot"]
    try:
        block_hash = _btc_rpc(rpc_url, "getblockhash", [btc["height"]])
    except AssetsInvalid as exc:
        if exc.reason != "node_error":
            raise
        raise AssetsInvalid("node_block_mismatch", f"the node has no block {btc['height']} ({exc.detail})") from None
    if block_hash != btc["block_hash"]:
        raise AssetsInvalid("node_block_mismatch", f"block {btc['height']} on the node is not {btc['block_hash']}")
    checked = 0
    for e in doc["addresses"]:
        if e["chain"] != "bitcoin":
            continue
        on_chain = bitcoin_balance_at(rpc_url, e["address"], btc["height"])
        if on_chain != int(e["balance"]):
            raise AssetsInvalid("balance_differs_on_chain", f"{e['address']} holds {on_chain} at {btc['height']}, the file says {e['balance']}")
        checked += 1
    return [f"valid: {checked} BTC balances re-read from the node at height {btc['height']}"]
