"""A module-scoped local cluster: real `custody signer` processes over gRPC + mTLS on
127.0.0.1, started once per module and stopped (by pid) at its end. A failing test keeps the
cluster's directory (logs, configs) and prints where it is."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import pytest

from tests.support.cluster import LocalCluster


def make_cluster(request, peers: int, threshold: int, before_start=None, **kw):
    """`before_start(cluster)`: runs on the written files before any peer starts."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"cluster-{peers}-"))
    cluster = LocalCluster(workdir, peers, threshold, **kw)
    failed_before = request.session.testsfailed
    try:
        if before_start is not None:
            before_start(cluster)
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept cluster dir for inspection: {workdir}")
