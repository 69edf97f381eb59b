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
    {"accuse": "peer-3", "protocol": "sign"}      once its sessions start, abort them naming that
                                                  peer (no evidence: there is none)
    {"bogus_echo": true, "protocol": "sign"}      every echo it sends carries another hash than
                                                  the broadcast it got (the echo signed by itself)
    {"malformed_round": 1, "protocol": "sign"}    that round's messages carry bytes tss-lib
                                                  cannot read (signed, like any of its envelopes)
Faults combine: a file may hold several.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import threading

from mpc.proto import signer_pb2 as pb
from mpc.signer.participant import Participant
from mpc.transport import envelope as envl
from mpc.wire import parties as wp
from node import limits

# An unknown protobuf field (15, varint 1): tss-lib parses the same message, its hash differs.
EQUIVOCATION_SUFFIX = b"\x78\x01"
# tss-lib's tag, then bytes that are no protobuf message: every recipient's tss-lib refuses them.
MALFORMED = b"\x01" + b"\xff" * 48


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

    def start(self, caller, cid):
        ack = super().start(caller, cid)
        c = self.registry.ceremony(cid)
        accused = self._fault("accuse", c.protocol) if c is not None else None
        if ack.ok and accused:
            self.log.warning("fault_accuse", session=cid[:8], accused=accused)
            self.abort(c, (accused,), "made up: a peer that did nothing")
        return ack

    def _send_echo(self, ls, peer, e, attempts_left):
        if self._fault("bogus_echo", ls.protocol) and attempts_left == limits.CLUSTER_ECHO_SEND_ATTEMPTS:
            bogus = pb.Echo()
            bogus.CopyFrom(e)
            bogus.broadcast.payload_hash = hashlib.sha256(b"bogus" + e.broadcast.payload_hash).digest()
            bogus.signature = self.signer.sign(envl.echo_digest(bogus))
            self.log.warning("fault_bogus_echo", session=ls.sid[:8], to=peer)
            e = bogus
        super()._send_echo(ls, peer, e, attempts_left)

    def _payload_for(self, c, ls, p, ev, peer):
        wire = super()._payload_for(c, ls, p, ev, peer)
        bad = self._fault("malformed_round", ls.protocol)
        if bad is not None and ev.round == int(bad):
            self.log.warning("fault_malformed", session=ls.sid[:8], round=ev.round, to=peer)
            return MALFORMED
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
