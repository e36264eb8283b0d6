"""Jinja2 pages: the templates ship inside the package (``registry/web/templates``, the
repository's top-level ``templates/``), autoescaped, with the console's headers."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

#: Where the templates are found: a package resource, so a wheel install serves them.
TEMPLATE_PACKAGE = ("registry.web", "templates")

#: No script runs on these pages, nothing is framed, forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def ref_url(ref: str) -> str:
    """The model version page of ``ref``."""
    return "/models/" + quote(ref, safe="/@")


def blast_url(ref: str, **query: str | int) -> str:
    """The blast radius page of ``ref`` (with query parameters)."""
    url = "/blast-radius/" + quote(ref, safe="/@")
    return f"{url}?{urlencode(query)}" if query else url


def when(moment: datetime | None) -> str:
    """A timestamp as people read it (UTC, to the second)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def size(count: int | None) -> str:
    """A byte count in binary units."""
    if count is None:
        return ""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def percent(rate: float | None) -> str:
    """A rate in [0, 1] as a whole percentage."""
    return "—" if rate is None else f"{rate * 100:.0f}%"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one template environment (autoescaping every ``.html`` template)."""
    env = Environment(
        loader=PackageLoader(*TEMPLATE_PACKAGE),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(ref_url=ref_url, blast_url=blast_url)
    env.filters.update(when=when, size=size, percent=percent)
    return env


def render_text(name: str, **context: Any) -> str:
    """A template rendered to text (``actor`` and ``csrf`` default to none)."""
    context.setdefault("actor", None)
    context.setdefault("csrf", "")
    return environment().get_template(name).render(**context)


def page(name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template as an HTML response with the console's security headers."""
    return HTMLResponse(
        render_text(name, **context), status_code=status_code, headers=SECURITY_HEADERS
    )
