"""Real processes in tests, the way Bitcoin Core's functional framework runs them.

- `wait_until(predicate, timeout_s, what)`: polls a named condition with a deadline.
- `Proc`: starts a command with its own log files, waits until ready, fails with the
  process's stderr if it dies, stops it by its pid (SIGTERM, then SIGKILL).
- `free_port()`: a port on 127.0.0.1 that was free a moment ago.
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
