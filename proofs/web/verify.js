// por-mst/1 verifier for the browser: user proofs (por-mst/1 and por-mst/1-compact), signed
// headers, assets files.
// Self-contained (no network, no CDN): WebCrypto for SHA-256, HMAC-SHA256 and Ed25519;
// BigInt for 128-bit sums and for secp256k1 public-key recovery; Keccak-256, RIPEMD-160 and
// bech32 written out below. It mirrors proofs/mst.py, proofs/header.py and proofs/assets.py
// (the reference implementation) check for check, with the same reason codes.
"use strict";

const POR = (() => {
  const FORMAT = "por-mst/1";
  const FORMAT_COMPACT = "por-mst/1-compact";
  const ASSETS_FORMAT = "por-mst/1-assets";
  const U128_LIMIT = 1n << 128n;
  const DEPTH_MAX = 32, ASSETS_MAX = 64, PARTS_MAX = 64;
  const enc = new TextEncoder();
  const subtle = globalThis.crypto && globalThis.crypto.subtle;

  class Invalid extends Error {
    constructor(reason, detail) {
      super(detail ? `${reason}: ${detail}` : reason);
      this.reason = reason;
    }
  }

  // --- bytes ------------------------------------------------------------------------------
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const fromHex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const u32be = (x) => Uint8Array.of(x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255);
  function u128be(x) {
    const out = new Uint8Array(16);
    for (let i = 15; i >= 0; i--) { out[i] = Number(x & 255n); x >>= 8n; }
    return out;
  }
  const sumsBytes = (sums) => concat(...sums.map(u128be));
  const bytesToBig = (b) => b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  function bigToBytes(x, n) {
    const out = new Uint8Array(n);
    for (let i = n - 1; i >= 0; i--) { out[i] = Number(x & 255n); x >>= 8n; }
    return out;
  }

  // --- parsing, as strict as the reference ------------------------------------------------
  function amount(text, what) {
    if (typeof text !== "string" || !/^[0-9]{1,39}$/.test(text)) {
      throw new Invalid("amount_malformed", `${what}: ${JSON.stringify(text)} is not a canonical decimal string`);
    }
    if (text.length > 1 && text[0] === "0") throw new Invalid("amount_malformed", `${what}: leading zero`);
    const v = BigInt(text);
    if (v >= U128_LIMIT) throw new Invalid("amount_out_of_range", `${what}: not below 2^128`);
    return v;
  }
  function hex(text, n, what) {
    if (typeof text !== "string" || text.length !== 2 * n || !/^[0-9a-f]*$/.test(text)) {
      throw new Invalid("hex_malformed", `${what}: expected ${n} bytes of lowercase hex`);
    }
    return fromHex(text);
  }
  // por-mst/1-compact (proofs/por-mst-1-compact.md): canonical unpadded base64url only, as
  // proofs/mst.py parse_b64u: no '=', no length 4k+1, the unused trailing bits zero.
  const B64U_VALUE = new Map([..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"].map((c, i) => [c, i]));
  function b64u(text, what, reason) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
      throw new Invalid(reason, `${what}: ${JSON.stringify(text)} is not unpadded base64url`);
    }
    const out = new Uint8Array(Math.floor((text.length * 3) / 4));
    let acc = 0, bits = 0, o = 0;
    for (const c of text) {
      acc = (acc << 6) | B64U_VALUE.get(c);
      bits += 6;
      if (bits >= 8) { bits -= 8; out[o++] = (acc >> bits) & 255; }
      acc &= (1 << bits) - 1;
    }
    if (acc !== 0) throw new Invalid(reason, `${what}: ${JSON.stringify(text)} is not canonical base64url`);
    return out;
  }
  function compactAmount(text, what) {
    const raw = b64u(text, what, "amount_malformed");
    if (raw.length > 16) throw new Invalid("amount_out_of_range", `${what}: ${raw.length} bytes is not below 2^128`);
    if (raw.length && raw[0] === 0) throw new Invalid("amount_malformed", `${what}: leading zero byte`);
    return bytesToBig(raw);
  }
  function compactHash(text, n, what) {
    const raw = b64u(text, what, "base64_malformed");
    if (raw.length !== n) throw new Invalid("base64_malformed", `${what}: expected ${n} bytes of base64url`);
    return raw;
  }
  const CODECS = { [FORMAT]: { hash: hex, amount }, [FORMAT_COMPACT]: { hash: compactHash, amount: compactAmount } };

  function field(obj, name, kind, what = "proof") {
    if (obj === null || typeof obj !== "object" || Array.isArray(obj) || !(name in obj)) {
      throw new Invalid("field_missing", `${what}.${name}`);
    }
    const v = obj[name];
    const ok = kind === "int" ? Number.isInteger(v) : kind === "list" ? Array.isArray(v)
      : kind === "object" ? v !== null && typeof v === "object" && !Array.isArray(v) : typeof v === kind;
    if (!ok) throw new Invalid("field_malformed", `${what}.${name} must be ${kind}`);
    return v;
  }
  function amounts(values, n, what, parse = amount) {
    if (!Array.isArray(values)) throw new Invalid("field_malformed", `${what} must be a list`);
    if (values.length !== n) throw new Invalid("asset_count_mismatch", `${what} has ${values.length} values for ${n} assets`);
    return values.map((v, i) => parse(v, `${what}[${i}]`));
  }
  function addSums(a, b) {
    const out = a.map((x, i) => x + b[i]);
    if (out.some((x) => x >= U128_LIMIT)) throw new Invalid("sum_overflow", "a sum reaches 2^128");
    return out;
  }

  // --- JSON, as strict as proofs/mst.py load_json ----------------------------------------
  // JSON.parse keeps the last of two equal keys and turns 1.0 into 1; a file the CLI refuses
  // must not pass here. So: duplicate keys, fractions and exponents are `json_malformed`, and
  // so are integers beyond 2^53 (the format writes large values as strings; no valid file has
  // one, and a Number would silently round it). Nesting is bounded.
  const JSON_DEPTH_MAX = 64;
  function parseJson(text, maxBytes, name) {
    const bytes = enc.encode(text).length;
    if (bytes > maxBytes) throw new Invalid("file_too_large", `${name}: ${bytes} bytes, at most ${maxBytes}`);
    let i = 0;
    const bad = (why) => { throw new Invalid("json_malformed", `${name}: ${why} at character ${i}`); };
    const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
    const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
    const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    function str() {
      STRING.lastIndex = i;
      const m = STRING.exec(text);
      if (!m) bad("malformed string");
      i = STRING.lastIndex;
      return JSON.parse(m[0]);
    }
    function value(depth) {
      if (depth > JSON_DEPTH_MAX) bad("nested too deeply");
      ws();
      const c = text[i];
      if (c === "{") {
        i++;
        const obj = {};
        const seen = new Set();
        ws();
        if (text[i] === "}") { i++; return obj; }
        for (;;) {
          ws();
          if (text[i] !== '"') bad("expected a key");
          const key = str();
          if (seen.has(key)) bad(`duplicate key ${JSON.stringify(key)}`);
          seen.add(key);
          ws();
          if (text[i] !== ":") bad("expected ':'");
          i++;
          // defineProperty: a "__proto__" key stays a plain own property, as with JSON.parse
          Object.defineProperty(obj, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "}") { i++; return obj; }
          bad("expected ',' or '}'");
        }
      }
      if (c === "[") {
        i++;
        const arr = [];
        ws();
        if (text[i] === "]") { i++; return arr; }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "]") { i++; return arr; }
          bad("expected ',' or ']'");
        }
      }
      if (c === '"') return str();
      for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
        if (text.startsWith(word, i)) { i += word.length; return v; }
      }
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (!m || m[0] === "-") bad("unexpected character");
      if (m[1] !== undefined || m[2] !== undefined) bad(`non-integer number ${m[0]}`);
      const n = Number(m[0]);
      if (!Number.isSafeInteger(n)) bad(`integer ${m[0]} beyond 2^53 (large values are decimal strings)`);
      i = NUMBER.lastIndex;
      return n;
    }
    const out = value(0);
    ws();
    if (i !== text.length) bad("trailing content");
    return out;
  }

  // --- hashes (WebCrypto) ---------------------------------------------------------------
  const sha256 = async (data) => new Uint8Array(await subtle.digest("SHA-256", data));
  async function hmac(key, data) {
    const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Uint8Array(await subtle.sign("HMAC", k, data));
  }
  const leafHash = (key, sid, uidc, part, balances) =>
    hmac(key, concat(Uint8Array.of(0), sid, uidc, u32be(part), sumsBytes(balances)));
  const nodeHash = (lh, ls, rh, rs) => sha256(concat(Uint8Array.of(1), lh, sumsBytes(ls), rh, sumsBytes(rs)));

  // --- user proof -------------------------------------------------------------------------
  async function verifyUserProof(proof) {
    if (proof === null || typeof proof !== "object" || Array.isArray(proof)) throw new Invalid("field_malformed", "a proof is a JSON object");
    const codec = typeof proof.format === "string" && Object.hasOwn(CODECS, proof.format) ? CODECS[proof.format] : null;
    if (!codec) throw new Invalid("format_unknown", `format must be ${FORMAT} or ${FORMAT_COMPACT}`);
    const sid = hex(field(proof, "snapshot_id", "string"), 16, "snapshot_id");
    const assets = field(proof, "assets", "list");
    if (assets.length < 1 || assets.length > ASSETS_MAX || !assets.every((a) => typeof a === "string" && a)) {
      throw new Invalid("field_malformed", "assets");
    }
    if (new Set(assets).size !== assets.length) throw new Invalid("field_malformed", "assets: repeated asset code");
    const nA = assets.length;
    const depth = field(proof, "depth", "int");
    if (depth < 1 || depth > DEPTH_MAX) throw new Invalid("depth_out_of_range", `depth ${depth}`);
    const root = field(proof, "root", "object");
    const rootHash = codec.hash(field(root, "hash", "string", "root"), 32, "root.hash");
    const rootSums = amounts(field(root, "sums", "list", "root"), nA, "root.sums", codec.amount);
    const accountId = field(proof, "account_id", "string");
    if (!accountId) throw new Invalid("field_malformed", "account_id is empty");
    const accountBalances = amounts(field(proof, "account_balances", "list"), nA, "account_balances", codec.amount);
    const key = codec.hash(field(proof, "key", "string"), 32, "key");
    const leaves = field(proof, "leaves", "list");
    if (leaves.length < 2 || leaves.length > PARTS_MAX) {
      throw new Invalid(leaves.length < 2 ? "too_few_parts" : "too_many_parts", `${leaves.length} leaves`);
    }
    const parsed = leaves.map((leaf, n) => {
      const what = `leaves[${n}]`;
      const index = field(leaf, "index", "int", what);
      const part = field(leaf, "part", "int", what);
      if (index < 0 || index >= 2 ** depth) throw new Invalid("index_out_of_range", `${what}.index ${index}`);
      if (part < 0 || part >= PARTS_MAX) throw new Invalid("part_out_of_range", `${what}.part ${part}`);
      const balances = amounts(field(leaf, "balances", "list", what), nA, `${what}.balances`, codec.amount);
      const path = field(leaf, "path", "list", what);
      if (path.length !== depth) throw new Invalid("path_length_mismatch", `${what}.path has ${path.length} entries`);
      const siblings = path.map((sib, level) => {
        const sw = `${what}.path[${level}]`;
        return [codec.hash(field(sib, "hash", "string", sw), 32, `${sw}.hash`), amounts(field(sib, "sums", "list", sw), nA, `${sw}.sums`, codec.amount)];
      });
      return { index, part, balances, siblings };
    });
    if (new Set(parsed.map((p) => p.index)).size !== parsed.length) throw new Invalid("indexes_not_distinct", "two leaves claim the same index");
    const parts = parsed.map((p) => p.part).sort((a, b) => a - b);
    if (!parts.every((p, i) => p === i)) throw new Invalid("parts_not_contiguous", "the parts must be exactly 0..s-1");

    const uidc = await sha256(concat(enc.encode("por-mst/1/uid"), enc.encode(accountId)));
    let total = new Array(nA).fill(0n);
    for (const { index, part, balances, siblings } of parsed) {
      let h = await leafHash(key, sid, uidc, part, balances);
      let s = balances;
      for (let level = 0; level < siblings.length; level++) {
        const [sh, ss] = siblings[level];
        if (Math.floor(index / 2 ** level) % 2 === 0) { h = await nodeHash(h, s, sh, ss); s = addSums(s, ss); }
        else { h = await nodeHash(sh, ss, h, s); s = addSums(ss, s); }
      }
      if (!equal(h, rootHash)) throw new Invalid("root_hash_mismatch", `leaf ${index} (part ${part}) does not hash to the root`);
      if (!s.every((x, i) => x === rootSums[i])) throw new Invalid("root_sums_mismatch", `leaf ${index} (part ${part}) does not sum to the root`);
      total = addSums(total, balances);
    }
    if (!total.every((x, i) => x === accountBalances[i])) throw new Invalid("balances_mismatch", "the leaves do not add up to account_balances");
    return { format: proof.format, snapshotId: toHex(sid), accountId, assets, accountBalances, rootHash: toHex(rootHash), rootSums, depth };
  }

  // --- RFC 8785 for the values a header holds ----------------------------------------------
  function jcs(v) {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) throw new Invalid("header_malformed", "only safe integers in a header");
      return String(v);
    }
    if (typeof v === "string") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
    const keys = Object.keys(v).sort(); // UTF-16 code unit order, as RFC 8785 asks
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
  }
  const HEADER_KEYS = ["assets", "chains", "created_at", "depth", "format", "negative_balances_clamped", "prev", "reserves", "root", "snapshot_id"];

  function checkHeaderShape(h) {
    if (h === null || typeof h !== "object" || Object.keys(h).sort().join() !== HEADER_KEYS.join()) {
      throw new Invalid("header_malformed", "unexpected fields");
    }
    if (h.format !== FORMAT) throw new Invalid("format_unknown", String(h.format));
    hex(h.snapshot_id, 16, "snapshot_id");
    if (typeof h.created_at !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(h.created_at)) {
      throw new Invalid("header_malformed", "created_at");
    }
    if (!Array.isArray(h.assets) || !h.assets.length) throw new Invalid("header_malformed", "assets");
    if (!Array.isArray(h.chains)) throw new Invalid("header_malformed", "chains");
    if (!Number.isInteger(h.depth) || h.depth < 1 || h.depth > 64) throw new Invalid("header_malformed", "depth");
    hex(field(h.root, "hash", "string", "root"), 32, "root.hash");
    amounts(field(h.root, "sums", "list", "root"), h.assets.length, "root.sums");
    if (!Array.isArray(h.reserves)) throw new Invalid("header_malformed", "reserves");
    h.reserves.forEach((r) => amount(r.amount, `reserves.${r.asset}`));
    if (!Number.isInteger(h.negative_balances_clamped) || h.negative_balances_clamped < 0) throw new Invalid("header_malformed", "negative_balances_clamped");
    if (h.prev !== null) hex(h.prev, 32, "prev");
  }

  async function verifySignedHeader(doc, pinnedHex, prev) {
    if (doc === null || typeof doc !== "object" || Object.keys(doc).sort().join() !== "header,signature") {
      throw new Invalid("header_malformed", "expected {header, signature}");
    }
    const sig = doc.signature;
    if (!sig || sig.alg !== "ed25519") throw new Invalid("signature_malformed", "alg must be ed25519");
    const pinned = hex((pinnedHex || "").trim().toLowerCase(), 32, "the pinned public key");
    if (sig.public_key !== toHex(pinned)) throw new Invalid("header_wrong_key", "the header names another public key than the pinned one");
    const rawSig = hex(sig.sig, 64, "signature.sig");
    checkHeaderShape(doc.header);
    let ok;
    try {
      const key = await subtle.importKey("raw", pinned, { name: "Ed25519" }, false, ["verify"]);
      ok = await subtle.verify({ name: "Ed25519" }, key, rawSig, enc.encode(jcs(doc.header)));
    } catch (e) {
      throw new Invalid("ed25519_unavailable", `this browser's WebCrypto cannot verify Ed25519 (${e.name})`);
    }
    if (!ok) throw new Invalid("header_signature_invalid", "the Ed25519 signature does not verify");
    if (prev) {
      const prevHeader = prev.signature ? prev.header : prev;
      if (doc.header.prev !== toHex(await sha256(enc.encode(jcs(prevHeader))))) {
        throw new Invalid("header_chain_broken", "prev is not the SHA-256 of the previous header");
      }
    }
    return doc.header;
  }

  // --- Keccak-256 (original padding 0x01, as Ethereum uses) ---------------------------------
  const MASK64 = (1n << 64n) - 1n;
  const KECCAK_RC = [], KECCAK_ROT = Array.from({ length: 5 }, () => new Array(5).fill(0));
  (() => {
    const rcBit = (t) => { let r = 1; for (let i = 1; i <= t % 255; i++) { r <<= 1; if (r & 0x100) r ^= 0x171; } return r & 1; };
    for (let i = 0; i < 24; i++) {
      let rc = 0n;
      for (let j = 0; j < 7; j++) if (rcBit(j + 7 * i)) rc |= 1n << BigInt(2 ** j - 1);
      KECCAK_RC.push(rc);
    }
    let x = 1, y = 0;
    for (let t = 0; t < 24; t++) { KECCAK_ROT[x][y] = ((t + 1) * (t + 2) / 2) % 64; [x, y] = [y, (2 * x + 3 * y) % 5]; }
  })();
  const rot64 = (v, n) => (n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & MASK64);
  function keccakF(A) {
    for (let round = 0; round < 24; round++) {
      const C = [0, 1, 2, 3, 4].map((x) => A[x] ^ A[x + 5] ^ A[x + 10] ^ A[x + 15] ^ A[x + 20]);
      const D = [0, 1, 2, 3, 4].map((x) => C[(x + 4) % 5] ^ rot64(C[(x + 1) % 5], 1));
      for (let i = 0; i < 25; i++) A[i] ^= D[i % 5];
      const B = new Array(25);
      for (let x = 0; x < 5; x++) for (let y = 0; y < 5; y++) B[y + 5 * ((2 * x + 3 * y) % 5)] = rot64(A[x + 5 * y], KECCAK_ROT[x][y]);
      for (let x = 0; x < 5; x++) for (let y = 0; y < 5; y++) {
        A[x + 5 * y] = B[x + 5 * y] ^ (~B[(x + 1) % 5 + 5 * y] & MASK64 & B[(x + 2) % 5 + 5 * y]);
      }
      A[0] ^= KECCAK_RC[round];
    }
  }
  function keccak256(data) {
    const rate = 136;
    const padded = new Uint8Array(Math.ceil((data.length + 1) / rate) * rate);
    padded.set(data);
    padded[data.length] ^= 0x01;
    padded[padded.length - 1] ^= 0x80;
    const A = new Array(25).fill(0n);
    for (let off = 0; off < padded.length; off += rate) {
      for (let i = 0; i < rate / 8; i++) {
        let lane = 0n;
        for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + 8 * i + b]);
        A[i] ^= lane;
      }
      keccakF(A);
    }
    const out = new Uint8Array(32);
    for (let i = 0; i < 4; i++) for (let b = 0; b < 8; b++) out[8 * i + b] = Number((A[i] >> BigInt(8 * b)) & 255n);
    return out;
  }

  // --- RIPEMD-160 ----------------------------------------------------------------------------
  const RMD_R = [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15, 7,4,13,1,10,6,15,3,12,0,9,5,2,14,11,8,
    3,10,14,4,9,15,8,1,2,7,0,6,13,11,5,12, 1,9,11,10,0,8,12,4,13,3,7,15,14,5,6,2, 4,0,5,9,7,12,2,10,14,1,3,8,11,6,15,13];
  const RMD_RP = [5,14,7,0,9,2,11,4,13,6,15,8,1,10,3,12, 6,11,3,7,0,13,5,10,14,15,8,12,4,9,1,2,
    15,5,1,3,7,14,6,9,11,8,12,2,10,0,4,13, 8,6,4,1,3,11,15,0,5,12,2,13,9,7,10,14, 12,15,10,4,1,5,8,7,6,2,13,14,0,3,9,11];
  const RMD_S = [11,14,15,12,5,8,7,9,11,13,14,15,6,7,9,8, 7,6,8,13,11,9,7,15,7,12,15,9,11,7,13,12,
    11,13,6,7,14,9,13,15,14,8,13,6,5,12,7,5, 11,12,14,15,14,15,9,8,9,14,5,6,8,6,5,12, 9,15,5,11,6,8,13,12,5,12,13,14,11,8,5,6];
  const RMD_SP = [8,9,9,11,13,15,15,5,7,7,8,11,14,14,12,6, 9,13,15,7,12,8,9,11,7,7,12,7,6,15,13,11,
    9,7,15,11,8,6,6,14,12,13,5,14,13,13,7,5, 15,5,8,11,14,14,6,14,6,9,12,9,12,5,15,8, 8,5,12,9,12,5,14,6,8,13,6,5,15,13,11,11];
  const RMD_K = [0x00000000, 0x5a827999, 0x6ed9eba1, 0x8f1bbcdc, 0xa953fd4e];
  const RMD_KP = [0x50a28be6, 0x5c4dd124, 0x6d703ef3, 0x7a6d76e9, 0x00000000];
  function rmdF(j, x, y, z) {
    if (j < 16) return x ^ y ^ z;
    if (j < 32) return (x & y) | (~x & z);
    if (j < 48) return (x | ~y) ^ z;
    if (j < 64) return (x & z) | (y & ~z);
    return x ^ (y | ~z);
  }
  const rol32 = (x, n) => (x << n) | (x >>> (32 - n));
  function ripemd160(data) {
    const len = data.length;
    const padded = new Uint8Array(Math.ceil((len + 9) / 64) * 64);
    padded.set(data);
    padded[len] = 0x80;
    const bits = BigInt(len) * 8n;
    for (let i = 0; i < 8; i++) padded[padded.length - 8 + i] = Number((bits >> BigInt(8 * i)) & 255n);
    let h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
    const X = new Array(16);
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) {
        X[i] = padded[off + 4 * i] | (padded[off + 4 * i + 1] << 8) | (padded[off + 4 * i + 2] << 16) | (padded[off + 4 * i + 3] << 24);
      }
      let [a, b, c, d, e] = h, [ap, bp, cp, dp, ep] = h;
      for (let j = 0; j < 80; j++) {
        let t = (rol32((a + rmdF(j, b, c, d) + X[RMD_R[j]] + RMD_K[j >> 4]) | 0, RMD_S[j]) + e) | 0;
        a = e; e = d; d = rol32(c, 10); c = b; b = t;
        t = (rol32((ap + rmdF(79 - j, bp, cp, dp) + X[RMD_RP[j]] + RMD_KP[j >> 4]) | 0, RMD_SP[j]) + ep) | 0;
        ap = ep; ep = dp; dp = rol32(cp, 10); cp = bp; bp = t;
      }
      const t = (h[1] + c + dp) | 0;
      h[1] = (h[2] + d + ep) | 0; h[2] = (h[3] + e + ap) | 0; h[3] = (h[4] + a + bp) | 0; h[4] = (h[0] + b + cp) | 0; h[0] = t;
    }
    const out = new Uint8Array(20);
    h.forEach((w, i) => { for (let b = 0; b < 4; b++) out[4 * i + b] = (w >>> (8 * b)) & 255; });
    return out;
  }

  // --- bech32 (BIP-173), segwit v0 ---------------------------------------------------------
  const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
  const HRP = { mainnet: "bc", testnet: "tb", signet: "tb", regtest: "bcrt" };
  function bech32Polymod(values) {
    const G = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let chk = 1;
    for (const v of values) {
      const top = chk >>> 25;
      chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
      for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk = (chk ^ G[i]) >>> 0;
    }
    return chk;
  }
  function segwitV0Address(hrp, program) {
    const data = [0];
    let acc = 0, bits = 0;
    for (const v of program) { acc = (acc << 8) | v; bits += 8; while (bits >= 5) { bits -= 5; data.push((acc >> bits) & 31); } acc &= 0xff; }
    if (bits) data.push((acc << (5 - bits)) & 31);
    const hrpExp = [...hrp].map((c) => c.charCodeAt(0) >> 5).concat([0], [...hrp].map((c) => c.charCodeAt(0) & 31));
    const pm = bech32Polymod(hrpExp.concat(data, [0, 0, 0, 0, 0, 0])) ^ 1;
    const checksum = [0, 1, 2, 3, 4, 5].map((i) => (pm >>> (5 * (5 - i))) & 31);
    return hrp + "1" + data.concat(checksum).map((d) => BECH32[d]).join("");
  }

  // --- secp256k1 public-key recovery ---------------------------------------------------------
  const P = (1n << 256n) - (1n << 32n) - 977n;
  const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const G = [0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n, 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n];
  const mod = (a, m) => ((a % m) + m) % m;
  function powMod(b, e, m) { let r = 1n; b = mod(b, m); while (e > 0n) { if (e & 1n) r = (r * b) % m; b = (b * b) % m; e >>= 1n; } return r; }
  function inv(a, m) {
    let [x0, x1, r0, r1] = [0n, 1n, m, mod(a, m)];
    while (r1 !== 0n) { const q = r0 / r1; [x0, x1] = [x1, x0 - q * x1]; [r0, r1] = [r1, r0 - q * r1]; }
    return mod(x0, m);
  }
  // Jacobian coordinates: [X, Y, Z]; null is the point at infinity.
  function jDouble(p) {
    if (!p || p[1] === 0n) return null;
    const [X, Y, Z] = p;
    const S = mod(4n * X * Y * Y, P), M = mod(3n * X * X, P);
    const X3 = mod(M * M - 2n * S, P);
    return [X3, mod(M * (S - X3) - 8n * Y * Y * Y * Y, P), mod(2n * Y * Z, P)];
  }
  function jAdd(p, q) {
    if (!p) return q;
    if (!q) return p;
    const [X1, Y1, Z1] = p, [X2, Y2, Z2] = q;
    const Z1Z1 = mod(Z1 * Z1, P), Z2Z2 = mod(Z2 * Z2, P);
    const U1 = mod(X1 * Z2Z2, P), U2 = mod(X2 * Z1Z1, P);
    const S1 = mod(Y1 * Z2 * Z2Z2, P), S2 = mod(Y2 * Z1 * Z1Z1, P);
    if (U1 === U2) return S1 === S2 ? jDouble(p) : null;
    const H = mod(U2 - U1, P), R = mod(S2 - S1, P);
    const H2 = mod(H * H, P), H3 = mod(H * H2, P);
    const X3 = mod(R * R - H3 - 2n * U1 * H2, P);
    return [X3, mod(R * (U1 * H2 - X3) - S1 * H3, P), mod(H * Z1 * Z2, P)];
  }
  function jMul(k, pt) {
    let acc = null, add = [pt[0], pt[1], 1n];
    while (k > 0n) { if (k & 1n) acc = jAdd(acc, add); add = jDouble(add); k >>= 1n; }
    return acc;
  }
  function toAffine(p) { const zi = inv(p[2], P), zi2 = mod(zi * zi, P); return [mod(p[0] * zi2, P), mod(p[1] * zi2 * zi, P)]; }
  function recover(digest, r, s, recid) {
    const x = r + (recid >= 2 ? N : 0n);
    if (x >= P) throw new Invalid("signature_invalid", "no public key recovers from it");
    const alpha = mod(x * x * x + 7n, P);
    let y = powMod(alpha, (P + 1n) / 4n, P);
    if (mod(y * y, P) !== alpha) throw new Invalid("signature_invalid", "no public key recovers from it");
    if ((y & 1n) !== BigInt(recid & 1)) y = P - y;
    const e = mod(bytesToBig(digest), N), rInv = inv(r, N);
    const Q = jAdd(jMul(mod(-e * rInv, N), G), jMul(mod(s * rInv, N), [x, y]));
    if (!Q) throw new Invalid("signature_invalid", "no public key recovers from it");
    return toAffine(Q);
  }

  // --- reserves signatures ---------------------------------------------------------------------
  const reservesMessage = (sid, root) => `por-mst/1 reserves ${sid} ${root}`;
  function varint(n) { return n < 0xfd ? Uint8Array.of(n) : Uint8Array.of(0xfd, n & 255, n >> 8); }
  async function bip137Digest(msg) {
    const prefix = enc.encode("Bitcoin Signed Message:\n");
    return sha256(await sha256(concat(varint(prefix.length), prefix, varint(msg.length), msg)));
  }
  const eip191Digest = (msg) => keccak256(concat(enc.encode("\x19Ethereum Signed Message:\n" + msg.length), msg));
  function checkRS(r, s, recid) {
    if (!(r > 0n && r < N && s > 0n && s <= N / 2n && recid >= 0 && recid <= 3)) {
      throw new Invalid("signature_malformed", "r, s out of range, high S, or bad recovery id");
    }
  }
  function decodeSignature(chain, sig) {
    if (typeof sig !== "string") throw new Invalid("signature_malformed", "not a string");
    let raw, r, s, recid;
    if (chain === "bitcoin") {
      try { raw = Uint8Array.from(atob(sig), (c) => c.charCodeAt(0)); } catch (e) { throw new Invalid("signature_malformed", "not base64"); }
      if (raw.length !== 65 || raw[0] < 39 || raw[0] > 42) throw new Invalid("signature_malformed", "not a 65-byte BIP-137 P2WPKH signature");
      recid = raw[0] - 39; r = bytesToBig(raw.slice(1, 33)); s = bytesToBig(raw.slice(33, 65));
    } else {
      if (!/^0x[0-9a-f]{130}$/.test(sig)) throw new Invalid("signature_malformed", "not 0x + 65 bytes of lowercase hex");
      raw = fromHex(sig.slice(2));
      if (raw[64] !== 27 && raw[64] !== 28) throw new Invalid("signature_malformed", "v must be 27 or 28");
      r = bytesToBig(raw.slice(0, 32)); s = bytesToBig(raw.slice(32, 64)); recid = raw[64] - 27;
    }
    checkRS(r, s, recid);
    return [r, s, recid];
  }
  async function addressOf(chain, network, Q) {
    if (chain === "bitcoin") {
      const compressed = concat(Uint8Array.of(Q[1] & 1n ? 3 : 2), bigToBytes(Q[0], 32));
      return segwitV0Address(HRP[network], ripemd160(await sha256(compressed)));
    }
    return "0x" + toHex(keccak256(concat(bigToBytes(Q[0], 32), bigToBytes(Q[1], 32))).slice(12));
  }
  async function verifyAddressSignature(chain, network, address, sid, root, sig) {
    if (chain !== "bitcoin" && chain !== "ethereum") throw new Invalid("chain_unknown", chain);
    const [r, s, recid] = decodeSignature(chain, sig);
    const msg = enc.encode(reservesMessage(sid, root));
    const digest = chain === "bitcoin" ? await bip137Digest(msg) : eip191Digest(msg);
    const derived = await addressOf(chain, network, recover(digest, r, s, recid));
    const same = chain === "ethereum" ? derived === address.toLowerCase() : derived === address;
    if (!same) throw new Invalid("signature_wrong_key", `signature is by ${derived}, not ${address}`);
  }

  async function verifyAssets(doc, header) {
    if (!doc || doc.format !== ASSETS_FORMAT) throw new Invalid("format_unknown", `format must be ${ASSETS_FORMAT}`);
    const sid = header.snapshot_id, root = header.root.hash;
    if (doc.snapshot_id !== sid) throw new Invalid("snapshot_mismatch", "the assets file is for another snapshot");
    if (doc.message !== reservesMessage(sid, root)) throw new Invalid("message_mismatch", "not this snapshot's reserves message");
    if (!Array.isArray(doc.addresses)) throw new Invalid("field_malformed", "addresses");
    const networks = Object.fromEntries(header.chains.map((c) => [c.chain, c.network]));
    const assetChain = Object.fromEntries(header.assets.map((a) => [a.code, a.chain]));
    const totals = {}, counts = {}, seen = new Set();
    header.assets.forEach((a) => { totals[a.code] = 0n; counts[a.code] = 0; });
    for (const [n, e] of doc.addresses.entries()) {
      if (!e || !["chain", "asset", "address", "balance", "signature"].every((k) => typeof e[k] === "string")) {
        throw new Invalid("field_malformed", `addresses[${n}]`);
      }
      if (!(e.asset in assetChain)) throw new Invalid("asset_unknown", `addresses[${n}]: ${e.asset}`);
      if (assetChain[e.asset] !== e.chain || !(e.chain in networks)) throw new Invalid("chain_mismatch", `addresses[${n}]`);
      const key = `${e.chain}|${e.asset}|${e.chain === "ethereum" ? e.address.toLowerCase() : e.address}`;
      if (seen.has(key)) throw new Invalid("address_repeated", `addresses[${n}]: ${e.address} counted twice for ${e.asset}`);
      seen.add(key);
      const balance = amount(e.balance, `addresses[${n}].balance`);
      await verifyAddressSignature(e.chain, networks[e.chain], e.address, sid, root, e.signature);
      totals[e.asset] += balance;
      counts[e.asset] += 1;
    }
    for (const r of header.reserves) {
      if (totals[r.asset] !== BigInt(r.amount) || counts[r.asset] !== r.addresses) {
        throw new Invalid("reserves_mismatch", `${r.asset}: the entries do not add up to the header's reserves`);
      }
    }
    return { totals, counts };
  }

  function ratioText(reserves, liabilities, places = 4) {
    if (liabilities === 0n) return reserves ? "inf" : "n/a";
    const scale = 10n ** BigInt(places), scaled = (reserves * scale) / liabilities;
    return `${scaled / scale}.${String(scaled % scale).padStart(places, "0")}`;
  }

  // --- one call for the page ----------------------------------------------------------------
  // files: {proof, header, prev, assets} (parsed JSON or undefined); key: pinned hex.
  async function verifyAll(files, pinnedKey) {
    const lines = [];
    let header = null;
    if (!subtle) throw new Invalid("webcrypto_unavailable", "open this page from a file or https:// (WebCrypto needs a secure context)");
    if (files.header) {
      header = await verifySignedHeader(files.header, pinnedKey, files.prev);
      lines.push(`valid: header of snapshot ${header.snapshot_id}, signed by the pinned key, created ${header.created_at}`);
      if (files.prev) lines.push("valid: it chains to the previous header");
    }
    if (files.proof) {
      const v = await verifyUserProof(files.proof);
      lines.push(`valid: proof for ${v.accountId} in snapshot ${v.snapshotId}`);
      v.assets.forEach((code, i) => lines.push(`${code}: your balance ${v.accountBalances[i]} is counted in total liabilities ${v.rootSums[i]}`));
      if (header) {
        if (header.snapshot_id !== v.snapshotId) throw new Invalid("snapshot_mismatch", "the proof is for another snapshot than the header");
        if (header.root.hash !== v.rootHash || !header.root.sums.every((x, i) => BigInt(x) === v.rootSums[i])) {
          throw new Invalid("root_mismatch", "the proof's root is not the signed header's root");
        }
        if (header.assets.map((a) => a.code).join("\n") !== v.assets.join("\n")) throw new Invalid("assets_mismatch", "the proof's assets are not the header's");
        lines.push("valid: the root is the one signed in the header");
      }
    }
    if (files.assets) {
      if (!header) throw new Invalid("header_required", "an assets file is checked against a signed header");
      const got = await verifyAssets(files.assets, header);
      lines.push(`valid: ${Object.values(got.counts).reduce((a, b) => a + b, 0)} address signatures`);
      header.assets.forEach((a, i) => {
        const liabilities = BigInt(header.root.sums[i]);
        lines.push(`${a.code}: reserves ${got.totals[a.code]} / liabilities ${liabilities} = ${ratioText(got.totals[a.code], liabilities)}`);
      });
    }
    if (!lines.length) throw new Invalid("nothing_to_verify", "choose a proof, a header or an assets file");
    return lines;
  }

  // File size limits: the CLI's (node/limits.py POR_*_FILE_BYTES_MAX).
  const FILE_BYTES_MAX = { proof: 1 << 20, header: 1 << 16, prev: 1 << 16, assets: 64 << 20 };
  return { Invalid, verifyAll, verifyUserProof, b64u, verifySignedHeader, verifyAssets, keccak256, ripemd160, segwitV0Address, toHex, fromHex, jcs,
           parseJson, FILE_BYTES_MAX };
})();

// --- the page -----------------------------------------------------------------------------------
if (typeof document !== "undefined") {
  const $ = (id) => document.getElementById(id);
  const readJson = async (input) => {
    const file = input.files && input.files[0];
    if (!file) return undefined;
    const max = POR.FILE_BYTES_MAX[input.id];
    if (file.size > max) throw new POR.Invalid("file_too_large", `${file.name}: ${file.size} bytes, at most ${max}`);
    let text;
    try { text = new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer()); }
    catch (e) { throw new POR.Invalid("json_malformed", `${file.name}: not UTF-8`); }
    return POR.parseJson(text, max, file.name);
  };
  const show = (status, reason, lines) => {
    const out = $("result");
    out.dataset.status = status;
    out.dataset.reason = reason;
    out.className = status;
    $("verdict").textContent = status === "valid" ? "Valid" : `Invalid — ${reason}`;
    $("details").textContent = lines.join("\n");
  };
  $("verify").addEventListener("click", async () => {
    show("working", "", ["checking…"]);
    try {
      const files = { proof: await readJson($("proof")), header: await readJson($("header")), prev: await readJson($("prev")), assets: await readJson($("assets")) };
      show("valid", "", await POR.verifyAll(files, $("pubkey").value));
    } catch (e) {
      if (e instanceof POR.Invalid) show("invalid", e.reason, [e.message]);
      else show("invalid", "error", [String(e)]);
    }
  });
  $("ready").dataset.ready = "1";
}
