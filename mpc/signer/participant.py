"""The participant role of a peer: it joins a ceremony (after its own checks, prepare.py), runs
its tss parties when the coordinator starts it, exchanges envelopes with the other peers, and
ends the ceremony — done, with the result checked before release, or aborted naming culprits.

Per party two threads: the driver polls tss-lib for outgoing messages and the result; the inbox
thread alone delivers received messages, so a Deliver RPC is acknowledged at once. Every wait
has a deadline: the round deadline (no progress), the ceremony deadline, the start deadline
(joined but never started), the echo wait.

Seams a test-only subclass may override (tests/functional/adversarial/rogue.py), and nothing
in production does: `_payload_for` (the bytes a message carries to one peer), `_transmit` (how
an envelope leaves) and `_stalled` (whether a party has waited too long).
"""

from __future__ import annotations

import queue
import threading
import time

import coincurve
import grpc
from google.protobuf.message import DecodeError

from mpc.proto import signer_pb2 as pb
from mpc.signer.ceremony import LIVE, Ceremony, LocalSession, Party, Registry
from mpc.signer.prepare import Preparer
from mpc.signer.records import RecordsError
from mpc.signer.store import VaultRecord
from mpc.transport import envelope as envl
from mpc.wire import ceremony as cer
from mpc.wire import parties as wp
from mpc.wire.requests import Refused
from node import limits

POLL_S = 0.05
# Keygen and reshare rounds carry Paillier / DLN proofs that take seconds of CPU each: their
# "no progress" deadline is this multiple of the configured (signing) round deadline.
PROOF_ROUND_FACTOR = 4


class Participant:
    def __init__(self, name: str, all_peers, mesh, metrics, records, store, preparer: Preparer, round_timeout_ms: int, log,
                 signer: envl.MessageSigner, keys: envl.PeerKeys):
        self.name = name
        self.signer = signer  # signs every envelope and echo this peer sends
        self.keys = keys  # the pinned peers' keys: checks theirs, and evidence
        self.all_peers = all_peers
        self.mesh = mesh
        self.metrics = metrics
        self.records = records
        self.store = store
        self.prepare = preparer
        self.round_timeout_s = round_timeout_ms / 1000
        self.log = log
        self.registry = Registry()
        # gRPC cancels a call whose future is garbage-collected: in-flight calls live here.
        self._inflight: set = set()
        self._inflight_lock = threading.Lock()
        # Await holds an RPC thread while it waits: calls in progress per calling peer.
        self._awaiting: dict[str, int] = {}

    def keep(self, f, callback=None):
        with self._inflight_lock:
            self._inflight.add(f)

        def done(f):
            with self._inflight_lock:
                self._inflight.discard(f)
            if callback is not None:
                callback(f)

        f.add_done_callback(done)
        return f

    def active_sessions(self) -> int:
        return self.registry.active_sessions()

    def round_timeout(self, protocol: str) -> float:
        return self.round_timeout_s * (1 if protocol == "sign" else PROOF_ROUND_FACTOR)

    def expire_unstarted(self, only: Ceremony | None = None) -> None:
        """A ceremony joined but never started — its coordinator died or lost us between Join
        and Start — is aborted once its Start can no longer come (CLUSTER_START_DEADLINE_MS:
        the coordinator's whole Join fan-out, then its Start call). Otherwise its sessions
        would count against CLUSTER_ACTIVE_SESSIONS_MAX for good, and a keygen's pre-params
        would stay out of the pool. The peer's main loop sweeps all of them every
        CLUSTER_START_SWEEP_MS, and so does every Join; a Start looks at its own only (`only`)."""
        now = time.monotonic()
        if only is not None:
            stale = [only] if only.start_overdue(now) else []
        else:
            stale = self.registry.overdue(now)
        for c in stale:
            self.abort(c, (), "start_deadline_passed", notify=False, only_unstarted=True)

    # ------------------------------------------------------------------ join / start
    def join(self, caller: str, req: pb.JoinRequest) -> pb.Ack:
        log = self.log.bind(session=req.session_id[:8], protocol=req.protocol, coordinator=caller)
        self.expire_unstarted()
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
            if self.registry.known(req.session_id):
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
            build = {"sign": self.prepare.sign, "keygen": self.prepare.keygen, "reshare": self.prepare.reshare}[req.protocol]
            if req.protocol == "sign" and self.prepare.is_reshare_confirm(signed.request):
                build = self.prepare.confirm  # the new committee's signature before old shares go
            elif req.protocol == "reshare" and self.prepare.is_retire(signed.request):
                build = self.prepare.retire  # no tss session: every share of the vault goes at Commit
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
            for old in self.registry.superseded(c):
                self.abort(old, (), "superseded_by_a_new_join", notify=False)
            try:
                self.registry.register(c)
            except Refused:
                self._discard_unregistered(c)
                raise
            self.metrics.active.set(self.active_sessions())
            log.info("joined", sessions=len(c.sessions), peers=",".join(c.peers))
            return pb.Ack(ok=True)
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            log.warning("refused", reason=exc.reason, detail=exc.detail)
            return pb.Ack(ok=False, reason=exc.reason if not exc.detail else f"{exc.reason}: {exc.detail}")

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
        self.prepare.give_back(pp)

    def _coordinated(self, caller: str, cid: str) -> tuple[Ceremony | None, pb.Ack | None]:
        """The ceremony, for its coordinator alone (Start, Commit); else the refusal."""
        c = self.registry.ceremony(cid)
        if c is None:
            return None, pb.Ack(ok=False, reason="unknown_session")
        if caller != c.coordinator:
            return None, pb.Ack(ok=False, reason="caller_not_coordinator")
        return c, None

    def start(self, caller: str, cid: str) -> pb.Ack:
        c, refusal = self._coordinated(caller, cid)
        if refusal is not None:
            return refusal
        self.expire_unstarted(only=c)  # a Start past the deadline finds its ceremony aborted
        with c.cond:
            if c.state != "prepared":
                return pb.Ack(ok=False, reason=f"session_{c.state}")
            c.state = "running"
            c.preparams = None  # spent from here on
            if not c.sessions:  # a retire: nothing to compute, Commit drops the share
                c.state = "done"
                c.cond.notify_all()
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
    def _run_party(self, c: Ceremony, ls: LocalSession, p: Party) -> None:
        try:
            p.session.start()
        except Exception as exc:  # MpcError: e.g. a bad share or pre-params
            self.abort(c, tuple(wp.peers_of(getattr(exc, "culprits", ()))), f"start_failed: {exc}")
            return
        p.inbox_thread.start()
        self._drive(c, ls, p)

    def _stalled(self, ls: LocalSession, p: Party, now: float, ceremony_deadline: float) -> bool:
        """No progress for a round's deadline, or past the ceremony's."""
        return now - ls.last_activity > self.round_timeout(ls.protocol) or now > ceremony_deadline

    def _drive(self, c: Ceremony, ls: LocalSession, p: Party) -> None:
        from mpc import engine

        log = self.log.bind(session=ls.sid[:8], protocol=ls.protocol, party=p.party_id)
        next_probe = time.monotonic() + limits.CLUSTER_LIVENESS_PROBE_MS / 1000
        ceremony_deadline = time.monotonic() + limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000
        while ls.state == "running":
            try:
                ev = p.session.next_event(POLL_S)
            except engine.MpcError as exc:
                culprits = wp.peers_of(exc.culprits)
                log.warning("tss_error", round=exc.round, culprits=",".join(culprits), message=str(exc))
                self.abort(c, tuple(culprits), f"tss_error: task {exc.task}, round {exc.round}: {exc}")
                return
            now = time.monotonic()
            if ev is None:
                if p.done:
                    continue
                if self._stalled(ls, p, now, ceremony_deadline):
                    waiting = wp.peers_of(p.session.waiting_for())
                    log.warning("round_timeout", round=ls.round, waiting_for=",".join(waiting))
                    self.abort(c, tuple(w for w in waiting if w != self.name), "round_timeout: waiting for " + ",".join(waiting))
                    return
                if now >= next_probe:
                    next_probe = now + limits.CLUSTER_LIVENESS_PROBE_MS / 1000
                    waiting = [w for w in wp.peers_of(p.session.waiting_for()) if w != self.name]
                    if waiting:
                        dead = self.mesh.unreachable(waiting)
                        if dead:
                            log.warning("peer_unreachable", round=ls.round, waiting_for=",".join(dead))
                            self.abort(c, tuple(dead), "peer_unreachable: " + ",".join(dead))
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
            gens = {wp.generation_of(x) for x in parties}
            old_gen, new_gen = min(gens), max(gens)
            parties = [x for x in parties if (ev.to_old_committee and wp.generation_of(x) == old_gen)
                       or (ev.to_new_committee and wp.generation_of(x) == new_gen)]
        return [x for x in parties if x != p.party_id]

    def _payload_for(self, c: Ceremony, ls: LocalSession, p: Party, ev, peer: str) -> bytes | None:
        """The bytes message `ev` of party `p` carries to `peer` (None: not sent). Production
        sends what tss-lib produced, the same bytes to every recipient."""
        return bytes(ev.wire)

    def _send(self, c: Ceremony, ls: LocalSession, p: Party, ev, log) -> None:
        ls.round = max(ls.round, ev.round)
        recipients = self._recipients(ls, p, ev)
        if not recipients:
            return
        by_peer: dict[str, list[str]] = {}
        for r in recipients:
            by_peer.setdefault(wp.party_peer(r), []).append(r)
        signatures: dict[bytes, bytes] = {}  # one signature per distinct header (a broadcast: one)
        for peer in by_peer:
            payload = self._payload_for(c, ls, p, ev, peer)
            if payload is None:
                continue
            env = pb.Envelope(session_id=ls.sid, protocol=ls.protocol, round=ev.round, sender=p.party_id,
                              recipients=recipients, payload_hash=envl.payload_hash(payload), payload=payload,
                              is_broadcast=bool(ev.is_broadcast), kind=envl.message_kind(payload))
            digest = envl.envelope_digest(env)
            if digest not in signatures:
                signatures[digest] = self.signer.sign(digest)
            env.signature = signatures[digest]
            if peer == self.name:
                self._deliver_local(c, ls, env)
            else:
                self._transmit(c, ls, peer, env)

    def _transmit(self, c: Ceremony, ls: LocalSession, peer: str, env: pb.Envelope) -> None:
        f = self.mesh.stub(peer).Deliver.future(env, timeout=limits.CLUSTER_RPC_TIMEOUT_MS / 1000)
        self.keep(f, lambda f, rnd=env.round: self._on_sent(c, ls, peer, rnd, f))

    def _on_sent(self, c: Ceremony, ls: LocalSession, peer: str, rnd: int, f) -> None:
        """Runs on a gRPC thread when a Deliver finished: a dead peer or a refusal aborts."""
        if ls.state != "running":
            return
        try:
            ack = f.result()
        except grpc.RpcError as exc:
            self.log.warning("send_failed", session=ls.sid[:8], to=peer, round=rnd, code=str(exc.code()))
            self.abort(c, (peer,), f"peer_unreachable: {peer}")
            return
        if not ack.ok:
            self.log.warning("envelope_refused", session=ls.sid[:8], by=peer, round=rnd, reason=ack.reason)
            if ack.reason in ("session_finished", "unknown_session"):
                # The receiver already ended the session: its Abort (naming the culprits) is on
                # its way, or the round deadline ends ours. Not a new cause of abort.
                return
            self.abort(c, (), f"envelope_refused_by {peer}: {ack.reason}")

    def _deliver_local(self, c: Ceremony, ls: LocalSession, env) -> None:
        for r in env.recipients:
            q = ls.parties.get(r)
            if q is not None:
                try:
                    q.inbox.put_nowait(env)
                except queue.Full:
                    self.abort(c, (wp.party_peer(env.sender),), "inbox_full: flooded by " + wp.party_peer(env.sender))

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
                self.abort(c, tuple(wp.peers_of(exc.culprits) or [wp.party_peer(env.sender)]), f"tss_error: {exc}")
                return
            ls.last_activity = time.monotonic()

    def _finish_session(self, c: Ceremony, ls: LocalSession, log) -> None:
        # Echo gate: nothing is released before every other recipient confirmed the same
        # broadcasts (trust model 4: equivocation aborts).
        # A peer still busy with the last round echoes late: the wait is a round's deadline.
        deadline = time.monotonic() + max(limits.CLUSTER_ECHO_WAIT_MS / 1000, self.round_timeout(ls.protocol))
        while True:
            verdict = ls.echo.verdict()
            if verdict is not None or ls.state != "running":
                break
            if time.monotonic() > deadline:
                missing = sorted(ls.echo.missing())
                self.abort(c, tuple(missing), "echo_timeout: no echo from " + ",".join(missing))
                return
            time.sleep(0.002)
        if ls.state != "running":
            return
        if verdict[0] == "equivocation":
            log.warning("equivocation", culprits=",".join(verdict[1]))
            self.abort(c, verdict[1], "equivocation: a sender signed two broadcasts for one slot", evidence=ls.echo.evidence())
            return
        if verdict[0] == "forged_echo":
            log.warning("forged_echo", culprits=",".join(verdict[1]))
            self.abort(c, verdict[1], "forged_echo: an echo of a broadcast its sender did not sign", evidence=ls.echo.evidence())
            return
        # Check the result before release (trust model 6).
        if ls.protocol == "sign":
            (p,) = ls.parties.values()
            child = c.vault_keys.child_public_key(ls.path)
            try:
                ok = coincurve.PublicKey(child).verify(bytes(p.result.der()), ls.digest, hasher=None)
            except Exception:
                ok = False
            if not ok:
                self.abort(c, (), "signature_invalid: does not verify under the child key")
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
            failed = self._release_signatures(c) if c.protocol == "sign" else self._hold_share(c)
            if failed is None:
                c.state = "done"
                c.cond.notify_all()
        if failed is not None:
            self.abort(c, (), failed)
            return
        self._close(c)

    def _release_signatures(self, c: Ceremony) -> str | None:
        """The request is remembered as signed, durably, before any signature leaves this peer;
        if that cannot be written, nothing is released."""
        try:
            self.records.mark_signed(c.request_id)
        except RecordsError as exc:
            return f"records_unwritable: {exc}"
        c.signatures = []
        for s in c.sessions:
            (p,) = s.parties.values()
            sig = p.result
            c.signatures.append(sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.recovery_id]))
        self.metrics.signatures.inc(len(c.sessions))
        return None

    def _hold_share(self, c: Ceremony) -> str | None:
        """A keygen/reshare's new share waits in memory for Commit; a peer leaving the committee
        keeps only the group key to report."""
        (s,) = c.sessions
        if c.pending_record is None:
            c.public_key = bytes.fromhex(c.body["public_key"])
            c.chain_code = bytes.fromhex(c.body["chain_code"])
            return None
        shares = [p.result for p in s.parties.values() if p.result is not None and wp.generation_of(p.party_id) == c.pending_record.generation]
        if not shares:
            return "no_share_produced"
        share = shares[0]
        c.public_key, c.chain_code = bytes(share.public_key), bytes(share.chain_code)
        rec = c.pending_record
        assert share.party == rec.party, (share.party, rec.party)
        c.pending_record = VaultRecord(rec.vault_id, rec.party, rec.committee, rec.threshold,
                                       c.public_key.hex(), c.chain_code.hex(), rec.generation)
        c.pending_share = share.to_bytes()
        return None

    # ------------------------------------------------------------------ abort
    def abort(self, c: Ceremony, culprits: tuple[str, ...], reason: str, notify: bool = True,
              only_unstarted: bool = False, evidence=()) -> None:
        """`culprits`: whom this peer names from what it saw itself, or from `evidence` it checked."""
        with c.cond:
            if c.state in ("aborted", "done", "committed") or (only_unstarted and c.state != "prepared"):
                return
            unstarted = c.state == "prepared"  # Start flips it under this same condition
            c.state, c.culprits, c.reason = "aborted", tuple(sorted(set(culprits))), reason
            c.evidence = list(evidence)
            c.cond.notify_all()
        if unstarted:
            self._release_unstarted(c)
        for ls in c.sessions:
            with ls.lock:
                if ls.state in LIVE:
                    ls.state = "aborted"
                    self.metrics.sessions.labels(ls.protocol, "aborted").inc()
        for cp in c.culprits or ("none",):
            self.metrics.aborts.labels(c.protocol, self.metrics.peer_label(cp)).inc()
        with c.cond:
            c.forget_secrets()
        self.log.warning("session_aborted", session=c.cid[:8], protocol=c.protocol, culprits=",".join(c.culprits), reason=reason)
        self._close(c)
        if notify:
            others = [p for p in c.peers if p != self.name]
            req = pb.AbortRequest(session_id=c.cid, culprits=c.culprits, reason=reason[:500], evidence=c.evidence)
            for p in others:
                try:
                    self.keep(self.mesh.stub(p).Abort.future(req, timeout=limits.CLUSTER_PROBE_TIMEOUT_MS / 1000))
                except grpc.RpcError:
                    pass  # best effort: their own deadlines abort them anyway

    def _close(self, c: Ceremony) -> None:
        self.registry.close(c)
        for ls in c.sessions:
            for p in ls.parties.values():
                try:
                    p.session.close()
                except Exception:  # closing twice or after an error is harmless
                    pass
        self.metrics.active.set(self.active_sessions())

    def abort_from(self, caller: str, req: pb.AbortRequest) -> pb.Ack:
        """Any peer of a ceremony may end it (one signer alone can always refuse). The culprits
        it names count here only with evidence this peer checks itself; the others are kept
        as accusations (accuser, accused) for the coordinator, never as culprits."""
        c = self.registry.ceremony(req.session_id)
        if c is None:
            return pb.Ack(ok=False, reason="unknown_session")
        if caller not in c.peers:
            return pb.Ack(ok=False, reason="caller_not_in_session")
        if len(req.culprits) > len(self.all_peers) or len(req.evidence) > len(self.all_peers):
            return pb.Ack(ok=False, reason="abort_malformed")
        cids = {c.cid, *(ls.sid for ls in c.sessions)}
        proven, evidence = set(), []
        for ev in req.evidence:
            who = envl.check_evidence(ev, self.keys, cids)
            if who is not None and who in c.peers and who not in proven:
                proven.add(who)
                evidence.append(ev)
        unproven = {x for x in req.culprits if x not in proven}
        with c.cond:
            c.accusations |= {(caller, x) for x in unproven if x in self.all_peers}
        self.abort(c, tuple(sorted(proven)), f"aborted_by {caller}: {req.reason[:200]}", notify=False, evidence=evidence)
        with c.cond:
            if c.state == "aborted" and proven - set(c.culprits):  # evidence after the abort still counts
                c.culprits = tuple(sorted(set(c.culprits) | proven))
                c.evidence += [ev for ev in evidence if ev.culprit not in {e.culprit for e in c.evidence}]
        if req.evidence and len(evidence) < len(req.evidence):
            return pb.Ack(ok=False, reason="evidence_invalid")
        if unproven:
            return pb.Ack(ok=False, reason="culprits_unproven")
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ incoming traffic
    def deliver(self, caller: str | None, env: pb.Envelope) -> pb.Ack:
        ls, c, finished = self.registry.session(env.session_id)
        if ls is not None:
            with ls.lock:
                if ls.state not in LIVE:
                    ls, finished = None, True
                else:
                    reason = envl.check_envelope(env, caller, ls.view, keys=self.keys)
        if ls is None:
            reason = envl.check_envelope(env, caller, None, finished, keys=self.keys)
        if reason is not None:
            self.metrics.envelopes_refused.labels(reason).inc()
            self.log.warning("envelope_refused", session=env.session_id[:8], round=env.round, sender=env.sender, by=caller, reason=reason)
            return pb.Ack(ok=False, reason=reason)
        ls.last_activity = time.monotonic()
        if env.is_broadcast:
            echo_to = ls.echo.record_own(env)
            if echo_to:  # a two-party session has no one to echo to
                e = pb.Echo(session_id=ls.sid, echoer=self.name, broadcast=envl.header_of(env))
                e.signature = self.signer.sign(envl.echo_digest(e))
                for peer in echo_to:
                    self._send_echo(ls, peer, e, limits.CLUSTER_ECHO_SEND_ATTEMPTS)
        self._deliver_local(c, ls, env)
        return pb.Ack(ok=True)

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

        self.keep(self.mesh.stub(peer).EchoHashes.future(e, timeout=limits.CLUSTER_RPC_TIMEOUT_MS / 1000), done)

    def echo(self, caller: str | None, e: pb.Echo) -> pb.Ack:
        """An echo counts only signed by its echoer (so it can incriminate it); one of a header
        its sender did not sign names the echoer (EchoBook), never the sender."""
        ls, _, _ = self.registry.session(e.session_id)
        if caller is None or caller != e.echoer:
            return pb.Ack(ok=False, reason="echoer_not_authenticated_peer")
        if ls is None:
            return pb.Ack(ok=False, reason="unknown_session")
        peers = {wp.party_peer(x) for x in ls.view.parties}
        b = e.broadcast
        if (caller not in peers or b.sender not in ls.view.parties or b.session_id != ls.sid or not b.is_broadcast
                or b.protocol != ls.protocol or len(b.payload_hash) != 32 or b.payload):
            return pb.Ack(ok=False, reason="echoer_not_in_session")
        if not self.keys.echo_signed(e):
            return pb.Ack(ok=False, reason="signature_invalid")
        reason = ls.echo.record_echo(e, ls.echo.have(b) or self.keys.envelope_signed(b))
        if reason is not None:
            return pb.Ack(ok=False, reason=reason)
        return pb.Ack(ok=True)

    # ------------------------------------------------------------------ await / commit
    def await_result(self, caller: str, cid: str, timeout_s: float) -> pb.SessionResult:
        """For the ceremony's peers and its coordinator only (a reshare's confirmation is run by a
        coordinator outside the new committee), and at most CLUSTER_AWAITS_PER_PEER_MAX at once
        per caller: a peer cannot hold this peer's RPC threads in waits."""
        c = self.registry.ceremony(cid)
        if c is None or (caller not in c.peers and caller != c.coordinator):
            return pb.SessionResult(session_id=cid, state="unknown")
        with self._inflight_lock:
            if self._awaiting.get(caller, 0) >= limits.CLUSTER_AWAITS_PER_PEER_MAX:
                return pb.SessionResult(session_id=cid, state="too_many_awaits")
            self._awaiting[caller] = self._awaiting.get(caller, 0) + 1
        try:
            deadline = time.monotonic() + min(timeout_s, limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000)
            with c.cond:
                while c.state in LIVE:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    c.cond.wait(left)
                return pb.SessionResult(session_id=cid, state=c.state, culprits=c.culprits, reason=c.reason,
                                        public_key=c.public_key, chain_code=c.chain_code, signatures=c.signatures,
                                        evidence=c.evidence)
        finally:
            with self._inflight_lock:
                self._awaiting[caller] -= 1

    def commit(self, caller: str, cid: str, confirm_signature: bytes = b"") -> pb.Ack:
        c, refusal = self._coordinated(caller, cid)
        if refusal is not None:
            return refusal
        with c.cond:
            if c.state == "committed":
                return pb.Ack(ok=True)
            if c.state != "done" or c.protocol == "sign":
                return pb.Ack(ok=False, reason=f"session_{c.state}")
            # A reshare's leaving peer checks itself that the new committee can sign before its
            # old share goes (the coordinator's word is not enough).
            if c.drop_needs_confirm and not cer.confirm_signature_valid(c.body, bytes.fromhex(c.body["public_key"]),
                                                                        bytes(confirm_signature)):
                return pb.Ack(ok=False, reason="reshare_unconfirmed")
            # Shares are written only now: the ceremony ended and every party got one key.
            if c.pending_record is not None:
                self.store.put_vault(c.pending_record, c.pending_share)
            elif c.drop_vault:
                self.store.drop_vault(c.body["vault_id"])
            c.state = "committed"
            c.forget_secrets()
        self.log.info("committed", session=cid[:8], protocol=c.protocol, vault=c.body.get("vault_id"))
        return pb.Ack(ok=True)
