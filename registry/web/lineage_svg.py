"""The lineage picture: a version's neighbourhood drawn as an SVG string, on the server.

Pure: it takes a :class:`~registry.service.lineage_view.Neighbourhood` (what the
service read) and two functions that make URLs, and returns SVG markup. No
JavaScript: every version is an ``<a>`` to its page, every collapsed fan-out an
``<a>`` to the same picture with that node expanded.

Layout, layered and deterministic: one band per generation (ancestors above the
version, descendants below), wide bands wrapped into rows of :data:`ROW_MAX`;
within a band, nodes are ordered by the mean position of their already placed
relatives nearer the version (one barycentre sweep outwards), ties broken by
reference. Statuses are colours *and* words; datasets are cylinders; the version
itself has a heavy border; every text is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape

from registry.service.lineage_view import Hidden, Link, Neighbourhood, Relative

#: Node box, gaps between boxes, rows per band and boxes per row.
NODE_W, NODE_H = 184, 46
H_GAP, V_GAP, ROW_GAP = 22, 64, 18
ROW_MAX = 8
MARGIN = 16
LEGEND_H = 86
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
#: Characters of a reference that fit in a box (the full one is in its tooltip).
LABEL_CHARS = 27

#: Per status: fill, stroke, text colour. Word labels go with them (colour is not the
#: only signal).
PALETTE: dict[str, tuple[str, str, str]] = {
    "clean": ("#eaf5ec", "#2b7a3d", "#14361d"),
    "cleared": ("#e0eff5", "#1b6a80", "#0d3440"),
    "infected": ("#fff1e0", "#b35c00", "#4d2800"),
    "confirmed": ("#f8d7da", "#a4161a", "#4a0a0c"),
    "compromised": ("#a4161a", "#5c0b0e", "#ffffff"),
}
UNKNOWN = ("#eef0f3", "#5b6472", "#1d2430")
FOCUS_STROKE = "#10243f"

UrlOf = Callable[[str], str]


@dataclass(frozen=True)
class _Box:
    """A placed node: a version, or the count of what was left out (``hidden``)."""

    key: str
    layer: int
    relative: Relative | None
    hidden: Hidden | None
    x: float = 0.0
    y: float = 0.0


def render(
    view: Neighbourhood,
    *,
    url_of: UrlOf,
    expand_url_of: UrlOf,
) -> str:
    """The picture of ``view`` as an ``<svg>`` element (standalone-valid, with ``xmlns``).

    ``url_of(ref)`` is the page of a version; ``expand_url_of(ref)`` the same picture
    with ``ref``'s hidden relatives shown.
    """
    boxes = _place(_order(_bands(view), view.links))
    width = max([640.0, *(b.x + NODE_W + MARGIN for b in boxes.values())])
    height = max([LEGEND_H + NODE_H, *(b.y + NODE_H for b in boxes.values())]) + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage-picture" role="group" '
        f'aria-labelledby="lineage-title" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-family="{escape(FONT)}" '
        f'font-size="12">',
        f'<title id="lineage-title">{escape(_summary(view, boxes))}</title>',
        _defs(),
        _legend(view, boxes),
    ]
    links = sorted(view.links, key=lambda link: (link.parent, link.child, link.relation))
    parts.extend(_edge(boxes[link.parent], boxes[link.child], link) for link in links)
    for box in boxes.values():
        if box.hidden is not None:
            parts.append(_count(box, box.hidden, boxes, expand_url_of))
    parts.extend(
        _node(box, box.relative, focus=view.focus, url_of=url_of)
        for box in boxes.values()
        if box.relative is not None
    )
    parts.append("</svg>")
    return "\n".join(parts)


# Layout.


def _bands(view: Neighbourhood) -> dict[int, list[_Box]]:
    """Boxes by layer: the versions, and each count one layer beyond its node."""
    bands: dict[int, list[_Box]] = {}
    for relative in view.relatives:
        bands.setdefault(relative.layer, []).append(
            _Box(key=relative.ref, layer=relative.layer, relative=relative, hidden=None)
        )
    layer_of = {r.ref: r.layer for r in view.relatives}
    for hidden in view.hidden:
        layer = layer_of[hidden.ref] + (1 if hidden.direction == "down" else -1)
        bands.setdefault(layer, []).append(
            _Box(key=_count_key(hidden), layer=layer, relative=None, hidden=hidden)
        )
    return bands


def _count_key(hidden: Hidden) -> str:
    # References hold no whitespace, so this key never equals one.
    return f"more {hidden.direction} {hidden.ref}"


def _order(bands: dict[int, list[_Box]], links: Iterable[Link]) -> list[list[_Box]]:
    """Bands top to bottom, each ordered by the barycentre of its inner neighbours."""
    neighbours: dict[str, list[str]] = {}
    for link in links:
        neighbours.setdefault(link.parent, []).append(link.child)
        neighbours.setdefault(link.child, []).append(link.parent)
    for boxes in bands.values():
        for box in boxes:
            if box.hidden is not None:
                neighbours.setdefault(box.key, []).append(box.hidden.ref)
    layer_of = {box.key: layer for layer, boxes in bands.items() for box in boxes}
    position: dict[str, float] = {}
    ordered: dict[int, list[_Box]] = {}
    # Outwards from the version: 0, 1, -1, 2, -2, ...; a band's inner band is done first.
    for layer in sorted(bands, key=lambda n: (abs(n), n < 0)):

        def weight(box: _Box, inner: int = abs(layer) - 1) -> tuple[float, bool, str]:
            placed = [
                position[n]
                for n in neighbours.get(box.key, [])
                if n in position and abs(layer_of[n]) <= inner
            ]
            centre = sum(placed) / len(placed) if placed else 0.0
            return (centre, box.hidden is not None, box.key)

        band = sorted(bands[layer], key=weight)
        ordered[layer] = band
        for index, box in enumerate(band):
            position[box.key] = index - (len(band) - 1) / 2
    return [ordered[layer] for layer in sorted(ordered)]


def _place(bands: list[list[_Box]]) -> dict[str, _Box]:
    """Coordinates: each band wrapped into rows of ``ROW_MAX``, every row centred."""
    rows = [band[i : i + ROW_MAX] for band in bands for i in range(0, len(band), ROW_MAX)]
    widest = max((len(row) for row in rows), default=1)
    width = widest * NODE_W + (widest - 1) * H_GAP
    placed: dict[str, _Box] = {}
    y = float(MARGIN + LEGEND_H)
    previous_layer: int | None = None
    for row in rows:
        if previous_layer is not None:
            y += (ROW_GAP if row[0].layer == previous_layer else V_GAP) + NODE_H
        previous_layer = row[0].layer
        span = len(row) * NODE_W + (len(row) - 1) * H_GAP
        x = MARGIN + (width - span) / 2
        for box in row:
            placed[box.key] = _Box(box.key, box.layer, box.relative, box.hidden, x, y)
            x += NODE_W + H_GAP
    return placed


# Drawing.


def _summary(view: Neighbourhood, boxes: dict[str, _Box]) -> str:
    shown = sum(1 for b in boxes.values() if b.relative is not None) - 1
    return (
        f"Lineage of {view.focus}: {view.ancestors:,} ancestors and "
        f"{view.descendants:,} descendants in all; {shown:,} drawn"
    )


def _defs() -> str:
    return (
        '<defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#5b6472"/></marker></defs>'
    )


def _legend(view: Neighbourhood, boxes: dict[str, _Box]) -> str:
    """What the colours and shapes mean (each status named in words beside its colour)."""
    parts = [
        '<g class="legend" aria-label="legend">',
        f'<text x="{MARGIN}" y="{MARGIN + 12}" font-weight="600">'
        f"{escape(_summary(view, boxes))}</text>",
    ]
    x, y = float(MARGIN), float(MARGIN + 24)
    for status, (fill, stroke, ink) in PALETTE.items():
        parts.append(
            f'<rect x="{x}" y="{y}" width="92" height="20" rx="4" fill="{fill}" '
            f'stroke="{stroke}"/><text x="{x + 46}" y="{y + 14}" text-anchor="middle" '
            f'fill="{ink}">{status}</text>'
        )
        x += 100
    x, y = float(MARGIN), y + 30
    parts.append(
        f'<rect x="{x}" y="{y}" width="40" height="20" rx="4" fill="#fff" stroke="#5b6472"/>'
        f'<text x="{x + 46}" y="{y + 14}">model</text>'
    )
    x += 110
    parts.append(
        _cylinder(x, y, 40, 20, fill="#fff", stroke="#5b6472")
        + f'<text x="{x + 46}" y="{y + 14}">dataset</text>'
    )
    x += 120
    parts.append(
        f'<rect x="{x}" y="{y}" width="40" height="20" rx="4" fill="#fff" '
        f'stroke="{FOCUS_STROKE}" stroke-width="3.5"/>'
        f'<text x="{x + 46}" y="{y + 14}">this version</text>'
    )
    x += 150
    parts.append(
        f'<rect x="{x}" y="{y}" width="40" height="20" rx="4" fill="#f7f8fa" '
        f'stroke="#5b6472" stroke-dasharray="4 3"/>'
        f'<text x="{x + 46}" y="{y + 14}">more, not drawn (select to show)</text>'
    )
    parts.append("</g>")
    return "".join(parts)


def _edge(parent: _Box, child: _Box, link: Link) -> str:
    """A curve from the parent's bottom to the child's top, its relation written on it."""
    x1, y1 = parent.x + NODE_W / 2, parent.y + NODE_H
    x2, y2 = child.x + NODE_W / 2, child.y
    bend = max(30.0, abs(y2 - y1) / 2)
    c1, c2 = (x1, y1 + bend), (x2, y2 - bend)
    # The label sits 60% along the curve, nearer the child, so siblings' labels part.
    t = 0.6
    lx = _bezier(t, x1, c1[0], c2[0], x2)
    ly = _bezier(t, y1, c1[1], c2[1], y2)
    return (
        f'<g class="edge"><path d="M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} '
        f'{c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2 - 2:.1f}" fill="none" stroke="#8a93a0" '
        f'stroke-width="1.4" marker-end="url(#lineage-arrow)"/>'
        f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="middle" font-size="10.5" '
        f'fill="#3b4350" stroke="#ffffff" stroke-width="3" paint-order="stroke">'
        f"{escape(link.relation)}</text></g>"
    )


def _bezier(t: float, p0: float, p1: float, p2: float, p3: float) -> float:
    u = 1 - t
    return u**3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t**3 * p3


def _node(box: _Box, relative: Relative, *, focus: str, url_of: UrlOf) -> str:
    """A version: its shape (box or cylinder) in its status colour, linked to its page."""
    fill, stroke, ink = PALETTE.get(relative.status, UNKNOWN)
    here = relative.ref == focus
    width = "3.5" if here else "1.5"
    outline = FOCUS_STROKE if here else stroke
    if relative.kind == "dataset":
        shape = _cylinder(box.x, box.y, NODE_W, NODE_H, fill=fill, stroke=outline, width=width)
        top = box.y + 8
    else:
        shape = (
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{outline}" stroke-width="{width}"/>'
        )
        top = box.y
    words = f"{relative.status} · {relative.kind}"
    said = words + (" · this version" if here else "")
    current = ' aria-current="page"' if here else ""
    return (
        f'<a class="node" href="{escape(url_of(relative.ref))}"{current} '
        f'aria-label="{escape(relative.ref)}, {escape(said)}">'
        f"<title>{escape(relative.ref)} ({escape(said)})</title>{shape}"
        f'<text x="{box.x + NODE_W / 2:.1f}" y="{top + 19:.1f}" text-anchor="middle" '
        f'fill="{ink}" font-weight="{700 if here else 600}">{escape(_shorten(relative.ref))}</text>'
        f'<text x="{box.x + NODE_W / 2:.1f}" y="{top + 35:.1f}" text-anchor="middle" '
        f'fill="{ink}" font-size="11">{escape(words)}</text></a>'
    )


def _count(box: _Box, hidden: Hidden, boxes: dict[str, _Box], expand_url_of: UrlOf) -> str:
    """What was left out below (or above) a node: a dashed box, a link that shows more."""
    owner = boxes[hidden.ref]
    above = hidden.direction == "up"
    line = (
        f'<path d="M{owner.x + NODE_W / 2:.1f},{owner.y if above else owner.y + NODE_H:.1f} '
        f'L{box.x + NODE_W / 2:.1f},{box.y + NODE_H if above else box.y:.1f}" '
        f'stroke="#8a93a0" stroke-width="1.2" stroke-dasharray="4 3" fill="none"/>'
    )
    noun = "ancestors" if above else "descendants"
    title = f"+ {hidden.count:,} more {noun}"
    hint = "all its direct ones shown" if hidden.expanded else "select to show more"
    body = (
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
        f'fill="#f7f8fa" stroke="#5b6472" stroke-dasharray="4 3"/>'
        f'<text x="{box.x + NODE_W / 2:.1f}" y="{box.y + 19:.1f}" text-anchor="middle" '
        f'font-weight="600" fill="#1d2430">{escape(title)}</text>'
        f'<text x="{box.x + NODE_W / 2:.1f}" y="{box.y + 35:.1f}" text-anchor="middle" '
        f'font-size="11" fill="#5b6472">{escape(hint)}</text>'
    )
    label = f"{title} of {hidden.ref}"
    if hidden.expanded:
        return f'<g class="more" aria-label="{escape(label)}">{line}{body}</g>'
    return (
        f'<g class="more">{line}<a href="{escape(expand_url_of(hidden.ref))}" '
        f'aria-label="{escape(label)}; show more"><title>{escape(label)}</title>{body}</a></g>'
    )


def _cylinder(
    x: float, y: float, w: float, h: float, *, fill: str, stroke: str, width: str = "1.5"
) -> str:
    """A dataset's shape: a cylinder (the usual drawing of stored data)."""
    ry = min(7.0, h / 5)
    rx = w / 2
    return (
        f'<path d="M{x:.1f},{y + ry:.1f} A{rx:.1f},{ry:.1f} 0 0 1 {x + w:.1f},{y + ry:.1f} '
        f'V{y + h - ry:.1f} A{rx:.1f},{ry:.1f} 0 0 1 {x:.1f},{y + h - ry:.1f} Z" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
        f'<path d="M{x:.1f},{y + ry:.1f} A{rx:.1f},{ry:.1f} 0 0 0 {x + w:.1f},{y + ry:.1f}" '
        f'fill="none" stroke="{stroke}" stroke-width="1"/>'
    )


def _shorten(ref: str) -> str:
    """A reference that fits its box: the middle of a long name gives way, not the version."""
    if len(ref) <= LABEL_CHARS:
        return ref
    keep = LABEL_CHARS - 1
    tail = max(keep // 2, len(ref) - ref.rfind("@") if "@" in ref else 0)
    tail = min(tail, keep - 4)
    return ref[: keep - tail] + "…" + ref[-tail:]


__all__ = ["PALETTE", "render"]
