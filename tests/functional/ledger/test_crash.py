"""A real crash in the middle of a batch: a child process (fork+exec, its own interpreter) is
SIGKILLed while its write transaction is open. Afterwards the checker passes (the fixture runs
it) and no transfer of the batch is visible."""

from __future__ import annotations

import pathlib
import sys

from node.ledger import Ledger
from node.ledger import TransferCreate as T
from node.ledger import TransferResult as R
from support.procs import Proc, tail, wait_until

CHILD = pathlib.Path(__file__).with_name("crash_child.py")


def _child(store, tmp_path, marker, debit, credit, mode) -> Proc:
    url = store.url.render_as_string(hide_password=False)
    return Proc(
        f"crash-child-{mode}",
        [sys.executable, CHILD, url, store.schema or "-", marker, debit, credit, mode],
        tmp_path / "child",
    ).start()


def test_kill_in_the_middle_of_a_batch_leaves_nothing(world, store, tmp_path):
    w = world
    before = w.ledger.balances([w.hot, w.clearing])
    marker = tmp_path / "marker"
    child = _child(store, tmp_path, marker, w.hot, w.clearing, "pause")
    try:
        child.wait_ready(marker.exists, 60, "the child is inside its write transaction")
        child.kill()
    finally:
        child.stop()
    assert child.popen.returncode == -9, tail(child.stderr_path)
    # The next writer gets the lock (the database rolled the dead transaction back)…
    assert w.ledger.create_transfers([T("after-crash", w.hot, w.clearing, 5, "BTC", 1)], actor="t") == [R.ok]
    # …and nothing of the killed batch is visible.
    assert w.ledger.lookup_transfers([f"crash-{i}" for i in range(500)]) == {}
    after = w.ledger.balances([w.hot, w.clearing])
    assert after[w.hot].debits_posted == before[w.hot].debits_posted + 5


def test_kill_at_an_arbitrary_moment_keeps_batches_whole(world, store, tmp_path):
    w = world
    marker = tmp_path / "marker"
    child = _child(store, tmp_path, marker, w.hot, w.clearing, "loop")
    try:
        child.wait_ready(lambda: marker.exists() and int(marker.read_text() or 0) >= 3, 120, "three batches committed")
        child.kill()
    finally:
        child.stop()
    reopened = Ledger(store)
    hot = reopened.balance(w.hot)
    moved = hot.debits_posted - 1000
    assert moved >= 600 and moved % 200 == 0, f"{moved} units moved: a batch was applied in part"
    committed = moved // 200
    found = reopened.lookup_transfers([f"loop-{committed - 1}-{i}" for i in range(200)] + [f"loop-{committed}-0"])
    assert len(found) == 200, "the last committed batch is complete and the next one absent"
