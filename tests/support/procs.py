"""Real processes in tests, the way Bitcoin Core's functional framework runs them.

- `wait_until(predicate, timeout_s, what)`: polls a named condition with a deadline.
- `Proc`: starts a command with its own log files, waits until ready, fails with the
  process's stderr if it dies, stops it by its pid (SIGTERM, then SIGKILL).
- `free_port()`: a port on 127.0.0.1 for a process to listen on, handed out once per run.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time

POLL_S = 0.05


class WaitTimeout(AssertionError):
    pass


class ProcessDied(AssertionError):
    """Raised by a predicate to stop waiting at once: what was awaited can no longer happen."""


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = POLL_S):
    """Returns the predicate's first truthy value; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessDied:
            raise
        except Exception as exc:  # the predicate may fail until the thing is up
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise WaitTimeout(f"timed out after {timeout_s}s waiting until {what}{extra}")
        time.sleep(poll_s)


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


# Listening ports for test processes come from below the kernel's ephemeral range. bind(0) and
# every outgoing connection take their ports from that range, so a port picked there and closed
# could be taken by some client socket (a peer dialling another) before our process binds it:
# CI saw a signer refuse to start with "Address already in use". Below the range nothing takes a
# port unasked. Each port is handed out once per pytest process (a port closed by an earlier test
# may still be in TIME_WAIT), and the starting point is drawn from the pid so that two test runs
# on one machine start far apart.
PORT_MIN = 20_000
PORT_MAX = max(PORT_MIN + 2_000, _ephemeral_low()) - 1
_ports_given: set[int] = set()
_port_next = PORT_MIN + (os.getpid() * 7_919) % (PORT_MAX - PORT_MIN)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports_at(offsets) -> int:
    """A base b such that every b + offset is free and was never handed out in this run; all of
    them are taken for the caller. For programs that derive their ports from one base."""
    global _port_next
    offsets = sorted(set(offsets))
    assert offsets and offsets[0] >= 0 and offsets[-1] < PORT_MAX - PORT_MIN, offsets
    span = PORT_MAX - PORT_MIN - offsets[-1]
    for _ in range(span):
        base = PORT_MIN + (_port_next - PORT_MIN) % span
        _port_next = base + 1
        ports = [base + off for off in offsets]
        if any(p in _ports_given for p in ports) or not all(_bindable(p) for p in ports):
            continue
        _ports_given.update(ports)
        return base
    raise AssertionError(f"no free ports for offsets {offsets} in {PORT_MIN}..{PORT_MAX}")


def free_port() -> int:
    return free_ports_at([0])


def tail(path: pathlib.Path, n_bytes: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return data[-n_bytes:].decode(errors="replace")


class Proc:
    def __init__(self, name: str, argv: list[str], workdir: pathlib.Path, env: dict | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Proc":
        assert self.popen is None, f"{self.name} already started"
        self.popen = subprocess.Popen(
            self.argv,
            stdout=open(self.stdout_path, "ab"),
            stderr=open(self.stderr_path, "ab"),
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.workdir,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, predicate, timeout_s: float, what: str):
        def check():
            if not self.alive():
                raise ProcessDied(
                    f"{self.name} exited with {self.popen.returncode} before {what}:\n{tail(self.stderr_path)}"
                )
            return predicate()

        try:
            return wait_until(check, timeout_s, f"{self.name}: {what}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}\n--- {self.name} stderr ---\n{tail(self.stderr_path)}") from None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self, timeout_s: float = 15):
        if not self.alive():
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)
