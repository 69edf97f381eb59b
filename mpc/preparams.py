"""Pre-parameters for ECDSA keygen and resharing: two safe primes (for the range-proof modulus
N~) and a Paillier key. Finding them takes tens of seconds on two cores (a random search, high
variance), so a signer keeps a small pool ready on disk, sealed, and takes one per ceremony.

Each party needs its own: they are secret (the Paillier private key) and tss-lib's round 2
rejects two parties with the same h1/h2. A taken file is deleted before the pre-parameters are
handed out, so they are never used twice.

Test fixtures (tests/fixtures/preparams/) are plain JSON and only a loader under tests/ reads
them; `PreParamsPool` only opens files it sealed itself, so production never loads them.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import threading
from typing import TYPE_CHECKING

from node import limits
from node.log import Secret, get

if TYPE_CHECKING:
    from mpc.sealing import Sealer

log = get("mpc.preparams")

_POOL_PURPOSE = "tss-preparams"
_SUFFIX = ".sealed"


class PreParamsError(Exception):
    pass


class PreParams:
    """Opaque, secret pre-parameters (tss-lib's LocalPreParams as JSON). Prints <redacted>."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes):
        from mpc import _native

        try:
            _native.preparams_check(raw)
        except _native.NativeError as e:
            raise PreParamsError(f"pre_params_invalid: {e.message}") from None
        self._raw = Secret(bytes(raw))

    def _reveal(self) -> bytes:
        return self._raw.reveal()

    def __repr__(self) -> str:
        return "PreParams(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("PreParams are not picklable")


def generate(timeout_s: float = limits.MPC_PREPARAMS_TIMEOUT_S, concurrency: int = 1) -> PreParams:
    """Finds fresh pre-parameters (blocks this thread, not the GIL). Raises PreParamsError on
    timeout."""
    from mpc import _native

    if not 0 < timeout_s <= limits.MPC_PREPARAMS_TIMEOUT_S:
        raise ValueError("timeout_s out of range (0..MPC_PREPARAMS_TIMEOUT_S)")
    try:
        raw = _native.preparams_generate(int(timeout_s * 1000), max(3, 3 * concurrency))
    except _native.NativeError as e:
        raise PreParamsError(f"pre_params_generation_failed: {e.message}") from None
    return PreParams(raw)


class PreParamsPool:
    """A small pool of sealed pre-parameter files in `directory`, refilled by one background
    thread. `take(timeout_s)` returns one (deleting its file first) or raises PreParamsError.

    The sealing binds each file to this pool's purpose, party and the sealer's environment
    (associated data), so a file copied from another signer or a plain fixture file does not
    open. Files are written 0600 in a 0700 folder."""

    def __init__(self, directory: os.PathLike, sealer: "Sealer", size: int, party: str = "self",
                 generate_timeout_s: float = limits.MPC_PREPARAMS_TIMEOUT_S):
        if not 1 <= size <= limits.MPC_PREPARAMS_POOL_SIZE_MAX:
            raise ValueError(f"pool size out of range (1..{limits.MPC_PREPARAMS_POOL_SIZE_MAX})")
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sealer = sealer
        self._size = size
        self._party = party
        self._timeout_s = generate_timeout_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"PreParamsPool(dir={str(self.directory)!r}, size={self._size}, ready={self.ready()})"

    def _files(self) -> list[pathlib.Path]:
        return sorted(self.directory.glob("*" + _SUFFIX))

    def ready(self) -> int:
        return len(self._files())

    def start(self) -> "PreParamsPool":
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill_loop, name="preparams-pool", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Asks the refill thread to stop; a search under way ends at its own deadline."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def add(self, pp: PreParams) -> pathlib.Path:
        """Seals and stores pre-parameters: the refill thread's, or a set a ceremony that never
        started gives back."""
        name = secrets.token_hex(8)
        blob = self._sealer.seal(pp._reveal(), party=self._party, purpose=_POOL_PURPOSE, name=name)
        tmp = self.directory / f".{name}.tmp"
        path = self.directory / (name + _SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename survives a crash
        finally:
            os.close(dir_fd)
        with self._changed:
            self._changed.notify_all()
        return path

    def _fill_loop(self) -> None:
        while not self._stop.is_set():
            if self.ready() >= self._size:
                with self._changed:
                    self._changed.wait(timeout=1.0)
                continue
            try:
                self.add(generate(self._timeout_s))
                self.last_error = None
            except PreParamsError as e:
                self.last_error = str(e)
                log.warning("preparams_generation_failed", error=str(e))
                self._stop.wait(1.0)

    def take(self, timeout_s: float) -> PreParams:
        """One pre-parameter set, removed from the pool for good (never reused)."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                for path in self._files():
                    try:
                        blob = path.read_bytes()
                        path.unlink()  # gone before use: a crash never lets it be used twice
                    except FileNotFoundError:
                        continue
                    name = path.name[: -len(_SUFFIX)]
                    raw = self._sealer.open(blob, party=self._party, purpose=_POOL_PURPOSE, name=name)
                    self._changed.notify_all()
                    return PreParams(raw)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PreParamsError(f"pre_params_pool_empty: none ready within {timeout_s}s ({self.last_error or 'generating'})")
                self._changed.wait(timeout=min(left, 1.0))
