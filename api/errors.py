"""RFC 9457 problem documents with a stable machine `code`.

Every refusal the API makes is a `Problem` (status, code, detail, field). Request validation
errors become 400 (`malformed_json`) or 422 (`validation_failed`, naming each field); unknown
routes 404, wrong methods 405; anything unexpected a bare 500 `internal_error` that reveals
nothing (the log has the traceback). No 5xx for bad input.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

import node.log

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://custody-node.dev/problems/"

log = node.log.get("api")

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field in error, e.g. `amount` or `limit`.")
    code: str
    detail: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document; `code` is stable and what programs should switch on."""

    type: str
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code, e.g. `idempotency_key_reused`.")
    detail: str
    field: str | None = Field(default=None, description="The field in error, when there is one.")
    errors: list[FieldError] | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ):
        assert status in TITLES, f"no title for status {status}"
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.errors = errors

    def document(self) -> dict:
        doc = {
            "type": TYPE_BASE + self.code,
            "title": TITLES[self.status],
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        if self.errors is not None:
            doc["errors"] = [e.model_dump() for e in self.errors]
        return doc

    def response(self) -> Response:
        return Response(
            content=json.dumps(self.document(), separators=(",", ":")).encode(),
            status_code=self.status,
            media_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def _field_of(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def from_validation_error(exc: RequestValidationError) -> Problem:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return Problem(400, "malformed_json", "the request body is not valid JSON", field="body")
    field_errors = [
        FieldError(field=_field_of(e.get("loc", ())), code=str(e.get("type", "invalid")), detail=str(e.get("msg", "")))
        for e in errs
    ]
    first = field_errors[0] if field_errors else FieldError(field="body", code="invalid", detail="invalid request")
    return Problem(
        422,
        "validation_failed",
        f"{first.field}: {first.detail}",
        field=first.field,
        errors=field_errors,
    )


def from_http_exception(exc: StarletteHTTPException) -> Problem:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}
    status = exc.status_code if exc.status_code in TITLES else 400
    code = codes.get(exc.status_code, "bad_request")
    detail = exc.detail if isinstance(exc.detail, str) else TITLES[status]
    return Problem(status, code, detail, headers=dict(exc.headers or {}))


# Domain exceptions carrying (code, detail, field): node/ names the failure, api/ picks the status.
_DOMAIN_ERRORS: list[type[Exception]] = []
CONFLICT_CODES = frozenset(
    {"too_many_api_keys", "too_many_endpoints", "delivery_already_queued", "external_id_reused"}
    | {"not_cancellable", "not_pending_approval", "already_decided_by_approver", "too_many_approvals"}
)


def register_domain_error(cls: type[Exception]) -> None:
    _DOMAIN_ERRORS.append(cls)


def domain_status(code: str) -> int:
    if code.endswith("_not_found"):
        return 404
    if code in CONFLICT_CODES or code.startswith("exists"):
        return 409
    return 422


def to_problem(exc: Exception) -> Problem | None:
    """The problem an expected exception maps to; None for a bug."""
    if isinstance(exc, Problem):
        return exc
    if _DOMAIN_ERRORS and isinstance(exc, tuple(_DOMAIN_ERRORS)):
        return Problem(domain_status(exc.code), exc.code, exc.detail, field=getattr(exc, "field", None))
    if isinstance(exc, RequestValidationError):
        return from_validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        return from_http_exception(exc)
    return None


def install(app: FastAPI) -> None:
    async def on_problem(_request: Request, exc: Problem):
        return exc.response()

    async def on_validation(_request: Request, exc: RequestValidationError):
        return from_validation_error(exc).response()

    async def on_http(_request: Request, exc: StarletteHTTPException):
        return from_http_exception(exc).response()

    async def on_domain(_request: Request, exc: Exception):
        return to_problem(exc).response()

    for cls in _DOMAIN_ERRORS:
        app.add_exception_handler(cls, on_domain)

    async def on_bug(request: Request, exc: Exception):
        log.error("unhandled_exception", path=request.url.path, method=request.method, exc_info=exc)
        return Problem(500, "internal_error", "internal error; it has been logged").response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_bug)


def responses(*statuses: int) -> dict:
    """The OpenAPI `responses` entry documenting problem documents for these statuses."""
    return {
        s: {
            "description": TITLES[s],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}},
        }
        for s in statuses
    }
