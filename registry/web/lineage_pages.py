"""The lineage picture of a version: inline on its page, and on its own as ``lineage.svg``.

Clicking a collapsed fan-out ("+ 19,950 more descendants") follows a link to the same
picture with ``?expand=REF`` added; the service bounds how much an expansion shows.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from markupsafe import Markup
from sqlmodel import Session

from registry.service import lineage_view
from registry.web import lineage_svg
from registry.web.deps import CurrentViewer, PageRoute, SessionDep
from registry.web.rendering import SECURITY_HEADERS, ref_url

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: ``?expand=REF`` (repeatable): nodes whose hidden relatives to show.
Expand = Annotated[
    list[str] | None,
    Query(max_length=lineage_view.MAX_EXPANDED, description="versions to expand"),
]


def picture(session: Session, ref: str, *, expand: list[str] | None, standalone: bool) -> str:
    """The SVG of ``ref``'s neighbourhood; its expand links point at the page (or the
    standalone picture) with one more node expanded."""
    opened = sorted({e.strip() for e in expand or [] if e.strip()})
    view = lineage_view.neighbourhood(session, ref, expand=opened)
    target = ref_url(view.focus) + ("/lineage.svg" if standalone else "")

    def expand_url_of(node: str) -> str:
        wanted = sorted({*opened, node})[-lineage_view.MAX_EXPANDED :]
        query = urlencode([("expand", e) for e in wanted])
        return f"{target}?{query}" + ("" if standalone else "#lineage")

    return lineage_svg.render(view, url_of=ref_url, expand_url_of=expand_url_of)


def lineage_markup(session: Session, ref: str, *, expand: list[str] | None = None) -> Markup:
    """The picture for the version page (built from escaped text only, so marked safe)."""
    return Markup(picture(session, ref, expand=expand, standalone=False))  # noqa: S704


@router.get("/models/{ref:path}/lineage.svg")
def lineage_image(
    ref: str,
    session: SessionDep,
    viewer: CurrentViewer,  # noqa: ARG001 - signed-in people only
    expand: Expand = None,
) -> Response:
    """The picture on its own, as ``image/svg+xml`` (signed-in people only)."""
    return Response(
        picture(session, ref, expand=expand, standalone=True),
        media_type="image/svg+xml",
        headers=SECURITY_HEADERS,
    )
