"""Pages of a list: ``limit`` and an opaque ``cursor`` in, the total and the next cursor out.

A list answer stays a JSON array (what clients already read). The headers say
the rest: ``X-Total-Count`` (how many items the whole list has),
``X-Next-Cursor`` and an RFC 8288 ``Link: <...>; rel="next"`` while more follow.
The cursor is opaque to clients (today it carries the position in the list's
fixed order; a later release may carry a key instead).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Query, Request, Response

from registry.errors import InvalidInput

__all__ = ["Cursor", "offset_of", "paged"]

T = TypeVar("T")

#: The ``cursor`` query parameter of every list.
Cursor = Annotated[
    str | None,
    Query(description="Where the page starts: the X-Next-Cursor of the previous page."),
]

_PREFIX = "o:"


def offset_of(cursor: str | None) -> int:
    """The position a cursor stands for (0 without one)."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        text = ""
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise InvalidInput(
            f"cursor {cursor[:40]!r} is not one this server gave",
            hint="pass the X-Next-Cursor header of the previous page, or leave it out",
        )
    return int(text[len(_PREFIX) :])


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode().rstrip("=")


def paged(
    request: Request, response: Response, items: Sequence[T], *, offset: int, total: int
) -> list[T]:
    """``items`` as the answer, with the page's headers set on ``response``."""
    response.headers["X-Total-Count"] = str(total)
    end = offset + len(items)
    if items and end < total:
        following = _cursor(end)
        response.headers["X-Next-Cursor"] = following
        url = request.url.include_query_params(cursor=following)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return list(items)
