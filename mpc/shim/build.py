"""Builds the tss-lib shim: `go build -buildmode=c-shared` -> mpc/_native/libtss.so (+ .h).

Run by setup.py at install time (a user never runs `go` by hand); a no-op when the library
is newer than every .go, go.mod and go.sum here. tss-lib is pinned by go.mod + go.sum
(GOFLAGS=-mod=readonly: the build never edits them).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "_native" / "libtss.so"


def inputs() -> list[pathlib.Path]:
    return sorted([*HERE.glob("*.go"), HERE / "go.mod", HERE / "go.sum"])


def up_to_date() -> bool:
    if not OUT.exists():
        return False
    built = OUT.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in inputs())


def build(force: bool = False) -> pathlib.Path:
    if not force and up_to_date():
        return OUT
    go = shutil.which("go")
    if go is None:
        raise SystemExit("building the tss-lib shim needs Go (https://go.dev/dl/); `go` is not on PATH")
    env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-mod=readonly")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then rename: a process that has the old library mapped keeps
    # its (unlinked) copy instead of seeing the file rewritten under it.
    tmp = OUT.with_name(f".libtss-{os.getpid()}.so")
    cmd = [go, "build", "-buildmode=c-shared", "-trimpath", "-o", str(tmp), "."]
    print("[mpc] " + " ".join(cmd), file=sys.stderr, flush=True)
    try:
        subprocess.run(cmd, cwd=HERE, env=env, check=True)
        os.replace(tmp.with_suffix(".h"), OUT.with_suffix(".h"))
        os.replace(tmp, OUT)
    finally:
        for leftover in (tmp, tmp.with_suffix(".h")):
            leftover.unlink(missing_ok=True)
    return OUT


if __name__ == "__main__":
    build(force="--force" in sys.argv[1:])
