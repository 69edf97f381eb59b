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
from mpc.wire import ceremony as cer
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
    def take_preparams(self, protocol: str):
        """A key generation may not take the last sets this peer keeps for resharing the vaults
        it holds (recovery: `preparams_reserved_for_recovery`)."""
        from mpc.preparams import PreParamsError

        if protocol == "keygen" and self.store.vault_ids() and self.preparams_source.reserved_for_recovery():
            raise Refused("preparams_reserved_for_recovery", f"{self.preparams_source.ready()} ready")
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
        # Approved by the vault's quorum, floors held: before any pre-params are taken.
        self.verifier.verify_ceremony(body, cer.CeremonyIntent("", body["vault_id"], "keygen", (), 0, tuple(sorted(committee)), t, ""))
        parties = [wp.party_id(p, 0) for p in committee]
        me = wp.party_id(self.name, 0)
        pp = self.take_preparams("keygen")
        s = tss.keygen(me, parties, t, pp, cid)  # a set the engine refuses is dropped: it may be why
        ls = new_session(self.name, cid, cid, "keygen", parties, {me: s})
        c = Ceremony(cid, "keygen", tuple(sorted(committee)), caller, [ls], body, request_id=body["request_id"], preparams=pp)
        c.pending_record = VaultRecord(body["vault_id"], me, tuple(sorted(parties)), t, "", "", 0)
        return c

    def reshare(self, cid, caller, peers, signed) -> Ceremony:
        body = self.verifier.authenticate(signed.request, signed.node_signature, "reshare")
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
        # Approved by the vault's quorum for exactly this change, floors held: checked by every
        # peer of the old quorum and of the new committee, before any pre-params are taken.
        self.verifier.verify_ceremony(body, cer.CeremonyIntent(
            "", body["vault_id"], "reshare", tuple(sorted(old_by_peer)), old_t, tuple(new_committee), new_t, "", public_key.hex()))
        # Peers of the old committee outside the old quorum and the new committee take no part:
        # they keep their old shares. As many as t+1 of them could still sign with the old key
        # generation, so such a reshare would not take the key from them.
        left_out = sorted(set(old_by_peer) - set(peers) - set(new_committee))
        if len(left_out) > old_t:
            raise Refused("old_committee_would_keep_a_quorum", f"{left_out} keep their old shares, t = {old_t}")
        old_parties = [old_by_peer[p] for p in peers]
        new_parties = [wp.party_id(p, gen + 1) for p in new_committee]
        everyone = sorted(set(peers) | set(new_committee))
        if self.name in peers and held is None:
            raise Refused("vault_unknown")
        if self.name not in peers and self.name not in new_committee:
            raise Refused("not_in_ceremony")
        pp = self.take_preparams("reshare") if self.name in new_committee else None  # before any session is made
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
            c.drop_needs_confirm = True
        return c

    # ------------------------------------------------------------------ reshare confirmation
    @staticmethod
    def is_reshare_confirm(raw: bytes) -> bool:
        """A Join for protocol "sign" that carries a reshare request is its confirmation (read
        unauthenticated only to route it: `confirm` checks the node's signature)."""
        try:
            return rq.parse(raw)["kind"] == "reshare"
        except Refused:
            return False

    def confirm(self, cid, caller, peers, signed) -> Ceremony:
        """After a reshare is committed on the new committee, t+1 of it sign
        `reshare_confirm_digest(request)` with the vault's root key; only then does the
        coordinator commit the leaving peers, which destroys their old shares. This peer signs
        only as a member of the vault's committee the request made (generation + 1, the
        request's key), and only that digest, computed here."""
        body = self.verifier.authenticate(signed.request, signed.node_signature, "reshare")
        held = self.store.vault(body["vault_id"])
        if held is None:
            raise Refused("vault_unknown")
        rec, share = held
        try:
            gen = wp.generation_of(sorted(body["old_committee"])[0]) + 1
            new_parties = tuple(sorted(wp.party_id(p, gen) for p in body["new_committee"]))
            public_key = str(body["public_key"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise Refused("request_malformed", f"reshare: {exc}") from None
        if (rec.generation, rec.committee, rec.public_key) != (gen, new_parties, public_key):
            raise Refused("reshare_not_committed", "this peer holds no share of the committee this reshare made")
        committee_peers = {wp.party_peer(p): p for p in rec.committee}
        if self.name not in peers or any(p not in committee_peers for p in peers):
            raise Refused("quorum_outside_committee")
        if len(peers) != rec.threshold + 1:
            raise Refused("quorum_size_wrong", f"{len(peers)} != {rec.threshold + 1}")
        signers = [committee_peers[p] for p in peers]
        digest = cer.reshare_confirm_digest(body)
        sid = wp.sub_session_id(cid, 0)
        s = tss.sign(rec.party, signers, share, digest, sid, ())
        keys = wp.RecordKeys(bytes.fromhex(rec.public_key), bytes.fromhex(rec.chain_code))
        ls = new_session(self.name, sid, cid, "sign", signers, {rec.party: s}, index=0, digest=digest, path=())
        return Ceremony(cid, "sign", tuple(peers), caller, [ls], {"vault_id": rec.vault_id},
                        request_id="confirm-" + body["request_id"], vault_keys=keys)

    # ------------------------------------------------------------------ retire
    @staticmethod
    def is_retire(raw: bytes) -> bool:
        try:
            return rq.parse(raw)["kind"] == "retire"
        except Refused:
            return False

    def retire(self, cid, caller, peers, signed) -> Ceremony:
        """Every peer of the vault's committee joins (all of them: a share left behind could
        still sign with t others); each checks the approvals itself and drops its share only at
        Commit, once every peer has joined and started."""
        body = self.verifier.authenticate(signed.request, signed.node_signature, "retire")
        held = self.store.vault(body["vault_id"])
        if held is None:
            raise Refused("vault_unknown")
        rec = held[0]
        try:
            claimed = (tuple(sorted(body["old_committee"])), int(body["old_threshold"]), str(body["public_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("request_malformed", f"retire: {exc}") from None
        if claimed != (rec.committee, rec.threshold, rec.public_key):
            raise Refused("retire_request_mismatch", "does not match the vault this peer holds")
        if tuple(sorted(peers)) != tuple(sorted(rec.peers())) or caller not in peers:
            raise Refused("retire_needs_every_peer", f"{sorted(peers)} != {sorted(rec.peers())}")
        self.verifier.verify_ceremony(body, cer.CeremonyIntent(
            "", rec.vault_id, "retire", tuple(sorted(rec.peers())), rec.threshold, (), 0, "", rec.public_key))
        c = Ceremony(cid, "reshare", tuple(sorted(peers)), caller, [], body, request_id=body["request_id"])
        c.drop_vault = True
        return c
