"""A signer peer's durable records: an append-only, MAC-chained log, and on it what the peer
must not forget at a restart — its hourly limits and the requests it admitted and signed
(trust model 2: "durable hourly limits"; issue 13).

Layout of data_dir:
    records.lock              flock-ed by the one process that has the records open
    records/                  0700
        mac.key.sealed        0600, 32 random bytes sealed by the peer's Sealer (purpose records-mac-key)
        log                   0600, the record log

The log is a header line naming the format, then one JSON line per record:

    custody-signer-records/1
    {"body":{"began_at_ms":1733570000000},"kind":"snapshot","mac":"<hex>","seq":1}
    {"body":{"amount":"50000","asset":"BTC",...},"kind":"admitted","mac":"<hex>","seq":2}

    mac_0 = HMAC-SHA256(mac_key, header line)
    mac_n = HMAC-SHA256(mac_key, mac_n-1 || RFC 8785 bytes of {"seq", "kind", "body"})

so a record edited, inserted, removed from the middle, reordered, or taken from another
peer's log (another key) breaks the chain at its line. Every file begins with a `snapshot`
record and no other line is one; seq numbers run on across compactions.

What the chain cannot show: a rollback. The whole folder replaced by an older copy, deleted
(the peer then starts with new, empty records), or the log cut at a record boundary, is a
valid earlier state, and nothing on local disk alone tells it apart. Catching that needs a
witness outside this disk (the other peers' copies of the records: issue 14).

Durability: each append is written and fsynced before it returns; a file created or replaced
is followed by an fsync of its folder. New records are created whole (key and log in
records.tmp/, then renamed to records/), so records/ without its key or without its log is
never a crash: it is a refusal to start. A crash mid-append leaves a last line without its
newline: dropped (its append never returned) and truncated, with a warning. Anything else
that does not verify is a RecordsError naming the file and line: the peer refuses to start.
An append that fails (disk full, I/O error) closes the records until a restart: every later
call refuses, rather than write after a partial line.

Compaction: when a file holds more than twice the live records of its last compaction (at
least RECORDS_COMPACT_AFTER_MIN, at most RECORDS_PER_FILE_MAX), it is rewritten atomically
(log.tmp 0600, fsync, rename, fsync of the folder) with only the live state: a snapshot
record, then the records the state still needs (SignerState.live()). So a file stays within
a small multiple of what the peer must remember, and replay at start is bounded by it.

Spend-once (issue 14, trust model 2): an `intent_signed` record per transaction version a peer
joined to sign, per intent — intent id, vault, chain, what the version spends on chain
(IntentChecker.spends: Bitcoin outpoints, Ethereum sender:nonce) and the SHA-256 of its
payload. It is written at Join, after every other check passed and before the peer contributes
anything to a signature; a version recorded whose ceremony never ran (another peer refused, the
coordinator died) still counts as signed for the rule below. That is the safe side: at worst
an honest retry with other inputs is refused, never a second payment signed. Rule
(SignerState.check_intent): the same version again is a retry; another version of the intent
only if it conflicts with every earlier one (shares a spend with each: an RBF fee bump, an
Ethereum replacement at the same nonce), else `intent_already_signed`; the same intent id
under another vault or chain is `intent_already_signed` too. Kept RECORDS_INTENT_KEPT_MS after
an intent's latest version, never dropped early: a full state refuses new intents instead.

Adding a kind of record: a reducer in
REDUCERS, what the state keeps of it in SignerState.live(), and a method on SignerRecords that
appends it. Replay and live updates go through the same reducer, so the state after a restart
is the state before it.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import rfc8785

from mpc.signer.hygiene import fsync_dir
from mpc.signer.sealer import Sealer, SealError
from mpc.wire import requests as rq
from mpc.wire.requests import Refused
from node import limits
from node import log as nlog

FORMAT = "custody-signer-records/1"
HEADER = (FORMAT + "\n").encode()
MAC_KEY_BYTES = 32
MAC_KEY_PURPOSE = "records-mac-key"
DIR_NAME, TMP_DIR_NAME, LOCK_NAME = "records", "records.tmp", "records.lock"
LOG_NAME, LOG_TMP_NAME, KEY_NAME = "log", "log.tmp", "mac.key.sealed"
DIR_MODE, FILE_MODE = 0o700, 0o600
_RECORD_KEYS = frozenset({"seq", "kind", "body", "mac"})


class RecordsError(Exception):
    """The records cannot be trusted, or cannot be written: the peer refuses to start (or to
    go on); the message names the file, and the line when one is at fault."""


# --- the log: storage only, it knows no kind of record -------------------------------------


@dataclass(frozen=True)
class Record:
    line: int  # in the file, the header being line 1
    seq: int
    kind: str
    body: dict


def _seed(key: bytes) -> bytes:
    return hmac.new(key, HEADER, hashlib.sha256).digest()


def _mac(key: bytes, prev: bytes, seq: int, kind: str, body: dict) -> bytes:
    return hmac.new(key, prev + rfc8785.dumps({"seq": seq, "kind": kind, "body": body}), hashlib.sha256).digest()


def _line(seq: int, kind: str, body: dict, mac: bytes) -> bytes:
    line = rfc8785.dumps({"seq": seq, "kind": kind, "body": body, "mac": mac.hex()}) + b"\n"
    assert len(line) <= limits.RECORDS_LINE_BYTES_MAX, f"a {kind} record of {len(line)} bytes"
    return line


def _no_duplicate_keys(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_new(path: pathlib.Path, chunks) -> None:
    """A new file, 0600 whatever the umask, written and fsynced (its folder is the caller's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        for c in chunks:
            _write_all(fd, c)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check(path: pathlib.Path, is_dir: bool) -> None:
    """A folder 0700 or a regular file 0600, not a link: else refuse to start, naming it."""
    st = os.lstat(path)
    want, kind = (DIR_MODE, stat.S_ISDIR) if is_dir else (FILE_MODE, stat.S_ISREG)
    if not kind(st.st_mode):
        raise RecordsError(f"{path} is not a {'folder' if is_dir else 'regular file'}")
    if stat.S_IMODE(st.st_mode) != want:
        raise RecordsError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, not {want:04o}")


class RecordLog:
    """The file: open (create, verify), append, rewrite. Use through SignerRecords."""

    def __init__(self, dir: pathlib.Path, key: bytes, lock_fd: int):
        self.dir = dir
        self.path = dir / LOG_NAME
        self._key = key
        self._lock_fd = lock_fd
        self._fd = -1
        self.seq = 0
        self._prev = _seed(key)
        self.records_in_file = 0
        self._failed = False

    def __repr__(self) -> str:
        return f"RecordLog({str(self.path)!r}, seq={self.seq}, key=<redacted>)"

    @classmethod
    def open(cls, data_dir, sealer: Sealer, party: str, first: tuple[str, dict],
             apply: Callable[[Record], None]) -> "RecordLog":
        """Creates the records if data_dir has none (with `first` as their first record), then
        verifies every line, handing each record to `apply` in order."""
        data_dir = pathlib.Path(data_dir)
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            lock_fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
            os.fchmod(lock_fd, FILE_MODE)
        except FileExistsError:
            lock_fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordsError(f"{data_dir / LOCK_NAME}: the records are open in another process") from None
            _check(data_dir / LOCK_NAME, False)
            d = data_dir / DIR_NAME
            if os.path.lexists(data_dir / TMP_DIR_NAME):
                shutil.rmtree(data_dir / TMP_DIR_NAME)  # a creation that crashed before its rename
            if not os.path.lexists(d):
                cls._create(data_dir, sealer, party, first)
            log = cls(d, cls._open_key(d, sealer, party), lock_fd)
            log._verify(apply)
            return log
        except BaseException:
            os.close(lock_fd)
            raise

    @staticmethod
    def _create(data_dir: pathlib.Path, sealer: Sealer, party: str, first: tuple[str, dict]) -> None:
        tmp = data_dir / TMP_DIR_NAME
        key = os.urandom(MAC_KEY_BYTES)
        os.mkdir(tmp, DIR_MODE)
        os.chmod(tmp, DIR_MODE)
        _write_new(tmp / KEY_NAME, [sealer.seal(key, party=party, purpose=MAC_KEY_PURPOSE, name="")])
        kind, body = first
        _write_new(tmp / LOG_NAME, [HEADER, _line(1, kind, body, _mac(key, _seed(key), 1, kind, body))])
        fsync_dir(tmp)
        os.rename(tmp, data_dir / DIR_NAME)
        fsync_dir(data_dir)

    @staticmethod
    def _open_key(d: pathlib.Path, sealer: Sealer, party: str) -> bytes:
        _check(d, True)
        key_path, log_path = d / KEY_NAME, d / LOG_NAME
        has_key, has_log = os.path.lexists(key_path), os.path.lexists(log_path)
        if not has_key and not has_log:
            raise RecordsError(f"{d} holds neither {KEY_NAME} nor {LOG_NAME}: records deleted (a new peer has no {d.name}/ at all)")
        if not has_key:
            raise RecordsError(f"{log_path}: its mac key {key_path} is missing: the records cannot be verified")
        if not has_log:
            raise RecordsError(f"{key_path} is there but {log_path} is missing: the records were deleted")
        _check(key_path, False)
        _check(log_path, False)
        if key_path.stat().st_size > limits.RECORDS_KEY_FILE_BYTES_MAX:
            raise RecordsError(f"{key_path}: larger than {limits.RECORDS_KEY_FILE_BYTES_MAX} bytes")
        try:
            key = sealer.open(key_path.read_bytes(), party=party, purpose=MAC_KEY_PURPOSE, name="")
        except SealError as exc:
            raise RecordsError(f"{key_path}: cannot be opened ({exc})") from None
        if len(key) != MAC_KEY_BYTES:
            raise RecordsError(f"{key_path}: holds {len(key)} bytes, not a {MAC_KEY_BYTES}-byte key")
        return key

    def _verify(self, apply: Callable[[Record], None]) -> None:
        if os.path.lexists(self.dir / LOG_TMP_NAME):
            os.unlink(self.dir / LOG_TMP_NAME)  # a compaction that crashed before its rename: the log is whole
        size = self.path.stat().st_size
        if size > limits.RECORDS_LOG_BYTES_MAX:
            raise RecordsError(f"{self.path}: {size} bytes, more than compaction ever leaves ({limits.RECORDS_LOG_BYTES_MAX})")
        with open(self.path, "rb") as f:
            if f.readline(len(HEADER)) != HEADER:
                raise RecordsError(f"{self.path}:1: not a {FORMAT} header")
            good_end, line_no, torn = len(HEADER), 1, b""
            while raw := f.readline(limits.RECORDS_LINE_BYTES_MAX + 1):
                line_no += 1
                where = f"{self.path}:{line_no}"
                if not raw.endswith(b"\n"):
                    if len(raw) > limits.RECORDS_LINE_BYTES_MAX:
                        raise RecordsError(f"{where}: longer than {limits.RECORDS_LINE_BYTES_MAX} bytes")
                    torn = raw  # the last line, its append cut short by a crash
                    break
                if self.records_in_file > limits.RECORDS_PER_FILE_MAX:
                    raise RecordsError(f"{where}: more than {limits.RECORDS_PER_FILE_MAX + 1} records, more than compaction ever leaves")
                apply(self._check_line(raw[:-1], where, line_no))
                good_end += len(raw)
        if self.records_in_file == 0:
            raise RecordsError(f"{self.path}:2: no records after the header: the log was cut")
        if torn:
            nlog.get("mpc.signer").warning("records_torn_line_dropped", file=str(self.path), line=line_no, bytes=len(torn))
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, good_end)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _check_line(self, raw: bytes, where: str, line_no: int) -> Record:
        try:
            d = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, RecursionError):
            raise RecordsError(f"{where}: not a JSON record") from None
        if not isinstance(d, dict) or set(d) != _RECORD_KEYS:
            raise RecordsError(f"{where}: a record has exactly the fields seq, kind, body, mac")
        seq, kind, body, mac = d["seq"], d["kind"], d["body"], d["mac"]
        if type(seq) is not int or not isinstance(kind, str) or not isinstance(body, dict) or not isinstance(mac, str):
            raise RecordsError(f"{where}: field types")
        try:
            expected = _mac(self._key, self._prev, seq, kind, body)
        except (ValueError, RecursionError):
            raise RecordsError(f"{where}: a body RFC 8785 cannot encode") from None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.hex().encode()):
            raise RecordsError(f"{where}: record seq {seq} does not verify: edited, removed, moved, or not under this mac key")
        # The mac covers seq, so a gap here is our own bug, not an edit; refused all the same.
        if seq < 1 or (self.records_in_file and seq != self.seq + 1):
            raise RecordsError(f"{where}: seq {seq} after {self.seq}")
        self.seq, self._prev = seq, expected
        self.records_in_file += 1
        return Record(line_no, seq, kind, body)

    def append(self, kind: str, body: dict) -> None:
        """Written and fsynced when it returns; a RecordsError otherwise (and for good)."""
        if self._failed:
            raise RecordsError(f"{self.path}: an earlier write failed; the records are closed until a restart")
        mac = _mac(self._key, self._prev, self.seq + 1, kind, body)
        line = _line(self.seq + 1, kind, body, mac)
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            self._failed = True
            raise RecordsError(f"{self.path}: append failed ({exc}); the records are closed until a restart") from None
        self.seq, self._prev = self.seq + 1, mac
        self.records_in_file += 1

    def rewrite(self, records: list[tuple[str, dict]]) -> None:
        """Replaces the file, atomically, with these records (seq numbers run on)."""
        assert records, "a file begins with a record"
        if self._failed:
            raise RecordsError(f"{self.path}: an earlier write failed; the records are closed until a restart")
        tmp = self.dir / LOG_TMP_NAME
        seq, prev, lines = self.seq, _seed(self._key), [HEADER]
        for kind, body in records:
            seq += 1
            prev = _mac(self._key, prev, seq, kind, body)
            lines.append(_line(seq, kind, body, prev))
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            _write_new(tmp, lines)
            os.replace(tmp, self.path)
            fsync_dir(self.dir)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._failed = True
            raise RecordsError(f"{self.path}: compaction failed ({exc}); the records are closed until a restart") from None
        os.close(self._fd)
        self._fd, self.seq, self._prev, self.records_in_file = fd, seq, prev, len(records)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1


# --- the state: what the records say, and the rules on it (no disk, no clock) --------------


@dataclass(frozen=True)
class Admitted:
    at_ms: int
    digest: bytes
    asset: str
    amount: int
    fee_asset: str = ""  # a token intent's fee_max, counted against [rate_limits.fee_per_hour]
    fee: int = 0


def _int(body: dict, name: str) -> int:
    v = body[name]
    if type(v) is not int or v < 0:
        raise ValueError(f"{name} is not a non-negative integer")
    return v


def _str(body: dict, name: str) -> str:
    v = body[name]
    if not isinstance(v, str):
        raise ValueError(f"{name} is not a string")
    return v


@dataclass(frozen=True)
class IntentVersion:
    """One transaction version of an intent, as a peer verified it itself (policy.py)."""

    intent_id: str
    vault_id: str
    chain: str
    spends: frozenset[str]  # IntentChecker.spends: outpoints, or sender:nonce
    payload_sha256: str  # hex, of the unsigned transaction's payload


@dataclass
class IntentSigned:
    vault_id: str
    chain: str
    versions: dict  # payload_sha256 -> spends (frozenset), oldest first
    at_ms: int  # the latest version's time


def _intent_body(v: IntentVersion, at_ms: int) -> dict:
    return {"intent_id": v.intent_id, "vault_id": v.vault_id, "chain": v.chain, "spends": sorted(v.spends),
            "payload_sha256": v.payload_sha256, "at_ms": at_ms}


@dataclass
class SignerState:
    began_at_ms: int = 0  # when this peer's records began (a new peer, or a restore)
    admitted: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # request_id -> Admitted, oldest first
    amount_used: dict = field(default_factory=dict)  # asset -> sum of amounts in `admitted`
    signed: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # request_id -> at_ms, oldest first
    intents: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # intent_id -> IntentSigned, least recent first
    intent_versions: int = 0  # versions held in `intents`

    def prune(self, now_ms: int) -> None:
        """Forgets what no rule needs any more. A clock that went back keeps entries longer
        (the safe side): pruning stops at the first entry still inside its window."""
        edge_ms = now_ms - limits.CLUSTER_RATE_WINDOW_S * 1000
        while self.admitted:
            rid, a = next(iter(self.admitted.items()))
            if a.at_ms > edge_ms:
                break
            del self.admitted[rid]
            self._use(a.asset, -a.amount)
            if a.fee:
                self._use(_fee_key(a.fee_asset), -a.fee)
        edge_ms = now_ms - limits.RECORDS_SIGNED_KEPT_MS
        while self.signed and next(iter(self.signed.values())) <= edge_ms:
            self.signed.popitem(last=False)
        edge_ms = now_ms - limits.RECORDS_INTENT_KEPT_MS
        while self.intents and next(iter(self.intents.values())).at_ms <= edge_ms:
            _, gone = self.intents.popitem(last=False)
            self.intent_versions -= len(gone.versions)

    def _use(self, asset: str, amount: int) -> None:
        used = self.amount_used.get(asset, 0) + amount
        assert used >= 0, (asset, used)
        if used:
            self.amount_used[asset] = used
        else:
            self.amount_used.pop(asset, None)

    def check_admit(self, request_id: str, digest: bytes, asset: str, amount: int,
                    signatures_per_hour: int, amount_per_hour: dict[str, int],
                    fee_asset: str = "", fee: int = 0, fee_per_hour: dict[str, int] | None = None) -> bool:
        """True: a new request, within the limits. False: a retry of one admitted (free).
        Refusals in precedence order: request_id_reused, rate_limit_exceeded."""
        held = self.admitted.get(request_id)
        if held is not None:
            if hmac.compare_digest(held.digest, digest):
                return False
            raise Refused("request_id_reused", request_id)
        if len(self.admitted) + 1 > min(signatures_per_hour, limits.CLUSTER_RATE_EVENTS_MAX):
            raise Refused("rate_limit_exceeded", "signatures_per_hour")
        cap = amount_per_hour.get(asset)
        if cap is not None and self.amount_used.get(asset, 0) + amount > cap:
            raise Refused("rate_limit_exceeded", f"amount_per_hour {asset}")
        cap = (fee_per_hour or {}).get(fee_asset) if fee else None
        if cap is not None and self.amount_used.get(_fee_key(fee_asset), 0) + fee > cap:
            raise Refused("rate_limit_exceeded", f"fee_per_hour {fee_asset}")
        return True

    def check_intent(self, v: IntentVersion) -> bool:
        """Spend-once. True: a new version this peer may sign (record it before taking part).
        False: a version already recorded (a retry). Refusals in precedence order:
        intent_already_signed (under another vault or chain; or a version that does not
        conflict with every earlier one), intent_versions_exceeded, intent_records_full."""
        held = self.intents.get(v.intent_id)
        if held is not None:
            if (held.vault_id, held.chain) != (v.vault_id, v.chain):
                raise Refused("intent_already_signed", f"intent {v.intent_id} was signed under vault {held.vault_id} on {held.chain}")
            if v.payload_sha256 in held.versions:
                return False
            for n, (sha, spends) in enumerate(held.versions.items()):
                if not spends & v.spends:
                    raise Refused("intent_already_signed",
                                  f"intent {v.intent_id}: version {n + 1} ({sha[:16]}) spends nothing this one spends")
            if len(held.versions) >= limits.RECORDS_INTENT_VERSIONS_MAX:
                raise Refused("intent_versions_exceeded", f"{len(held.versions)} versions of intent {v.intent_id}")
        if self.intent_versions >= limits.RECORDS_INTENT_VERSIONS_LIVE_MAX:
            raise Refused("intent_records_full", f"{self.intent_versions} versions kept")
        return True

    # Reducers: one per kind of record, the same for replay and for a live append. A body
    # comes from a verified log; one that does not parse is a RecordsError at the caller.

    def apply_snapshot(self, body: dict) -> None:
        self.began_at_ms = _int(body, "began_at_ms")

    def apply_admitted(self, body: dict) -> None:
        rid, amount, digest = _str(body, "request_id"), _str(body, "amount"), bytes.fromhex(_str(body, "digest"))
        if not (amount.isascii() and amount.isdigit()) or len(digest) != 32:
            raise ValueError("amount is not a decimal string, or digest not 32 bytes")
        fee = _str(body, "fee") if "fee" in body else "0"
        if not (fee.isascii() and fee.isdigit()):
            raise ValueError("fee is not a decimal string")
        a = Admitted(_int(body, "at_ms"), digest, _str(body, "asset"), int(amount), _str(body, "fee_asset") if "fee_asset" in body else "",
                     int(fee))
        if rid in self.admitted:
            raise ValueError(f"request {rid} admitted twice")
        self.admitted[rid] = a
        self._use(a.asset, a.amount)
        if a.fee:
            self._use(_fee_key(a.fee_asset), a.fee)

    def apply_signed(self, body: dict) -> None:
        rid = _str(body, "request_id")
        self.signed.pop(rid, None)
        self.signed[rid] = _int(body, "at_ms")
        while len(self.signed) > limits.CLUSTER_SEEN_REQUESTS_MAX:
            self.signed.popitem(last=False)

    def apply_intent_signed(self, body: dict) -> None:
        iid, vault_id, chain, sha = _str(body, "intent_id"), _str(body, "vault_id"), _str(body, "chain"), _str(body, "payload_sha256")
        spends = body["spends"]
        if not isinstance(spends, list) or not spends or not all(isinstance(x, str) for x in spends):
            raise ValueError("spends is not a non-empty list of strings")
        if len(bytes.fromhex(sha)) != 32:
            raise ValueError("payload_sha256 is not 32 bytes")
        at_ms = _int(body, "at_ms")
        held = self.intents.pop(iid, None)
        if held is None:
            held = IntentSigned(vault_id, chain, {}, at_ms)
        elif (held.vault_id, held.chain) != (vault_id, chain):
            raise ValueError(f"intent {iid} under another vault or chain")
        if sha not in held.versions:
            held.versions[sha] = frozenset(spends)
            self.intent_versions += 1
        held.at_ms = max(held.at_ms, at_ms)
        self.intents[iid] = held  # the most recent last: pruning goes by the latest version

    def live_count(self) -> int:
        return 1 + len(self.admitted) + len(self.signed) + self.intent_versions

    def live(self) -> list[tuple[str, dict]]:
        """What a compacted file holds: a snapshot, then every record the state still needs."""
        out: list[tuple[str, dict]] = [("snapshot", {"began_at_ms": self.began_at_ms})]
        out += [("admitted", _admitted_body(rid, a)) for rid, a in self.admitted.items()]
        out += [("signed", {"request_id": rid, "at_ms": at_ms}) for rid, at_ms in self.signed.items()]
        # Every version of every intent still kept; each with its intent's latest time, so the
        # replayed order and pruning are those of the state compacted.
        out += [("intent_signed", _intent_body(IntentVersion(iid, i.vault_id, i.chain, spends, sha), i.at_ms))
                for iid, i in self.intents.items() for sha, spends in i.versions.items()]
        return out


def _admitted_body(request_id: str, a: Admitted) -> dict:
    # Amounts as decimal strings: RFC 8785 numbers stop at 2**53, wei does not.
    body = {"request_id": request_id, "at_ms": a.at_ms, "digest": a.digest.hex(), "asset": a.asset, "amount": str(a.amount)}
    if a.fee:  # only then: records written before fees were counted read the same
        body["fee_asset"], body["fee"] = a.fee_asset, str(a.fee)
    return body


def _fee_key(fee_asset: str) -> str:
    """Where `amount_used` counts a fee asset's token fees (an asset code never starts "fee:")."""
    return f"fee:{fee_asset}"


def _compaction_bound(live_count: int) -> int:
    """Records a file may hold before it is compacted: twice its live records (so a compaction
    at least halves it, and appends stay O(1) amortised), within the limits."""
    return min(limits.RECORDS_PER_FILE_MAX, max(limits.RECORDS_COMPACT_AFTER_MIN, 2 * live_count))


REDUCERS: dict[str, Callable[[SignerState, dict], None]] = {
    "snapshot": SignerState.apply_snapshot,  # begins every file, and only there
    "admitted": SignerState.apply_admitted,  # a request counted toward the hourly limits
    "signed": SignerState.apply_signed,  # a request this peer signed
    "intent_signed": SignerState.apply_intent_signed,  # a transaction version joined for an intent (spend-once)
}


# --- the peer's records: the log and the state together -------------------------------------


class SignerRecords:
    """The records a signer peer keeps, durable before each call returns.

        records = SignerRecords.open(cfg.data_dir, sealer, cfg.name)
        records.admit(request_id, rq.request_digest(body), asset, amount, sph, aph, now_ms)
        records.mark_signed(request_id); records.signed(request_id)
    """

    def __init__(self, log: RecordLog, state: SignerState, clock_ms):
        self._log = log
        self._state = state
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._compact_after = limits.RECORDS_PER_FILE_MAX  # set from the live state by open()
        # Called with the seconds each durable append took (the peer's metrics): its cost is
        # on the signing path.
        self.on_append: Callable[[float], None] = lambda seconds: None

    @classmethod
    def open(cls, data_dir, sealer: Sealer, party: str, clock_ms=rq.now_ms) -> "SignerRecords":
        """Creates, or verifies and replays, the records of data_dir; RecordsError: refuse to start."""
        state = SignerState()
        first = [True]
        log_file = pathlib.Path(data_dir) / DIR_NAME / LOG_NAME

        def apply(r: Record) -> None:
            reducer = REDUCERS.get(r.kind)
            if reducer is None:
                raise RecordsError(f"{log_file}:{r.line}: unknown kind of record {r.kind!r}")
            if (r.kind == "snapshot") != first[0]:
                raise RecordsError(f"{log_file}:{r.line}: a snapshot record begins a file, and only a file")
            first[0] = False
            try:
                reducer(state, r.body)
            except (KeyError, TypeError, ValueError) as exc:
                raise RecordsError(f"{log_file}:{r.line}: {r.kind} record: {exc}") from None

        log = RecordLog.open(data_dir, sealer, party, ("snapshot", {"began_at_ms": clock_ms()}), apply)
        records = cls(log, state, clock_ms)
        with records._lock:
            now_ms = clock_ms()
            state.prune(now_ms)
            records._compact_after = _compaction_bound(state.live_count())
            records._maybe_compact(now_ms)
        return records

    def __repr__(self) -> str:
        return f"SignerRecords({self._log!r})"

    @property
    def began_at_ms(self) -> int:
        return self._state.began_at_ms

    def admit(self, request_id: str, request_digest: bytes, asset: str, amount: int,
              signatures_per_hour: int, amount_per_hour: dict[str, int], now_ms: int,
              fee_asset: str = "", fee: int = 0, fee_per_hour: dict[str, int] | None = None) -> None:
        """Counts a request toward the rolling-hour limits (wall-clock ms: they hold across a
        restart), durable when it returns. A retry (same request_id and digest) is free.
        Refusals in precedence order: request_id_reused, rate_limit_exceeded."""
        assert len(request_digest) == 32 and amount >= 0 and fee >= 0 and 0 < signatures_per_hour
        assert bool(fee) == bool(fee_asset), "a fee names its asset"
        with self._lock:
            self._state.prune(now_ms)
            if self._state.check_admit(request_id, request_digest, asset, amount, signatures_per_hour, amount_per_hour,
                                       fee_asset, fee, fee_per_hour):
                self._append("admitted", _admitted_body(request_id, Admitted(now_ms, request_digest, asset, amount, fee_asset, fee)),
                             now_ms)

    def mark_signed(self, request_id: str) -> None:
        """Durable when it returns: signed(request_id) is True from then on, across restarts,
        for at least RECORDS_SIGNED_KEPT_MS (longer than any request stays unexpired)."""
        with self._lock:
            if request_id not in self._state.signed:
                now_ms = self._clock_ms()
                self._append("signed", {"request_id": request_id, "at_ms": now_ms}, now_ms)

    def check_intent(self, version: IntentVersion) -> None:
        """Spend-once, read only (the verifier's check, the coordinator's own included):
        refuses as SignerState.check_intent does."""
        with self._lock:
            self._state.prune(self._clock_ms())
            self._state.check_intent(version)

    def record_intent(self, version: IntentVersion) -> None:
        """Spend-once, checked again and recorded under one lock (two Joins of one intent
        cannot both pass): durable when it returns, and only then may the peer take part in
        signing `version`. A version already recorded is free. Refuses as check_intent; a
        failed write is a RecordsError."""
        assert version.spends and len(bytes.fromhex(version.payload_sha256)) == 32
        with self._lock:
            now_ms = self._clock_ms()
            self._state.prune(now_ms)
            if self._state.check_intent(version):
                self._append("intent_signed", _intent_body(version, now_ms), now_ms)

    def signed(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._state.signed

    def intent_known(self, intent_id: str, now_ms: int) -> bool:
        """A version of `intent_id` is recorded (this peer joined it, and still remembers it)."""
        with self._lock:
            self._state.prune(now_ms)
            return intent_id in self._state.intents

    def _append(self, kind: str, body: dict, now_ms: int) -> None:
        t0 = time.perf_counter()
        self._log.append(kind, body)  # durable first, then visible
        self.on_append(time.perf_counter() - t0)
        REDUCERS[kind](self._state, body)
        self._maybe_compact(now_ms)

    def _maybe_compact(self, now_ms: int) -> None:
        if self._log.records_in_file > self._compact_after:
            self._state.prune(now_ms)
            live = self._state.live()
            self._log.rewrite(live)
            self._compact_after = _compaction_bound(len(live))

    def close(self) -> None:
        with self._lock:
            self._log.close()

    def __enter__(self) -> "SignerRecords":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
