"""A signer peer's durable records (mpc/signer/records.py), on real files in a temp dir, each
reopened the way a restarted peer opens them: the hourly limits and the memory of requests
survive a restart; one request id is one request; a log that does not verify is refused at
start, naming its line; a crash mid-append is recovered; compaction keeps only the live state;
the files are private. Sealed with a test-only KDF cost (tests/support/records.py)."""

from __future__ import annotations

import os
import re
import stat

import pytest
from structlog.testing import capture_logs

from mpc.signer import records as rec
from mpc.signer.records import RecordsError, SignerRecords
from mpc.wire import requests as rq
from mpc.wire.requests import Refused
from node import limits
from node import log as nlog
from tests.support.records import T0_MS, open_records

HOUR_MS = limits.CLUSTER_RATE_WINDOW_S * 1000
SPH, APH = 3, {"BTC": 100}  # the policy's rate limits in these tests
D1, D2 = b"\x01" * 32, b"\x02" * 32  # request digests


def reopen(world) -> SignerRecords:
    data, sealer, clock = world
    return open_records(data, sealer, clock)


def log_path(world):
    return world[0] / "records" / "log"


def admit(r, rid, digest=D1, asset="BTC", amount=10, now_ms=T0_MS, sph=SPH):
    r.admit(rid, digest, asset, amount, sph, APH, now_ms)


def refusal(fn) -> tuple[str, str]:
    with pytest.raises(Refused) as e:
        fn()
    return e.value.reason, e.value.detail


# --- what survives a restart ---------------------------------------------------------------


def test_the_rate_limits_survive_a_restart(world):
    with reopen(world) as r:
        admit(r, "a", amount=60)
        admit(r, "b", amount=30)
    with reopen(world) as r:  # restarted: the hour still holds 2 signatures and 90 BTC units
        assert refusal(lambda: admit(r, "c", amount=11)) == ("rate_limit_exceeded", "amount_per_hour BTC")
        admit(r, "c", amount=10)
    with reopen(world) as r:
        assert refusal(lambda: admit(r, "d", amount=0)) == ("rate_limit_exceeded", "signatures_per_hour")
        admit(r, "d", amount=60, now_ms=T0_MS + HOUR_MS + 1)  # by the wall clock the hour has rolled


def test_a_signed_request_is_remembered_across_a_restart(world):
    with reopen(world) as r:
        r.mark_signed("a")
        assert r.signed("a") and not r.signed("b")
    with reopen(world) as r:
        assert r.signed("a") and not r.signed("b")
        began = r.began_at_ms
    assert began == T0_MS, "the records say when they began (a new peer's records are young)"


# --- one request id, one request -------------------------------------------------------------

ID_CASES = [
    # (what, the second admission of request "a" after one of "a" with D1, its refusal or None)
    ("the same request again (a retry) is free", dict(digest=D1, amount=10), None),
    ("the same request id with another body", dict(digest=D2, amount=10), ("request_id_reused", "a")),
    ("... refused as reused even past the limits", dict(digest=D2, amount=1_000), ("request_id_reused", "a")),
]


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after a restart"])
@pytest.mark.parametrize("what,second,refused", ID_CASES, ids=[c[0] for c in ID_CASES])
def test_one_request_id_is_one_request(world, what, second, refused, restart):
    r = reopen(world)
    admit(r, "a", digest=D1, amount=10)
    if restart:
        r.close()
        r = reopen(world)
    try:
        if refused is None:
            admit(r, "a", **second)
            admit(r, "b")
            admit(r, "c")  # the retry took no slot: 3 of SPH=3
            assert refusal(lambda: admit(r, "d")) == ("rate_limit_exceeded", "signatures_per_hour")
        else:
            assert refusal(lambda: admit(r, "a", **second)) == refused
    finally:
        r.close()


def test_request_digest_ignores_only_created_at_ms():
    body = rq.sign_request("v1", None, None, request_id="r1")
    assert rq.request_digest(body) == rq.request_digest({**body, "created_at_ms": body["created_at_ms"] + 5_000})
    assert rq.request_digest(body) != rq.request_digest({**body, "vault_id": "v2"})
    assert rq.request_digest(body) != rq.request_digest({**body, "approvals": [{"approver_id": "x", "signature": ""}]})
    with pytest.raises(Refused) as e:  # a signed body RFC 8785 cannot encode: refused, not a crash
        rq.request_digest({**body, "extra": 2**60})
    assert e.value.reason == "request_malformed"


def test_request_digest_tells_apart_previous_transactions_it_hashes():
    """prev_txs enter the digest by their SHA-256 (megabytes of hex, re-encoded at every peer
    otherwise): another previous transaction, or another order, is another request."""
    tx = {"chain": "bitcoin", "network": "regtest", "payload": "00", "inputs": [], "change_paths": [], "prev_txs": ["aa", "bb"]}
    body = {**rq.sign_request("v1", None, None, request_id="r1"), "transaction": tx}
    digest = rq.request_digest(body)
    assert rq.request_digest({**body, "created_at_ms": 1}) == digest
    for other in (["aa", "bc"], ["bb", "aa"], ["aa"], ["aa", "bb", "cc"]):
        assert rq.request_digest({**body, "transaction": {**tx, "prev_txs": other}}) != digest, other
    assert body["transaction"]["prev_txs"] == ["aa", "bb"], "the body itself is left as it was"


# --- a log that does not verify is a refusal to start, naming its line ----------------------


def _lines(world) -> list[bytes]:
    return log_path(world).read_bytes().split(b"\n")[:-1]  # [header, snapshot, a, b, c, signed a]


def _set_lines(world, lines) -> None:
    log_path(world).write_bytes(b"".join(ln + b"\n" for ln in lines))


def _edit(world):
    lines = _lines(world)
    lines[2] = lines[2].replace(b'"amount":"10"', b'"amount":"1"')
    assert lines[2] != _lines(world)[2]
    _set_lines(world, lines)


def _delete(world):
    lines = _lines(world)
    del lines[3]
    _set_lines(world, lines)


def _swap(world):
    lines = _lines(world)
    lines[3], lines[4] = lines[4], lines[3]
    _set_lines(world, lines)


def _other_peers_records(world) -> tuple:
    """Another peer's records, sealed under the same passphrase (its own random mac key)."""
    other = (world[0].parent / "other", world[1], world[2])
    with reopen(other) as r:
        admit(r, "a")
    return other


def _other_key(world):
    other = _other_peers_records(world)
    (world[0] / "records" / "mac.key.sealed").write_bytes((other[0] / "records" / "mac.key.sealed").read_bytes())


def _other_log(world):
    other = _other_peers_records(world)
    log_path(world).write_bytes(log_path(other).read_bytes())


def _key_for_another_party(world):
    blob = world[1].seal(os.urandom(32), party="peer-2", purpose=rec.MAC_KEY_PURPOSE)
    (world[0] / "records" / "mac.key.sealed").write_bytes(blob)


TAMPER_CASES = [
    # (what, change to the closed records, refusal; {L} = the log's path)
    ("a record edited", _edit, r"{L}:3: record seq 2 does not verify"),
    ("a record in the middle deleted", _delete, r"{L}:4: record seq 4 does not verify"),
    ("two records swapped", _swap, r"{L}:4: record seq 4 does not verify"),
    ("a record repeated", lambda w: _set_lines(w, _lines(w) + [_lines(w)[3]]), r"{L}:7: record seq 3 does not verify"),
    ("a line that is not a record", lambda w: _set_lines(w, _lines(w)[:3] + [b"{}"] + _lines(w)[3:]),
     r"{L}:4: a record has exactly the fields"),
    ("a line that is not JSON", lambda w: _set_lines(w, _lines(w)[:3] + [b"\xff"] + _lines(w)[3:]), r"{L}:4: not a JSON record"),
    ("another peer's mac key", _other_key, r"{L}:2: record seq 1 does not verify"),
    ("another peer's log", _other_log, r"{L}:2: record seq 1 does not verify"),
    ("a mac key sealed for another party", _key_for_another_party, r"mac\.key\.sealed: cannot be opened \(sealed_for_another"),
    ("the mac key deleted", lambda w: (w[0] / "records" / "mac.key.sealed").unlink(), r"{L}: its mac key .* is missing"),
    ("the log deleted", lambda w: log_path(w).unlink(), r"mac\.key\.sealed is there but {L} is missing"),
    ("both deleted", lambda w: (log_path(w).unlink(), (w[0] / "records" / "mac.key.sealed").unlink()),
     r"records holds neither mac\.key\.sealed nor log"),
    ("another format version", lambda w: _set_lines(w, [b"custody-signer-records/2"] + _lines(w)[1:]),
     r"{L}:1: not a custody-signer-records/1 header"),
    ("cut to its header", lambda w: _set_lines(w, _lines(w)[:1]), r"{L}:2: no records after the header"),
    ("a last line longer than any record", lambda w: log_path(w).write_bytes(log_path(w).read_bytes() + b"x" * (limits.RECORDS_LINE_BYTES_MAX + 1)),
     r"{L}:7: longer than " + str(limits.RECORDS_LINE_BYTES_MAX) + " bytes"),
    ("the log made readable by others", lambda w: log_path(w).chmod(0o644), r"{L} has mode 0644, not 0600"),
    ("the records folder opened to others", lambda w: (w[0] / "records").chmod(0o755), r"records has mode 0755, not 0700"),
]


@pytest.mark.parametrize("what,change,refused", TAMPER_CASES, ids=[c[0] for c in TAMPER_CASES])
def test_records_that_do_not_verify_are_refused_naming_the_line(world, what, change, refused):
    with reopen(world) as r:
        for rid in ("a", "b", "c"):
            admit(r, rid)
        r.mark_signed("a")
    change(world)
    with pytest.raises(RecordsError, match=refused.replace("{L}", re.escape(str(log_path(world))))):
        reopen(world).close()


def test_a_torn_last_line_is_dropped_and_the_log_goes_on(world):
    with reopen(world) as r:
        admit(r, "a")
        admit(r, "b")
    whole = log_path(world).read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    log_path(world).write_bytes(whole[: -len(last) - 1] + last[: len(last) // 2])  # the crash cut "b"'s append short
    nlog.get("mpc.signer")  # configured before the capture, which the first get() would undo
    with capture_logs() as logs, reopen(world) as r:
        assert log_path(world).read_bytes() == whole[: -len(last) - 1], "truncated to the last whole record"
        admit(r, "c")  # "b" never returned: it is not counted
        admit(r, "d")
        assert refusal(lambda: admit(r, "e")) == ("rate_limit_exceeded", "signatures_per_hour")
    assert [(e["event"], e["log_level"], e["line"]) for e in logs] == [("records_torn_line_dropped", "warning", 4)]
    reopen(world).close()  # and the log verifies after it


def test_a_creation_that_crashed_before_its_rename_starts_afresh(world):
    (world[0] / "records.tmp").mkdir(parents=True, mode=0o700)
    (world[0] / "records.tmp" / "mac.key.sealed").write_bytes(b"half")
    with reopen(world) as r:
        admit(r, "a")
    assert not (world[0] / "records.tmp").exists()
    reopen(world).close()


def test_one_process_at_a_time(world):
    with reopen(world):
        with pytest.raises(RecordsError, match=r"records\.lock: the records are open in another process"):
            reopen(world)
    reopen(world).close()


# --- compaction -------------------------------------------------------------------------------


def test_compaction_keeps_the_live_state_and_drops_the_old(world, monkeypatch):
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 8)
    data, sealer, clock = world
    with reopen(world) as r:
        admit(r, "old-1", amount=0)  # records 2..4 at T0
        admit(r, "old-2", amount=0)
        r.mark_signed("old-2")
        admit(r, "new-1", amount=50, now_ms=T0_MS + HOUR_MS // 2)  # 5, 6 half an hour later
        admit(r, "new-2", amount=40, now_ms=T0_MS + HOUR_MS // 2, sph=4)
        clock.ms = T0_MS + HOUR_MS + 1  # an hour after T0: old-* count no more, new-* still do
        for rid in ("new-1", "new-2", "new-3"):
            r.mark_signed(rid)  # 7, 8, 9: over the bound of 8, compacted
        text = log_path(world).read_text()
        seqs = [int(re.search(r'"seq":(\d+)', ln).group(1)) for ln in text.splitlines()[1:]]
    assert "old-1" not in text and "old-2" not in text, "the old hour and old signed ids are gone"
    assert seqs == list(range(10, 16)), f"a snapshot, new-1 and new-2 admitted, 3 signed; seq numbers run on: {seqs}"
    with reopen(world) as r:
        assert r.began_at_ms == T0_MS, "the snapshot keeps when the records began"
        assert r.signed("new-3") and not r.signed("old-2")
        # this hour's admissions still count: 90 of 100 BTC units
        assert refusal(lambda: admit(r, "x", amount=11, now_ms=clock.ms)) == ("rate_limit_exceeded", "amount_per_hour BTC")
        admit(r, "new-1", amount=50, now_ms=clock.ms)  # still known: a free retry
        assert refusal(lambda: admit(r, "new-1", digest=D2, now_ms=clock.ms))[0] == "request_id_reused"
    assert stat.S_IMODE(os.stat(log_path(world)).st_mode) == 0o600


def test_a_log_over_the_bound_at_start_is_compacted(world, monkeypatch):
    data, sealer, clock = world
    with reopen(world) as r:
        for i in range(6):
            admit(r, f"r{i}", amount=0, sph=6)
    # 7 records: more than a file ever holds under a bound of 4 (compaction runs past bound + 1)
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 4)
    with pytest.raises(RecordsError, match=r"log:7: more than 5 records"):
        reopen(world)
    # under a bound of 6 it is a crash between an append and its compaction: compacted at start
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 6)
    clock.ms = T0_MS + HOUR_MS + 1
    with reopen(world):
        assert len(_lines(world)) == 2, "header + snapshot: the old hour is gone"


# --- private files ----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_files_are_0600_in_a_0700_folder_whatever_the_umask(world, umask, monkeypatch):
    monkeypatch.setattr(limits, "RECORDS_PER_FILE_MAX", 2)  # a compaction too: the rewritten log is private
    old = os.umask(umask)
    try:
        with reopen(world) as r:
            admit(r, "a")
            admit(r, "b")
    finally:
        os.umask(old)
    modes = {p.relative_to(world[0]).as_posix(): stat.S_IMODE(os.stat(p).st_mode) for p in world[0].rglob("*")}
    assert modes == {"records.lock": 0o600, "records": 0o700, "records/log": 0o600, "records/mac.key.sealed": 0o600}
