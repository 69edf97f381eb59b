"""What a peer holds of its ceremonies while they run, and the registry that bounds them.

A ceremony (one keygen, sign or reshare request) runs as one or more tss sessions here: a
signing runs one session per digest, a keygen or reshare one session, in which a peer that is in
both committees of a reshare hosts two parties. States:
    prepared -> running -> done -> (committed: keygen/reshare)      or -> aborted
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field

from mpc.signer.store import VaultRecord
from mpc.transport import envelope as envl
from mpc.wire.requests import Refused
from node import limits

LIVE = ("prepared", "running")
ENDED = ("done", "aborted", "committed")


@dataclass
class Party:
    party_id: str
    session: object  # mpc.engine.Session
    result: object = None
    done: bool = False
    thread: threading.Thread | None = None
    # Received messages wait here for the inbox thread, which alone calls the engine's deliver:
    # a Deliver RPC is acknowledged at once instead of waiting for tss-lib's round work.
    inbox: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=limits.CLUSTER_BUFFERED_MESSAGES_MAX))
    inbox_thread: threading.Thread | None = None


@dataclass
class LocalSession:
    sid: str
    cid: str
    protocol: str
    view: envl.SessionView
    echo: envl.EchoBook
    parties: dict[str, Party]
    index: int = 0
    digest: bytes = b""
    path: tuple = ()
    state: str = "prepared"  # prepared | running | done | aborted
    round: int = 0  # the highest round seen (sent or received), for logs
    last_activity: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Ceremony:
    cid: str
    protocol: str
    peers: tuple[str, ...]  # every peer taking part
    coordinator: str
    sessions: list[LocalSession]
    body: dict
    request_id: str = ""
    state: str = "prepared"  # prepared | running | done | aborted | committed
    culprits: tuple[str, ...] = ()  # whom this peer names: its own observation or checked evidence
    reason: str = ""
    evidence: list = field(default_factory=list)  # pb.Evidence backing some of `culprits`
    # (accuser, accused): named by another peer without evidence this peer could check
    accusations: set = field(default_factory=set)
    signatures: list = field(default_factory=list)
    public_key: bytes = b""
    chain_code: bytes = b""
    pending_record: VaultRecord | None = None
    pending_share: bytes | None = None
    drop_vault: bool = False
    drop_needs_confirm: bool = False  # a reshare's leaving peer: drop only on the new committee's signature
    vault_keys: object = None
    # Pre-params taken for this keygen/reshare. Until Start, tss-lib has computed nothing from
    # them that left this process, so a ceremony that ends before it returns them to the pool;
    # once started they are spent (never reused: no two vaults share a Paillier key).
    preparams: object = None
    joined_at: float = field(default_factory=time.monotonic)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def start_overdue(self, now: float) -> bool:
        return self.state == "prepared" and now - self.joined_at > limits.CLUSTER_START_DEADLINE_MS / 1000

    def forget_secrets(self) -> None:
        """Once a ceremony ends: a keygen/reshare's KeyShare lives on only sealed, in the store."""
        self.pending_share = None
        if self.protocol != "sign":
            for ls in self.sessions:
                for p in ls.parties.values():
                    p.result = None


class Registry:
    """The ceremonies and sessions of one peer, bounded: at most CLUSTER_ACTIVE_SESSIONS_MAX
    live sessions, of them CLUSTER_SESSIONS_PER_COORDINATOR_MAX for any one coordinator (a
    peer replaying node-signed requests in Joins holds no more), CLUSTER_RECENT_CEREMONIES_MAX
    ended ceremonies kept for Await/Commit, and CLUSTER_RECENT_SESSIONS_MAX ended session ids
    remembered (a replay names a finished one)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._sessions: dict[str, LocalSession] = {}
        self._ceremonies: dict[str, Ceremony] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()

    def ceremony(self, cid: str) -> Ceremony | None:
        with self.lock:
            return self._ceremonies.get(cid)

    def pop(self, cid: str) -> Ceremony | None:
        with self.lock:
            return self._ceremonies.pop(cid, None)

    def session(self, sid: str) -> tuple[LocalSession | None, Ceremony | None, bool]:
        """(live or ended session, its ceremony, whether its id is among the finished)."""
        with self.lock:
            ls = self._sessions.get(sid)
            return ls, (self._ceremonies.get(ls.cid) if ls else None), sid in self._finished

    def known(self, cid: str) -> bool:
        with self.lock:
            return cid in self._ceremonies or cid in self._finished

    def active_sessions(self) -> int:
        with self.lock:
            return self._active_locked()

    def _active_locked(self) -> int:
        return sum(1 for s in self._sessions.values() if s.state in LIVE)

    def overdue(self, now: float) -> list[Ceremony]:
        with self.lock:
            return [c for c in self._ceremonies.values() if c.start_overdue(now)]

    def superseded(self, c: Ceremony) -> list[Ceremony]:
        """The live ceremonies of c's coordinator for c's request: its new Join replaces them
        (a coordinator retrying loses nothing; one replaying a request holds one ceremony)."""
        with self.lock:
            return [e for e in self._ceremonies.values() if e.state in LIVE and e.coordinator == c.coordinator
                    and e.request_id == c.request_id and e.cid != c.cid]

    def register(self, c: Ceremony) -> None:
        """Refused('too_many_sessions') when its sessions would pass a bound."""
        with self.lock:
            if self._active_locked() + len(c.sessions) > limits.CLUSTER_ACTIVE_SESSIONS_MAX:
                raise Refused("too_many_sessions")
            mine = sum(len([s for s in e.sessions if s.state in LIVE]) for e in self._ceremonies.values()
                       if e.coordinator == c.coordinator and e.state in LIVE)
            if mine + len(c.sessions) > limits.CLUSTER_SESSIONS_PER_COORDINATOR_MAX:
                raise Refused("too_many_sessions_for_coordinator")
            ended = [cid for cid, e in self._ceremonies.items() if e.state in ENDED]
            for cid in ended[: max(0, len(ended) - limits.CLUSTER_RECENT_CEREMONIES_MAX)]:
                self._ceremonies.pop(cid).forget_secrets()  # the oldest ended go first
            self._ceremonies[c.cid] = c
            for s in c.sessions:
                self._sessions[s.sid] = s

    def close(self, c: Ceremony) -> None:
        """Its sessions leave the live set; their ids are remembered as finished."""
        with self.lock:
            for ls in c.sessions:
                self._sessions.pop(ls.sid, None)
                self._finished[ls.sid] = None
            while len(self._finished) > limits.CLUSTER_RECENT_SESSIONS_MAX:
                self._finished.popitem(last=False)
