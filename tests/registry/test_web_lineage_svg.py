"""The lineage picture on its own: a neighbourhood in, SVG out (no database, no server)."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest

from registry.service.lineage_view import Hidden, Link, Neighbourhood, Relative
from registry.web.lineage_svg import NODE_H, PALETTE, render

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('&\"x')</script>"


def url_of(ref: str) -> str:
    return f"/models/{ref}"


def expand_url_of(ref: str) -> str:
    return f"/models/base@1?expand={ref}&x=1"


def view(
    relatives: list[tuple[str, str, str, int]],
    links: list[tuple[str, str, str]],
    hidden: list[Hidden] = (),  # type: ignore[assignment]
    *,
    focus: str = "base@1",
) -> Neighbourhood:
    return Neighbourhood(
        focus=focus,
        relatives=tuple(Relative(*relative) for relative in relatives),
        links=tuple(Link(p, c, r) for p, c, r in links),
        hidden=tuple(hidden),
        ancestors=sum(1 for *_, layer in relatives if layer < 0),
        descendants=sum(1 for *_, layer in relatives if layer > 0),
    )


def incident() -> Neighbourhood:
    """data@1 -trained_on-> base@1 (compromised) -> ft@1, q@1 -> app@1 (a merge)."""
    return view(
        [
            ("data@1", "dataset", "clean", -1),
            ("base@1", "model", "compromised", 0),
            ("ft@1", "model", "infected", 1),
            ("q@1", "model", "confirmed", 1),
            ("app@1", "model", "cleared", 2),
        ],
        [
            ("data@1", "base@1", "trained_on"),
            ("base@1", "ft@1", "finetune"),
            ("base@1", "q@1", "quantized"),
            ("ft@1", "app@1", "merge"),
            ("q@1", "app@1", "merge"),
        ],
    )


def draw(neighbourhood: Neighbourhood) -> ET.Element:
    """The picture, parsed as XML (which it must be, standalone)."""
    return ET.fromstring(render(neighbourhood, url_of=url_of, expand_url_of=expand_url_of))


def nodes(svg: ET.Element) -> dict[str, ET.Element]:
    """Each version's link element by the reference in its tooltip."""
    found = {}
    for link in svg.iter(f"{SVG}a"):
        if link.get("class") == "node":
            title = link.find(f"{SVG}title")
            assert title is not None
            assert title.text
            found[title.text.rsplit(" (", 1)[0]] = link
    return found


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def top_of(link: ET.Element) -> float:
    shape = link.find(f"{SVG}rect")
    if shape is not None:
        return float(shape.get("y", "0"))
    cylinder = link.find(f"{SVG}path")
    assert cylinder is not None
    return float(cylinder.get("d", "M0,0").split(",")[1].split()[0])


def test_every_version_is_a_link_to_its_page_with_its_status_in_words() -> None:
    svg = draw(incident())
    drawn = nodes(svg)
    assert set(drawn) == {"data@1", "base@1", "ft@1", "q@1", "app@1"}
    for ref, link in drawn.items():
        assert link.get("href") == f"/models/{ref}"
    assert "infected · model" in texts(drawn["ft@1"])
    assert "confirmed · model" in texts(drawn["q@1"])
    assert "cleared · model" in texts(drawn["app@1"])
    assert "clean · dataset" in texts(drawn["data@1"])


def test_statuses_are_coloured_and_the_legend_names_each_colour() -> None:
    svg = draw(incident())
    drawn = nodes(svg)
    shape = drawn["ft@1"].find(f"{SVG}rect")
    assert shape is not None
    assert shape.get("fill") == PALETTE["infected"][0]
    legend = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "legend")
    swatches = {r.get("fill") for r in legend.iter(f"{SVG}rect")}
    words = texts(legend)
    for status, (fill, _, _) in PALETTE.items():
        assert status in words
        assert fill in swatches
    assert {"model", "dataset", "this version"} <= set(words)
    assert "1 ancestors and 3 descendants in all; 4 drawn" in words[0]


def test_relations_are_written_on_the_edges() -> None:
    svg = draw(incident())
    edges = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert sorted(t for g in edges for t in texts(g)) == [
        "finetune", "merge", "merge", "quantized", "trained_on",
    ]
    for edge in edges:
        path = edge.find(f"{SVG}path")
        assert path is not None
        assert path.get("marker-end") == "url(#lineage-arrow)"


def test_datasets_are_cylinders_and_models_boxes() -> None:
    drawn = nodes(draw(incident()))
    assert drawn["data@1"].find(f"{SVG}rect") is None
    arcs = [p.get("d", "") for p in drawn["data@1"].iter(f"{SVG}path")]
    assert len(arcs) == 2
    assert all(" A" in d for d in arcs)
    assert drawn["base@1"].find(f"{SVG}rect") is not None


def test_the_version_itself_is_highlighted() -> None:
    drawn = nodes(draw(incident()))
    current = [ref for ref, link in drawn.items() if link.get("aria-current") == "page"]
    assert current == ["base@1"]
    focus, other = drawn["base@1"].find(f"{SVG}rect"), drawn["ft@1"].find(f"{SVG}rect")
    assert focus is not None
    assert other is not None
    assert float(focus.get("stroke-width", "0")) > float(other.get("stroke-width", "0"))
    assert "this version" in (drawn["base@1"].get("aria-label") or "")


def test_ancestors_are_above_and_descendants_below_by_depth() -> None:
    drawn = nodes(draw(incident()))
    tops = {ref: top_of(link) for ref, link in drawn.items()}
    assert tops["data@1"] < tops["base@1"] < tops["ft@1"] == tops["q@1"] < tops["app@1"]
    assert tops["app@1"] - tops["ft@1"] > NODE_H


def test_hostile_names_render_as_text() -> None:
    hostile = f"{HOSTILE}@1"
    neighbourhood = view(
        [("base@1", "model", "clean", 0), (hostile, "model", "infected", 1)],
        [("base@1", hostile, '"><script>x</script>')],
        [Hidden(hostile, "down", 3, expanded=False)],
    )
    markup = render(neighbourhood, url_of=url_of, expand_url_of=expand_url_of)
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    assert "&amp;x=1" in markup  # the expand URL's '&' is escaped in its attribute
    svg = ET.fromstring(markup)  # well-formed despite the name
    drawn = nodes(svg)
    assert set(drawn) == {"base@1", hostile}
    assert drawn[hostile].get("href") == f"/models/{hostile}"
    assert '"><script>x</script>' in [t for g in svg.iter(f"{SVG}g") for t in texts(g)]
    assert not [e for e in svg.iter() if e.tag in (f"{SVG}script", "script", f"{SVG}foreignObject")]
    assert not [k for e in svg.iter() for k in e.attrib if k.lower().startswith("on")]


def more_boxes(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == "more"]


def test_a_large_fan_out_is_one_count_that_links_to_its_expansion() -> None:
    children = [(f"ft{i}@1", "model", "infected", 1) for i in range(6)]
    neighbourhood = view(
        [("base@1", "model", "compromised", 0), *children],
        [("base@1", ref, "finetune") for ref, *_ in children],
        [Hidden("base@1", "down", 19_950, expanded=False)],
    )
    svg = draw(neighbourhood)
    (more,) = more_boxes(svg)
    assert "+ 19,950 more descendants" in texts(more)
    link = more.find(f"{SVG}a")
    assert link is not None
    assert link.get("href") == "/models/base@1?expand=base@1&x=1"
    tops = {ref: top_of(node) for ref, node in nodes(svg).items()}
    count_top = float(next(more.iter(f"{SVG}rect")).get("y", "0"))
    assert count_top == tops["ft0@1"]  # on the children's row(s), after them


def test_an_expanded_count_is_no_longer_a_link_and_ancestors_count_upwards() -> None:
    neighbourhood = view(
        [("p@1", "model", "clean", -1), ("base@1", "model", "clean", 0)],
        [("p@1", "base@1", "merge")],
        [Hidden("base@1", "down", 250, expanded=True), Hidden("p@1", "up", 7, expanded=False)],
    )
    svg = draw(neighbourhood)
    boxes = {texts(g)[0]: g for g in more_boxes(svg)}
    assert set(boxes) == {"+ 250 more descendants", "+ 7 more ancestors"}
    assert boxes["+ 250 more descendants"].find(f"{SVG}a") is None
    assert boxes["+ 7 more ancestors"].find(f"{SVG}a") is not None
    up = float(next(boxes["+ 7 more ancestors"].iter(f"{SVG}rect")).get("y", "0"))
    assert up < top_of(nodes(svg)["p@1"])


def test_wide_generations_wrap_into_rows() -> None:
    children = [(f"c{i:02}@1", "model", "clean", 1) for i in range(20)]
    svg = draw(view([("base@1", "model", "clean", 0), *children],
                    [("base@1", ref, "adapter") for ref, *_ in children]))
    rows = {top_of(node) for ref, node in nodes(svg).items() if ref != "base@1"}
    assert len(rows) == 3  # 8 + 8 + 4
    assert float(svg.get("width", "0")) < 8 * 210 + 40


def test_the_picture_is_deterministic_whatever_the_input_order() -> None:
    first = incident()
    markup = render(first, url_of=url_of, expand_url_of=expand_url_of)
    assert render(first, url_of=url_of, expand_url_of=expand_url_of) == markup
    rng = random.Random(7)
    for _ in range(5):
        relatives, links = list(first.relatives), list(first.links)
        rng.shuffle(relatives)
        rng.shuffle(links)
        shuffled = Neighbourhood(first.focus, tuple(relatives), tuple(links), first.hidden,
                                 first.ancestors, first.descendants)
        assert render(shuffled, url_of=url_of, expand_url_of=expand_url_of) == markup


@pytest.mark.parametrize("length", [10, 27, 60, 200])
def test_long_references_are_shortened_in_the_box_but_whole_in_the_tooltip(length: int) -> None:
    ref = "org/" + "n" * length + "@v2.0"
    svg = draw(view([(ref, "model", "clean", 0)], [], focus=ref))
    link = nodes(svg)[ref]
    label = texts(link)[0]
    assert len(label) <= 27
    assert label.endswith("@v2.0")
    assert (label == ref) == (len(ref) <= 27)
