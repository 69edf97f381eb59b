"""One signer peer, composed: its policy and request checks, its sealed shares and durable
records, the mesh to the other peers, and its two roles — participant (every ceremony it takes
part in) and coordinator (the ceremonies the node asks it to run). server.py puts it on gRPC.

`participant_class` is Participant in production; a test config may name a test-only subclass
(config.py refuses [test] settings outside environment = "test").
"""

from __future__ import annotations

from mpc.signer.config import SignerConfig
from mpc.signer.coordinator import Coordinator
from mpc.signer.metrics import Metrics
from mpc.signer.participant import Participant
from mpc.signer.policy import Policy, RequestVerifier
from mpc.signer.prepare import Preparer
from mpc.signer.quarantine import FILE_NAME as QUARANTINE_FILE
from mpc.signer.quarantine import Quarantine
from mpc.signer.server import NODE
from mpc.signer.store import ShareStore
from mpc.transport import envelope as envl
from mpc.transport import tls
from mpc.transport.mesh import Mesh
from node import log as nlog


class SignerPeer:
    def __init__(self, cfg: SignerConfig, identity: tls.Identity, policy: Policy, store: ShareStore, records,
                 checkers: dict, preparams_source, participant_class: type[Participant] = Participant):
        self.cfg = cfg
        self.name = cfg.name
        self.identity = identity
        self.store = store
        self.records = records
        self.preparams_source = preparams_source
        peer_certs = {p.name: p.tls_cert.read_bytes() for p in cfg.peers}
        self.pins = tls.Pins({**peer_certs, NODE: cfg.node_tls_cert.read_bytes()})
        self.mesh = Mesh(identity, {p.name: (p.address, peer_certs[p.name]) for p in cfg.peers})
        self.all_peers = sorted([self.name, *peer_certs])
        self.metrics = Metrics(self.all_peers)
        records.on_append = self.metrics.records_append.observe
        self.log = nlog.get("mpc.signer", peer=self.name)
        self.verifier = RequestVerifier(policy, cfg.environment, checkers, records)
        preparer = Preparer(self.name, self.all_peers, policy, self.verifier, store, records, preparams_source, self.log)
        self.participant = participant_class(self.name, self.all_peers, self.mesh, self.metrics, records, store, preparer,
                                             cfg.round_timeout_ms, self.log, signer=envl.MessageSigner(identity.key_pem, self.metrics.observe_signature),
                                             keys=envl.PeerKeys({self.name: identity.cert_pem, **peer_certs}, self.metrics.observe_signature))
        self.coordinator = Coordinator(self.name, self.all_peers, self.participant, self.verifier, store, self.mesh,
                                       self.metrics, self.log, Quarantine(cfg.data_dir / QUARANTINE_FILE))
        self.ready = False

    def health(self) -> dict:
        """What /health shows; reading it changes nothing."""
        return {"peer": self.name, "ready": self.ready, "environment": self.cfg.environment,
                "vaults": len(self.store.vault_ids()), "active_sessions": self.participant.active_sessions(),
                "quarantined": self.coordinator.quarantine.quarantined(),
                "conflicts": [list(p) for p in self.coordinator.quarantine.conflicts()]}
