"""The coordinator role: the peer the node called runs the ceremony across the others.

  node --Sign(signed request)--> coordinator peer
  coordinator: checks the request itself; picks t+1 healthy, unquarantined peers;
               Join(session, peers, request) to each: every peer checks the request against its
               own policy and prepares its tss sessions (nothing runs yet);
               Start to each: the sessions run (participant.py);
               the coordinator retries a failed signing with another quorum; it quarantines
               repeat culprits it can prove (_blame), and keeps an accuser and the peer it
               accused without proof out of one quorum.
  keygen/reshare end with Await (every party reports the group key it got) and Commit (only
  then does any peer write its sealed share).

It holds no authority of its own: every peer it calls, itself included (in-process), decides
for itself at Join.
"""

from __future__ import annotations

import secrets
from concurrent import futures

import grpc

from mpc.proto import signer_pb2 as pb
from mpc.signer.participant import Participant
from mpc.signer.quarantine import Quarantine
from mpc.transport import envelope as envl
from mpc.wire import ceremony as cer
from mpc.wire import parties as wp
from mpc.wire.requests import Refused
from node import limits


def _failures(replies: dict) -> dict[str, str]:
    """peer -> why, for every reply that is an RpcError or a refusal."""
    return {p: (r.reason if not isinstance(r, Exception) else str(r.code())) for p, r in replies.items()
            if isinstance(r, Exception) or not r.ok}


class Coordinator:
    def __init__(self, name: str, all_peers, participant: Participant, verifier, store, mesh, metrics, log,
                 quarantine: Quarantine | None = None):
        self.name = name
        self.all_peers = all_peers
        self.participant = participant
        self.verifier = verifier
        self.store = store
        self.mesh = mesh
        self.metrics = metrics
        self.log = log
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        for p in self.quarantine.quarantined():  # state kept across a restart shows at once
            self.metrics.quarantined.labels(self.metrics.peer_label(p)).set(1)
        for a, b in self.quarantine.conflicts():
            self.metrics.conflicts.labels(self.metrics.peer_label(a), self.metrics.peer_label(b)).set(1)
        self._last_probe_ok: dict[str, bool] = {}

    # ------------------------------------------------------------------ calls
    def _call(self, peer: str, method: str, req, timeout_ms: int):
        """Calls a peer — or this peer's own participant, in-process — with a deadline."""
        if peer == self.name:
            part = self.participant
            return {"Join": lambda: part.join(self.name, req), "Start": lambda: part.start(self.name, req.session_id),
                    "Await": lambda: part.await_result(self.name, req.session_id, req.timeout_ms / 1000),
                    "Commit": lambda: part.commit(self.name, req.session_id, req.confirm_signature)}[method]()
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

    def _abort_local(self, cid: str, culprits, reason: str) -> None:
        c = self.participant.registry.ceremony(cid)
        if c is not None:
            self.participant.abort(c, tuple(culprits), reason)

    def _run_ceremony(self, protocol: str, peers, signed: pb.SignedRequest) -> tuple[str, dict, dict]:
        """Join + Start on `peers`. Returns (cid, refusals, unreachable)."""
        cid = secrets.token_hex(16)
        raw = signed.SerializeToString()
        replies = self._fanout(peers, "Join", lambda p: pb.JoinRequest(session_id=cid, protocol=protocol, peers=list(peers), request=raw),
                               limits.CLUSTER_JOIN_TIMEOUT_MS)
        refusals = {p: r.reason for p, r in replies.items() if not isinstance(r, Exception) and not r.ok}
        unreachable = {p: str(r.code()) for p, r in replies.items() if isinstance(r, Exception)}
        if refusals or unreachable:
            c = self.participant.registry.ceremony(cid)
            if c is not None:
                self.participant.abort(c, tuple(unreachable), "join_failed")
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
        dead = {p: str(r.code()) for p, r in starts.items() if isinstance(r, Exception)}
        if dead:
            self._abort_local(cid, list(dead), "start_failed")
            return cid, {}, dead
        refused = sorted(p for p, r in starts.items() if not r.ok)
        if refused:
            # Its session already ended there: an Abort raced our Start (a peer may abort at
            # once, naming anyone). Not the refuser's fault: the attempt ends, and blame is
            # decided like any abort's.
            self._abort_local(cid, (), "start_refused_by " + ",".join(refused))
        return cid, {}, {}

    def _await_all(self, cid: str, peers) -> dict:
        return self._fanout(peers, "Await", lambda p: pb.AwaitRequest(session_id=cid, timeout_ms=limits.CLUSTER_CEREMONY_TIMEOUT_MS),
                            limits.CLUSTER_CEREMONY_TIMEOUT_MS + 5_000)

    def _refused(self, protocol: str, reason: str, culprits=(), attempts: int = 0) -> pb.CeremonyReply:
        self.metrics.ceremonies.labels(protocol, "refused").inc()
        return pb.CeremonyReply(ok=False, reason=reason, culprits=list(culprits), attempts=attempts)

    def _refusal(self, protocol: str, exc: Refused) -> pb.CeremonyReply:
        self.metrics.refusals.labels(exc.reason).inc()
        self.log.warning("refused", reason=exc.reason, detail=exc.detail)
        return self._refused(protocol, f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason)

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

    def _pick_quorum(self, healthy: list[str], threshold: int) -> list[str]:
        """`threshold` co-signers from `healthy` with no pair in conflict, this coordinator
        included; when that is impossible, the first ones, and an alert. Peers in fewer
        conflicts come first (then in `healthy`'s order): a peer that accuses many sinks."""
        conflicts = self.quarantine.conflicts()
        healthy = sorted(healthy, key=lambda p: sum(p in pair for pair in conflicts))
        chosen: list[str] = []
        for p in healthy:
            if not any(self.quarantine.in_conflict(p, q) for q in (self.name, *chosen)):
                chosen.append(p)
                if len(chosen) == threshold:
                    return chosen
        self.metrics.blame_alerts.labels("conflict_unavoidable").inc()
        self.log.warning("conflict_unavoidable", conflicts=str(self.quarantine.conflicts()))
        return healthy[:threshold]

    def _blame(self, cid: str, quorum, res, log) -> set[str]:
        """After an aborted attempt: the peers proven to have misbehaved (they count toward
        quarantine and are left out of the retries), and a conflict for every accusation nobody
        could prove. Proof is evidence checked here (envelope.check_evidence), this
        coordinator's own deadline on a peer that does not say it was itself waiting on another,
        or an accusation of a peer that had no part in the session (false on its face)."""
        c = self.participant.registry.ceremony(cid)
        ids = {cid, *(ls.sid for ls in c.sessions)} if c is not None else {cid}
        others = [p for p in quorum if p != self.name]
        seen = self._fanout(others, "Await", lambda p: pb.AwaitRequest(session_id=cid, timeout_ms=limits.CLUSTER_BLAME_AWAIT_MS),
                            limits.CLUSTER_BLAME_AWAIT_MS + 2_000)
        reported = {p: {x for x in r.culprits if x in self.all_peers} for p, r in seen.items()
                    if not isinstance(r, Exception) and r.state == "aborted"}
        proven: dict[str, str] = {}
        for ev in [*res.evidence, *(ev for r in seen.values() if not isinstance(r, Exception) for ev in r.evidence)]:
            who = envl.check_evidence(ev, self.participant.keys, ids)
            if who in quorum and who != self.name:
                proven.setdefault(who, ev.kind)
        pairs: set[tuple[str, str]] = set()
        kind = res.reason.split(":")[0]
        for x in res.culprits:
            if x in proven or x == self.name or x not in quorum:
                continue
            if kind in ("round_timeout", "peer_unreachable", "echo_timeout", "inbox_full"):
                waited_on = reported.get(x, set()) - {x}
                if waited_on:  # x says it was itself held up: a chain nobody can settle
                    pairs |= {(x, y) for y in waited_on}
                else:
                    proven[x] = kind
            else:  # e.g. tss-lib naming a party: not provable to anyone else
                pairs.add((self.name, x))
        accusations = set(c.accusations) if c is not None else set()
        accusations |= {(p, x) for p, names in reported.items() for x in names}
        for accuser, x in sorted(accusations):
            if accuser == x or x in proven or accuser in proven:
                continue
            if x not in quorum:
                proven[accuser] = "false_accusation"
                self.metrics.blame_alerts.labels("false_accusation").inc()
            else:
                pairs.add((accuser, x))
        for x, why in sorted(proven.items()):
            log.warning("peer_misbehaved", culprit=x, proof=why)
            if self.quarantine.record_abort(x):
                self.metrics.quarantined.labels(self.metrics.peer_label(x)).set(1)
                log.warning("peer_quarantined", culprit=x)
        for a, b in sorted(pairs):
            if a in proven or b in proven or a == b:
                continue
            if self.quarantine.record_conflict(a, b):
                self.metrics.blame_alerts.labels("conflict").inc()
                log.warning("peers_in_conflict", accuser=a, accused=b)
            self.metrics.conflicts.labels(*sorted((self.metrics.peer_label(a), self.metrics.peer_label(b)))).set(1)
        return set(proven)

    # ------------------------------------------------------------------ sign
    def sign(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        held, keys = self.participant.prepare.vault_keys(signed.request)
        try:
            # The coordinator checks the request itself first (and again when it joins).
            self.verifier.verify_sign(signed.request, signed.node_signature, keys)
        except Refused as exc:
            return self._refusal("sign", exc)
        rec = held[0]
        excluded: set[str] = set()
        reasons = []
        all_culprits: list[str] = []
        for attempt in range(1, limits.CLUSTER_SIGN_ATTEMPTS_MAX + 1):
            healthy = self._pick_healthy([p for p in rec.peers() if p not in excluded])
            if len(healthy) < rec.threshold:
                reasons.append(f"not_enough_healthy_peers: {len(healthy) + 1} < {rec.threshold + 1}")
                break
            quorum = tuple(sorted([self.name, *self._pick_quorum(healthy, rec.threshold)]))
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
            res = self.participant.await_result(self.name, cid, limits.CLUSTER_CEREMONY_TIMEOUT_MS / 1000)
            if res.state == "done":
                self.metrics.ceremonies.labels("sign", "done").inc()
                log.info("signed", digests=len(res.signatures))
                c = self.participant.registry.pop(cid)
                digests = [s.digest for s in c.sessions] if c else []
                return pb.CeremonyReply(ok=True, signatures=list(res.signatures), digests=digests, vault_id=rec.vault_id,
                                        public_key=bytes.fromhex(rec.public_key), chain_code=bytes.fromhex(rec.chain_code),
                                        committee=list(quorum), attempts=attempt,
                                        culprits=sorted(set(all_culprits)), reason="; ".join(reasons))
            culprits = sorted(self._blame(cid, quorum, res, log))
            all_culprits += culprits
            excluded |= set(culprits)
            reasons.append(f"attempt {attempt}: aborted, culprits [{','.join(culprits)}]: {res.reason}")
            log.warning("attempt_aborted", culprits=",".join(res.culprits), reason=res.reason)
        self.metrics.ceremonies.labels("sign", "failed").inc()
        return pb.CeremonyReply(ok=False, reason="signing_failed: " + " | ".join(reasons), culprits=sorted(set(all_culprits)),
                                attempts=len(reasons))

    # ------------------------------------------------------------------ keygen / reshare
    def keygen(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        try:
            body = self.verifier.authenticate(signed.request, signed.node_signature, "keygen")
            committee = body.get("committee")
            if not isinstance(committee, list) or self.name not in committee or any(p not in self.all_peers for p in committee):
                raise Refused("committee_unknown_peer" if isinstance(committee, list) else "request_malformed")
        except Refused as exc:
            return self._refusal("keygen", exc)
        peers = tuple(sorted(committee))
        cid, refusals, unreachable = self._run_ceremony("keygen", peers, signed)
        if refusals or unreachable:
            return self._refused("keygen", f"join_failed: refused {refusals} unreachable {sorted(unreachable)}", sorted(unreachable), 1)
        return self._finish_key_ceremony("keygen", cid, peers, body)

    def reshare(self, signed: pb.SignedRequest) -> pb.CeremonyReply:
        try:
            body = self.verifier.authenticate(signed.request, signed.node_signature, ("reshare", "retire"))
            held = self.store.vault(body["vault_id"])
            if held is None:
                raise Refused("vault_unknown")
            if body["kind"] == "retire":
                return self._retire(signed, body, held[0])
            new_committee = body.get("new_committee")
            if not isinstance(new_committee, list) or any(p not in self.all_peers for p in new_committee):
                raise Refused("committee_unknown_peer")
        except Refused as exc:
            return self._refusal("reshare", exc)
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
        bad = _failures(replies)
        if bad:
            self._abort_local(cid, (), "join_failed")
            return self._refused("reshare", f"join_failed: {bad}")
        bad = _failures(self._fanout(everyone, "Start", lambda p: pb.StartRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS))
        if bad:
            return self._refused("reshare", f"start_failed: {bad}")
        return self._finish_key_ceremony("reshare", cid, everyone, body, signed)

    def _retire(self, signed: pb.SignedRequest, body: dict, rec) -> pb.CeremonyReply:
        """Every peer of the committee joins and checks; only when all have, Start and Commit:
        each drops its share. A peer unreachable or refusing: nothing is dropped anywhere."""
        peers = tuple(sorted(rec.peers()))
        down = sorted(set(peers) - {self.name} - set(self._pick_healthy(peers)))  # also wakes channels to restarted peers
        if down:
            return self._refused("retire", f"peers_unreachable: {down}", down, 0)
        cid, refusals, unreachable = self._run_ceremony("reshare", peers, signed)
        if refusals or unreachable:
            return self._refused("retire", f"join_failed: refused {refusals} unreachable {sorted(unreachable)}", sorted(unreachable), 1)
        results = self._await_all(cid, peers)
        bad = {p: (r.state if not isinstance(r, Exception) else str(r.code())) for p, r in results.items()
               if isinstance(r, Exception) or r.state != "done"}
        if bad:
            self._abort_local(cid, (), "retire_failed")
            return self._refused("retire", f"retire_failed: {bad}", attempts=1)
        bad = _failures(self._fanout(peers, "Commit", lambda p: pb.CommitRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS))
        if bad:
            return self._refused("retire", f"commit_failed: {bad}", attempts=1)
        self.log.info("retire_done", vault=body["vault_id"])
        return pb.CeremonyReply(ok=True, vault_id=body["vault_id"], public_key=bytes.fromhex(rec.public_key), attempts=1)

    def _confirm_reshare(self, signed: pb.SignedRequest, body: dict) -> tuple[str | None, bytes]:
        """t+1 peers of the new committee sign reshare_confirm_digest with the vault's key (each
        computes it and checks it holds the new share: Preparer.confirm); the signature is
        verified here, and again by each leaving peer at its Commit. (None, signature) when it
        verifies, else (why not, b"")."""
        new_committee, t = list(body["new_committee"]), body["new_threshold"]
        healthy = self._pick_healthy(new_committee)
        quorum = ([self.name] if self.name in new_committee else []) + healthy
        if len(quorum) < t + 1:
            return f"not_enough_healthy_peers: {len(quorum)} < {t + 1}", b""
        quorum = tuple(sorted(quorum[: t + 1]))
        cid, refusals, unreachable = self._run_ceremony("sign", quorum, signed)
        if refusals or unreachable:
            return f"join_failed: refused {refusals} unreachable {sorted(unreachable)}", b""
        results = self._await_all(cid, quorum)
        sigs = {bytes(r.signatures[0]) for r in results.values() if not isinstance(r, Exception) and r.state == "done" and r.signatures}
        self.participant.registry.pop(cid)
        if len(sigs) != 1:
            return f"confirm_failed: {len(sigs)} distinct signatures from {sorted(results)}", b""
        (sig,) = sigs
        if not cer.confirm_signature_valid(body, bytes.fromhex(body["public_key"]), sig):
            return "confirm_failed: the signature does not verify under the vault's key", b""
        return None, sig

    def _finish_key_ceremony(self, protocol, cid, peers, body, signed=None) -> pb.CeremonyReply:
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
            self._abort_local(cid, sorted(culprits), "; ".join(reasons))
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason=f"{protocol}_failed: " + "; ".join(reasons), culprits=sorted(culprits), attempts=1)
        (public_key, chain_code), = keys
        if protocol == "reshare" and public_key.hex() != body["public_key"]:
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason="reshare_failed: the new committee's key differs", attempts=1)
        # A reshare commits in two steps: the new committee first, which then signs (the
        # confirmation); only then the peers that leave, whose old shares are destroyed.
        first = [p for p in peers if protocol != "reshare" or p in body["new_committee"]]
        leaving = [p for p in peers if p not in first]
        bad = _failures(self._fanout(first, "Commit", lambda p: pb.CommitRequest(session_id=cid), limits.CLUSTER_RPC_TIMEOUT_MS))
        if bad:
            self.metrics.ceremonies.labels(protocol, "failed").inc()
            return pb.CeremonyReply(ok=False, reason=f"commit_failed: {bad}", attempts=1)
        if protocol == "reshare":
            why, confirm_sig = self._confirm_reshare(signed, body)
            if why is not None:
                self.metrics.ceremonies.labels(protocol, "failed").inc()
                self._abort_local(cid, (), "reshare_unconfirmed")
                self.log.warning("reshare_unconfirmed", vault=body["vault_id"], session=cid, reason=why, kept_on=",".join(leaving))
                return pb.CeremonyReply(ok=False, attempts=1,
                                        reason=f"reshare_unconfirmed: the old shares are kept on {leaving}: {why}")
            bad = _failures(self._fanout(leaving, "Commit", lambda p: pb.CommitRequest(session_id=cid, confirm_signature=confirm_sig),
                                         limits.CLUSTER_RPC_TIMEOUT_MS))
            if bad:
                self.log.warning("reshare_old_shares_not_dropped", vault=body["vault_id"], peers=str(bad))
        self.metrics.ceremonies.labels(protocol, "done").inc()
        if protocol == "keygen":
            committee, threshold = [wp.party_id(p, 0) for p in body["committee"]], body["threshold"]
        else:
            gen = wp.generation_of(sorted(body["old_committee"])[0]) + 1
            committee, threshold = [wp.party_id(p, gen) for p in body["new_committee"]], body["new_threshold"]
        self.log.info(f"{protocol}_done", vault=body["vault_id"], public_key=public_key.hex())
        return pb.CeremonyReply(ok=True, vault_id=body["vault_id"], public_key=public_key, chain_code=chain_code,
                                committee=sorted(committee), threshold=threshold, attempts=1)
