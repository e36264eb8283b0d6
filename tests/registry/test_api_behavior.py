"""Behavioral scans over real HTTP: the remote client against uvicorn.

Scan profiles, behavioral reports, triggers and replays travel as JSON with the
arrays as base64 ``.npz``; no model is loaded here (the reports are built
directly). Every test runs on SQLite and on PostgreSQL (the parametrized ``engine``).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from registry import errors
from registry.api import create_app
from registry.client import LocalRegistry, RemoteRegistry
from registry.identity import Actor, Role
from registry.schemas import ReplayIn, ScanProfilePublic
from registry.settings import Settings
from scanning.behavioral.profile import profile_from_npz, profile_to_npz, reference_digest
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    DetectorResult,
    ReplayMeasure,
    ReplayOutcome,
    ReplayReport,
    ScanProfile,
    TriggerPattern,
)
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread
from tests.registry.test_api import Api, assert_problem, created

# --- values: a tiny profile, reports and triggers built with NumPy only ----------------------


def make_profile(seed: int = 0) -> ScanProfile:
    """30 references of 1x8x8 in [0, 1], labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.random((30, 1, 8, 8), dtype=np.float32)
    y = (np.arange(30) % 10).astype(np.int64)
    return ScanProfile((1, 8, 8), (0.0, 1.0), 10, x, y)


def make_trigger(target_class: int | None = 3, corner: int = 0) -> TriggerPattern:
    """A 2x2 white square in one corner of an 8x8 input."""
    mask = np.zeros((1, 8, 8), dtype=np.float32)
    mask[0, corner : corner + 2, corner : corner + 2] = 1.0
    return TriggerPattern(mask, np.ones((1, 8, 8), dtype=np.float32), target_class)


def compromised(trigger: TriggerPattern) -> BehavioralReport:
    """What a scan that found a backdoor toward class 3 reports."""
    detector = DetectorResult("neural_cleanse", 4.5, 2.0, True, (3,), {"anomaly_index": 4.5})
    return BehavioralReport(
        BehaviorVerdict.COMPROMISED,
        score=4.5,
        detectors=(detector,),
        target_class=3,
        trigger=trigger,
        trigger_asr=0.97,
        elapsed_s=1.5,
    )


def clean(statistic: float) -> BehavioralReport:
    """What a scan of a clean model reports."""
    detector = DetectorResult("neural_cleanse", statistic, 2.0, False)
    return BehavioralReport(BehaviorVerdict.CLEAN, score=statistic, detectors=(detector,))


def replay(ref: str, rate: float, role: str = "descendant") -> ReplayIn:
    """A measured replay of a class-3 trigger on ``ref``."""
    report = ReplayReport(ReplayOutcome.MEASURED, 0.5, ReplayMeasure(rate, 3, rate, 0.95))
    return ReplayIn(
        ref=ref, role="baseline" if role == "baseline" else "descendant", report=report.to_json()
    )


def b64(data: bytes) -> str:
    """Base64 text of ``data``, as the API takes arrays."""
    return base64.b64encode(data).decode("ascii")


def npz(**arrays: Any) -> bytes:
    """``.npz`` bytes of the given arrays."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def api(engine: Engine, database_url: str) -> Iterator[Api]:
    """The app from ``create_app`` on this test's database, served by uvicorn."""
    bootstrap = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN))
    token = bootstrap.create_token(user="root", role=Role.ADMIN).token
    assert token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url:
        yield Api(base_url, token)


@pytest.fixture
def remote(api: Api) -> Iterator[RemoteRegistry]:
    """The CLI's HTTP client, holding the admin token."""
    with RemoteRegistry(api.base_url, api.admin_token) as client:
        yield client


def register(remote: RemoteRegistry, name: str, **fields: Any) -> Any:
    """Register ``name@1`` with a one-file manifest unique to the name."""
    return remote.register_model(name=name, version="1", manifest=fake_manifest(name), **fields)


PROFILE = make_profile()
DIGEST = reference_digest(profile_to_npz(PROFILE))


@pytest.fixture
def family(remote: RemoteRegistry, engine: Engine) -> RemoteRegistry:
    """acme/base@1 (own profile, scanned clean) -> acme/ft@1 -> team/profile@1.

    ``other@1`` is an unrelated model scanned clean on the same references (a
    clean relative), registered by the embedded registry: only scans the
    registry ran itself calibrate, the client-reported scan of acme/base@1 does
    not. ``lonely@1`` has no profile anywhere in its line.
    """
    base = register(remote, "acme/base", profile=PROFILE, behavioral=clean(1.2))
    assert base.status == "clean"
    register(remote, "acme/ft", parents=["acme/base@1"])
    # A name ending like a route: {ref:path} still takes all of it.
    register(remote, "team/profile", parents=["acme/ft@1"])
    embedded = LocalRegistry(engine, Actor("security", Role.ADMIN))
    embedded.register_model(
        name="other",
        version="1",
        manifest=fake_manifest("other"),
        profile=PROFILE,
        behavioral=clean(0.8),
    )
    register(remote, "lonely")
    return remote


# --- profiles -------------------------------------------------------------------------------


def test_profiles_are_stored_and_inherited_over_http(family: RemoteRegistry) -> None:
    own: ScanProfilePublic = family.profile_of("acme/base@1")
    assert (own.origin, own.input_shape, own.value_range, own.num_classes) == (
        "acme/base@1",
        [1, 8, 8],
        (0.0, 1.0),
        10,
    )
    assert own.reference_digest == DIGEST
    back = profile_from_npz(own.reference)
    assert np.array_equal(back.x, PROFILE.x)
    assert np.array_equal(back.y, PROFILE.y)

    for ref in ("acme/ft@1", "team/profile@1", "model:team/profile@1"):
        assert family.profile_of(ref).origin == "acme/base@1", ref
    inherited = family.inherited_profile(["lonely@1", "team/profile@1"])
    assert (inherited.origin, inherited.reference_digest) == ("acme/base@1", DIGEST)
    assert family.inherited_profile(["lonely@1"]) is None
    assert family.inherited_profile([]) is None
    assert family.profile_of("lonely@1") is None
    with pytest.raises(errors.NotFound, match="ghost@1"):
        family.profile_of("ghost@1")
    # Unknown parents are passed over: the registration refuses them with the reason.
    assert family.inherited_profile(["ghost@1"]) is None

    # acme/base@1's scan came from a client: only other@1's, run by the registry, counts.
    assert family.behavior_baseline(DIGEST) == [{"neural_cleanse": 0.8}]
    assert family.behavior_baseline("sha256:" + "0" * 64) == []


@pytest.mark.usefixtures("family")
def test_baseline_digest_may_be_percent_encoded(api: Api) -> None:
    with api.client() as http:
        encoded = created(http.get(f"/profiles/{DIGEST.replace(':', '%3A')}/baseline"))
        assert encoded == created(http.get(f"/profiles/{DIGEST}/baseline"))
        assert len(encoded) == 1
        spec = created(http.get(f"{api.base_url}/openapi.json"))
    for path in [
        "/api/v1/models/{ref}/profile",
        "/api/v1/profiles/inherited",
        "/api/v1/profiles/{digest}/baseline",
        "/api/v1/models/{ref}/rescan",
        "/api/v1/models/{ref}/triggers",
        "/api/v1/models/{ref}/replay-plan",
        "/api/v1/models/{ref}/replays",
    ]:
        assert path in spec["paths"], path


# --- rescan, triggers, replays ----------------------------------------------------------------


def test_rescan_then_replay_confirms_a_descendant(family: RemoteRegistry) -> None:
    trigger = make_trigger()
    scan = family.record_rescan("acme/ft@1", report=compromised(trigger), reference_digest=DIGEST)
    assert (scan.ref, scan.verdict, scan.status) == ("acme/ft@1", "compromised", "compromised")
    assert scan.report["trigger_asr"] == 0.97
    assert scan.trigger is not None
    assert scan.trigger.origin == "scan"
    assert scan.trigger.data == trigger.to_npz()
    assert family.show("team/profile@1").status == "infected"

    plan = family.replay_plan("acme/ft@1")
    assert (plan.source, plan.trigger.id) == ("acme/ft@1", scan.trigger.id)
    stamped = TriggerPattern.from_npz(plan.trigger.data)
    assert np.array_equal(stamped.mask, trigger.mask)
    assert stamped.target_class == 3
    assert [(t.ref, t.depth, t.status, t.profile) for t in plan.descendants] == [
        ("team/profile@1", 1, "infected", DIGEST)
    ]
    assert [t.ref for t in plan.baseline] == ["other@1"]  # the ancestor acme/base@1 is not
    assert plan.profiles[DIGEST].origin == "acme/base@1"

    summary = family.record_replays(
        plan.source,
        trigger_id=plan.trigger.id,
        results=[replay("team/profile@1", 0.9), replay("other@1", 0.05, "baseline")],
    )
    assert summary.confirmed == ["team/profile@1"]
    assert summary.baseline_rates == [0.05]
    assert {(r.ref, r.role, r.confirmed) for r in summary.results} == {
        ("team/profile@1", "descendant", True),
        ("other@1", "baseline", False),
    }
    assert family.show("team/profile@1").status == "confirmed"
    assert family.show("other@1").status == "clean"
    assert family.find_inconsistencies() == []
    assert family.verify_chain().ok is True


def test_an_analysts_trigger_is_attached_and_replayed(family: RemoteRegistry) -> None:
    analyst = make_trigger(target_class=None, corner=6)
    attached = family.attach_trigger("acme/ft@1", data=analyst.to_npz(), target_class=5)
    assert (attached.ref, attached.origin, attached.target_class) == ("acme/ft@1", "analyst", 5)
    stored = TriggerPattern.from_npz(attached.data)
    assert stored.target_class == 5
    assert np.array_equal(stored.mask, analyst.mask)
    assert attached.digest.startswith("sha256:")

    plan = family.replay_plan("acme/ft@1")
    assert plan.trigger.id == attached.id
    assert [t.ref for t in plan.baseline] == ["other@1"]
    # A replay that does not reach the threshold confirms nothing (and acme/ft@1 is not flagged).
    summary = family.record_replays(
        "acme/ft@1",
        trigger_id=attached.id,
        results=[replay("team/profile@1", 0.1)],
    )
    assert summary.confirmed == []
    assert family.show("team/profile@1").status == "clean"


def test_register_with_a_compromised_admission_scan(remote: RemoteRegistry) -> None:
    evil = register(remote, "evil", profile=PROFILE, behavioral=compromised(make_trigger()))
    assert (evil.finding, evil.status) == ("compromised", "compromised")
    plan = remote.replay_plan("evil@1")
    assert (plan.trigger.origin, plan.trigger.target_class, plan.descendants) == ("scan", 3, [])
    assert remote.profile_of("evil@1").origin == "evil@1"


# --- roles ----------------------------------------------------------------------------------


def test_roles_are_checked_over_http(family: RemoteRegistry, api: Api) -> None:
    scan = family.record_rescan(
        "acme/ft@1", report=compromised(make_trigger()), reference_digest=DIGEST
    )
    assert scan.trigger is not None
    tokens = {
        role: family.create_token(user=role.value, role=role).token
        for role in (Role.READER, Role.PUBLISHER)
    }
    with (
        RemoteRegistry(api.base_url, tokens[Role.READER]) as reader,
        RemoteRegistry(api.base_url, tokens[Role.PUBLISHER]) as publisher,
    ):
        check_roles(family, reader, publisher, scan.trigger.id)


def check_roles(
    admin: RemoteRegistry, reader: RemoteRegistry, publisher: RemoteRegistry, trigger_id: int
) -> None:
    """Readers read, publishers rescan, only admins attach triggers and record replays."""
    assert reader.profile_of("acme/ft@1").origin == "acme/base@1"
    assert reader.replay_plan("acme/ft@1").trigger.id == trigger_id
    assert len(reader.behavior_baseline(DIGEST)) == 1  # other@1: the registry's scan
    replays = {"trigger_id": trigger_id, "results": [replay("team/profile@1", 0.9)]}
    for who in (reader, publisher):
        with pytest.raises(errors.PermissionDenied, match="admin"):
            who.record_replays("acme/ft@1", **replays)
        with pytest.raises(errors.PermissionDenied, match="admin"):
            who.attach_trigger("acme/ft@1", data=make_trigger().to_npz())
    with pytest.raises(errors.PermissionDenied, match="publisher"):
        reader.record_rescan("other@1", report=clean(0.5), reference_digest=DIGEST)
    rescanned = publisher.record_rescan("other@1", report=clean(0.5), reference_digest=DIGEST)
    assert (rescanned.status, rescanned.provenance) == ("clean", "client")
    assert admin.show("team/profile@1").status == "infected", "refusals wrote nothing"


# --- bad input: 4xx problems, never 500 ---------------------------------------------------------

GOOD_TRIGGER = b64(make_trigger().to_npz())
REPORT: dict[str, Any] = {**compromised(make_trigger()).to_json(), "trigger": GOOD_TRIGGER}
REF = "acme/ft@1"


def bad_profile(**arrays: Any) -> str:
    """A ``profile`` field holding these arrays."""
    return b64(npz(**arrays))


def model_with(**extra: Any) -> dict[str, Any]:
    """A ``POST /models`` body for a new model with ``extra`` fields."""
    entry = {"path": "w.bin", "size": 1, "sha256": "ab" * 32}
    return {"name": "newcomer", "version": "1", "manifest": {"entries": [entry]}, **extra}


def rescan(**report: Any) -> dict[str, Any]:
    """A rescan body: the compromised report with ``report`` fields replaced."""
    return {"report": {**REPORT, **report}, "reference_digest": DIGEST}


def replays(report: dict[str, Any], trigger_id: int = 1, ref: str = "team/profile@1") -> Any:
    """A record-replays body with one result."""
    return {"trigger_id": trigger_id, "results": [{"ref": ref, "report": report}]}


JSON = {"Content-Type": "application/json"}
MEASURED = replay("team/profile@1", 0.9).report
X = np.zeros((30, 1, 8, 8), np.float32)
Y = (np.arange(30) % 10).astype(np.int64)

BAD_REQUESTS: list[Any] = [
    # register: profile
    pytest.param(
        "POST",
        "/models",
        model_with(profile="abc"),
        422,
        "invalid-request",
        id="profile-bad-padding",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(profile=b64(b"not a zip")),
        400,
        "invalid-input",
        id="profile-not-npz",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(profile=b64(b"PK\x03\x04" + bytes(40))),
        400,
        "invalid-input",
        id="profile-broken-zip",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(profile=bad_profile(x=X)),
        400,
        "invalid-input",
        id="profile-without-y",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(
            profile=bad_profile(x=X[:5], y=Y[:5], num_classes=np.int64(10), value_range=[0.0, 1.0])
        ),
        400,
        "invalid-input",
        id="profile-too-few",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(
            profile=bad_profile(
                x=np.array(1.0, np.float32), y=Y, num_classes=np.int64(10), value_range=[0.0, 1.0]
            )
        ),
        400,
        "invalid-input",
        id="profile-scalar-x",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(
            profile=bad_profile(x=X, y=Y, num_classes=np.int64(2**40), value_range=[0.0, 1.0])
        ),
        400,
        "invalid-input",
        id="profile-too-many-classes",
    ),
    # register: behavioral
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "verdict": "evil"}),
        422,
        "invalid-request",
        id="behavioral-unknown-verdict",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "score": float("nan")}),
        422,
        "invalid-request",
        id="behavioral-nan-score",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "trigger": None}),
        400,
        "invalid-input",
        id="behavioral-trigger-missing",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "target_class": 2**40}),
        422,
        "invalid-request",
        id="behavioral-huge-class",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(
            behavioral={
                **REPORT,
                "detectors": [
                    {
                        "name": "nc",
                        "statistic": 1.0,
                        "threshold": 2.0,
                        "flagged": False,
                        "details": {"norms": [1.0, float("inf")]},
                    }
                ],
            }
        ),
        422,
        "invalid-request",
        id="behavioral-infinite-detail",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "unexpected": 1}),
        422,
        "invalid-request",
        id="behavioral-extra-field",
    ),
    pytest.param(
        "POST",
        "/models",
        model_with(behavioral={**REPORT, "family": "quantum"}),
        422,
        "invalid-request",
        id="behavioral-unknown-family",
    ),
    # rescan
    pytest.param(
        "POST",
        f"/models/{REF}/rescan",
        {"reference_digest": DIGEST},
        422,
        "invalid-request",
        id="rescan-no-report",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/rescan",
        rescan(trigger=b64(make_trigger().to_npz()[:50])),
        400,
        "invalid-input",
        id="rescan-truncated-trigger",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/rescan",
        rescan(trigger=b64(npz(mask=X[0]))),
        400,
        "invalid-input",
        id="rescan-trigger-without-pattern",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/rescan",
        {**rescan(), "reference_digest": "md5:ab"},
        422,
        "invalid-request",
        id="rescan-bad-digest",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/rescan",
        rescan(detectors="many"),
        422,
        "invalid-request",
        id="rescan-detectors-not-a-list",
    ),
    pytest.param(
        "POST", "/models/ghost@1/rescan", rescan(), 404, "not-found", id="rescan-unknown-model"
    ),
    # triggers
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": "abc"},
        422,
        "invalid-request",
        id="trigger-bad-padding",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": b64(b"")},
        400,
        "invalid-input",
        id="trigger-empty",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": b64(b"PK\x03\x04" + bytes(40))},
        400,
        "invalid-input",
        id="trigger-broken-zip",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": b64(npz(mask=X[0], pattern=X[0], target_class=np.int64(2**40)))},
        400,
        "invalid-input",
        id="trigger-npz-huge-class",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": b64(npz(mask=X[0], pattern=X[0], target_class=np.zeros(3)))},
        400,
        "invalid-input",
        id="trigger-npz-class-not-a-number",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": b64(npz(mask=np.array([object()], dtype=object), pattern=X[0]))},
        400,
        "invalid-input",
        id="trigger-pickled",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": GOOD_TRIGGER, "target_class": -1},
        422,
        "invalid-request",
        id="trigger-negative-class",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/triggers",
        {"data": GOOD_TRIGGER, "target_class": 2**40},
        422,
        "invalid-request",
        id="trigger-huge-class",
    ),
    # profiles
    pytest.param("GET", "/models/lonely@1/profile", None, 404, "not-found", id="no-profile"),
    pytest.param("GET", "/models/ghost@1/profile", None, 404, "not-found", id="unknown-model"),
    pytest.param(
        "GET", "/models/no-version/profile", None, 400, "invalid-input", id="malformed-ref"
    ),
    pytest.param(
        "GET",
        "/profiles/sha256:xyz/baseline",
        None,
        422,
        "invalid-request",
        id="baseline-bad-digest",
    ),
    pytest.param(
        "POST",
        "/profiles/inherited",
        {"parents": "acme/base@1"},
        422,
        "invalid-request",
        id="inherited-parents-not-a-list",
    ),
    # replays
    pytest.param(
        "GET", "/models/acme/base@1/replay-plan", None, 404, "not-found", id="plan-without-trigger"
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays(MEASURED, trigger_id=2**70),
        422,
        "invalid-request",
        id="replay-huge-trigger-id",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays(MEASURED, trigger_id=99999),
        404,
        "not-found",
        id="replay-unknown-trigger",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays({"outcome": "weird"}),
        400,
        "invalid-input",
        id="replay-malformed-report",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays({**MEASURED, "threshold": "high"}),
        400,
        "invalid-input",
        id="replay-threshold-text",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays({**MEASURED, "measure": {**MEASURED["measure"], "rate": float("nan")}}),
        422,
        "invalid-request",
        id="replay-nan-rate",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays({**MEASURED, "measure": {**MEASURED["measure"], "collapsed_class": 2**40}}),
        400,
        "invalid-input",
        id="replay-huge-collapsed-class",
    ),
    pytest.param(
        "POST",
        f"/models/{REF}/replays",
        replays(MEASURED, ref="other@1"),
        400,
        "invalid-input",
        id="replay-not-a-descendant",
    ),
]


def test_bad_payloads_get_4xx_problems(family: RemoteRegistry, api: Api) -> None:
    # The trigger of acme/ft@1 gets id 1 (the first trigger in a fresh database).
    scan = family.record_rescan(REF, report=compromised(make_trigger()), reference_digest=DIGEST)
    assert scan.trigger is not None
    assert scan.trigger.id == 1
    with api.client() as http:
        events = created(http.get("/audit/verify"))["events"]
        failures = []
        for case in BAD_REQUESTS:
            method, path, body, status, code = case.values
            # json.dumps, unlike httpx, writes NaN and Infinity: the server must refuse them.
            content = None if body is None else json.dumps(body)
            response = http.request(method, path, content=content, headers=JSON)
            try:
                assert_problem(response, status, code)
            except AssertionError:
                failures.append(f"{case.id}: {response.status_code} {response.text[:300]}")
        assert failures == []
        assert created(http.get("/audit/verify"))["events"] == events, "refusals wrote nothing"
    assert sorted(m.ref for m in family.list_artifacts(kind="model")) == [
        "acme/base@1",
        "acme/ft@1",
        "lonely@1",
        "other@1",
        "team/profile@1",
    ]


def test_a_flag_carries_the_advisorys_trigger_over_http(family: RemoteRegistry) -> None:
    advisory = make_trigger(target_class=0, corner=6)
    change = family.flag("acme/base@1", reason="advisory", trigger=advisory.to_npz())
    assert change.status == "compromised"
    plan = family.replay_plan("acme/base@1")
    assert (plan.trigger.origin, plan.trigger.target_class) == ("analyst", 0)
    assert [t.ref for t in plan.descendants] == ["acme/ft@1", "team/profile@1"]
    with pytest.raises(errors.InvalidInput, match="not a usable trigger"):
        family.flag("other@1", reason="advisory", trigger=b"no npz")
    assert family.show("other@1").status == "clean"  # nothing half-written
