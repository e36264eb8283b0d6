"""The web console over real HTTP: the app from ``create_app`` under uvicorn, httpx as the
browser (cookies kept, redirects not followed). On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine

from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Console:
    """A running server, its registry (as an admin), and tokens of each role."""

    base_url: str
    reg: LocalRegistry
    tokens: dict[str, str]

    def browser(self) -> httpx.Client:
        """A cookie-keeping client that does not follow redirects."""
        return httpx.Client(base_url=self.base_url, timeout=30.0, follow_redirects=False)

    @contextlib.contextmanager
    def signed_in(self, role: str) -> Iterator[httpx.Client]:
        """A client signed in with the token of ``role``."""
        with self.browser() as client:
            assert signin(client, self.tokens[role]).status_code == 303
            yield client


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


def signin(client: httpx.Client, token: str, *, next_: str = "/dashboard") -> httpx.Response:
    """Sign in through the form; the answer to the POST."""
    form = client.get("/")
    assert form.status_code == 200, form.text
    answer = client.post("/", data={"token": token, "csrf": csrf_of(form.text), "next": next_})
    return answer


@pytest.fixture
def console(engine: Engine, database_url: str) -> Iterator[Console]:
    """base@1 -> ft@1 -> app@1 (deployed by fraud in prod), other@1; tokens per role."""
    reg = LocalRegistry(engine, Actor("alice", Role.ADMIN))
    tokens = {}
    for role in Role:
        created = reg.create_token(user=f"{role.value}-user", role=role)
        assert created.token
        tokens[role.value] = created.token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url:
        yield Console(base_url, reg, tokens)


@pytest.fixture
def incident(console: Console) -> Console:
    """The lineage with base@1 flagged: ft@1 and app@1 infected, app@1 deployed."""
    reg = console.reg
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"),
                       publisher="hub", source="hf://hub/base")
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"), parents=["base@1"])
    reg.register_model(name="app", version="1", manifest=fake_manifest("app", "app config"),
                       parents=["ft@1"])
    reg.register_model(name="other", version="1", manifest=fake_manifest("other"))
    reg.create_team(name="fraud")
    reg.deploy("app@1", environment="prod", team="fraud")
    reg.deploy("other@1", environment="prod", team="fraud")
    reg.flag("base@1", reason="backdoor trigger in advisory MB-1")
    return console


def test_signin_sets_an_httponly_strict_session_cookie(console: Console) -> None:
    with console.browser() as client:
        answer = signin(client, console.tokens["reader"])
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard"
        cookie = next(v for k, v in answer.headers.multi_items()
                      if k == "set-cookie" and v.startswith("mbom_session="))
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert "httponly" in attributes
        assert "samesite=strict" in attributes
        assert "path=/" in attributes
        # The cookie is sealed: the API token is not in it.
        assert console.tokens["reader"] not in cookie
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert "reader-user (reader)" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_wrong_token_is_refused_on_the_signin_page(console: Console) -> None:
    with console.browser() as client:
        answer = signin(client, "not-a-token")
        assert answer.status_code == 401
        assert "unknown or revoked" in answer.text
        assert "mbom_session" not in client.cookies
        assert client.get("/dashboard").status_code == 303


def test_pages_need_a_session_and_send_people_to_sign_in(console: Console) -> None:
    with console.browser() as client:
        answer = client.get("/dashboard")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/?next=%2Fdashboard"
        client.cookies.set("mbom_session", console.tokens["admin"])
        assert client.get("/dashboard").status_code == 303  # a raw token is not a session


def test_signin_without_its_csrf_token_is_refused(console: Console) -> None:
    with console.browser() as client:
        client.get("/")
        answer = client.post("/", data={"token": console.tokens["admin"]})
        assert answer.status_code == 403
        assert "CSRF" in answer.text
        assert "mbom_session" not in client.cookies


def test_a_form_without_the_sessions_csrf_token_is_refused(incident: Console) -> None:
    with incident.signed_in("admin") as client:
        for data in ({"ref": "other@1", "reason": "x"},
                     {"ref": "other@1", "reason": "x", "csrf": "0" * 64}):
            answer = client.post("/flag", data=data)
            assert answer.status_code == 403, answer.text
            assert "CSRF token is missing" in answer.text
        # A token from another session is refused too.
        with incident.signed_in("admin") as other:
            theirs = csrf_of(other.get("/dashboard").text)
        answer = client.post("/flag", data={"ref": "other@1", "reason": "x", "csrf": theirs})
        assert answer.status_code == 403
    assert incident.reg.status_report("other@1").status == "clean"


def test_signout_ends_the_session(console: Console) -> None:
    with console.signed_in("reader") as client:
        csrf = csrf_of(client.get("/dashboard").text)
        assert client.post("/signout", data={}).status_code == 403
        answer = client.post("/signout", data={"csrf": csrf})
        assert answer.status_code == 303
        assert "mbom_session" not in client.cookies
        assert client.get("/dashboard").status_code == 303


def test_a_revoked_token_ends_its_sessions(console: Console) -> None:
    with console.signed_in("reader") as client:
        assert client.get("/dashboard").status_code == 200
        token_id = next(t.id for t in console.reg.list_tokens() if t.user == "reader-user")
        console.reg.revoke_token(token_id)
        assert client.get("/dashboard").status_code == 303


def test_dashboard_shows_flags_tainted_deployments_and_audit(incident: Console) -> None:
    with incident.signed_in("reader") as client:
        html = client.get("/dashboard").text
    flags = html.split('id="flags"')[1].split("</table>")[0]
    assert "base@1" in flags
    assert "backdoor trigger in advisory MB-1" in flags
    assert "alice" in flags
    # base@1 reaches two versions (ft, app) and one deployment.
    assert re.search(r'<td class="num">2</td>\s*<td class="num">1</td>', flags)
    tainted = html.split('id="tainted-h"')[1].split('id="audit-h"')[0]
    assert "Team fraud · prod" in tainted
    assert "app@1" in tainted
    assert "other@1" not in tainted
    assert "flag" in html.split('id="events"')[1]


def test_empty_dashboard(console: Console) -> None:
    with console.signed_in("reader") as client:
        html = client.get("/dashboard").text
    assert 'id="no-flags"' in html
    assert 'id="no-tainted"' in html


def test_model_page_shows_status_sources_files_and_deployments(incident: Console) -> None:
    with incident.signed_in("reader") as client:
        html = client.get("/models/app@1").text
    assert '<h1 id="ref">app@1</h1>' in html
    sources = html.split('id="sources"')[1].split("</table>")[0]
    assert "base@1" in sources
    assert "backdoor trigger in advisory MB-1" in sources
    assert re.search(r"base@1</a>.*ft@1</a>.*app@1</a>", sources, re.S)
    files = html.split('id="files"')[1].split("</table>")[0]
    manifest = fake_manifest("app", "app config")
    for entry in manifest.entries:
        assert entry.path in files
        assert entry.sha256 in files
    assert "metadata only" in html
    deployments = html.split('id="deployments"')[1].split("</table>")[0]
    assert "fraud" in deployments
    assert "prod" in deployments


def test_model_page_shows_publisher_source_and_decisions(incident: Console) -> None:
    incident.reg.decide(ref="other@1", team="fraud", verdict="approve", reason="reviewed")
    with incident.signed_in("reader") as client:
        base = client.get("/models/base@1").text
        other = client.get("/models/other@1").text
    assert "hub" in base
    assert "hf://hub/base" in base
    # A flag blocks the model for every team.
    assert "every team" in base.split('id="decisions"')[1]
    decisions = other.split('id="decisions"')[1].split("</table>")[0]
    assert "fraud" in decisions
    assert "reviewed" in decisions
    assert "approve" in decisions


def test_unknown_ref_is_a_404_page(console: Console) -> None:
    with console.signed_in("reader") as client:
        for url in ("/models/nope@1", "/blast-radius/nope@1"):
            answer = client.get(url)
            assert answer.status_code == 404
            assert answer.headers["content-type"].startswith("text/html")
            assert "nope@1 is not registered" in answer.text
            assert "Traceback" not in answer.text
        bad = client.get("/models/not a ref")
        assert bad.status_code == 400
        assert "is not a reference" in bad.text


def test_blast_radius_counts_lists_and_downloads(incident: Console) -> None:
    with incident.signed_in("reader") as client:
        html = client.get("/blast-radius/base@1").text
        as_csv = client.get("/blast-radius/base@1", params={"format": "csv"})
        as_json = client.get("/blast-radius/base@1", params={"format": "json"})
    groups = html.split('id="groups"')[1].split("</table>")[0]
    assert "fraud" in groups
    assert "prod" in groups
    assert "infected" in groups
    affected = html.split('id="affected"')[1].split("</table>")[0]
    assert re.search(r"base@1</a>.*ft@1</a>.*app@1</a>", affected, re.S)
    assert "1 deployments of 1 versions" in html
    assert as_csv.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["what"], r["ref"], r["team"], r["environment"], r["status"], r["path"])
            for r in rows] == [
        ("deployment", "app@1", "fraud", "prod", "infected", "base@1 > ft@1 > app@1")]
    document = as_json.json()
    assert document["ref"] == "base@1"
    assert [d["path"] for d in document["deployments"]] == [["base@1", "ft@1", "app@1"]]
    assert document["pulls"] == []


def test_blast_radius_pages_through_deployments(console: Console) -> None:
    reg = console.reg
    reg.register_model(name="root", version="1", manifest=fake_manifest("root"))
    reg.create_team(name="ops")
    for i in range(55):
        reg.register_model(name=f"leaf{i:02d}", version="1",
                           manifest=fake_manifest(f"leaf{i}"), parents=["root@1"])
        reg.deploy(f"leaf{i:02d}@1", environment="prod", team="ops")
    with console.signed_in("reader") as client:
        first = client.get("/blast-radius/root@1").text
        second = client.get("/blast-radius/root@1", params={"page": 2}).text
        beyond = client.get("/blast-radius/root@1", params={"page": 3}).text
        zero = client.get("/blast-radius/root@1", params={"page": 0})
    listed = [re.findall(r'leaf\d\d@1</a></td><td>ops', page) for page in (first, second)]
    assert [len(found) for found in listed] == [50, 5]
    assert "page 1 of 2" in first
    assert 'rel="next"' in first
    assert 'rel="prev"' in second
    assert 'id="no-affected"' in beyond
    assert zero.status_code == 400


def test_escaping_of_a_hostile_model_name(console: Console) -> None:
    name = "<script>alert(1)</script>"
    console.reg.register_model(name=name, version="1", manifest=fake_manifest("x"),
                               source='"><img src=x onerror=alert(2)>')
    console.reg.flag(f"{name}@1", reason="<b>bold</b>")
    with console.signed_in("reader") as client:
        page = client.get("/models/" + httpx.URL(path=f"{name}@1").raw_path.decode()).text
        dash = client.get("/dashboard").text
    for html in (page, dash):
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in page
    assert "<b>bold</b>" not in dash


def test_reader_sees_no_flag_form_and_is_refused_if_posting(incident: Console) -> None:
    with incident.signed_in("reader") as client:
        html = client.get("/models/other@1").text
        assert 'id="flag-form"' not in html
        csrf = csrf_of(html)
        for url in ("/flag/preview", "/flag"):
            answer = client.post(url, data={"ref": "other@1", "reason": "x", "csrf": csrf})
            assert answer.status_code == 403
            assert "it needs the admin role" in answer.text
    assert incident.reg.status_report("other@1").status == "clean"


def test_admin_flags_through_a_preview_then_a_confirmation(incident: Console) -> None:
    reg = incident.reg
    reg.register_model(name="child", version="1", manifest=fake_manifest("child"),
                       parents=["other@1"])
    with incident.signed_in("admin") as client:
        html = client.get("/models/other@1").text
        assert 'id="flag-form"' in html
        preview = client.post("/flag/preview", data={
            "ref": "other@1", "reason": "typosquat", "csrf": csrf_of(html)})
        assert preview.status_code == 200, preview.text
        assert re.search(r"changes the status of\s*<strong>1</strong> descendant version\s",
                         preview.text)
        assert "<strong>1</strong> deployment" in preview.text
        # The preview changed nothing.
        assert reg.status_report("other@1").status == "clean"
        assert reg.status_report("child@1").status == "clean"
        done = client.post("/flag", data={
            "ref": "other@1", "reason": "typosquat", "csrf": csrf_of(preview.text)})
        assert done.status_code == 303
        assert done.headers["location"] == "/blast-radius/other@1"
    assert reg.status_report("other@1").status == "compromised"
    assert reg.status_report("child@1").status == "infected"
    assert [e.operation for e in reg.list_events(subject="other@1")][-1] == "flag"


def test_flagging_twice_is_a_409_page(incident: Console) -> None:
    with incident.signed_in("admin") as client:
        csrf = csrf_of(client.get("/dashboard").text)
        answer = client.post("/flag", data={"ref": "base@1", "reason": "again", "csrf": csrf})
    assert answer.status_code == 409
    assert "flagged already" in answer.text


def test_stylesheet_is_served_by_mbom(console: Console) -> None:
    with console.browser() as client:
        answer = client.get("/static/mbom.css")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/css")
    assert ".status-confirmed" in answer.text
