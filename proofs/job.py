"""The scheduled snapshot job: what the node's worker loop calls on a timer.

    job = SnapshotJob(liabilities, reserves, signer, store, snapshot_key, interval_s=3600, engine=store_engine)
    job.tick()        # takes a snapshot when one is due, then announces it (webhook)

One tick, in order: freeze the ledger's customer balances together with the chain heights the
adapters have scanned to (LedgerLiabilities over ChainReserves.heights), build and check the
tree, read every funded address at those heights (ChainReserves), have the signer cluster sign
the reserves message (ClusterReservesSigner: one request per chain and vault, up to
POR_RESERVES_PATHS_PER_REQUEST_MAX addresses each), sign the header with the snapshot key,
append to the SnapshotStore — all in proofs.snapshot.take_snapshot, which stores nothing unless
every check passed — and then emit `reserves.snapshot` to every client with a webhook endpoint subscribed to it.

The event goes to the node's database, the snapshot to the SnapshotStore: two stores, so the
announcement is made idempotent instead of atomic. Every tick announces the latest snapshot if
no `reserves.snapshot` event names it yet, so a crash between the two is repaired by the next
tick (receivers de-duplicate on the event id anyway).

One taker at a time: the tick holds the store's advisory file lock (SnapshotStore.taking), so a
second process refuses with `snapshot_in_progress` instead of chaining a second header to the
same previous one. Replicas on different hosts share no store directory: run the job where the
worker loop holds its leadership lock.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from node import limits, log
from proofs import header as hdr
from proofs.snapshot import Published, SnapshotStore, run_scheduled

_log = log.get("proofs.job")
EVENT_TYPE = "reserves.snapshot"


def event_data(published: Published) -> dict:
    """The webhook payload: enough to fetch and check the snapshot, nothing per customer."""
    h = published.signed_header["header"]
    return {
        "snapshot_id": published.snapshot_id,
        "seq": published.seq,
        "created_at": h["created_at"],
        "header_sha256": hdr.header_hash(h),
        "public_key": published.signed_header["signature"]["public_key"],
        "root": {"hash": h["root"]["hash"], "sums": list(h["root"]["sums"])},
        "assets": [a["code"] for a in h["assets"]],
        "chains": [{"chain": c["chain"], "height": c["height"]} for c in h["chains"]],
    }


def announce(engine: sa.Engine, published: Published) -> int:
    """Emits `reserves.snapshot` for `published` to every client with an enabled webhook
    endpoint subscribed to it that has not had it yet; returns how many events were written.
    One transaction."""
    from node import webhooks
    from node.store.api_models import webhook_endpoints as endpoints
    from node.store.api_models import webhook_events as events
    from node.store.api_models import write_tx

    written = 0
    with write_tx(engine) as conn:
        rows = conn.execute(
            sa.select(endpoints.c.client_id, endpoints.c.event_types).where(endpoints.c.enabled.is_(True))
            .order_by(endpoints.c.client_id).limit(limits.POR_ANNOUNCE_ENDPOINTS_MAX)
        ).all()
        clients = sorted({c for c, types in rows if webhooks._matches(tuple(types.split()), EVENT_TYPE)})
        if not clients:
            return 0
        # Canonical payloads are sorted compact JSON: the snapshot id appears exactly like this.
        marker = f'"snapshot_id":"{published.snapshot_id}"'
        done = set(conn.execute(
            sa.select(events.c.client_id).where(events.c.type == EVENT_TYPE, events.c.payload.contains(marker, autoescape=True))
        ).scalars())
        data = event_data(published)
        for client_id in clients:
            if client_id not in done:
                webhooks.emit(conn, client_id, EVENT_TYPE, data)
                written += 1
    if written:
        _log.info("snapshot_announced", snapshot=published.snapshot_id, clients=written)
    return written


class SnapshotJob:
    def __init__(self, liabilities, reserves, signer, store: SnapshotStore, snapshot_key, *, interval_s: int,
                 engine: sa.Engine | None = None):
        """`engine`: the node's store engine, where webhook events go (None: no announcements)."""
        if not limits.POR_SNAPSHOT_INTERVAL_S_MIN <= interval_s:
            raise ValueError(f"interval_s must be at least {limits.POR_SNAPSHOT_INTERVAL_S_MIN}")
        assert snapshot_key is not None, "a snapshot key is required: there is no default key"
        self.liabilities, self.reserves, self.signer = liabilities, reserves, signer
        self.store, self.snapshot_key, self.interval_s, self.engine = store, snapshot_key, interval_s, engine

    def tick(self, now: dt.datetime | None = None) -> Published | None:
        """Takes a snapshot if one is due (raises SnapshotRefused, ChainError or SigningRefused
        with nothing stored when it cannot), then announces the latest one if needed."""
        now = now or dt.datetime.now(dt.timezone.utc)
        with self.store.taking():  # two takers would both chain to the same previous header
            published = run_scheduled(self.liabilities, self.reserves, self.signer, self.store, self.snapshot_key, now,
                                      self.interval_s)
        if self.engine is not None:
            latest = self.store.latest()
            if latest is not None:
                announce(self.engine, latest)
        return published
