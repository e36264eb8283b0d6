"""The lineage picture over real HTTP: inline on the version page and as ``lineage.svg``,
for signed-in people only (the ``console`` and ``incident`` of :mod:`test_web`)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import fake_manifest
from tests.registry.test_web import Console
from tests.registry.test_web import console as console  # noqa: F401 - fixtures
from tests.registry.test_web import incident as incident  # noqa: F401

SVG = "{http://www.w3.org/2000/svg}"


def _hrefs(svg: ET.Element) -> list[str]:
    return [a.get("href", "") for a in svg.iter(f"{SVG}a")]


def test_the_version_page_draws_its_lineage(incident: Console) -> None:
    with incident.signed_in("reader") as client:
        page = client.get("/models/ft@1")
    assert page.status_code == 200
    assert 'id="lineage-h"' in page.text
    start, end = page.text.index("<svg"), page.text.index("</svg>") + len("</svg>")
    svg = ET.fromstring(page.text[start:end])
    assert {"/models/base@1", "/models/ft@1", "/models/app@1"} <= set(_hrefs(svg))
    words = [t.text for t in svg.iter(f"{SVG}text")]
    assert "compromised · model" in words
    assert "infected · model" in words
    assert "finetune" in words


def test_lineage_svg_answers_signed_in_people_only(incident: Console) -> None:
    with incident.browser() as stranger:
        refused = stranger.get("/models/ft@1/lineage.svg")
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/?next=")
    assert "svg" not in refused.headers.get("content-type", "")
    with incident.signed_in("reader") as client:
        answer = client.get("/models/ft@1/lineage.svg")
        missing = client.get("/models/nope@1/lineage.svg")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/svg+xml"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    svg = ET.fromstring(answer.text)
    assert svg.tag == f"{SVG}svg"
    assert "/models/base@1" in _hrefs(svg)
    assert missing.status_code == 404


def test_a_collapsed_fan_out_expands_through_its_link(console: Console) -> None:
    reg = console.reg
    reg.register_model(name="hub", version="1", manifest=fake_manifest("hub"))
    for i in range(12):
        reg.register_model(name=f"d{i:02}", version="1", manifest=fake_manifest(f"d{i}"),
                           parents=["hub@1"])
    with console.signed_in("reader") as client:
        first = client.get("/models/hub@1")
        assert "+ 6 more descendants" in first.text
        svg = ET.fromstring(first.text[first.text.index("<svg"):first.text.index("</svg>") + 6])
        (more,) = [h for h in _hrefs(svg) if "expand=" in h]
        assert more == "/models/hub@1?expand=hub%401#lineage"
        expanded = client.get(more.split("#")[0])
        too_many = client.get("/models/hub@1/lineage.svg?"
                              + "&".join(f"expand=d{i:02}@1" for i in range(9)))
        unknown = client.get("/models/hub@1?expand=nope@1")
    assert expanded.status_code == 200
    assert "more descendants" not in expanded.text
    assert all(f"/models/d{i:02}@1" in expanded.text for i in range(12))
    assert too_many.status_code == 400
    assert unknown.status_code == 400
    assert "cannot expand nope@1" in unknown.text


def test_a_hostile_name_in_the_picture_is_text(console: Console) -> None:
    name = "<script>alert(1)</script>"
    console.reg.register_model(name="safe", version="1", manifest=fake_manifest("s"))
    console.reg.register_model(name=name, version="1", manifest=fake_manifest("x"),
                               parents=["safe@1"])
    with console.signed_in("reader") as client:
        page = client.get("/models/safe@1").text
        image = client.get("/models/safe@1/lineage.svg").text
    for markup in (page, image):
        assert "<script>alert(1)" not in markup
        assert "&lt;script&gt;alert(1)&lt;/script&gt;@1" in markup
    ET.fromstring(image)
    assert 'href="/models/%3Cscript%3Ealert%281%29%3C/script%3E@1"' in image
