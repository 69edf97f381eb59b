"""Install-time step (setup.py runs it): signer.proto -> signer_pb2.py, signer_pb2_grpc.py.

The generated files are not committed. grpc_tools writes `import signer_pb2`, which only works
with mpc/proto on sys.path; we rewrite it to a package-relative import so that
`import mpc.proto.signer_pb2_grpc` works anywhere. No-op when the outputs are newer.
"""

from __future__ import annotations

import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = sorted(HERE.glob("*.proto"))


def _outputs(proto: pathlib.Path) -> list[pathlib.Path]:
    return [HERE / f"{proto.stem}_pb2.py", HERE / f"{proto.stem}_pb2_grpc.py"]


def _fresh(proto: pathlib.Path) -> bool:
    outs = _outputs(proto)
    return all(o.exists() and o.stat().st_mtime >= proto.stat().st_mtime for o in outs) and (
        HERE / "build.py"
    ).stat().st_mtime <= min(o.stat().st_mtime for o in outs)


def build(force: bool = False) -> None:
    from grpc_tools import protoc  # build-time dependency (pyproject build-system.requires)
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    for proto in PROTOS:
        if not force and _fresh(proto):
            continue
        rc = protoc.main(
            ["grpc_tools.protoc", f"-I{HERE}", f"-I{include}", f"--python_out={HERE}", f"--grpc_python_out={HERE}", str(proto)]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed on {proto.name} (exit {rc})")
        grpc_out = HERE / f"{proto.stem}_pb2_grpc.py"
        text = grpc_out.read_text()
        text = re.sub(rf"^import {proto.stem}_pb2 as", f"from . import {proto.stem}_pb2 as", text, flags=re.M)
        grpc_out.write_text(text)
        print(f"[proto] generated {proto.stem}_pb2*.py", file=sys.stderr)


if __name__ == "__main__":
    build(force="--force" in sys.argv)
