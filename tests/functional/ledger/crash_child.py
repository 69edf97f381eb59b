"""Child process for test_crash.py: writes transfer batches and gets SIGKILLed mid-way.

    python crash_child.py URL SCHEMA|- MARKER DEBIT CREDIT MODE
MODE "pause": one batch of 500; inside the transaction, after every row is written and before
the commit, writes MARKER and waits to be killed. MODE "loop": batches of 200 forever, writing
MARKER after each commit (the parent kills it at an arbitrary moment).
"""

import pathlib
import signal
import sys

from node.ledger import Ledger, TransferCreate
from node.store import Store

url, schema, marker, debit, credit, mode = sys.argv[1:7]
store = Store(url, schema=None if schema == "-" else schema)
ledger = Ledger(store)
marker_path = pathlib.Path(marker)


def pause_before_commit(tx):
    marker_path.write_text("in the middle of the batch\n")
    while True:  # the parent kills us here
        signal.pause()


if mode == "pause":
    store.before_commit_hook = pause_before_commit
    batch = [TransferCreate(f"crash-{i}", int(debit), int(credit), 1, "BTC", 1) for i in range(500)]
    ledger.create_transfers(batch, actor="crash-child")
    sys.exit("the batch committed: the parent should have killed us first")

n = 0
while True:
    batch = [TransferCreate(f"loop-{n}-{i}", int(debit), int(credit), 1, "BTC", 1) for i in range(200)]
    results = ledger.create_transfers(batch, actor="crash-child")
    assert all(r.value == "ok" for r in results), results
    n += 1
    marker_path.write_text(f"{n}\n")
