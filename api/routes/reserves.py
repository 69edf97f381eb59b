"""Proof of reserves over the API: snapshot headers, history, assets files, a customer's own
inclusion proof, and the verifier page.

Every /v1/reserves route is a signed request with scope `read` (api-conventions: every request
is authenticated). Headers and assets files are the same for every caller — the files
published for the public, returned as stored, so that they verify with `custody-verify` as
downloaded. A proof is served only for a customer of the calling client
(proofs.serving), and the 404 is the same for another client's customer, an unknown one or one
absent from the snapshot.

The verifier page (GET /reserves/verify.html) is unauthenticated on purpose, like
/openapi.json: it is static code holding no data, and a browser cannot sign requests. It is
served as one self-contained file (the script inlined and pinned in the CSP by its SHA-256),
so "Save page as" keeps a copy that works offline with no server.

The store directory comes from CUSTODY_RESERVES_STORE_DIR (the [reserves] store_dir of the
node's config); unset, the routes answer 404 `reserves_not_configured`.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from api import pagination
from api.errors import Problem, responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from node import limits

SID = Path(pattern="^[0-9a-f]{32}$", description="Snapshot id: 32 lowercase hex characters.")
CUSTOMER = Path(pattern="^[A-Za-z0-9_.:-]{1,64}$", description="A customer id of the calling client.")
AUTH = (400, 401, 403, 413, 422, 429)
ProofFormat = Literal["por-mst/1", "por-mst/1-compact"]


class ReservesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_RESERVES_", extra="ignore")

    store_dir: str | None = None


class SnapshotSummaryPublic(BaseModel):
    seq: int
    snapshot_id: str
    created_at: str
    header_sha256: str
    root: dict
    assets: list[str]
    chains: list[dict]
    reserves: list[dict]


class SnapshotsPublic(BaseModel):
    data: list[SnapshotSummaryPublic]
    next_cursor: str | None


def reader_of(request: Request, ctx: AppContext = Depends(ctx_of)):
    from proofs.serving import ReservesReader

    reader = getattr(request.app.state, "reserves_reader", None)
    if reader is None:
        store_dir = ReservesSettings().store_dir
        if not store_dir:
            raise Problem(404, "reserves_not_configured", "this node publishes no reserves snapshots (no store configured)")
        reader = request.app.state.reserves_reader = ReservesReader(store_dir, ctx.engine)
    return reader


def _found(fn, *args):
    from proofs.serving import NotFound

    try:
        return fn(*args)
    except NotFound as exc:
        raise Problem(404, exc.reason, exc.detail) from None


def _json(doc: dict) -> JSONResponse:
    return JSONResponse(doc)


api = APIRouter(prefix="/v1/reserves", route_class=SignedRoute, tags=["proof of reserves"])
R = dict(openapi_extra=scope("read"), responses=responses(*AUTH, 404))


def _file(what: str) -> dict:
    """A route returning one of the published por-mst/1 documents (design/por-format.md) as is."""
    return dict(openapi_extra=scope("read"), responses={
        200: {"description": what, "content": {"application/json": {"schema": {"type": "object"}}}}, **responses(*AUTH, 404)})


@api.get("/snapshots", response_model=SnapshotsPublic, **R)
def list_snapshots(limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT, cursor: pagination.Cursor = None,
                   reader=Depends(reader_of)) -> SnapshotsPublic:
    """Snapshots, newest first."""
    from proofs.serving import summary

    before = pagination.decode("reserves_snapshots", cursor) or None
    rows = _found(reader.history, before, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = pagination.encode("reserves_snapshots", rows[-1].seq) if has_more and rows else None
    return SnapshotsPublic(data=[SnapshotSummaryPublic(**summary(p)) for p in rows], next_cursor=next_cursor)


@api.get("/snapshots/latest/header", **_file("The latest signed header: {\"header\", \"signature\"} (por-mst/1)"))
def latest_header(reader=Depends(reader_of)) -> JSONResponse:
    """The latest signed header, as published: `{"header": …, "signature": …}`."""
    return _json(_found(reader.latest).signed_header)


@api.get("/snapshots/{snapshot_id}/header", **_file("The signed header: {\"header\", \"signature\"} (por-mst/1)"))
def snapshot_header(snapshot_id: str = SID, reader=Depends(reader_of)) -> JSONResponse:
    return _json(_found(reader.get, snapshot_id).signed_header)


@api.get("/snapshots/{snapshot_id}/assets", **_file("The assets file (por-mst/1-assets)"))
def snapshot_assets(snapshot_id: str = SID, reader=Depends(reader_of)) -> JSONResponse:
    """The assets file: every funded address, its balance at the snapshot heights and its
    signature of the reserves message."""
    return _json(_found(reader.get, snapshot_id).assets_doc)


@api.get("/snapshots/{snapshot_id}/proofs/{customer_id}",
         **_file("The customer's user proof (por-mst/1, or por-mst/1-compact when asked)"))
def customer_proof(request: Request, snapshot_id: str = SID, customer_id: str = CUSTOMER,
                   proof_format: ProofFormat = Query(
                       "por-mst/1", alias="format",
                       description="`por-mst/1` (the default), or `por-mst/1-compact`: the same proof with hashes and "
                                   "sums in base64url, ~28 % smaller (proofs/por-mst-1-compact.md)."),
                   reader=Depends(reader_of)) -> JSONResponse:
    """The customer's inclusion proof (a por-mst/1 user proof), for a customer of the calling
    client only. Give it to the customer: it holds their per-snapshot key."""
    from proofs import mst

    proof = _found(reader.proof, snapshot_id, customer_id, principal_of(request).client_id)
    return _json(mst.to_compact(proof) if proof_format == mst.FORMAT_COMPACT else proof)


# --- the verifier page ------------------------------------------------------------------------
page = APIRouter(tags=["proof of reserves"])


@functools.lru_cache(maxsize=1)
def standalone_page() -> tuple[bytes, str]:
    """proofs/web/verify.html with verify.js inlined; returns (html, its CSP)."""
    from proofs import WEB_DIR

    html = (WEB_DIR / "verify.html").read_text(encoding="utf-8")
    script = (WEB_DIR / "verify.js").read_text(encoding="utf-8")
    assert "</script" not in script.lower(), "verify.js cannot be inlined"
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; connect-src 'none'"
    tag = '<script src="verify.js"></script>'
    meta_start = html.index('<meta http-equiv="Content-Security-Policy" content="')
    meta_end = html.index('">', meta_start) + 2
    assert tag in html, "verify.html loads verify.js"
    html = html[:meta_start] + f'<meta http-equiv="Content-Security-Policy" content="{csp}">' + html[meta_end:]
    html = html.replace(tag, f"<script>{script}</script>")
    return html.encode("utf-8"), csp


@page.get("/reserves/verify.html", include_in_schema=False)
def verifier_page() -> Response:
    html, csp = standalone_page()
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "public, max-age=300"})


router = APIRouter()
router.include_router(api)
router.include_router(page)
