"""A rogue signer peer for the adversarial tests: a test-only subclass of the production
Participant that a test config installs (`[test] participant = "tests.functional.adversarial.
rogue:RogueParticipant"`; config.py refuses [test] outside environment = "test"). The
production class carries no fault code: this subclass misbehaves only through its seams.

Faults come from the JSON file named by $CUSTODY_ROGUE_FAULTS (set by the harness), re-read
at every Join, so a test switches a running peer's faults without restarting it:
    {"hold_at_round": 4, "protocol": "sign"}      stop sending from that round on, as if hung
    {"equivocate_round": 1, "protocol": "sign"}   that round's broadcast reaches the last remote
                                                  recipient with other bytes (an unknown protobuf
                                                  field: tss-lib reads the same message, the
                                                  hash differs)
    {"record_envelopes": true}                    keep every envelope sent, for replays
"""

from __future__ import annotations

import json
import os
import pathlib
import threading

from mpc.signer.participant import Participant
from mpc.wire import parties as wp

# An unknown protobuf field (15, varint 1): tss-lib parses the same message, its hash differs.
EQUIVOCATION_SUFFIX = b"\x78\x01"


FAULTS_ENV = "CUSTODY_ROGUE_FAULTS"


class RogueParticipant(Participant):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.faults_file = pathlib.Path(os.environ[FAULTS_ENV])
        self.record_dir = self.faults_file.parent / "envelopes"
        self.faults: dict = {}
        self._held: set[tuple[str, str]] = set()
        self._held_lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        self.faults = json.loads(self.faults_file.read_text()) if self.faults_file.exists() else {}

    def _fault(self, key: str, protocol: str):
        if self.faults.get("protocol", "sign") != protocol:
            return None
        return self.faults.get(key)

    def join(self, caller, req):
        self._reload()
        return super().join(caller, req)

    def _payload_for(self, c, ls, p, ev, peer):
        wire = super()._payload_for(c, ls, p, ev, peer)
        hold = self._fault("hold_at_round", ls.protocol)
        if hold is not None and ev.round >= int(hold):
            with self._held_lock:
                if (ls.sid, p.party_id) not in self._held:
                    self.log.warning("fault_hold", session=ls.sid[:8], round=ev.round)
                self._held.add((ls.sid, p.party_id))
            return None
        eq = self._fault("equivocate_round", ls.protocol)
        if eq is not None and ev.is_broadcast and ev.round == int(eq):
            remote = sorted({wp.party_peer(r) for r in self._recipients(ls, p, ev)} - {self.name})
            if len(remote) >= 2 and peer == remote[-1]:
                self.log.warning("fault_equivocate", session=ls.sid[:8], round=ev.round, to=peer)
                return wire + EQUIVOCATION_SUFFIX
        return wire

    def _stalled(self, ls, p, now, ceremony_deadline):
        with self._held_lock:
            if (ls.sid, p.party_id) in self._held:
                return False  # hung on purpose: the others' deadlines must find it
        return super()._stalled(ls, p, now, ceremony_deadline)

    def _transmit(self, c, ls, peer, env):
        if self.faults.get("record_envelopes"):
            self.record_dir.mkdir(parents=True, exist_ok=True)
            (self.record_dir / f"{ls.sid}-{env.round}-{env.sender}-{peer}-{int(env.is_broadcast)}.env").write_bytes(env.SerializeToString())
        super()._transmit(c, ls, peer, env)
