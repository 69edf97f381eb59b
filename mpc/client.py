"""The node's side of the signer cluster: builds node-signed requests and calls a coordinator
peer over mTLS (node/ports.py SigningCluster). Every signature returned is verified here again
under the vault's child key (check twice at the boundaries).
"""

from __future__ import annotations

import grpc
import coincurve
from nacl.signing import SigningKey

from mpc.proto import signer_pb2 as pb
from mpc.proto import signer_pb2_grpc as pb_grpc
from mpc.wire.parties import RecordKeys
from mpc.wire import requests as rq
from mpc.wire.ceremony import CeremonyIntent
from mpc.transport import mesh, tls
from node import limits
from proofs import assets
from node.ports import (EcdsaSignature, SigningDigest, SigningRefused, UnsignedTransaction, Vault,
                        WithdrawalIntent)


class ClusterClient:
    """`coordinators`: (peer name, address, pinned cert PEM), tried in order when unreachable."""

    def __init__(self, identity: tls.Identity, signing_key: SigningKey, coordinators, timeout_ms: int = limits.CLUSTER_CEREMONY_TIMEOUT_MS,
                 ceremony_approver=None):
        """`ceremony_approver`: for a local cluster only (mpc/dev_approvals.py), approves the
        key ceremonies this client asks for with the dev approvers' keys; otherwise the caller
        passes the ceremony intent and the approvals it gathered."""
        assert identity.name == "node", "the node's certificate must name it 'node' (peers pin it so)"
        self.ceremony_approver = ceremony_approver
        self.identity = identity
        self.signing_key = signing_key
        self.timeout_s = timeout_ms / 1000
        self.coordinators = list(coordinators)
        self._stubs = {}

    @classmethod
    def from_cluster_dir(cls, cluster: dict, coordinators=None, dev_approvals: bool = False) -> "ClusterClient":
        """From `custody cluster init`'s cluster.json (a local cluster). `dev_approvals`: key
        ceremonies approved with the dev approvers' keys (a local cluster only)."""
        import pathlib

        from mpc.dev_approvals import DevApprovers

        node = cluster["node"]
        ident = tls.Identity("node", pathlib.Path(node["tls_cert"]).read_bytes(), pathlib.Path(node["tls_key"]).read_bytes())
        key = SigningKey(bytes.fromhex(pathlib.Path(node["signing_key"]).read_text().strip()))
        peers = [(p["name"], p["address"], pathlib.Path(p["tls_cert"]).read_bytes()) for p in cluster["peers"]
                 if coordinators is None or p["name"] in coordinators]
        return cls(ident, key, peers, ceremony_approver=DevApprovers(cluster) if dev_approvals else None)

    def _stub(self, name, address, cert):
        s = self._stubs.get(name)
        if s is None:
            s = self._stubs[name] = pb_grpc.SignerStub(mesh.open_channel(self.identity, address, name, cert))
        return s

    def _call(self, method: str, body: dict, coordinator: str | None = None, members=None) -> pb.CeremonyReply:
        raw, sig = rq.sign_body(body, self.signing_key)
        req = pb.SignedRequest(request=raw, node_signature=sig)
        last = None
        for name, address, cert in self.coordinators:
            if (coordinator is not None and name != coordinator) or (members is not None and name not in members):
                continue
            try:
                return getattr(self._stub(name, address, cert), method)(req, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise SigningRefused(f"coordinator_error: {exc.code().name}: {exc.details()}") from None
                last = exc
        raise SigningRefused(f"no_coordinator_reachable: {last.code().name if last else 'none configured'}")

    def keygen(self, vault_id: str, committee, threshold: int, coordinator: str | None = None,
               ceremony: CeremonyIntent | None = None, approvals=()) -> Vault:
        """`ceremony`, `approvals`: the approved key generation (mpc/wire/ceremony.py); a dev
        client's own approver makes them when not given."""
        if ceremony is None and self.ceremony_approver is not None:
            ceremony, approvals = self.ceremony_approver.keygen(vault_id, committee, threshold)
        r = self._call("Keygen", rq.keygen_request(vault_id, committee, threshold, ceremony=ceremony, approvals=approvals),
                       coordinator, set(committee))
        if not r.ok:
            raise SigningRefused(r.reason, tuple(r.culprits))
        assert len(r.public_key) == 33 and len(r.chain_code) == 32
        coincurve.PublicKey(r.public_key)  # a point on the curve, or it raises
        return Vault(r.vault_id, tuple(r.committee), r.threshold, bytes(r.public_key), bytes(r.chain_code))

    def reshare(self, vault: Vault, new_committee, new_threshold: int, coordinator: str | None = None,
                ceremony: CeremonyIntent | None = None, approvals=()) -> Vault:
        if ceremony is None and self.ceremony_approver is not None:
            ceremony, approvals = self.ceremony_approver.reshare(vault, new_committee, new_threshold)
        body = rq.reshare_request(vault.vault_id, new_committee, new_threshold, ceremony=ceremony, approvals=approvals)
        body.update({"old_committee": list(vault.committee),
                     "old_threshold": vault.threshold, "public_key": vault.public_key.hex(), "chain_code": vault.chain_code.hex()})
        r = self._call("Reshare", body, coordinator, {p.rpartition(":")[0] for p in vault.committee})
        if not r.ok:
            raise SigningRefused(r.reason, tuple(r.culprits))
        if bytes(r.public_key) != vault.public_key:
            raise SigningRefused("reshare_changed_public_key")
        return Vault(vault.vault_id, tuple(r.committee), r.threshold, vault.public_key, vault.chain_code)

    def retire(self, vault: Vault, coordinator: str | None = None, ceremony: CeremonyIntent | None = None, approvals=()) -> None:
        """Every share of the vault destroyed on every peer of its committee (approved like a
        reshare; all peers must be reachable). Move its funds first: the key is gone for good."""
        if ceremony is None and self.ceremony_approver is not None:
            ceremony, approvals = self.ceremony_approver.retire(vault)
        body = rq.retire_request(vault.vault_id, ceremony=ceremony, approvals=approvals)
        body.update({"old_committee": list(vault.committee), "old_threshold": vault.threshold, "public_key": vault.public_key.hex()})
        r = self._call("Reshare", body, coordinator, {p.rpartition(":")[0] for p in vault.committee})
        if not r.ok:
            raise SigningRefused(r.reason, tuple(r.culprits))

    def sign(self, vault: Vault, tx: UnsignedTransaction | None, intent: WithdrawalIntent | None,
             approvals=(), opaque_digests: list[SigningDigest] = (), coordinator: str | None = None,
             request_id: str | None = None) -> list[tuple[SigningDigest, EcdsaSignature]]:
        body = rq.sign_request(vault.vault_id, tx, intent, approvals, opaque_digests, request_id)
        # Only a peer of the vault's committee can coordinate its signing: try those.
        members = {p.rpartition(":")[0] or p for p in vault.committee}
        r = self._call("Sign", body, coordinator, members)
        if not r.ok:
            raise SigningRefused(r.reason, tuple(r.culprits))
        return self.verify_reply(vault, body, r)

    def sign_reserves(self, vault: Vault, chain: str, paths, message: str,
                      coordinator: str | None = None) -> list[EcdsaSignature]:
        """The proof-of-reserves message signed with the child key at each path (a `reserves`
        request over the Sign RPC); each signature is checked over the digest computed here."""
        _, _, digest = assets.reserves_request_digest(chain, message)
        body = rq.reserves_request(vault.vault_id, chain, paths, message)
        members = {p.rpartition(":")[0] or p for p in vault.committee}
        r = self._call("Sign", body, coordinator, members)
        if not r.ok:
            raise SigningRefused(r.reason, tuple(r.culprits))
        signed = self.verify_reply(vault, body, r)
        if any(d.digest != digest for d, _ in signed):
            raise SigningRefused("reply_malformed: a signature over another digest")
        return [s for _, s in signed]

    def verify_reply(self, vault: Vault, body: dict, r: pb.CeremonyReply):
        keys = RecordKeys(vault.public_key, vault.chain_code)
        if body.get("kind") == "reserves":
            paths = [tuple(p) for p in body["paths"]]
        else:
            paths = [tuple(i["path"]) for i in body["transaction"]["inputs"]] if body.get("transaction") else \
                    [tuple(d["path"]) for d in body["opaque_digests"]]
        if len(r.signatures) != len(paths) or len(r.digests) != len(paths):
            raise SigningRefused("reply_malformed: one signature per digest expected")
        out = []
        for path, digest, sig65 in zip(paths, r.digests, r.signatures):
            child = keys.child_public_key(path)
            rr, ss, v = int.from_bytes(sig65[:32], "big"), int.from_bytes(sig65[32:64], "big"), sig65[64]
            recovered = coincurve.PublicKey.from_signature_and_message(sig65[:64] + bytes([v]), digest, hasher=None)
            if recovered.format() != child:
                raise SigningRefused("signature_invalid: does not verify under the vault's child key")
            out.append((SigningDigest(path, bytes(digest)), EcdsaSignature(rr, ss, v, child)))
        return out


class ClusterReservesSigner:
    """node/ports.py ReservesSigner on the signer cluster: `vaults` maps vault id -> Vault."""

    def __init__(self, client: ClusterClient, vaults: dict[str, Vault]):
        self.client = client
        self.vaults = dict(vaults)

    def sign_reserves(self, chain: str, vault_id: str, path, snapshot_id: str, root_hash: str) -> EcdsaSignature:
        vault = self.vaults.get(vault_id)
        if vault is None:
            raise SigningRefused(f"vault_unknown: {vault_id}")
        return self.sign_reserves_many(chain, vault_id, [path], snapshot_id, root_hash)[0]

    def sign_reserves_many(self, chain: str, vault_id: str, paths, snapshot_id: str, root_hash: str) -> list[EcdsaSignature]:
        """One `reserves` request for several addresses of one vault on one chain (at most
        CLUSTER_DIGESTS_PER_REQUEST_MAX paths): one round trip and one policy check per batch;
        each path is still its own tss-lib signing session on the peers."""
        vault = self.vaults.get(vault_id)
        if vault is None:
            raise SigningRefused(f"vault_unknown: {vault_id}")
        assert 1 <= len(paths) <= limits.CLUSTER_DIGESTS_PER_REQUEST_MAX, len(paths)
        return self.client.sign_reserves(vault, chain, [tuple(p) for p in paths], assets.reserves_message(snapshot_id, root_hash))
