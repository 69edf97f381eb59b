"""Install-time build steps: the tss-lib Go shim (a C shared library) and the protobuf code.

A user never runs `go` or `protoc` by hand: `pip install .` (or `-e .`) runs the scripts below
before the Python files are collected. Their outputs are not committed (.gitignore).
"""

import pathlib
import runpy

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent

# Each script builds into the source tree (so editable installs see the result too) and is
# a no-op when its output is newer than its inputs.
BUILD_SCRIPTS = [
    ROOT / "mpc" / "shim" / "build.py",  # go build -buildmode=c-shared -> mpc/_native/libtss.so
    ROOT / "mpc" / "proto" / "build.py",  # grpc_tools.protoc -> mpc/proto/*_pb2*.py
    ROOT / "proofs" / "native_build.py",  # cffi + OpenSSL's SHA-256 -> proofs/_native/_mstfast*.so
]


class BuildNativeThenPy(build_py):
    def run(self):
        for script in BUILD_SCRIPTS:
            if script.exists():
                try:
                    runpy.run_path(str(script), run_name="__main__")
                except SystemExit as exc:  # a script may end with sys.exit(0)
                    if exc.code not in (0, None):
                        raise
        super().run()


setup(cmdclass={"build_py": BuildNativeThenPy})
