"""The registry's vocabulary (``registry.vocabulary``) end to end.

Each closed set of words is one enum; the OpenAPI schema shows it as an
``enum`` wherever a field or parameter uses it, and a wrong word is refused at
the edge, by FastAPI (a 422 problem) or typer (a usage error, exit 2), with the
valid words listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from lineage import DATASET_USES, MODEL_RELATIONS
from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.schemas import ArtifactPublic, ScanProvenance
from registry.settings import Settings
from registry.vocabulary import (
    BehaviorVerdict,
    DecisionVerdict,
    Finding,
    Kind,
    Relation,
    Status,
)
from registry.vocabulary import ScanProvenance as DeclaredProvenance
from tests.registry.live_server import serve_in_thread
from tests.registry.test_api import assert_problem, model_body
from tests.registry.test_cli import Cli, cli_env, local_registry

Spec = dict[str, Any]
Words = type[StrEnum] | frozenset[Relation]


def words(values: Words) -> list[str]:
    """The words of an enum, or of a subset of Relation, in declaration order."""
    if isinstance(values, frozenset):
        return [relation.value for relation in Relation if relation in values]
    return [member.value for member in values]


def enum_in(spec: Spec, schema: Spec) -> list[str]:
    """The ``enum`` of a property or parameter schema (through ``$ref`` and ``| None``)."""
    if "$ref" in schema:
        return enum_in(spec, spec["components"]["schemas"][schema["$ref"].rpartition("/")[2]])
    if "anyOf" in schema:
        found = [enum_in(spec, s) for s in schema["anyOf"] if s.get("type") != "null"]
        assert len(found) == 1, schema
        return found[0]
    assert "enum" in schema, schema
    return list(schema["enum"])


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Spec:
    """The OpenAPI document of the app (built in-process; nothing is served)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'registry.db'}"
    document: Spec = create_app(Settings(database_url=url)).openapi()
    return document


FIELDS = [
    ("ArtifactPublic", "kind", Kind),
    ("ArtifactPublic", "finding", Finding),
    ("ArtifactPublic", "status", Status),
    ("ParentLink", "kind", Kind),
    ("ParentLink", "relation", Relation),
    ("StatusReport", "finding", Finding),
    ("StatusReport", "status", Status),
    ("InfectionSource", "source_kind", Kind),
    ("LineageEntry", "status", Status),
    ("DeploymentPublic", "status", Status),
    ("PullPublic", "status", Status),
    ("VerifyReport", "status", Status),
    ("DecisionPublic", "verdict", DecisionVerdict),
    ("DecisionRequest", "verdict", DecisionVerdict),
    ("TokenRequest", "role", Role),
    ("BehavioralReportIn", "verdict", BehaviorVerdict),
    ("BehavioralScanPublic", "verdict", BehaviorVerdict),
    ("BehavioralScanPublic", "provenance", ScanProvenance),
    ("HfLink", "kind", Kind),
    ("RegisterModelRequest", "relation", MODEL_RELATIONS),
    ("RegisterStoredRequest", "relation", MODEL_RELATIONS),
    ("AddParentsRequest", "relation", MODEL_RELATIONS),
    ("DatasetUseIn", "use", DATASET_USES),
]


@pytest.mark.parametrize(("model", "field", "values"), FIELDS,
                         ids=[f"{model}.{field}" for model, field, _ in FIELDS])
def test_each_field_is_an_enum_in_the_openapi_schema(
    spec: Spec, model: str, field: str, values: Words
) -> None:
    schema = spec["components"]["schemas"][model]["properties"][field]
    assert enum_in(spec, schema) == words(values)


@pytest.mark.parametrize(
    ("path", "parameter", "values"),
    [("/api/v1/models", "status", Status), ("/api/v1/artifacts/{ref}", "kind", Kind)],
)
def test_query_parameters_are_enums_in_the_openapi_schema(
    spec: Spec, path: str, parameter: str, values: type[StrEnum]
) -> None:
    (schema,) = [p["schema"] for p in spec["paths"][path]["get"]["parameters"]
                 if p["name"] == parameter]
    assert enum_in(spec, schema) == words(values)


def test_scan_provenance_moved_but_is_one_class() -> None:
    assert ScanProvenance is DeclaredProvenance


def test_json_carries_the_plain_words() -> None:
    artifact = ArtifactPublic.model_validate({
        "ref": "a@1", "kind": "dataset", "name": "a", "version": "1", "finding": "unscanned",
        "status": "infected", "parents": [{"ref": "b@1", "kind": "model", "relation": "merge"}],
        "created_at": "2026-01-01T00:00:00Z", "created_by": "me",
    })
    assert artifact.kind is Kind.DATASET
    assert artifact.parents[0].relation is Relation.MERGE
    dumped = artifact.model_dump(mode="json")
    assert (dumped["kind"], dumped["finding"], dumped["status"]) == (
        "dataset", "unscanned", "infected")
    assert dumped["parents"] == [{"ref": "b@1", "kind": "model", "relation": "merge"}]
    assert type(dumped["kind"]) is str


# --- a wrong word at the API: a 422 problem naming the valid ones ---------------------------


@pytest.fixture
def http(engine: Engine, database_url: str) -> Iterator[httpx.Client]:
    """An admin client of the app served by uvicorn on this test's database."""
    token = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN)).create_token(
        user="root", role=Role.ADMIN).token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url, httpx.Client(
        base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    ) as client:
        yield client


def quoted(values: Words) -> list[str]:
    """The words as a usage error quotes them."""
    return [f"'{word}'" for word in words(values)]


def test_wrong_words_are_422_problems_listing_the_choices(http: httpx.Client) -> None:
    answers: list[tuple[httpx.Response, str, Words]] = [
        (http.get("/models", params={"status": "bogus"}), "query.status", Status),
        (http.get("/artifacts/a@1", params={"kind": "image"}), "query.kind", Kind),
        (http.post("/models", json=model_body("m", relation="trained_on")), "body.relation",
         MODEL_RELATIONS),
        (http.post("/models", json=model_body("m", datasets=[{"ref": "d@1", "use": "merge"}])),
         "body.datasets.0.use", DATASET_USES),
        (http.post("/decisions", json={"ref": "a@1", "team": "t", "verdict": "maybe",
                                       "reason": "r"}), "body.verdict", DecisionVerdict),
    ]
    for response, where, values in answers:
        detail = assert_problem(response, 422, "invalid-request")["detail"]
        assert detail.startswith(where + ":"), detail
        assert all(word in detail for word in quoted(values)), detail


def test_right_words_in_any_spelling_the_enum_takes(http: httpx.Client) -> None:
    created = http.post("/models", json=model_body("m"))
    assert created.status_code == 201, created.text
    assert [m["ref"] for m in http.get("/models", params={"status": "clean"}).json()] == ["m@1"]
    assert http.get("/artifacts/m@1", params={"kind": "model"}).json()["kind"] == "model"


# --- a wrong word on the CLI: a usage error (exit 2) naming the valid ones ------------------


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``mbom`` on a fresh SQLite registry under MBOM_HOME."""
    local_registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}").engine.dispose()
    return Cli(cli_env(tmp_path), tmp_path)


def test_wrong_words_on_the_cli_are_usage_errors_listing_the_choices(
    cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"weights")
    results = cli.many(
        ["register", tmp_path / "model", "--name", "m", "--version", "1",
         "--relation", "trained_on", 2],
        ["link", "m@1", "--parent", "b@1", "--relation", "grafted", 2],
        ["models", "--status", "bogus", 2],
    )
    expected: list[tuple[str, Words]] = [
        ("--relation", MODEL_RELATIONS), ("--relation", MODEL_RELATIONS), ("--status", Status)]
    for result, (option, values) in zip(results, expected, strict=True):
        assert f"Invalid value for '{option}'" in result.err, result.err
        assert all(word in result.err for word in quoted(values)), result.err
        assert "Traceback" not in result.err
    assert "'trained_on'" not in results[0].err.partition("is not one of")[2]


def test_relation_choices_ignore_case_on_the_cli(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "w.bin").write_bytes(b"base")
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "w.bin").write_bytes(b"child")
    cli("register", tmp_path / "base", "--name", "b", "--version", "1", "--skip-scan")
    child = cli("register", tmp_path / "child", "--name", "c", "--version", "1", "--skip-scan",
                "--parent", "b@1", "--relation", "Quantized", "--json").json()
    assert child["parents"] == [{"ref": "b@1", "kind": "model", "relation": "quantized"}]
