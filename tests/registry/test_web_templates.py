"""The console's templates on their own: escaping, every page's empty state, and that the
templates ship inside the package (found through it, and in a built wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from registry.identity import Actor, Role
from registry.schemas import (
    ArtifactPublic,
    BlastRadius,
    DeploymentPublic,
    FlagPublic,
    InfectionSource,
    ReplayPublic,
    StatusChange,
    StatusReport,
)
from registry.service.overview import ActiveFlag
from registry.web.rendering import TEMPLATE_PACKAGE, environment, render_text

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
READER = Actor("rita", Role.READER)


def artifact(name: str = "acme/base", **fields: object) -> ArtifactPublic:
    """A model version as the service answers it."""
    values: dict[str, object] = {
        "ref": f"{name}@1", "kind": "model", "name": name, "version": "1",
        "finding": "unscanned", "status": "clean", "created_at": NOW, "created_by": "alice",
    }
    return ArtifactPublic.model_validate({**values, **fields})


def report(ref: str = "acme/base@1", **fields: object) -> StatusReport:
    """A status report with nothing in it."""
    values: dict[str, object] = {
        "ref": ref, "kind": "model", "finding": "unscanned", "status": "clean",
        "flags": [], "sources": [],
    }
    return StatusReport.model_validate({**values, **fields})


def model_page(**context: object) -> str:
    """The model page with an empty version unless told otherwise."""
    values: dict[str, object] = {
        "actor": READER, "csrf": "t", "artifact": artifact(), "report": report(),
        "files": [], "deployments": [], "decisions": [], "may_flag": False, "lineage": "",
    }
    return render_text("model.html", **{**values, **context})


def test_a_hostile_name_renders_as_text_on_every_page() -> None:
    hostile = artifact(HOSTILE, source=HOSTILE, publisher=HOSTILE)
    flag = ActiveFlag(ref=hostile.ref, kind="model", reason=HOSTILE, actor=HOSTILE,
                      created_at=NOW, versions=1, deployments=0)
    deployment = DeploymentPublic(id=1, ref=hostile.ref, environment="prod", team="t",
                                  status="infected", active=True, created_at=NOW,
                                  created_by="bob", path=[hostile.ref])
    pages = [
        model_page(artifact=hostile, report=report(hostile.ref, flags=[FlagPublic(
            id=1, ref=hostile.ref, reason=HOSTILE, actor="a", active=True, created_at=NOW)]),
            may_flag=True),
        render_text("dashboard.html", actor=READER, flags=[flag], tainted=1,
                    groups=[((HOSTILE, "prod"), [deployment])], events=[]),
        render_text("blast_radius.html", actor=READER, radius=BlastRadius(
            ref=hostile.ref, deployments=1, versions=1, groups=[], nearest=[deployment]),
            status="compromised", deployments=[deployment], pulls=[], page=1, pages=1),
        render_text("flag_confirm.html", actor=READER, reason=HOSTILE, change=StatusChange(
            ref=hostile.ref, status="compromised", changed=[], deployments=[deployment])),
        render_text("error.html", title=HOSTILE, message=HOSTILE, hint=HOSTILE),
    ]
    for html in pages:
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script" not in html  # no page carries a script of its own either


def test_links_to_a_hostile_ref_are_percent_encoded() -> None:
    html = model_page(artifact=artifact('a"b<c>?#d'), report=report('a"b<c>?#d@1',
                                                                     status="infected"))
    assert 'href="/blast-radius/a%22b%3Cc%3E%3F%23d@1"' in html


def test_empty_model_page() -> None:
    html = model_page()
    for marker in ("no-scan", "no-behavioral", "no-deployments", "no-pulls", "no-decisions"):
        assert f'id="{marker}"' in html
    assert "No file manifest" in html
    assert "No flag and no compromised ancestor." in html
    assert 'id="flag-form"' not in html


def test_empty_dashboard() -> None:
    html = render_text("dashboard.html", actor=READER, flags=[], groups=[], tainted=0, events=[])
    for marker in ("no-flags", "no-tainted", "no-events"):
        assert f'id="{marker}"' in html


def test_empty_blast_radius() -> None:
    radius = BlastRadius(ref="a@1", deployments=0, versions=0, groups=[], nearest=[])
    html = render_text("blast_radius.html", actor=READER, radius=radius, status="compromised",
                       deployments=[], pulls=[], page=1, pages=1)
    for marker in ("no-groups", "no-affected", "no-pulled"):
        assert f'id="{marker}"' in html
    assert 'rel="next"' not in html


def test_empty_flag_preview() -> None:
    change = StatusChange(ref="a@1", status="compromised", changed=[], deployments=[])
    html = render_text("flag_confirm.html", actor=READER, reason="r", change=change)
    assert "<strong>0</strong> descendant versions" in html
    assert "<strong>0</strong> deployments" in html


def test_signin_page_has_labelled_fields_and_no_session_controls() -> None:
    html = render_text("signin.html", csrf="c", next="/dashboard", error=None)
    assert '<label for="token">' in html
    assert 'id="token"' in html
    assert "Sign out" not in html


def test_templates_are_found_through_the_package() -> None:
    package, folder = TEMPLATE_PACKAGE
    shipped = resources.files(package) / folder
    top_level = sorted(p.name for p in (ROOT / "templates").glob("*.html"))
    assert top_level
    assert sorted(environment().list_templates(filter_func=lambda n: "/" not in n)) == top_level
    for name in top_level:
        assert (shipped / name).read_text() == (ROOT / "templates" / name).read_text()
    assert (shipped / "static" / "mbom.css").is_file()


@pytest.mark.slow
def test_a_wheel_carries_the_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside it
    for name in ("registry", "lineage", "scanning", "templates"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("mbom-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"registry/web/templates/{p.relative_to(ROOT / 'templates')}"
              for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert wanted
    assert wanted <= names


def test_sources_show_their_path_and_replay_rate() -> None:
    replay = ReplayPublic(source="a@1", ref="c@1", role="descendant", outcome="measured",
                          rate=0.6, confirmed=True, threshold=0.5, measured_at=NOW)
    source = InfectionSource(source="a@1", source_kind="model", depth=2,
                             path=["a@1", "b@1", "c@1"], reasons=["backdoor"], replay=replay)
    html = model_page(artifact=artifact("c"), report=report("c@1", status="confirmed",
                                                            sources=[source]))
    sources = html.split('id="sources"')[1].split("</table>")[0]
    assert "<td>60%</td>" in sources
    assert [ref for ref in ("a@1", "b@1", "c@1") if f'href="/models/{ref}"' in sources] == [
        "a@1", "b@1", "c@1"]
