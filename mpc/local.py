"""Runs several parties' sessions in one process, every message through its wire bytes.

For the demo, the tests and the benchmark. One thread per party; the rounds compute on each
session's own goroutine (cffi releases the GIL), so parties work in parallel as separate peers
would. A `route` hook lets a test drop, alter or replay messages.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Mapping

from mpc.engine import Done, MpcError, Outgoing, Session

POLL_S = 0.5

# route(sender, recipient, outgoing) -> list of (wire, is_broadcast) to deliver instead
Route = Callable[[str, str, Outgoing], list]


@dataclasses.dataclass
class LocalRun:
    results: dict  # party -> Done.result
    errors: dict  # party -> MpcError raised by deliver or next_event
    messages: int
    wire_bytes: int


def recipients_of(sender: str, ev: Outgoing, sessions: Mapping[str, Session]) -> list[str]:
    if ev.recipients is not None:
        return [r for r in ev.recipients if r != sender]
    return [p for p in sessions if p != sender]


def run_local(sessions: Mapping[str, Session], timeout_s: float, route: Route | None = None,
              stop_on_error: bool = True) -> LocalRun:
    """Starts every session and moves messages until each is done or failed, or until
    `timeout_s` (then raises TimeoutError naming who waits for whom).

    One thread per party, like a peer's event loop: it polls its session and delivers each
    outgoing message to the recipients. `deliver` only checks and queues the message (the
    round's computation runs on the recipient session's own goroutine), so a sender never
    waits on a recipient's computation."""
    results: dict = {}
    errors: dict = {}
    counters = {"messages": 0, "bytes": 0}
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + timeout_s

    def record_error(party: str, err: MpcError) -> None:
        with lock:
            errors.setdefault(party, err)
        if stop_on_error:
            stop.set()

    def deliver(sender: str, recipient: str, ev: Outgoing) -> None:
        target = sessions.get(recipient)
        if target is None:
            return
        pairs = route(sender, recipient, ev) if route else [(ev.wire, ev.is_broadcast)]
        for wire, is_broadcast in pairs:
            with lock:
                counters["messages"] += 1
                counters["bytes"] += len(wire)
            try:
                target.deliver(wire, sender, is_broadcast)
            except MpcError as e:
                record_error(recipient, e)

    def party_loop(party: str, session: Session) -> None:
        try:
            session.start()
            while not stop.is_set() and time.monotonic() < deadline:
                ev = session.next_event(POLL_S)
                if ev is None:
                    continue
                if isinstance(ev, Done):
                    with lock:
                        results[party] = ev.result
                    return
                for r in recipients_of(party, ev, sessions):
                    deliver(party, r, ev)
        except MpcError as e:
            record_error(party, e)

    threads = [threading.Thread(target=party_loop, args=(p, s), name=f"party-{p}", daemon=True) for p, s in sessions.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 2 * POLL_S)
    finished = len(results) + len(errors) >= len(sessions) or (stop_on_error and errors)
    if not finished:
        waiting = {}
        for p, s in sessions.items():
            if p not in results and p not in errors:
                try:
                    waiting[p] = s.waiting_for()
                except MpcError as e:
                    waiting[p] = str(e)
        stop.set()
        for t in threads:
            t.join(2 * POLL_S)
        raise TimeoutError(f"local run did not finish in {timeout_s}s; waiting: {waiting}")
    stop.set()
    for t in threads:
        t.join(2 * POLL_S)
    return LocalRun(results, errors, counters["messages"], counters["bytes"])
