"""Who the coordinator will not pick: peers whose sessions keep aborting with them as culprit."""

from __future__ import annotations

import threading
import time
from collections import deque

from node import limits


class Quarantine:
    def __init__(self, aborts: int = limits.CLUSTER_QUARANTINE_ABORTS, window_s: float = limits.CLUSTER_QUARANTINE_WINDOW_S,
                 duration_s: float = limits.CLUSTER_QUARANTINE_S, clock=time.monotonic):
        assert aborts >= 1 and window_s > 0 and duration_s > 0
        self.aborts, self.window_s, self.duration_s, self.clock = aborts, window_s, duration_s, clock
        self._lock = threading.Lock()
        self._events: dict[str, deque] = {}
        self._until: dict[str, float] = {}

    def record_abort(self, culprit: str) -> bool:
        """Counts one abort naming `culprit`; True when this put it in quarantine."""
        with self._lock:
            now = self.clock()
            q = self._events.setdefault(culprit, deque(maxlen=self.aborts))
            q.append(now)
            while q and q[0] < now - self.window_s:
                q.popleft()
            if len(q) >= self.aborts and self._until.get(culprit, 0) <= now:
                self._until[culprit] = now + self.duration_s
                q.clear()
                return True
            return False

    def is_quarantined(self, peer: str) -> bool:
        with self._lock:
            return self._until.get(peer, 0) > self.clock()

    def quarantined(self) -> list[str]:
        with self._lock:
            now = self.clock()
            return sorted(p for p, t in self._until.items() if t > now)

    def release(self, peer: str) -> None:
        with self._lock:
            self._until.pop(peer, None)
            self._events.pop(peer, None)
