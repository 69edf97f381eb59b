"""Join's decision: this peer checks a ceremony request against its own policy and vaults, and
only then builds its tss sessions (nothing runs until Start). Every refusal is a `Refused`
named as a sentence; whatever this peer cannot verify itself, it refuses.
"""

from __future__ import annotations

from mpc.proto import signer_pb2 as pb
from mpc.signer import ceremonies as tss
from mpc.signer.ceremony import Ceremony, LocalSession, Party
from mpc.signer.records import RecordsError
from mpc.signer.store import VAULT_RE, VaultRecord
from mpc.transport import envelope as envl
from mpc.wire import parties as wp
from mpc.wire import requests as rq
from mpc.wire.requests import Refused


def new_session(me: str, sid: str, cid: str, protocol: str, all_parties, local: dict[str, object], **kw) -> LocalSession:
    view = envl.SessionView(sid, protocol, frozenset(all_parties), frozenset(local))
    return LocalSession(sid=sid, cid=cid, protocol=protocol, view=view, echo=envl.EchoBook(me, pb.Evidence),
                        parties={pid: Party(pid, s) for pid, s in local.items()}, **kw)


class Preparer:
    def __init__(self, name: str, all_peers, policy, verifier, store, records, preparams_source, log):
        self.name = name
        self.all_peers = all_peers
        self.policy = policy
        self.verifier = verifier
        self.store = store
        self.records = records
        self.preparams_source = preparams_source
        self.log = log

    def vault_keys(self, raw: bytes):
        """The held vault a sign/reserves request names, and its public keys (for the checker to
        derive our addresses). The vault id is read before the node's signature is checked; the
        verifier re-parses after checking it, so nothing unsigned is trusted."""
        try:
            vault_id = rq.parse(raw)["vault_id"]
        except Refused:
            vault_id = ""
        held = self.store.vault(vault_id)
        keys = wp.RecordKeys(bytes.fromhex(held[0].public_key), bytes.fromhex(held[0].chain_code)) if held else None
        return held, keys

    # ------------------------------------------------------------------ pre-params
    def take_preparams(self):
        from mpc.preparams import PreParamsError

        try:
            pp = self.preparams_source()
        except PreParamsError as exc:
            raise Refused("preparams_invalid", str(exc)) from None
        if pp is None:
            raise Refused("preparams_not_ready")
        return pp

    def give_back(self, pp) -> None:
        if pp is not None:
            self.preparams_source.give_back(pp)
            self.log.info("preparams_returned", ready=self.preparams_source.ready())

    # ------------------------------------------------------------------ per protocol
    def sign(self, cid, caller, peers, signed) -> Ceremony:
        held, keys = self.vault_keys(signed.request)
        v = self.verifier.verify_sign(signed.request, signed.node_signature, keys)
        if self.records.signed(v.request_id):
            raise Refused("request_already_signed")
        rec, share = held
        if self.name not in peers or caller not in peers:
            raise Refused("not_in_quorum")
        committee_peers = {wp.party_peer(p): p for p in rec.committee}
        if any(p not in committee_peers for p in peers):
            raise Refused("quorum_outside_committee")
        if len(peers) != rec.threshold + 1:
            raise Refused("quorum_size_wrong", f"{len(peers)} != {rec.threshold + 1}")
        signers = [committee_peers[p] for p in peers]
        if v.version is not None:
            # Spend-once: the version is durable in this peer's records before it contributes
            # anything to a signature (nothing runs before Start). Recorded here, after every
            # other check, it counts as signed even if this ceremony never starts: the safe side.
            try:
                self.records.record_intent(v.version)
            except RecordsError as exc:
                raise Refused("records_unwritable", str(exc)) from None
        sessions = []
        for i, d in enumerate(v.digests):
            sid = wp.sub_session_id(cid, i)
            s = tss.sign(rec.party, signers, share, d.digest, sid, d.path)
            sessions.append(new_session(self.name, sid, cid, "sign", signers, {rec.party: s}, index=i, digest=d.digest, path=tuple(d.path)))
        return Ceremony(cid, "sign", tuple(peers), caller, sessions, {"vault_id": rec.vault_id}, request_id=v.request_id,
                        vault_keys=keys)

    def keygen(self, cid, caller, peers, signed) -> Ceremony:
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
        if not VAULT_RE.match(body["vault_id"]):
            raise Refused("request_malformed", "vault id")
        if self.store.vault(body["vault_id"]) is not None:
            raise Refused("vault_exists")
        parties = [wp.party_id(p, 0) for p in committee]
        me = wp.party_id(self.name, 0)
        pp = self.take_preparams()
        s = tss.keygen(me, parties, t, pp, cid)  # a set the engine refuses is dropped: it may be why
        ls = new_session(self.name, cid, cid, "keygen", parties, {me: s})
        c = Ceremony(cid, "keygen", tuple(sorted(committee)), caller, [ls], body, request_id=body["request_id"], preparams=pp)
        c.pending_record = VaultRecord(body["vault_id"], me, tuple(sorted(parties)), t, "", "", 0)
        return c

    def reshare(self, cid, caller, peers, signed) -> Ceremony:
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
        gen = wp.generation_of(old_committee[0])
        old_by_peer = {wp.party_peer(p): p for p in old_committee}
        if any(p not in old_by_peer for p in peers) or len(peers) != old_t + 1 or caller not in peers:
            raise Refused("quorum_outside_committee")
        old_parties = [old_by_peer[p] for p in peers]
        new_parties = [wp.party_id(p, gen + 1) for p in new_committee]
        everyone = sorted(set(peers) | set(new_committee))
        if self.name in peers and held is None:
            raise Refused("vault_unknown")
        if self.name not in peers and self.name not in new_committee:
            raise Refused("not_in_ceremony")
        pp = self.take_preparams() if self.name in new_committee else None  # before any session is made
        local = {}
        try:
            if self.name in peers:
                me_old = old_by_peer[self.name]
                local[me_old] = tss.reshare(me_old, old_parties, new_parties, old_t, new_t, held[1], None, cid, public_key, chain_code)
            if self.name in new_committee:
                me_new = wp.party_id(self.name, gen + 1)
                local[me_new] = tss.reshare(me_new, old_parties, new_parties, old_t, new_t, None, pp, cid, public_key, chain_code)
        except BaseException:
            for q in local.values():
                q.close()
            raise  # pre-params the engine refused are dropped: they may be why
        ls = new_session(self.name, cid, cid, "reshare", old_parties + new_parties, local)
        c = Ceremony(cid, "reshare", tuple(everyone), caller, [ls], body, request_id=body["request_id"], preparams=pp)
        if self.name in new_committee:
            c.pending_record = VaultRecord(body["vault_id"], wp.party_id(self.name, gen + 1), tuple(sorted(new_parties)), new_t,
                                           public_key.hex(), chain_code.hex(), gen + 1)
        else:
            c.drop_vault = True
        return c
