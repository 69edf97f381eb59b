"""Helpers shared by the ledger tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import time


class Clock:
    """The ledger's wall clock, advanced by tests of timeouts (no sleeping)."""

    def __init__(self):
        self.offset_ns = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns

    def advance(self, seconds: int) -> None:
        self.offset_ns += seconds * 1_000_000_000
