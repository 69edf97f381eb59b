"""The coordinator's quorum choice around conflicting pairs (one function, real Quarantine and
Metrics; the coordinator's other parts are not needed for it)."""

from __future__ import annotations

from mpc.signer.coordinator import Coordinator
from mpc.signer.metrics import Metrics
from mpc.signer.quarantine import Quarantine
from node import log as nlog

PEERS = ["peer-1", "peer-2", "peer-3", "peer-4", "peer-5"]


def coordinator(conflicts=()) -> Coordinator:
    c = Coordinator.__new__(Coordinator)
    c.name, c.all_peers = "peer-1", PEERS
    c.quarantine, c.metrics, c.log = Quarantine(), Metrics(PEERS), nlog.get("test")
    for a, b in conflicts:
        c.quarantine.record_conflict(a, b)
    return c


def test_a_quorum_holds_no_conflicting_pair():
    assert sorted(coordinator()._pick_quorum(["peer-2", "peer-3", "peer-4"], 2)) == ["peer-2", "peer-3"]
    # peer-3 accused peer-2 without proof: they never sign together; the rogue isolates itself.
    assert sorted(coordinator([("peer-3", "peer-2")])._pick_quorum(["peer-2", "peer-3", "peer-4"], 2)) == ["peer-2", "peer-4"]
    # ... nor with the coordinator it accused.
    assert sorted(coordinator([("peer-2", "peer-1")])._pick_quorum(["peer-2", "peer-3", "peer-4"], 2)) == ["peer-3", "peer-4"]


def test_a_peer_in_more_conflicts_is_chosen_last():
    # peer-2 accused peer-3 and peer-4: {peer-2, peer-5} would hold no conflict and peer-2 comes
    # first in the healthy order, but it sinks behind every peer in fewer conflicts.
    c = coordinator([("peer-2", "peer-3"), ("peer-2", "peer-4")])
    assert sorted(c._pick_quorum(["peer-2", "peer-3", "peer-4", "peer-5"], 2)) == ["peer-3", "peer-5"]


def test_when_every_quorum_holds_a_conflict_the_first_healthy_sign_and_an_alert_is_raised():
    c = coordinator([("peer-2", "peer-1"), ("peer-3", "peer-1")])
    assert sorted(c._pick_quorum(["peer-2", "peer-3"], 1)) == ["peer-2"]
    assert c.metrics.registry.get_sample_value("custody_signer_blame_alerts_total", {"kind": "conflict_unavoidable"}) == 1
