"""The one place that loads the tss-lib shim (mpc/_native/libtss.so, cffi ABI mode).

Bytes in, bytes out: every call returns Python bytes copied out of a buffer that Go
allocated with C.malloc, which is freed here at once. Nothing else in the project touches
`ffi` or `lib`.

Go's runtime does not survive fork(): once this module is imported, the process must never
fork (multiprocessing: the "spawn" start method; subprocess: fork+exec only). Importing it in
a process that was forked from one that had already loaded it is refused.
cffi releases the GIL during every call, so a thread waiting in `next_event` does not stop
the others.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct

from cffi import FFI

_CDEF = """
void tss_free(unsigned char* p);
int tss_version(unsigned char** out, size_t* outLen);
uint64_t tss_session_new(char* kind, unsigned char* cfg, size_t cfgLen, unsigned char** out, size_t* outLen);
int tss_session_start(uint64_t h, unsigned char** out, size_t* outLen);
int tss_session_deliver(uint64_t h, unsigned char* wire, size_t wireLen, char* from, int isBroadcast,
                        unsigned char** out, size_t* outLen);
int tss_session_next_event(uint64_t h, int64_t timeoutMs, unsigned char** out, size_t* outLen);
int tss_session_waiting_for(uint64_t h, unsigned char** out, size_t* outLen);
void tss_session_free(uint64_t h);
int tss_preparams_generate(int64_t timeoutMs, int concurrency, unsigned char** out, size_t* outLen);
int tss_preparams_check(unsigned char* buf, size_t bufLen, unsigned char** out, size_t* outLen);
"""

LIB_PATH = pathlib.Path(__file__).resolve().parent / "libtss.so"

EVENT_NONE = 0
EVENT_OUTGOING = 1
EVENT_DONE = 2
EVENT_ERROR = 3


class NativeError(Exception):
    """An error reported by the shim: tss-lib's task, round and culprits (party ids)."""

    def __init__(self, task: str, round_: int, culprits: tuple[str, ...], message: str):
        super().__init__(message)
        self.task = task
        self.round = round_
        self.culprits = culprits
        self.message = message

    @classmethod
    def from_json(cls, raw: bytes) -> "NativeError":
        d = json.loads(raw)
        return cls(d.get("task", "shim"), int(d.get("round", 0)), tuple(d.get("culprits") or ()), d.get("message", ""))


def _load():
    if not LIB_PATH.exists():
        raise ImportError(
            f"{LIB_PATH} is missing: the tss-lib shim is built at install time "
            "(`pip install -e .` or `deploy/dev/tools.sh python`; by hand: python mpc/shim/build.py)"
        )
    ffi = FFI()
    ffi.cdef(_CDEF)
    return ffi, ffi.dlopen(str(LIB_PATH))


ffi, lib = _load()
_LOADED_IN_PID = os.getpid()


def _check_pid() -> None:
    # A forked child inherits a Go runtime whose threads did not survive the fork.
    if os.getpid() != _LOADED_IN_PID:
        raise RuntimeError("the tss-lib shim was loaded before fork(): use the multiprocessing 'spawn' start method")


def _take(out, out_len) -> bytes:
    try:
        return bytes(ffi.buffer(out[0], out_len[0])) if out[0] != ffi.NULL else b""
    finally:
        if out[0] != ffi.NULL:
            lib.tss_free(out[0])


def _outs():
    return ffi.new("unsigned char**"), ffi.new("size_t*")


def version() -> dict:
    _check_pid()
    out, n = _outs()
    status = lib.tss_version(out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)
    return json.loads(data)


def session_new(kind: str, config: bytes) -> int:
    _check_pid()
    out, n = _outs()
    handle = lib.tss_session_new(kind.encode(), config, len(config), out, n)
    data = _take(out, n)
    if handle == 0:
        raise NativeError.from_json(data)
    return int(handle)


def session_start(handle: int) -> None:
    _check_pid()
    out, n = _outs()
    status = lib.tss_session_start(handle, out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)


def session_deliver(handle: int, wire: bytes, sender: str, is_broadcast: bool) -> None:
    _check_pid()
    out, n = _outs()
    status = lib.tss_session_deliver(handle, wire, len(wire), sender.encode(), 1 if is_broadcast else 0, out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)


def session_next_event(handle: int, timeout_ms: int) -> tuple[int, dict | None, bytes]:
    """(kind, header, payload); kind EVENT_NONE when nothing came before the deadline."""
    _check_pid()
    out, n = _outs()
    kind = lib.tss_session_next_event(handle, timeout_ms, out, n)
    data = _take(out, n)
    if kind == -1:
        raise NativeError.from_json(data)
    if kind == EVENT_NONE:
        return EVENT_NONE, None, b""
    (hlen,) = struct.unpack_from(">I", data, 0)
    header = json.loads(data[4 : 4 + hlen])
    return kind, header, data[4 + hlen :]


def session_waiting_for(handle: int) -> tuple[str, ...]:
    _check_pid()
    out, n = _outs()
    status = lib.tss_session_waiting_for(handle, out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)
    return tuple(json.loads(data))


def session_free(handle: int) -> None:
    if os.getpid() == _LOADED_IN_PID:
        lib.tss_session_free(handle)


def preparams_generate(timeout_ms: int, concurrency: int) -> bytes:
    _check_pid()
    out, n = _outs()
    status = lib.tss_preparams_generate(timeout_ms, concurrency, out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)
    return data


def preparams_check(raw: bytes) -> None:
    _check_pid()
    out, n = _outs()
    status = lib.tss_preparams_check(raw, len(raw), out, n)
    data = _take(out, n)
    if status != 0:
        raise NativeError.from_json(data)
