"""Cursor pagination: `?limit=` (1-500, default 100), `?cursor=`, `next_cursor` (null at the end).

A cursor is opaque to clients: unpadded base64url of "v1:<resource>:<last position>", where the
position is the resource's stable sort key (a sequence number). A cursor from another list or
a mangled one is refused with 400 `invalid_cursor`; it never reaches SQL as text.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from api.errors import Problem
from api.signing import b64url, b64url_decode
from node import limits

T = TypeVar("T")

Limit = Annotated[
    int,
    Query(
        ge=limits.API_PAGE_LIMIT_MIN,
        le=limits.API_PAGE_LIMIT_MAX,
        description=f"Page size, {limits.API_PAGE_LIMIT_MIN}-{limits.API_PAGE_LIMIT_MAX}.",
    ),
]
Cursor = Annotated[
    str | None,
    Query(max_length=limits.API_CURSOR_LEN_MAX, description="`next_cursor` from the previous page."),
]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


def encode(resource: str, position: int) -> str:
    assert isinstance(position, int) and position >= 0
    return b64url(f"v1:{resource}:{position}".encode())


def decode(resource: str, cursor: str | None) -> int:
    """The position after which the page starts (0 = from the beginning)."""
    if cursor is None:
        return 0
    try:
        version, res, pos = b64url_decode(cursor).decode("ascii").split(":")
        if version != "v1" or res != resource or not pos.isdigit() or len(pos) > 19:
            raise ValueError
        return int(pos)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "invalid_cursor", "cursor is not one this list returned", field="cursor") from None


def page(resource: str, rows: list[tuple[int, T]], limit: int) -> tuple[list[T], str | None]:
    """`rows` were fetched with `limit + 1` after the cursor's position, in order."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode(resource, rows[-1][0]) if has_more and rows else None
    return [item for _, item in rows], next_cursor
