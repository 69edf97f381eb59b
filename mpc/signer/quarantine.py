"""Whom the coordinator will not pick, and which peers it keeps apart.

  quarantine  a peer proven to misbehave CLUSTER_QUARANTINE_ABORTS times within the window —
              proven by evidence the coordinator checked itself, or by its own observation
              (its own deadline ran out on that peer) — is not picked for CLUSTER_QUARANTINE_S.
  conflicts   an accusation nobody can prove (GG18 often cannot pin a failure on one party)
              puts the pair (accuser, accused) in conflict for CLUSTER_CONFLICT_S: no quorum
              holds both. A rogue peer that accuses honest ones isolates itself, not them.

Both survive a restart: the state is a small JSON file (0600, written whole and renamed, with
wall-clock times). Only pinned peer names are ever recorded (the caller checks), so the state is
bounded by the cluster's size.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
import time

from node import limits

FILE_NAME = "quarantine.json"


class Quarantine:
    def __init__(self, path: pathlib.Path | None = None, aborts: int = limits.CLUSTER_QUARANTINE_ABORTS,
                 window_s: float = limits.CLUSTER_QUARANTINE_WINDOW_S, duration_s: float = limits.CLUSTER_QUARANTINE_S,
                 conflict_s: float = limits.CLUSTER_CONFLICT_S, clock=time.time):
        assert aborts >= 1 and window_s > 0 and duration_s > 0 and conflict_s > 0
        self.path = path
        self.aborts, self.window_s, self.duration_s, self.conflict_s, self.clock = aborts, window_s, duration_s, conflict_s, clock
        self._lock = threading.Lock()
        self._events: dict[str, list[float]] = {}
        self._until: dict[str, float] = {}
        self._conflicts: dict[tuple[str, str], float] = {}  # sorted pair -> until
        if path is not None:
            self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        try:
            d = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: unreadable quarantine state: {exc}") from None
        self._until = {str(p): float(t) for p, t in d.get("until", {}).items()}
        self._events = {str(p): [float(t) for t in ts][-self.aborts:] for p, ts in d.get("events", {}).items()}
        self._conflicts = {tuple(sorted((str(a), str(b)))): float(t) for a, b, t in d.get("conflicts", [])}

    def _save_locked(self) -> None:
        if self.path is None:
            return
        d = {"until": self._until, "events": self._events, "conflicts": [[a, b, t] for (a, b), t in sorted(self._conflicts.items())]}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(d, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ quarantine
    def record_abort(self, culprit: str) -> bool:
        """Counts one proven misbehaviour of `culprit`; True when this put it in quarantine."""
        with self._lock:
            now = self.clock()
            q = [t for t in self._events.get(culprit, []) if t >= now - self.window_s][-(self.aborts - 1):] if self.aborts > 1 else []
            q.append(now)
            started = False
            if len(q) >= self.aborts and self._until.get(culprit, 0) <= now:
                self._until[culprit] = now + self.duration_s
                q = []
                started = True
            self._events[culprit] = q
            self._save_locked()
            return started

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
            self._save_locked()

    # ------------------------------------------------------------------ conflicts
    def record_conflict(self, accuser: str, accused: str) -> bool:
        """Keeps the pair apart (again) for CLUSTER_CONFLICT_S; True when it is a new conflict."""
        assert accuser != accused
        pair = tuple(sorted((accuser, accused)))
        with self._lock:
            now = self.clock()
            new = self._conflicts.get(pair, 0) <= now
            self._conflicts = {k: t for k, t in self._conflicts.items() if t > now}
            if new and len(self._conflicts) >= limits.CLUSTER_CONFLICTS_MAX:
                self._conflicts.pop(min(self._conflicts, key=self._conflicts.get))  # the oldest goes first
            self._conflicts[pair] = now + self.conflict_s
            self._save_locked()
            return new

    def in_conflict(self, a: str, b: str) -> bool:
        with self._lock:
            return self._conflicts.get(tuple(sorted((a, b))), 0) > self.clock()

    def conflicts(self) -> list[tuple[str, str]]:
        with self._lock:
            now = self.clock()
            return sorted(k for k, t in self._conflicts.items() if t > now)
