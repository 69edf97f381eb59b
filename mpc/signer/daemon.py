"""One signer peer: the gRPC service of the mesh, the tss sessions it hosts, and — when the
node calls it — the coordinator of a ceremony.

Flow of a ceremony (keygen, sign, reshare):
  node --Sign(signed request)--> coordinator peer
  coordinator: checks the request itself; picks t+1 healthy, unquarantined peers;
               Join(session, peers, request) to each: every peer checks the request against its
               own policy and prepares its tss sessions (nothing runs yet);
               Start to each: the sessions run, peers relay tss messages to each other in
               Envelopes (checked by the receiver: mTLS sender, session, round, hash) and echo
               the hashes of the broadcasts they got;
               a session that stalls past its round deadline, hits an unreachable peer, sees an
               equivocation or a tss-lib error aborts, naming culprits, and tells the others;
               the coordinator retries with another quorum (sign) and quarantines repeat culprits.
  keygen/reshare end with Await (every party reports the group key it got) and Commit (only
  then does any peer write its sealed share).
"""

from __future__ import annotations

import collections
import queue
import secrets
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import coincurve
import grpc
from google.protobuf.message import DecodeError

from mpc.proto import signer_pb2 as pb
from mpc.proto import signer_pb2_grpc as pb_grpc
from mpc.signer import ceremonies as cer
from mpc.signer import requests as rq
from mpc.signer.config import SignerConfig
from mpc.signer.metrics import Metrics
from mpc.signer.policy import Policy, RequestVerifier
from mpc.signer.quarantine import Quarantine
from mpc.signer.requests import Refused
from mpc.signer.store import ShareStore, VaultRecord
from mpc.transport import envelope as envl
from mpc.transport import tls
from mpc.transport.envelope import party_peer
from mpc.transport.mesh import CHANNEL_OPTIONS, Mesh
from node import limits
from node import log as nlog

NODE = "node"  # the pinned name of the custody node's certificate
POLL_S = 0.05
# Keygen and reshare rounds carry Paillier / DLN proofs that take seconds of CPU each: their
# "no progress" deadline is this multiple of the configured (signing) round deadline.
PROOF_ROUND_FACTOR = 4
# Appended to a broadcast by the equivocation fault: an unknown protobuf field (15, varint 1),
# so tss-lib parses the same message while its bytes — and hash — differ.
_EQUIVOCATION_SUFFIX = b"\x78\x01"


@dataclass
class Party:
    party_id: str
    session: object  # mpc.engine.Session
    result: object = None
    done: bool = False
    holding: bool = False
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
    culprits: tuple[str, ...] = ()
    reason: str = ""
    signatures: list = field(default_factory=list)
    public_key: bytes = b""
    chain_code: bytes = b""
    pending_record: VaultRecord | None = None
    pending_share: bytes | None = None
    drop_vault: bool = False
    vault_keys: object = None
    # Pre-params taken for this keygen/reshare. Until Start, tss-lib has computed nothing from
    # them that left this process, so a ceremony that ends before it returns them to the pool;
    # once started they are spent (never reused: no two vaults share a Paillier key).
    preparams: object = None
    joined_at: float = field(default_factory=time.monotonic)
    cond: threading.Condition = field(default_factory=threading.Condition)


class SignerPeer:
    def __init__(self, cfg: SignerConfig, identity: tls.Identity, policy: Policy, store: ShareStore,
                 checkers: dict, preparams_source):
        self.cfg = cfg
        self.name = cfg.name
        self.identity = identity
        self.policy = policy
        self.store = store
        self.preparams_source = preparams_source
        self.verifier = RequestVerifier(policy, cfg.environment, checkers)
        self.metrics = Metrics()
        self.quarantine = Quarantine()
        peer_certs = {p.name: p.tls_cert.read_bytes() for p in cfg.peers}
        self.pins = tls.Pins({**peer_certs, NODE: cfg.node_tls_cert.read_bytes()})
        self.mesh = Mesh(identity, {p.name: (p.address, peer_certs[p.name]) for p in cfg.peers})
        self.all_peers = sorted([self.name, *peer_certs])
        self.log = nlog.get("mpc.signer", peer=self.name)
        self.faults = dict(cfg.test.get("faults", {})) if cfg.is_test else {}
        rec = cfg.test.get("record_envelopes_dir") if cfg.is_test else None
        self.record_dir = (cfg.path.parent / rec) if rec else None
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sessions: dict[str, LocalSession] = {}
        self._ceremonies: dict[str, Ceremony] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._signed_requests: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.ready = False
        self.round_timeout_s = cfg.round_timeout_ms / 1000
        # gRPC cancels a call whose future is garbage-collected: in-flight calls live here.
        self._inflight: set = set()
        self._last_probe_ok: dict[str, bool] = {}
        self._inflight_lock = threading.Lock()

    def _keep(self, f, callback=None):
        with self._inflight_lock:
            self._inflight.add(f)

        def done(f):
            with self._inflight_lock:
                self._inflight.discard(f)
            if callback is not None:
                callback(f)

        f.add_done_callback(done)
        return f

    # ------------------------------------------------------------------ helpers
    def _remember_finished(self, sid: str) -> None:
        self._finished[sid] = None
        while len(self._finished) > limits.CLUSTER_RECENT_SESSIONS_MAX:
            self._finished.popitem(last=False)

    def _prune_ceremonies_locked(self) -> None:
        """Ended ceremonies stay for Await/Commit, up to a bound; the oldest go first."""
        ended = [cid for cid, c in self._ceremonies.items() if c.state in ("done", "aborted", "committed")]
        for cid in ended[: max(0, len(ended) - limits.CLUSTER_RECENT_CEREMONIES_MAX)]:
            c = self._ceremonies.pop(cid)
            self._forget_secrets(c)

    @staticmethod
    def _forget_secrets(c: Ceremony) -> None:
        c.pending_share = None
        for ls in c.sessions:
            for p in ls.parties.values():
                if c.protocol != "sign":
                    p.result = None  # a KeyShare: it lives on only sealed, in the store

    def active_sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.state in ("prepared", "running"))

    @staticmethod
    def _start_overdue(c: Ceremony, now: float) -> bool:
        return c.state == "prepared" and now - c.joined_at > limits.CLUSTER_START_DEADLINE_MS / 1000

    def _expire_unstarted(self, only: Ceremony | None = None) -> None:
        """A ceremony joined but never started — its coordinator died or lost us between Join
        and Start — is aborted once its Start can no longer come (CLUSTER_START_DEADLINE_MS:
        the coordinator's whole Join fan-out, then its Start call). Otherwise its sessions
        would count against CLUSTER_ACTIVE_SESSIONS_MAX for good, and a keygen's pre-params
        would stay out of the pool. Every Join and health read looks at all of them; a Start
        at its own ceremony only (`only`)."""
        now = time.monotonic()
        if only is not None:
            stale = [only] if self._start_overdue(only, now) else []
        else:
            with self._lock:
                stale = [c for c in self._ceremonies.values() if self._start_overdue(c, now)]
        for c in stale:
            self._abort(c, (), "start_deadline_passed", notify=False, only_unstarted=True)

    def health(self) -> dict:
        self._expire_unstarted()
        return {"peer": self.name, "ready": self.ready, "environment": self.cfg.environment,
                "vaults": len(self.store.vault_ids()), "active_sessions": self.active_sessions(),
                "quarantined": self.quarantine.quarantined()}

    def _round_timeout(self, protocol: str) -> float:
        return self.round_timeout_s * (1 if protocol == "sign" else PROOF_ROUND_FACTOR)

    # ------------------------------------------------------------------ join / start
    def join(self, caller: str, req: pb.JoinRequest) -> pb.Ack:
        log = self.log.bind(session=req.session_id[:8], protocol=req.protocol, coordinator=caller)
        self._expire_unstarted()
        try:
            if caller not in self.all_peers:
                raise Refused("caller_not_a_peer")
            if req.protocol not in envl.PROTOCOLS:
                raise Refused("protocol_unknown")
            try:
                if len(bytes.fromhex(req.session_id)) != 16:
                    raise ValueError
            except ValueError:
                raise Refused("session_id_malformed") from None
            with self._lock:
                if req.session_id in self._ceremonies or req.session_id in self._finished:
                    raise Refused("session_id_reused")
            try:
                signed = pb.SignedRequest.FromString(req.request)
            except DecodeError:
                raise Refused("request_malformed", "not a SignedRequest") from None
            peers = tuple(req.peers)
            if len(set(peers)) != len(peers) or any(p not in self.all_peers for p in peers):
                raise Refused("session_peers_unknown")
            others = [x for x in peers if x != self.name]
            if req.protocol == "reshare":
                others = None  # the session's peers are known only once the request is read
            elif others:
                cold = self.mesh.connect(others, limits.CLUSTER_JOIN_TIMEOUT_MS / 2000)
                if cold:
                    raise Refused("peers_unreachable_from_here", ",".join(cold))
            build = {"sign": self._prepare_sign, "keygen": self._prepare_keygen, "reshare": self._prepare_reshare}[req.protocol]
            from mpc.engine import InvalidSessionRequest

            try:
                c = build(req.session_id, caller, peers, signed)
            except InvalidSessionRequest as exc:
                raise Refused("session_rejected_by_engine", str(exc)) from None
            if others is None:
                cold = self.mesh.connect([x for x in c.peers if x != self.name], limits.CLUSTER_JOIN_TIMEOUT_MS / 2000)
                if cold:
                    self._discard_unregistered(c)
                    raise Refused("peers_unreachable_from_here", ",".join(cold))
            with self._lock:
                active = sum(1 for s in self._sessions.values() if s.state in ("prepared", "running"))
                if active + len(c.sessions) > limits.CLUSTER_ACTIVE_SESSIONS_MAX:
                    self._discard_unregistered(c)
                    raise Refused("too_many_sessions")
                self._prune_ceremonies_locked()
                self._ceremonies[c.cid] = c
                for s in c.sessions:
                    self._sessions[s.sid] = s
            self.metrics.active.set(self.active_sessions())
            log.info("joined", sessions=len(c.sessions), peers=",".join(c.peers))
            return pb.Ack(ok=True)
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            log.warning("refused", reason=exc.reason, detail=exc.detail)
            return pb.Ack(ok=False, reason=exc.reason if not exc.detail else f"{exc.reason}: {exc.detail}")

    def _new_session(self, sid, cid, protocol, all_parties, local: dict[str, object], **kw) -> LocalSession:
        view = envl.SessionView(sid, protocol, frozenset(all_parties), frozenset(local))
        return LocalSession(sid=sid, cid=cid, protocol=protocol, view=view, echo=envl.EchoBook(self.name),
                            parties={pid: Party(pid, s) for pid, s in local.items()}, **kw)

    def _prepare_sign(self, cid, caller, peers, signed) -> Ceremony:
        raw, sig = signed.request, signed.node_signature
        # The vault id is needed to find the keys the checker derives our addresses from; the
        # verifier re-parses after checking the node's signature, so nothing unsigned is trusted.
        try:
            vault_id = rq.parse(raw)["vault_id"]
        except Refused:
            vault_id = ""
        held = self.store.vault(vault_id)
        keys = cer.RecordKeys(bytes.fromhex(held[0].public_key), bytes.fromhex(held[0].chain_code)) if held else None
        v = self.verifier.verify_sign(raw, sig, keys)
        with self._lock:
            if v.request_id in self._signed_requests:
                raise Refused("request_already_signed")
        rec, share = held
        if self.name not in peers or caller not in peers:
            raise Refused("not_in_quorum")
        committee_peers = {party_peer(p): p for p in rec.committee}
        if any(p not in committee_peers for p in peers):
            raise Refused("quorum_outside_committee")
        if len(peers) != rec.threshold + 1:
            raise Refused("quorum_size_wrong", f"{len(peers)} != {rec.threshold + 1}")
        signers = [committee_peers[p] for p in peers]
        sessions = []
        for i, d in enumerate(v.digests):
            sid = cer.sub_session_id(cid, i)
            s = cer.sign(rec.party, signers, share, d.digest, sid, d.path)
            sessions.append(self._new_session(sid, cid, "sign", signers, {rec.party: s}, index=i, digest=d.digest, path=tuple(d.path)))
        return Ceremony(cid, "sign", tuple(peers), caller, sessions, {"vault_id": rec.vault_id}, request_id=v.request_id,
                        vault_keys=keys)

    def _preparams(self):
        from mpc.preparams import PreParamsError

        try:
            pp = self.preparams_source()
        except PreParamsError as exc:
            raise Refused("preparams_invalid", str(exc)) from None
        if pp is None:
            raise Refused("preparams_not_ready")
        return pp

    def _give_back(self, pp) -> None:
        if pp is not None:
            self.preparams_source.give_back(pp)
            self.log.info("preparams_returned", ready=self.preparams_source.ready())

    def _discard_unregistered(self, c: Ceremony) -> None:
        """A ceremony Join built but refused before registering it: its engine sessions closed,
        its pre-params back in the pool."""
        for s in c.sessions:
            for p in s.parties.values():
                p.session.close()
        self._release_unstarted(c)

    def _release_unstarted(self, c: Ceremony) -> None:
        """A keygen/reshare that ends before Start: its pre-params go back to the pool. Without
        this, a ceremony refused by one peer still spent every other peer's pre-params (minutes
        of safe-prime search each), and retries until all peers had some at once could go on
        for a long time (`make run`'s first key generation took over 15 minutes)."""
        pp, c.preparams = c.preparams, None
        self._give_back(pp)

    def _prepare_keygen(self, cid, caller, peers, signed) -> Ceremony:
        body = self.verifier.authenticate(signed.request, signed.node_signature, "keygen")
        if not self.policy.keygen_allowed:
            raise Refused("keygen_not_allowed")
        committee, t = body.get("committee"), body.get("threshold")
        if not isinstance(committee, list) or not isinstance(t, int) or isinstance(t, bool):
            raise Refused("request_malformed", "committee / threshold")
        if sorted(committee) != sorted(peers) or self.name not in committee or caller not in committee:
            raise Refused("committee_mismatch")
        if not 1 <= t < len(committee):
            raise Refused("threshold_out_of_range")
        if not rq_vault_ok(body["vault_id"]):
            raise Refused("request_malformed", "vault id")
        if self.store.vault(body["vault_id"]) is not None:
            raise Refused("vault_exists")
        parties = [cer.party_id(p, 0) for p in committee]
        me = cer.party_id(self.name, 0)
        pp = self._preparams()
        s = cer.keygen(me, parties, t, pp, cid)  # a set the engine refuses is dropped: it may be why
        ls = self._new_session(cid, cid, "keygen", parties, {me: s})
        c = Ceremony(cid, "keygen", tuple(sorted(committee)), caller, [ls], body, request_id=body["request_id"], preparams=pp)
        c.pending_record = VaultRecord(body["vault_id"], me, tuple(sorted(parties)), t, "", "", 0)
        return c

    def _prepare_reshare(self, cid, caller, peers, signed) -> Ceremony:
        body = self.verifier.authenticate(signed.request, signed.node_signature, "reshare")
        if not self.policy.reshare_allowed:
            raise Refused("reshare_not_allowed")
        try:
            old_committee = tuple(sorted(body["old_committee"]))
            old_t = int(body["old_threshold"])
            new_committee = sorted(body["new_committee"])
            new_t = int(body["new_threshold"])
            public_key = bytes.fromhex(body["public_key"])
            chain_code = bytes.fromhex(body["chain_code"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("request_malformed", f"reshare: {exc}") from None
        if len(public_key) != 33 or len(chain_code) != 32 or not 1 <= new_t < len(new_committee) or len(set(new_committee)) != len(new_committee):
            raise Refused("request_malformed", "reshare fields")
        if any(p not in self.all_peers for p in new_committee):
            raise Refused("committee_unknown_peer")
        held = self.store.vault(body["vault_id"])
        if held is not None:
            rec = held[0]
            if (rec.committee, rec.threshold, rec.public_key, rec.chain_code) != (old_committee, old_t, public_key.hex(), chain_code.hex()):
                raise Refused("reshare_request_mismatch", "does not match the vault this peer holds")
        gen = cer.generation_of(old_committee[0])
        old_by_peer = {party_peer(p): p for p in old_committee}
        if any(p not in old_by_peer for p in peers) or len(peers) != old_t + 1 or caller not in peers:
            raise Refused("quorum_outside_committee")
        old_parties = [old_by_peer[p] for p in peers]
        new_parties = [cer.party_id(p, gen + 1) for p in new_committee]
        everyone = sorted(set(peers) | set(new_committee))
        if self.name in peers and held is None:
            raise Refused("vault_unknown")
        if self.name not in peers and self.name not in new_committee:
            raise Refused("not_in_ceremony")
        pp = self._preparams() if self.name in new_committee else None  # before any session is made
        local = {}
        try:
            if self.name in peers:
                me_old = old_by_peer[self.name]
                local[me_old] = cer.reshare(me_old, old_parties, new_parties, old_t, new_t, held[1], None, cid, public_key, chain_code)
            if self.name in new_committee:
                me_new = cer.party_id(self.name, gen + 1)
                local[me_new] = cer.reshare(me_new, old_parties, new_parties, old_t, new_t, None, pp, cid, public_key, chain_code)
        except BaseException:
            for q in local.values():
                q.close()
            raise  # pre-params the engine refused are dropped: they may be why
        ls = self._new_session(cid, cid, "reshare", old_parties + new_parties, local)
        c = Ceremony(cid, "reshare", tuple(everyone), caller, [ls], body, request_id=body["request_id"], preparams=pp)
        if self.name in new_committee:
            c.pending_record = VaultRecord(body["vault_id"], cer.party_id(self.name, gen + 1), tuple(sorted(new_parties)), new_t,
                                           public_key.hex(), chain_code.hex(), gen + 1)
        else:
            c.drop_vault = True
        return c

    def start(self, caller: str, cid: str) -> pb.Ack:
        with self._lock:
            c = self._ceremonies.get(cid)
        if c is None:
            return pb.Ack(ok=False, reason="unknown_session")
        if caller != c.coordinator:
            return pb.Ack(ok=False, reason="caller_not_coordinator")
        self._expire_unstarted(only=c)  # a Start past the deadline finds its ceremony aborted
        with c.cond:
            if c.state != "prepared":
                return pb.Ack(ok=False, reason=f"session_{c.state}")
            c.state = "running"
            c.preparams = None  # spent from here on
        for ls in c.sessions:
            with ls.lock:
                ls.state = "running"
                ls.started_at = ls.last_activity = time.monotonic()
            for p in ls.parties.values():
                # tss-lib computes round 1 inside start (seconds of proofs for keygen): the Start
                # call returns at once and the party's own thread starts it; messages wait in
                # the inbox (bounded) until the inbox thread, started after it, delivers them.
                p.thread = threading.Thread(target=self._run_party, args=(c, ls, p), name=f"tss-{ls.sid[:8]}-{p.party_id}", daemon=True)
                p.inbox_thread = threading.Thread(target=self._inbox, args=(c, ls, p), name=f"inbox-{ls.sid[:8]}-{p.party_id}", daemon=True)
                p.thread.start()
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ the session driver
    def _peers_of(self, party_ids) -> list[str]:
        return sorted({party_peer(str(p)) for p in party_ids})

    def _run_party(self, c: Ceremony, ls: LocalSession, p: Party) -> None:
        try:
            p.session.start()
        except Exception as exc:  # MpcError: e.g. a bad share or pre-params
            self._abort(c, tuple(self._peers_of(getattr(exc, "culprits", ()))), f"start_failed: {exc}")
            return
        p.inbox_thread.start()
        self._drive(c, ls, p)

    def _drive(self, c: Ceremony, ls: LocalSession, p: Party) -> None:
        from mpc import engine

        log = self.log.bind(session=ls.sid[:8], protocol=ls.protocol, party=p.party_id)
        deadline_s = self._round_timeout(ls.protocol)
        next_probe = time.monotonic() + limits.CLUSTER_LIVENESS_PROBE_MS / 1000
        ceremony_deadline = time.monotonic() + limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000
        while ls.state == "running":
            try:
                ev = p.session.next_event(POLL_S)
            except engine.MpcError as exc:
                culprits = self._peers_of(exc.culprits)
                log.warning("tss_error", round=exc.round, culprits=",".join(culprits), message=str(exc))
                self._abort(c, tuple(culprits), f"tss_error: task {exc.task}, round {exc.round}: {exc}")
                return
            now = time.monotonic()
            if ev is None:
                if p.holding or p.done:
                    continue
                idle = now - ls.last_activity
                if idle > deadline_s or now > ceremony_deadline:
                    waiting = self._peers_of(p.session.waiting_for())
                    log.warning("round_timeout", round=ls.round, waiting_for=",".join(waiting))
                    self._abort(c, tuple(w for w in waiting if w != self.name), "round_timeout: waiting for " + ",".join(waiting))
                    return
                if now >= next_probe:
                    next_probe = now + limits.CLUSTER_LIVENESS_PROBE_MS / 1000
                    waiting = [w for w in self._peers_of(p.session.waiting_for()) if w != self.name]
                    if waiting:
                        dead = self.mesh.unreachable(waiting)
                        if dead:
                            log.warning("peer_unreachable", round=ls.round, waiting_for=",".join(dead))
                            self._abort(c, tuple(dead), "peer_unreachable: " + ",".join(dead))
                            return
                continue
            ls.last_activity = now
            if isinstance(ev, engine.Done):
                p.result, p.done = ev.result, True
                if all(q.done for q in ls.parties.values()):
                    self._finish_session(c, ls, log)
                continue
            self._send(c, ls, p, ev, log)

    def _recipients(self, ls: LocalSession, p: Party, ev) -> list[str]:
        if ev.recipients:
            return [r for r in ev.recipients if r != p.party_id]
        parties = sorted(ls.view.parties)
        if ls.protocol == "reshare" and (ev.to_old_committee or ev.to_new_committee):
            gens = {cer.generation_of(x) for x in parties}
            old_gen, new_gen = min(gens), max(gens)
            parties = [x for x in parties if (ev.to_old_committee and cer.generation_of(x) == old_gen)
                       or (ev.to_new_committee and cer.generation_of(x) == new_gen)]
        return [x for x in parties if x != p.party_id]

    def _send(self, c: Ceremony, ls: LocalSession, p: Party, ev, log) -> None:
        ls.round = max(ls.round, ev.round)
        recipients = self._recipients(ls, p, ev)
        if not recipients:
            return
        if self.faults.get("hold_at_round") and self.faults.get("protocol", "sign") == ls.protocol and ev.round >= int(self.faults["hold_at_round"]):
            if not p.holding:
                log.warning("fault_hold", round=ev.round)  # test fault: stop sending, as if hung
            p.holding = True
            return
        by_peer: dict[str, list[str]] = {}
        for r in recipients:
            by_peer.setdefault(party_peer(r), []).append(r)
        equivocate_to = None
        if (self.faults.get("equivocate_round") and ev.is_broadcast and ev.round == int(self.faults["equivocate_round"])
                and self.faults.get("protocol", "sign") == ls.protocol):
            remote = sorted(x for x in by_peer if x != self.name)
            if len(remote) >= 2:
                equivocate_to = remote[-1]
                log.warning("fault_equivocate", round=ev.round, to=equivocate_to)
        for peer in by_peer:
            payload = bytes(ev.wire) + (_EQUIVOCATION_SUFFIX if peer == equivocate_to else b"")
            env = pb.Envelope(session_id=ls.sid, protocol=ls.protocol, round=ev.round, sender=p.party_id,
                              recipients=recipients, payload_hash=envl.payload_hash(payload), payload=payload,
                              is_broadcast=bool(ev.is_broadcast))
            if peer == self.name:
                self._deliver_local(c, ls, env)
                continue
            if self.record_dir is not None:  # test only: lets a test replay a real envelope
                (self.record_dir / f"{ls.sid}-{ev.round}-{p.party_id}-{peer}-{int(ev.is_broadcast)}.env").write_bytes(env.SerializeToString())
            f = self.mesh.stub(peer).Deliver.future(env, timeout=limits.CLUSTER_RPC_TIMEOUT_MS / 1000)
            self._keep(f, lambda f, peer=peer, rnd=ev.round: self._on_sent(c, ls, peer, rnd, f))

    def _on_sent(self, c: Ceremony, ls: LocalSession, peer: str, rnd: int, f) -> None:
        """Runs on a gRPC thread when a Deliver finished: a dead peer or a refusal aborts."""
        if ls.state != "running":
            return
        try:
            ack = f.result()
        except grpc.RpcError as exc:
            self.log.warning("send_failed", session=ls.sid[:8], to=peer, round=rnd, code=str(exc.code()))
            self._abort(c, (peer,), f"peer_unreachable: {peer}")
            return
        if not ack.ok:
            self.log.warning("envelope_refused", session=ls.sid[:8], by=peer, round=rnd, reason=ack.reason)
            if ack.reason in ("session_finished", "unknown_session"):
                # The receiver already ended the session: its Abort (naming the culprits) is on
                # its way, or the round deadline ends ours. Not a new cause of abort.
                return
            self._abort(c, (), f"envelope_refused_by {peer}: {ack.reason}")

    def _deliver_local(self, c: Ceremony, ls: LocalSession, env) -> None:
        for r in env.recipients:
            q = ls.parties.get(r)
            if q is not None:
                self._engine_deliver(c, ls, q, env)

    def _engine_deliver(self, c, ls, q: Party, env) -> None:
        try:
            q.inbox.put_nowait(env)
        except queue.Full:
            self._abort(c, (party_peer(env.sender),), "inbox_full: flooded by " + party_peer(env.sender))

    def _inbox(self, c: Ceremony, ls: LocalSession, q: Party) -> None:
        from mpc import engine

        while ls.state == "running":
            try:
                env = q.inbox.get(timeout=POLL_S * 4)
            except queue.Empty:
                continue
            try:
                q.session.deliver(env.payload, env.sender, env.is_broadcast)
            except engine.MpcError as exc:
                self._abort(c, tuple(self._peers_of(exc.culprits) or [party_peer(env.sender)]), f"tss_error: {exc}")
                return
            ls.last_activity = time.monotonic()

    def _finish_session(self, c: Ceremony, ls: LocalSession, log) -> None:
        # Echo gate: nothing is released before every other recipient confirmed the same
        # broadcasts (trust model 4: equivocation aborts).
        # A peer still busy with the last round echoes late: the wait is a round's deadline.
        deadline = time.monotonic() + max(limits.CLUSTER_ECHO_WAIT_MS / 1000, self._round_timeout(ls.protocol))
        while True:
            verdict = ls.echo.verdict()
            if verdict is not None or ls.state != "running":
                break
            if time.monotonic() > deadline:
                missing = sorted(ls.echo.missing())
                self._abort(c, tuple(missing), "echo_timeout: no echo from " + ",".join(missing))
                return
            time.sleep(0.002)
        if ls.state != "running":
            return
        if verdict[0] == "equivocation":
            log.warning("equivocation", culprits=",".join(verdict[1]))
            self._abort(c, verdict[1], "equivocation: broadcasts differ between recipients")
            return
        # Check the result before release (trust model 6).
        if ls.protocol == "sign":
            (p,) = ls.parties.values()
            sig = p.result
            child = c.vault_keys.child_public_key(ls.path)
            ok = False
            try:
                ok = coincurve.PublicKey(child).verify(bytes(sig.der()), ls.digest, hasher=None)
            except Exception:
                ok = False
            if not ok:
                self._abort(c, (), "signature_invalid: does not verify under the child key")
                return
        with ls.lock:
            ls.state = "done"
        self.metrics.sessions.labels(ls.protocol, "done").inc()
        self.metrics.latency.labels(ls.protocol).observe(time.monotonic() - ls.started_at)
        log.info("session_done", round=ls.round, seconds=round(time.monotonic() - ls.started_at, 3))
        self._maybe_finish_ceremony(c)

    def _maybe_finish_ceremony(self, c: Ceremony) -> None:
        with c.cond:
            if c.state != "running" or any(s.state != "done" for s in c.sessions):
                return
            if c.protocol == "sign":
                c.signatures = []
                for s in c.sessions:
                    (p,) = s.parties.values()
                    sig = p.result
                    c.signatures.append(sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.recovery_id]))
                self.metrics.signatures.inc(len(c.sessions))
                with self._lock:
                    self._signed_requests[c.request_id] = None
                    while len(self._signed_requests) > limits.CLUSTER_SEEN_REQUESTS_MAX:
                        self._signed_requests.popitem(last=False)
            else:
                (s,) = c.sessions
                shares = [p.result for p in s.parties.values() if p.result is not None and cer.generation_of(p.party_id) ==
                          (c.pending_record.generation if c.pending_record else -1)]
                if c.pending_record is not None:
                    if not shares:
                        c.state, c.reason = "aborted", "no_share_produced"
                        c.cond.notify_all()
                        return
                    share = shares[0]
                    c.public_key, c.chain_code = bytes(share.public_key), bytes(share.chain_code)
                    rec = c.pending_record
                    c.pending_record = VaultRecord(rec.vault_id, rec.party, rec.committee, rec.threshold,
                                                   c.public_key.hex(), c.chain_code.hex(), rec.generation)
                    c.pending_share = share.to_bytes()
                    assert share.party == rec.party, (share.party, rec.party)
                else:
                    c.public_key = bytes.fromhex(c.body["public_key"])
                    c.chain_code = bytes.fromhex(c.body["chain_code"])
            c.state = "done"
            c.cond.notify_all()
        self._close(c)

    # ------------------------------------------------------------------ abort
    def _abort(self, c: Ceremony, culprits: tuple[str, ...], reason: str, notify: bool = True,
               only_unstarted: bool = False) -> None:
        with c.cond:
            if c.state in ("aborted", "done", "committed") or (only_unstarted and c.state != "prepared"):
                return
            unstarted = c.state == "prepared"  # Start flips it under this same condition
            c.state, c.culprits, c.reason = "aborted", tuple(sorted(set(culprits))), reason
            c.cond.notify_all()
        if unstarted:
            self._release_unstarted(c)
        for ls in c.sessions:
            with ls.lock:
                if ls.state in ("prepared", "running"):
                    ls.state = "aborted"
                    self.metrics.sessions.labels(ls.protocol, "aborted").inc()
        for cp in c.culprits or ("none",):
            self.metrics.aborts.labels(c.protocol, cp).inc()
        with c.cond:
            self._forget_secrets(c)
        self.log.warning("session_aborted", session=c.cid[:8], protocol=c.protocol, culprits=",".join(c.culprits), reason=reason)
        self._close(c)
        if notify:
            others = [p for p in c.peers if p != self.name]
            req = pb.AbortRequest(session_id=c.cid, culprits=c.culprits, reason=reason[:500])
            for p in others:
                try:
                    self._keep(self.mesh.stub(p).Abort.future(req, timeout=limits.CLUSTER_PROBE_TIMEOUT_MS / 1000))
                except grpc.RpcError:
                    pass  # best effort: their own deadlines abort them anyway

    def _close(self, c: Ceremony) -> None:
        with self._lock:
            for ls in c.sessions:
                self._sessions.pop(ls.sid, None)
                self._remember_finished(ls.sid)
        for ls in c.sessions:
            for p in ls.parties.values():
                try:
                    p.session.close()
                except Exception:  # closing twice or after an error is harmless
                    pass
        self.metrics.active.set(self.active_sessions())

    def abort_from(self, caller: str, req: pb.AbortRequest) -> pb.Ack:
        with self._lock:
            c = self._ceremonies.get(req.session_id)
        if c is None:
            return pb.Ack(ok=False, reason="unknown_session")
        if caller not in c.peers:
            return pb.Ack(ok=False, reason="caller_not_in_session")
        self._abort(c, tuple(req.culprits), f"aborted_by {caller}: {req.reason}", notify=False)
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ incoming traffic
    def deliver(self, caller: str | None, env: pb.Envelope) -> pb.Ack:
        with self._lock:
            ls = self._sessions.get(env.session_id)
            finished = env.session_id in self._finished
            c = self._ceremonies.get(ls.cid) if ls else None
        if ls is not None:
            with ls.lock:
                if ls.state not in ("prepared", "running"):
                    ls, finished = None, True
                else:
                    reason = envl.check_envelope(env, caller, ls.view)
        if ls is None:
            reason = envl.check_envelope(env, caller, None, finished)
        if reason is not None:
            self.metrics.envelopes_refused.labels(reason).inc()
            self.log.warning("envelope_refused", session=env.session_id[:8], round=env.round, sender=env.sender, by=caller, reason=reason)
            return pb.Ack(ok=False, reason=reason)
        self._deliver_checked(c, ls, env)
        return pb.Ack(ok=True)

    def _deliver_checked(self, c: Ceremony, ls: LocalSession, env) -> None:
        ls.last_activity = time.monotonic()
        if env.is_broadcast:
            echo_to = ls.echo.record_own(env.sender, env.round, env.payload_hash, env.recipients)
            e = pb.Echo(session_id=ls.sid, sender=env.sender, round=env.round, payload_hash=env.payload_hash, echoer=self.name)
            for peer in echo_to:
                self._send_echo(ls, peer, e, limits.CLUSTER_ECHO_SEND_ATTEMPTS)
        self._deliver_local(c, ls, env)

    def _send_echo(self, ls: LocalSession, peer: str, e: pb.Echo, attempts_left: int) -> None:
        """An echo lost to a busy or flaky link would stall the other peer's gate: resend it
        (a bounded number of times) while this session is still known here."""

        def done(f):
            try:
                ack = f.result()
                if ack.ok or ack.reason != "unknown_session":
                    return
                reason = ack.reason
            except grpc.RpcError as exc:
                reason = str(exc.code())
            self.log.warning("echo_send_failed", session=ls.sid[:8], to=peer, reason=reason, attempts_left=attempts_left - 1)
            if attempts_left > 1:
                time.sleep(0.05)
                self._send_echo(ls, peer, e, attempts_left - 1)

        self._keep(self.mesh.stub(peer).EchoHashes.future(e, timeout=limits.CLUSTER_RPC_TIMEOUT_MS / 1000), done)

    def echo(self, caller: str | None, e: pb.Echo) -> pb.Ack:
        with self._lock:
            ls = self._sessions.get(e.session_id)
        if caller is None or caller != e.echoer:
            return pb.Ack(ok=False, reason="echoer_not_authenticated_peer")
        if ls is None:
            return pb.Ack(ok=False, reason="unknown_session")
        peers = {party_peer(x) for x in ls.view.parties}
        if caller not in peers or e.sender not in ls.view.parties:
            return pb.Ack(ok=False, reason="echoer_not_in_session")
        ls.echo.record_echo(caller, e.sender, e.round, e.payload_hash)
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ await / commit
    def await_result(self, caller: str, cid: str, timeout_s: float) -> pb.SessionResult:
        with self._lock:
            c = self._ceremonies.get(cid)
        if c is None:
            return pb.SessionResult(session_id=cid, state="unknown")
        deadline = time.monotonic() + min(timeout_s, limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000)
        with c.cond:
            while c.state in ("prepared", "running"):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                c.cond.wait(left)
            return pb.SessionResult(session_id=cid, state=c.state, culprits=c.culprits, reason=c.reason,
                                    public_key=c.public_key, chain_code=c.chain_code, signatures=c.signatures)

    def commit(self, caller: str, cid: str) -> pb.Ack:
        with self._lock:
            c = self._ceremonies.get(cid)
        if c is None:
            return pb.Ack(ok=False, reason="unknown_session")
        if caller != c.coordinator:
            return pb.Ack(ok=False, reason="caller_not_coordinator")
        with c.cond:
            if c.state == "committed":
                return pb.Ack(ok=True)
            if c.state != "done" or c.protocol == "sign":
                return pb.Ack(ok=False, reason=f"session_{c.state}")
            # Shares are written only now: the ceremony ended and every party got one key.
            if c.pending_record is not None:
                self.store.put_vault(c.pending_record, c.pending_share)
            elif c.drop_vault:
                self.store.drop_vault(c.body["vault_id"])
            c.state = "committed"
            self._forget_secrets(c)
        self.log.info("committed", session=cid[:8], protocol=c.protocol, vault=c.body.get("vault_id"))
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ coordinator
    def _call(self, peer: str, method: str, req, timeout_ms: int):
        """Calls a peer — or this peer itself, in-process — with a deadline."""
        if peer == self.name:
            return {"Join": lambda: self.join(self.name, req), "Start": lambda: self.start(self.name, req.session_id),
                    "Await": lambda: self.await_result(self.name, req.session_id, req.timeout_ms / 1000),
                    "Commit": lambda: self.commit(self.name, req.session_id)}[method]()
        return getattr(self.mesh.stub(peer), method)(req, timeout=timeout_ms / 1000)

    def _fanout(self, peers, method: str, make_req, timeout_ms: int) -> dict:
        """Calls `method` on every peer at once; peer -> reply or the RpcError."""
        out = {}
        with futures.ThreadPoolExecutor(max_workers=max(1, len(peers))) as pool:
            futs = {p: pool.submit(self._call, p, method, make_req(p), timeout_ms) for p in peers}
            for p, f in futs.items():
                try:
                    out[p] = f.result()
                except grpc.RpcError as exc:
                    out[p] = exc
        return out

    def _run_ceremony(self, protocol: str, peers, signed: pb.SignedRequest) -> tuple[str, dict, dict]:
        """Join + Start on `peers`. Returns (cid, refusals, unreachable)."""
        cid = secrets.token_hex(16)
        raw = signed.SerializeToString()
        replies = self._fanout(peers, "Join", lambda p: pb.JoinRequest(session_id=cid, protocol=protocol, peers=list(peers), request=raw),
                               limits.CLUSTER_JOIN_TIMEOUT_MS)
        refusals = {p: r.reason for p, r in replies.items() if not isinstance(r, Exception) and not r.ok}
        unreachable = {p: str(r.code()) for p, r in replies.items() if isinstance(r, Exception)}
        if refusals or unreachable:
            with self._lock:
                c = self._ceremonies.get(cid)
            if c is not None:
                self._abort(c, tuple(unreachable), "join_failed")
            else:
                joined = [p for p, r in replies.items() if not isinstance(r, Exception) and r.ok]
                for p in joined:
                    if p != self.name:
                        try:
                            self.mesh.stub(p).Abort(pb.AbortRequest(session_id=cid, reason="join_failed"), timeout=limits.CLUSTER_PROBE_TIMEOUT_MS / 1000)
                        except grpc.RpcError:
                            pass
            return cid, refusals, unreachable
        starts = self._fanout(peers, "Start", lambda p: pb.StartRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS)
        bad = {p: (r.reason if not isinstance(r, Exception) else str(r.code())) for p, r in starts.items()
               if isinstance(r, Exception) or not r.ok}
        if bad:
            with self._lock:
                c = self._ceremonies.get(cid)
            if c is not None:
                self._abort(c, tuple(p for p, r in starts.items() if isinstance(r, Exception)), "start_failed")
            return cid, {}, bad
        return cid, {}, {}

    def _await_all(self, cid: str, peers) -> dict:
        return self._fanout(peers, "Await", lambda p: pb.AwaitRequest(session_id=cid, timeout_ms=limits.CLUSTER_CEREMONY_TIMEOUT_MS),
                            limits.CLUSTER_CEREMONY_TIMEOUT_MS + 5_000)

    def _refused(self, protocol: str, reason: str, culprits=(), attempts: int = 0) -> pb.CeremonyReply:
        self.metrics.ceremonies.labels(protocol, "refused").inc()
        return pb.CeremonyReply(ok=False, reason=reason, culprits=list(culprits), attempts=attempts)

    def _pick_healthy(self, candidates) -> list[str]:
        """Peers that answer a probe now. A peer that answered last time gets a longer deadline
        (a channel reconnecting after its restart needs a handshake); one that did not, a short
        one (a peer that is down costs each request little)."""
        others = [p for p in candidates if p != self.name and not self.quarantine.is_quarantined(p)]
        slow = [p for p in others if self._last_probe_ok.get(p, True)]
        fast = [p for p in others if p not in slow]
        probed = {}
        if slow:
            probed.update(self.mesh.probe(slow, limits.CLUSTER_PROBE_KNOWN_GOOD_TIMEOUT_MS))
        if fast:
            probed.update(self.mesh.probe(fast, limits.CLUSTER_PROBE_TIMEOUT_MS))
        self._last_probe_ok.update(probed)
        return [p for p in others if probed.get(p)]

    def coordinate_sign(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        try:
            vault_id = rq.parse(signed.request)["vault_id"]
        except Refused:
            vault_id = ""
        held = self.store.vault(vault_id)
        keys = cer.RecordKeys(bytes.fromhex(held[0].public_key), bytes.fromhex(held[0].chain_code)) if held else None
        try:
            # The coordinator checks the request itself first (and again when it joins).
            v = self.verifier.verify_sign(signed.request, signed.node_signature, keys)
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            self.log.warning("refused", reason=exc.reason, detail=exc.detail)
            return self._refused("sign", exc.reason if not exc.detail else f"{exc.reason}: {exc.detail}")
        rec = held[0]
        excluded: set[str] = set()
        reasons = []
        all_culprits: list[str] = []
        for attempt in range(1, limits.CLUSTER_SIGN_ATTEMPTS_MAX + 1):
            healthy = self._pick_healthy([p for p in rec.peers() if p not in excluded])
            if len(healthy) < rec.threshold:
                reasons.append(f"not_enough_healthy_peers: {len(healthy) + 1} < {rec.threshold + 1}")
                break
            quorum = tuple(sorted([self.name, *healthy[: rec.threshold]]))
            log = self.log.bind(attempt=attempt, quorum=",".join(quorum))
            cid, refusals, unreachable = self._run_ceremony("sign", quorum, signed)
            log = log.bind(session=cid[:8])
            if refusals.get(self.name):
                return self._refused("sign", refusals[self.name], attempts=attempt)
            if refusals or unreachable:
                log.warning("quorum_failed", refusals=str(refusals), unreachable=",".join(unreachable))
                excluded |= set(refusals) | set(unreachable)
                reasons.append(f"attempt {attempt}: refused {refusals} unreachable {sorted(unreachable)}")
                continue
            res = self.await_result(self.name, cid, limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000)
            if res.state == "done":
                self.metrics.ceremonies.labels("sign", "done").inc()
                log.info("signed", digests=len(res.signatures))
                with self._lock:
                    c = self._ceremonies.pop(cid, None)
                digests = [s.digest for s in c.sessions] if c else []
                return pb.CeremonyReply(ok=True, signatures=list(res.signatures), digests=digests, vault_id=rec.vault_id,
                                        public_key=bytes.fromhex(rec.public_key), chain_code=bytes.fromhex(rec.chain_code),
                                        committee=list(quorum), attempts=attempt,
                                        culprits=sorted(set(all_culprits)), reason="; ".join(reasons))
            culprits = [p for p in res.culprits if p != self.name]
            all_culprits += culprits
            for p in culprits:
                if self.quarantine.record_abort(p):
                    self.metrics.quarantined.labels(p).set(1)
                    log.warning("peer_quarantined", culprit=p)
            excluded |= set(culprits)
            reasons.append(f"attempt {attempt}: aborted, culprits [{','.join(res.culprits)}]: {res.reason}")
            log.warning("attempt_aborted", culprits=",".join(res.culprits), reason=res.reason)
        self.metrics.ceremonies.labels("sign", "failed").inc()
        return pb.CeremonyReply(ok=False, reason="signing_failed: " + " | ".join(reasons), culprits=sorted(set(all_culprits)),
                                attempts=len(reasons))

    def coordinate_keygen(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        try:
            body = self.verifier.authenticate(signed.request, signed.node_signature, "keygen")
            committee = body.get("committee")
            if not isinstance(committee, list) or self.name not in committee or any(p not in self.all_peers for p in committee):
                raise Refused("committee_unknown_peer" if isinstance(committee, list) else "request_malformed")
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            return self._refused("keygen", f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason)
        peers = tuple(sorted(committee))
        cid, refusals, unreachable = self._run_ceremony("keygen", peers, signed)
        if refusals or unreachable:
            return self._refused("keygen", f"join_failed: refused {refusals} unreachable {sorted(unreachable)}", sorted(unreachable), 1)
        return self._finish_key_ceremony("keygen", cid, peers, body)

    def _finish_key_ceremony(self, protocol, cid, peers, body) -> pb.CeremonyReply:
        results = self._await_all(cid, peers)
        keys = set()
        culprits, reasons = set(), []
        for p, r in results.items():
            if isinstance(r, Exception):
                culprits.add(p)
                reasons.append(f"{p}: {r.code()}")
            elif r.state != "done":
                culprits |= set(r.culprits)
                reasons.append(f"{p}: {r.state} {r.reason}")
            else:
                keys.add((r.public_key, r.chain_code))
        if not reasons and len(keys) != 1:
            reasons.append("parties disagree on the group key")
        if reasons:
            with self._lock:
                c = self._ceremonies.get(cid)
            if c is not None:
                self._abort(c, tuple(sorted(culprits)), "; ".join(reasons))
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason=f"{protocol}_failed: " + "; ".join(reasons), culprits=sorted(culprits), attempts=1)
        (public_key, chain_code), = keys
        if protocol == "reshare" and public_key.hex() != body["public_key"]:
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason="reshare_failed: the new committee's key differs", attempts=1)
        commits = self._fanout(peers, "Commit", lambda p: pb.CommitRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS)
        bad = {p: (r.reason if not isinstance(r, Exception) else str(r.code())) for p, r in commits.items() if isinstance(r, Exception) or not r.ok}
        if bad:
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason=f"commit_failed: {bad}", attempts=1)
        self.metrics.ceremonies.labels(protocol, "done").inc()
        if protocol == "keygen":
            committee, threshold = [cer.party_id(p, 0) for p in body["committee"]], body["threshold"]
        else:
            gen = cer.generation_of(sorted(body["old_committee"])[0]) + 1
            committee, threshold = [cer.party_id(p, gen) for p in body["new_committee"]], body["new_threshold"]
        self.log.info(f"{protocol}_done", vault=body["vault_id"], public_key=public_key.hex())
        return pb.CeremonyReply(ok=True, vault_id=body["vault_id"], public_key=public_key, chain_code=chain_code,
                                committee=sorted(committee), threshold=threshold, attempts=1)

    def coordinate_reshare(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        try:
            body = self.verifier.authenticate(signed.request, signed.node_signature, "reshare")
            held = self.store.vault(body["vault_id"])
            if held is None:
                raise Refused("vault_unknown")
            new_committee = body.get("new_committee")
            if not isinstance(new_committee, list) or any(p not in self.all_peers for p in new_committee):
                raise Refused("committee_unknown_peer")
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            return self._refused("reshare", f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason)
        rec = held[0]
        healthy = self._pick_healthy(rec.peers())
        if len(healthy) < rec.threshold:
            return self._refused("reshare", "not_enough_healthy_peers")
        old_quorum = tuple(sorted([self.name, *healthy[: rec.threshold]]))
        everyone = tuple(sorted(set(old_quorum) | set(new_committee)))
        # Join carries the old quorum; the new committee comes from the signed request.
        cid = secrets.token_hex(16)
        raw = signed.SerializeToString()
        replies = self._fanout(everyone, "Join", lambda p: pb.JoinRequest(session_id=cid, protocol="reshare", peers=list(old_quorum), request=raw),
                               limits.CLUSTER_JOIN_TIMEOUT_MS)
        bad = {p: (r.reason if not isinstance(r, Exception) else str(r.code())) for p, r in replies.items() if isinstance(r, Exception) or not r.ok}
        if bad:
            with self._lock:
                c = self._ceremonies.get(cid)
            if c is not None:
                self._abort(c, (), "join_failed")
            return self._refused("reshare", f"join_failed: {bad}")
        starts = self._fanout(everyone, "Start", lambda p: pb.StartRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS)
        bad = {p: (r.reason if not isinstance(r, Exception) else str(r.code())) for p, r in starts.items() if isinstance(r, Exception) or not r.ok}
        if bad:
            return self._refused("reshare", f"start_failed: {bad}")
        return self._finish_key_ceremony("reshare", cid, everyone, body)


def rq_vault_ok(vault_id: str) -> bool:
    from mpc.signer.store import VAULT_RE

    return bool(VAULT_RE.match(vault_id))


class Servicer(pb_grpc.SignerServicer):
    """Maps RPCs to the peer; the caller is always the pinned name of the mTLS certificate."""

    def __init__(self, peer: SignerPeer):
        self.peer = peer

    def _caller(self, context) -> str | None:
        return tls.authenticated_name(context, self.peer.pins)

    def _peer_only(self, context) -> str:
        name = self._caller(context)
        if name is None or name == NODE:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_a_peer")
        return name

    def _node_only(self, context) -> None:
        if self._caller(context) != NODE:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_the_node")

    def Keygen(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.peer.coordinate_keygen(request)

    def Sign(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.peer.coordinate_sign(request)

    def Reshare(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.peer.coordinate_reshare(request)

    def Join(self, request, context):  # noqa: N802
        return self.peer.join(self._peer_only(context), request)

    def Start(self, request, context):  # noqa: N802
        return self.peer.start(self._peer_only(context), request.session_id)

    def Await(self, request, context):  # noqa: N802
        return self.peer.await_result(self._peer_only(context), request.session_id, request.timeout_ms / 1000)

    def Commit(self, request, context):  # noqa: N802
        return self.peer.commit(self._peer_only(context), request.session_id)

    def Deliver(self, request, context):  # noqa: N802
        return self.peer.deliver(self._peer_only(context), request)

    def EchoHashes(self, request, context):  # noqa: N802
        return self.peer.echo(self._peer_only(context), request)

    def Abort(self, request, context):  # noqa: N802
        return self.peer.abort_from(self._peer_only(context), request)

    def Health(self, request, context):  # noqa: N802
        if self._caller(context) is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_pinned")
        return pb.HealthReply(peer=self.peer.name, ready=self.peer.ready, active_sessions=self.peer.active_sessions())


def serve(peer: SignerPeer) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.CLUSTER_RPC_WORKERS_MAX, thread_name_prefix="rpc"),
        options=CHANNEL_OPTIONS[:2], maximum_concurrent_rpcs=limits.CLUSTER_RPC_WORKERS_MAX * 4,
    )
    pb_grpc.add_SignerServicer_to_server(Servicer(peer), server)
    port = server.add_secure_port(peer.cfg.listen, tls.server_credentials(peer.identity, peer.pins))
    if port == 0:
        raise OSError(f"cannot listen on {peer.cfg.listen}")
    server.start()
    return server
