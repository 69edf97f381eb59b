"""Key ceremonies approved with a local cluster's dev approver keys (`custody cluster init`
writes them, 0600, beside the cluster; `custody dev up` and the tests use them). Never in
production: there the approvers sign on their own devices (the approver page) and the node only
carries their approvals.

The policy digest the approvals name is computed from a peer's own policy file in the cluster
directory (every peer of a local cluster has the same one), as each peer computes it itself.
"""

from __future__ import annotations

import pathlib

from nacl.signing import SigningKey

from mpc.wire import ceremony as cer
from mpc.wire import requests as rq


class DevApprovers:
    """`approved_at_ms()`: the approvers' clock (a test may say the approvals are older)."""

    def __init__(self, cluster: dict, approver_ids=None, approved_at_ms=rq.now_ms, policy_peer: str | None = None):
        self.cluster = cluster
        ids = approver_ids if approver_ids is not None else sorted(cluster["approvers"])
        self.keys = {a: SigningKey(bytes.fromhex(pathlib.Path(cluster["approvers"][a]).read_text().strip())) for a in ids}
        self.approved_at_ms = approved_at_ms
        peer = policy_peer or cluster["peers"][0]["name"]
        self.policy_file = pathlib.Path(next(p["dir"] for p in cluster["peers"] if p["name"] == peer)) / "policy.toml"

    def policy_digest(self, vault_id: str) -> str:
        from mpc.signer.policy import Policy

        return Policy.load(self.policy_file).vault_policy_digest(vault_id)

    def approve(self, intent: cer.CeremonyIntent) -> tuple:
        at = self.approved_at_ms()
        return tuple(cer.approve_ceremony(intent, a, k, at) for a, k in sorted(self.keys.items()))

    def keygen(self, vault_id: str, committee, threshold: int):
        intent = cer.keygen_intent(vault_id, committee, threshold, self.policy_digest(vault_id))
        return intent, self.approve(intent)

    def retire(self, vault):
        intent = cer.retire_intent(vault.vault_id, vault.public_key, vault.committee, vault.threshold,
                                   self.policy_digest(vault.vault_id))
        return intent, self.approve(intent)

    def reshare(self, vault, new_committee, new_threshold: int, threshold_lowering: bool = False):
        intent = cer.reshare_intent(vault.vault_id, vault.public_key, vault.committee, vault.threshold, new_committee,
                                    new_threshold, self.policy_digest(vault.vault_id), threshold_lowering)
        return intent, self.approve(intent)
