"""Process-level rules: the binding refuses to run in a forked child (Go's runtime does not
survive fork), and `custody demo` refuses bad arguments with a clear message."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from mpc import _native

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_binding_refuses_calls_after_fork():
    _native.version()  # loaded and working in this process
    pid = os.fork()
    if pid == 0:  # the child never enters Go: the pid check comes first
        try:
            _native.version()
        except RuntimeError as e:
            os._exit(0 if "spawn" in str(e) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child was allowed to call into Go"


def test_demo_refuses_bad_threshold():
    custody = pathlib.Path(sys.executable).parent / "custody"
    out = subprocess.run([str(custody), "demo", "--parties", "3", "--threshold", "3"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 2, out
    assert "threshold" in out.stderr
