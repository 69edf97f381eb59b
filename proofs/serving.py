"""What the API serves of the reserves snapshots: the signed headers and assets files (the same
for every caller), and a customer's inclusion proof — only to the API client the customer
belongs to.

Which client a customer belongs to: the client whose API key created it. The ledger's customers
table does not name a client, but the hash-chained journal does: `customer.create` is written
with actor `api:<client_id>` by node.clients.ClientOps. Customers created any other way (staff
tools, `test:` actors) belong to no API client and their proofs are served to none (they are
exported with `custody reserves export`). The lookup reads the journal (no index on its action:
a scan, once per customer; found owners are cached). When customers carry their client as a
column, only `customer_client_id` changes.
"""

from __future__ import annotations

import json
import pathlib
import threading

import sqlalchemy as sa

from node import limits
from proofs import header as hdr
from proofs import mst
from proofs.snapshot import Published, SnapshotStore

API_ACTOR_PREFIX = "api:"


class NotFound(Exception):
    """`reason`: `snapshot_not_found` | `proof_not_found` | `reserves_not_configured`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def customer_client_id(engine: sa.Engine, customer_id: str) -> str | None:
    """The API client that created `customer_id`, from the journal; None when no API client did."""
    from node.store.models import journal

    from node.audit import canonical_json

    marker = canonical_json({"id": customer_id})[1:-1]  # `"id":"<id>"`, exactly as the journal body has it
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(journal.c.actor, journal.c.body)
            .where(journal.c.action == "customer.create", journal.c.body.contains(marker, autoescape=True))
            .order_by(journal.c.seq)
            .limit(limits.POR_OWNER_ROWS_MAX)
        ).all()
    for actor, body in rows:
        try:
            created = json.loads(body)["customer"]["id"]
        except (ValueError, KeyError, TypeError):
            continue
        if created == customer_id:
            return actor[len(API_ACTOR_PREFIX):] if actor.startswith(API_ACTOR_PREFIX) else None
    return None


def summary(p: Published) -> dict:
    h = p.signed_header["header"]
    return {
        "seq": p.seq,
        "snapshot_id": p.snapshot_id,
        "created_at": h["created_at"],
        "header_sha256": hdr.header_hash(h),
        "root": h["root"],
        "assets": [a["code"] for a in h["assets"]],
        "chains": h["chains"],
        "reserves": h["reserves"],
    }


class ReservesReader:
    def __init__(self, store_dir: str | pathlib.Path, engine: sa.Engine):
        self.store_dir = pathlib.Path(store_dir)
        self.engine = engine
        self._store: SnapshotStore | None = None
        # customer -> owning client. Ownership never changes once a customer exists, so found
        # owners are kept (bounded); "no owner" is not (the customer may be created later).
        self._owners: dict[str, str] = {}
        self._owners_lock = threading.Lock()

    def owner(self, customer_id: str) -> str | None:
        with self._owners_lock:
            hit = self._owners.get(customer_id)
        if hit is not None:
            return hit
        found = customer_client_id(self.engine, customer_id)
        if found is not None:
            with self._owners_lock:
                if len(self._owners) >= limits.POR_OWNERS_CACHED_MAX:
                    self._owners.pop(next(iter(self._owners)))
                self._owners[customer_id] = found
        return found

    @property
    def store(self) -> SnapshotStore:
        if self._store is None:
            if not (self.store_dir / "snapshots.sqlite3").exists():
                raise NotFound("snapshot_not_found", "no snapshot has been taken yet")
            self._store = SnapshotStore(self.store_dir)
        return self._store

    def latest(self) -> Published:
        p = self.store.latest()
        if p is None:
            raise NotFound("snapshot_not_found", "no snapshot has been taken yet")
        return p

    def get(self, snapshot_id: str) -> Published:
        try:
            mst.parse_hex(snapshot_id, 16, "snapshot_id")
        except mst.ProofInvalid:
            raise NotFound("snapshot_not_found", "a snapshot id is 32 lowercase hex characters") from None
        p = self.store.get(snapshot_id)
        if p is None:
            raise NotFound("snapshot_not_found", snapshot_id)
        return p

    def history(self, before_seq: int | None, limit: int) -> list[Published]:
        return self.store.history(limit, before_seq)

    def proof(self, snapshot_id: str, customer_id: str, client_id: str) -> dict:
        """The customer's proof, if the customer is the calling client's; the same NotFound
        whether the customer is another client's, unknown, or not in the snapshot (nothing
        about other clients' customers leaks)."""
        self.get(snapshot_id)
        if self.owner(customer_id) != client_id:
            raise NotFound("proof_not_found", f"no proof of {customer_id!r} for this client in {snapshot_id}")
        proof = self.store.proof(snapshot_id, customer_id)
        if proof is None:
            raise NotFound("proof_not_found", f"no proof of {customer_id!r} for this client in {snapshot_id}")
        return proof

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
