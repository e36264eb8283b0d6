"""Only scans the registry ran itself calibrate: forged client reports cannot poison it.

The attack (issue 10, point 6): a publisher registers many models with a base's
reference profile and forged *clean* behavioral reports with high detector
statistics, so that the security team's later scan of the base, calibrated
against those "relatives", says clean. Here the forged reports arrive over real
HTTP (uvicorn) and are recorded as ``client``; the baseline and the replay plan's
clean relatives are made of the embedded registry's own scans only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

import registry.db
from registry.api import create_app
from registry.client import LocalRegistry, RemoteRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.settings import Settings
from scanning.behavioral.report import BehavioralReport
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread
from tests.registry.test_api_behavior import DIGEST, PROFILE, clean, make_trigger

SECURITY = Actor("security", Role.ADMIN)
FORGED = 12


def register(reg: LocalRegistry | RemoteRegistry, name: str, **fields: object) -> str:
    """Register ``name@1`` with a one-file manifest unique to the name."""
    reg.register_model(name=name, version="1", manifest=fake_manifest(name), **fields)
    return f"{name}@1"


@pytest.fixture
def embedded(engine: Engine) -> LocalRegistry:
    """The registry itself: hub/base@1 with its references, two clean relatives it scanned."""
    reg = LocalRegistry(engine, SECURITY)
    register(reg, "hub/base", profile=PROFILE)
    register(reg, "zoo/a", profile=PROFILE, behavioral=clean(0.3))
    register(reg, "zoo/b", profile=PROFILE, behavioral=clean(0.5))
    return reg


@pytest.fixture
def publisher(engine: Engine, database_url: str) -> Iterator[RemoteRegistry]:
    """A publisher (no team) talking to ``mbom serve`` over real HTTP."""
    token = (
        LocalRegistry(engine, SECURITY)
        .create_token(user="mallory", role=Role.PUBLISHER)
        .token
    )
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url, RemoteRegistry(base_url, token) as client:
        yield client


def forge(publisher: RemoteRegistry) -> list[str]:
    """The attack: models on the base's references, 'clean' with huge detector statistics."""
    forged: BehavioralReport = clean(50.0)
    refs = [
        register(publisher, f"mallory/m{i}", profile=PROFILE, behavioral=forged)
        for i in range(FORGED - 1)
    ]
    last = register(publisher, "mallory/rescanned", profile=PROFILE)
    publisher.record_rescan(last, report=forged, reference_digest=DIGEST)
    return [*refs, last]


def test_forged_client_reports_do_not_shift_the_baseline(
    embedded: LocalRegistry, publisher: RemoteRegistry
) -> None:
    before = embedded.behavior_baseline(DIGEST)
    assert before == [{"neural_cleanse": 0.5}, {"neural_cleanse": 0.3}]
    forged = forge(publisher)
    assert {embedded.show(ref).status for ref in forged} == {"clean"}  # recorded
    assert embedded.behavior_baseline(DIGEST) == before
    assert publisher.behavior_baseline(DIGEST) == before  # what a remote rescan gets
    shown = embedded.status_report(forged[0]).behavioral_scan
    assert (shown["verdict"], shown["provenance"]) == ("clean", "client")
    assert embedded.status_report("zoo/a@1").behavioral_scan["provenance"] == "registry"


def test_forged_client_reports_are_no_clean_relatives_of_a_replay(
    embedded: LocalRegistry, publisher: RemoteRegistry
) -> None:
    forge(publisher)
    register(embedded, "acme/ft", parents=["hub/base@1"])
    embedded.flag("hub/base@1", reason="backdoor reported")
    embedded.attach_trigger("hub/base@1", data=make_trigger().to_npz())
    plan = embedded.replay_plan("hub/base@1")
    assert [t.ref for t in plan.baseline] == ["zoo/b@1", "zoo/a@1"]


def test_embedded_scans_calibrate_and_say_so(embedded: LocalRegistry) -> None:
    rescan = embedded.record_rescan("hub/base@1", report=clean(0.7), reference_digest=DIGEST
    )
    assert rescan.provenance == "registry"
    assert embedded.behavior_baseline(DIGEST)[0] == {"neural_cleanse": 0.7}
    events = [e for e in embedded.list_events() if e.operation == "scan.behavioral"]
    assert events[-1].details["provenance"] == "registry"


def test_a_body_cannot_claim_the_registry_ran_its_scan(
    embedded: LocalRegistry, publisher: RemoteRegistry
) -> None:
    """The route marks what arrives over the API; a ``provenance`` in the body is refused."""
    body = {"report": clean(9.0).to_json(), "reference_digest": DIGEST}
    claimed = publisher._http.post(
        "/models/zoo/a@1/rescan", json={**body, "provenance": "registry"}
    )
    assert claimed.status_code == 422
    plain = publisher._http.post("/models/zoo/a@1/rescan", json=body)
    assert (plain.status_code, plain.json()["provenance"]) == (200, "client")
    assert embedded.behavior_baseline(DIGEST)[0] == {"neural_cleanse": 0.5}


def test_existing_scans_become_client_reported_on_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(Path(registry.db.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO artifact (kind, name, version, finding, status, placeholder, "
                "created_by, created_at) VALUES ('model', 'old', '1', 'clean', 'clean', 0, "
                "'x', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO scan_record (artifact_id, kind, verdict, report, actor, created_at) "
                "VALUES (1, 'behavioral', 'clean', :report, 'x', '2026-01-01')"
            ),
            {
                "report": '{"detectors": [{"name": "nc", "statistic": 9}], '
                f'"reference_digest": "{DIGEST}"}}'
            },
        )
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT provenance FROM scan_record")).scalars().all() == [
            "client"
        ]
    assert LocalRegistry(engine, SECURITY).behavior_baseline(DIGEST) == []
    engine.dispose()
