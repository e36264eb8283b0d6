"""The registry holds the models it vets: stored files, registry-side admission, pulls.

Each scenario runs twice: on SQLite with a local store, and on PostgreSQL with
the S3 server (``bash scripts/s3.sh``); embedded (:class:`LocalRegistry`) and,
where the point is the API, through a real ``uvicorn`` server with
:class:`RemoteRegistry` or raw HTTP.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import safetensors.numpy
from sqlalchemy import Engine, text

from registry.api import create_app
from registry.client import LocalRegistry, Registry, RemoteRegistry
from registry.errors import (
    AlreadyExists,
    BlobCorrupt,
    FilesNotStored,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from registry.identity import Actor, Role
from registry.manifest import hash_tree
from registry.service.stored import collect_garbage, verify_store
from registry.settings import Settings
from registry.store import BlobStore, LocalBlobStore, open_store
from scanning.static import scan_path
from tests.conftest import fake_manifest
from tests.registry.live_server import mbom_serve, serve_in_thread
from tests.registry.test_cli import MBOM, cli_env


class Payload:
    """Pickles to a call of os.system (never unpickled here)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo mbom-test-pwned",))


def clean_model(root: Path, seed: int = 0) -> Path:
    """A small safetensors model with a config in a subdirectory."""
    (root / "sub").mkdir(parents=True)
    weights = {"w": np.full((4, 4), seed, dtype=np.float32)}
    (root / "model.safetensors").write_bytes(safetensors.numpy.save(weights))
    (root / "sub" / "config.json").write_text('{"architecture": "tiny"}')
    return root


def evil_model(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pytorch_model.bin").write_bytes(pickle.dumps({"state": Payload()}, protocol=4))
    return root


def same_tree(left: Path, right: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return files(left) == files(right)


@pytest.fixture
def store(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    """SQLite: a local directory; PostgreSQL: a fresh prefix of the S3 test bucket."""
    if not database_url.startswith("postgresql"):
        yield open_store(str(tmp_path / "artifact-store"))
        return
    url = f"{request.getfixturevalue('s3_url')}/{uuid.uuid4().hex[:12]}"
    s3 = open_store(url, spool_dir=tmp_path / "spool")
    yield s3
    for digest in list(s3.digests()):
        s3.delete(digest)


@pytest.fixture
def reg(engine: Engine, store: BlobStore) -> LocalRegistry:
    """The embedded registry as an admin, on this test's store."""
    return LocalRegistry(engine, Actor("alice", Role.ADMIN), store=store)


def corrupt(store: BlobStore, digest: str) -> None:
    """Change a stored blob's last byte behind the registry's back (a failing disk, an intruder)."""
    with store.open(digest) as stream:
        data = stream.read()
    damaged = data[:-1] + bytes([data[-1] ^ 0xFF])
    local = store.local_path(digest)
    if local is not None:
        os.chmod(local, 0o644)
        local.write_bytes(damaged)
        return
    from registry.store import S3BlobStore

    assert isinstance(store, S3BlobStore)
    store._client.put_object(Bucket=store.bucket, Key=store.key(digest), Body=damaged)


@dataclass
class Served:
    """A running server on this test's database and store, with an admin client."""

    base_url: str
    admin_token: str
    bootstrap: LocalRegistry
    clients: list[RemoteRegistry] = field(default_factory=list)

    def remote(self, token: str | None = None) -> RemoteRegistry:
        client = RemoteRegistry(self.base_url, token or self.admin_token)
        self.clients.append(client)
        return client

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=60)

    def token(self, user: str, role: Role, team: str | None = None) -> str:
        made = self.bootstrap.create_token(user=user, role=role, team=team)
        assert made.token
        return str(made.token)


@pytest.fixture
def served(engine: Engine, database_url: str, store: BlobStore) -> Iterator[Served]:
    bootstrap = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN), store=store)
    token = bootstrap.create_token(user="root", role=Role.ADMIN).token
    app = create_app(Settings(database_url=database_url), engine=engine, store=store)
    with serve_in_thread(app) as base_url:
        running = Served(base_url, token, bootstrap)
        yield running
        for client in running.clients:
            client.close()


@pytest.mark.parametrize("side", ["embedded", "server"])
def test_both_registries_store_admit_and_pull_the_same_way(
    side: str, reg: LocalRegistry, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registry: Registry = reg if side == "embedded" else request.getfixturevalue("served").remote()
    model = clean_model(tmp_path / "model")
    manifest = registry.store_files(model)
    assert manifest == hash_tree(model)  # what the registry received is what is on disk
    result = registry.admit_model(manifest=manifest, name="acme/base", version="1.0")
    assert (result.stored, result.finding, result.status) == (True, "clean", "clean")
    status = registry.status_report("acme/base@1.0")
    assert status.scan["provenance"] == "registry"
    ticket = registry.pull("acme/base@1.0", tmp_path / "out")
    assert same_tree(model, tmp_path / "out")
    assert ticket.digest == manifest.digest
    assert [p.user for p in registry.pulls_of("acme/base@1.0")] == [ticket_user(side)]


def ticket_user(side: str) -> str:
    return "alice" if side == "embedded" else "root"


def test_a_file_shared_by_versions_is_stored_once(
    reg: LocalRegistry, store: BlobStore, tmp_path: Path
) -> None:
    first = clean_model(tmp_path / "a", seed=1)
    second = clean_model(tmp_path / "b", seed=2)  # same config.json, other weights
    for name, path in (("a", first), ("b", second)):
        reg.admit_model(manifest=reg.store_files(path), name=name, version="1")
    assert len(list(store.digests())) == 3


def test_the_server_scans_what_it_holds_whatever_the_client_says(
    served: Served, tmp_path: Path
) -> None:
    evil = evil_model(tmp_path / "evil")
    data = (evil / "pytorch_model.bin").read_bytes()
    with served.http() as http:
        uploaded = http.post("/blobs", content=data)
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        entry = {
            "path": "pytorch_model.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        # No findings sent (a client that skips mbom): the registry's own scan decides.
        answer = http.post(
            "/models/stored",
            json={"name": "evil", "version": "1", "manifest": {"entries": [entry]}},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "compromised"
        # A report smuggled into the stored route is refused, not believed.
        smuggled = http.post(
            "/models/stored",
            json={
                "name": "evil",
                "version": "2",
                "manifest": {"entries": [entry]},
                "scan": {"verdict": "clean"},
            },
        )
        assert smuggled.status_code == 422
        # Metadata-only with a forged clean report: recorded, but never clean.
        forged = scan_path(clean_model(tmp_path / "c")).to_json()
        entry2 = {"path": "w.bin", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
        meta = http.post(
            "/models",
            json={
                "name": "meta",
                "version": "1",
                "scan": forged,
                "manifest": {"entries": [entry2]},
            },
        )
        assert meta.status_code == 201, meta.text
        assert (meta.json()["finding"], meta.json()["stored"]) == ("unscanned", False)


def test_an_upload_that_is_not_what_it_claims_stores_nothing(
    served: Served, store: BlobStore
) -> None:
    with served.http() as http:
        wrong = http.post(
            "/blobs", content=b"payload", headers={"X-Mbom-Sha256": "sha256:" + "0" * 64}
        )
        assert wrong.status_code == 400
        assert wrong.json()["code"] == "blob-mismatch"
        hostile = http.post("/blobs", content=b"payload", headers={"X-Mbom-Sha256": "../../x"})
        assert hostile.status_code == 400
    assert list(store.digests()) == []


def test_a_registration_naming_files_never_uploaded_is_refused(served: Served) -> None:
    entry = {"path": "w.bin", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    with served.http() as http:
        answer = http.post(
            "/models/stored", json={"name": "m", "version": "1", "manifest": {"entries": [entry]}}
        )
        assert answer.status_code == 409
        assert answer.json()["code"] == "files-not-stored"
        assert http.get("/artifacts/m@1").status_code == 404


def test_a_manifest_lying_about_a_size_is_refused(served: Served) -> None:
    with served.http() as http:
        assert http.post("/blobs", content=b"abc").status_code == 201
        entry = {"path": "w.bin", "size": 4, "sha256": hashlib.sha256(b"abc").hexdigest()}
        answer = http.post(
            "/models/stored", json={"name": "m", "version": "1", "manifest": {"entries": [entry]}}
        )
        assert answer.status_code == 400, answer.text
        assert http.get("/artifacts/m@1").status_code == 404


def test_readers_pull_but_only_publishers_upload(served: Served, tmp_path: Path) -> None:
    reader = served.token("rita", Role.READER)
    served.remote().admit_model(
        manifest=served.remote().store_files(clean_model(tmp_path / "m")), name="m", version="1"
    )
    with pytest.raises(PermissionDenied):
        served.remote(reader).store_files(clean_model(tmp_path / "n", seed=3))
    served.remote(reader).pull("m@1", tmp_path / "out")
    assert same_tree(tmp_path / "m", tmp_path / "out")


def test_pulls_are_refused_by_the_teams_rules_and_an_override_is_audited(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    reg.create_team(name="fraud", require_approval=True)
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "b")), name="base", version="1")
    with pytest.raises(PolicyViolation, match="not approved for team fraud"):
        reg.pull("base@1", tmp_path / "o1", team="fraud")
    reg.decide(ref="base@1", team="fraud", verdict="block", reason="licence")
    with pytest.raises(PolicyViolation, match="blocked"):
        reg.pull("base@1", tmp_path / "o2", team="fraud")
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())
    reg.pull("base@1", tmp_path / "o3", team="fraud", override="incident drill")
    events = [e for e in reg.list_events() if e.operation == "policy.override"]
    assert events[-1].details["reason"] == "incident drill"
    reg.flag("base@1", reason="advisory 42")
    with pytest.raises(PolicyViolation, match="compromised"):
        reg.pull("base@1", tmp_path / "o4")


def test_who_pulled_a_flagged_base_or_its_descendants_is_in_the_blast_radius(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    reg.create_team(name="fraud")
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "b")), name="base", version="1")
    reg.admit_model(
        manifest=reg.store_files(clean_model(tmp_path / "c", seed=5)),
        name="child",
        version="1",
        parents=["base@1"],
    )
    reg.pull("child@1", tmp_path / "out", team="fraud")
    reg.flag("base@1", reason="backdoor advisory")
    radius = reg.blast_radius("base@1")
    assert (radius.deployments, radius.pulls) == (0, 1)
    assert [(p.ref, p.user, p.team, p.status) for p in radius.pulled_by] == [
        ("child@1", "alice", "fraud", "infected")
    ]
    assert reg.status_report("base@1").pulls == 1


def test_a_corrupt_blob_fails_the_pull_and_store_verify_names_the_version(
    reg: LocalRegistry, store: BlobStore, engine: Engine, tmp_path: Path
) -> None:
    model = clean_model(tmp_path / "m")
    manifest = reg.store_files(model)
    reg.admit_model(manifest=manifest, name="m", version="1")
    weights = next(e for e in manifest.entries if e.path == "model.safetensors")
    corrupt(store, f"sha256:{weights.sha256}")
    with pytest.raises(BlobCorrupt):
        reg.pull("m@1", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written, not even the good file
    assert [p.name for p in tmp_path.iterdir() if ".mbom-" in p.name] == []
    from registry.db import unit_of_work

    with unit_of_work(engine) as session:
        report = verify_store(session, store=store)
    assert [(p.state, p.versions) for p in report.problems] == [("corrupt", ["m@1"])]


def test_gc_removes_only_unreferenced_blobs_and_a_later_claim_is_refused(
    reg: LocalRegistry, store: BlobStore, engine: Engine, tmp_path: Path
) -> None:
    kept = reg.store_files(clean_model(tmp_path / "kept"))
    reg.admit_model(manifest=kept, name="kept", version="1")
    orphan = reg.store_files(clean_model(tmp_path / "orphan", seed=9))  # never registered
    fresh = collect_garbage(engine, actor=reg.actor, store=store)  # within the grace period
    assert fresh.removed == []
    report = collect_garbage(engine, actor=reg.actor, store=store, grace=timedelta(0))
    weights = next(e for e in orphan.entries if e.path == "model.safetensors")
    assert report.removed == [f"sha256:{weights.sha256}"]  # config.json is shared with kept@1
    assert not store.exists(f"sha256:{weights.sha256}")
    with pytest.raises(FilesNotStored):
        reg.admit_model(manifest=orphan, name="orphan", version="1")
    reg.pull("kept@1", tmp_path / "out")


def test_metadata_only_versions_cannot_be_pulled_or_used_by_a_strict_team(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    model = clean_model(tmp_path / "m")
    reg.register_model(name="meta", version="1", manifest=hash_tree(model))
    assert reg.show("meta@1").stored is False
    with pytest.raises(NotFound, match="metadata-only"):
        reg.pull("meta@1", tmp_path / "out")
    reg.create_team(name="strict", require_registry_scan=True)
    with pytest.raises(PolicyViolation, match="metadata-only"):
        reg.admit_model(
            manifest=reg.store_files(clean_model(tmp_path / "c", seed=4)),
            name="child",
            version="1",
            parents=["meta@1"],
            team="strict",
        )


def test_only_the_puller_downloads_and_a_flag_stops_a_pull_in_progress(
    served: Served, tmp_path: Path
) -> None:
    remote = served.remote()
    remote.admit_model(
        manifest=remote.store_files(clean_model(tmp_path / "m")), name="m", version="1"
    )
    with served.http() as http:
        ticket = http.post("/models/m@1/pulls", json={}).json()
        other = served.token("mallory", Role.ADMIN)
        with served.http(other) as stranger:
            assert stranger.get(f"/pulls/{ticket['id']}/files/0").status_code == 404
        assert http.get(f"/pulls/{ticket['id']}/files/0").status_code == 200
        remote.flag("m@1", reason="advisory")
        assert http.get(f"/pulls/{ticket['id']}/files/0").status_code == 403


def test_existing_versions_become_metadata_only_on_upgrade(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    import registry
    from registry.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    migrations = Path(registry.__file__).parent / "migrations"
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0008")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO artifact (kind, name, version, finding, status, placeholder, "
                "created_at, created_by) VALUES ('model', 'old', '1', 'clean', 'clean', 0, "
                "'2026-01-01 00:00:00', 'x')"
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT stored FROM artifact")).scalar_one() in (0, False)
    engine.dispose()


def test_a_bad_pull_destination_writes_nothing(reg: LocalRegistry, tmp_path: Path) -> None:
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "m")), name="m", version="1")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not an empty directory"):
        reg.pull("m@1", occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    assert reg.pulls_of("m@1") == []


def test_an_upload_cut_half_way_stores_nothing(
    served: Served, store: BlobStore, tmp_path: Path
) -> None:
    """A client that announces 1 MiB, sends 10 bytes and hangs up leaves no blob behind."""
    host, port = served.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(
            b"POST /api/v1/blobs HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {served.admin_token}\r\n".encode()
            + b"Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
            + b"0123456789"
        )
    deadline = time.monotonic() + 10
    spool = store.temp_dir if isinstance(store, LocalBlobStore) else tmp_path / "spool"
    time.sleep(0.5)
    while time.monotonic() < deadline and spool.exists() and any(spool.iterdir()):
        time.sleep(0.1)  # the server notices the hang-up, then cleans up
    assert list(store.digests()) == []
    assert not spool.exists() or list(spool.iterdir()) == []
    with served.http() as http:  # and the server is still well
        assert http.post("/blobs", content=b"whole").status_code == 201


def test_a_second_upload_of_the_same_version_is_refused_and_stores_nothing_new(
    reg: LocalRegistry, store: BlobStore, tmp_path: Path
) -> None:
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "m")), name="m", version="1")
    before = sorted(store.digests())
    other = clean_model(tmp_path / "other", seed=7)
    with pytest.raises(AlreadyExists):
        reg.admit_model(manifest=reg.store_files(other), name="m", version="1")
    assert reg.show("m@1").digest == hash_tree(tmp_path / "m").digest
    # The other files' blobs stay unreferenced (store gc removes them); m@1 is unchanged.
    assert set(before) <= set(store.digests())


def test_a_server_killed_mid_upload_records_no_blob(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """kill -9 while a file streams in: after a restart nothing is recorded or visible."""
    setup = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    token = setup.create_token(user="ci", role=Role.ADMIN).token
    env = cli_env(tmp_path, MBOM_DATABASE_URL=database_url, MBOM_STORE_URL=str(tmp_path / "st"))

    def slow_body() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536
            time.sleep(0.05)

    with mbom_serve(MBOM, env, tmp_path / "serve.log") as server:
        killer = threading.Timer(0.8, lambda: os.kill(server.process.pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                f"{server.base_url}/api/v1/blobs",
                content=slow_body(),
                headers={"Authorization": f"Bearer {token}", "Content-Length": str(64 * 65536)},
                timeout=30,
            )
        killer.join()
    kept = open_store(str(tmp_path / "st"))
    assert list(kept.digests()) == []
    assert setup.list_artifacts() == []
    from sqlmodel import select

    from registry.db import unit_of_work
    from registry.tables import Blob

    with unit_of_work(engine) as session:
        assert session.exec(select(Blob)).all() == []
    # The partial upload's temp file is what `store gc` clears once it is old.
    report = collect_garbage(engine, actor=setup.actor, store=kept, grace=timedelta(0))
    assert report.removed == []


def test_the_cyclonedx_export_says_which_versions_the_registry_holds(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "s")), name="s", version="1")
    reg.register_model(name="m", version="1", manifest=hash_tree(clean_model(tmp_path / "m", 2)))
    for ref, held in (("s@1", "true"), ("m@1", "false")):
        document = reg.export_cyclonedx(ref)
        component = document["metadata"]["component"]
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties["mbom:stored"] == held, ref


def test_a_stored_hf_import_inherits_through_the_bases_its_card_names(
    reg: LocalRegistry, engine: Engine
) -> None:
    """The card's bases that are registered already are the parents admission inherits from."""
    from lineage import Relation
    from registry.db import unit_of_work
    from registry.hf import ImportPlan
    from registry.hf._refs import HubRef
    from registry.service.hf_import import registered_bases

    reg.register_model(name="acme/base", version="1", manifest=fake_manifest("b1"))
    reg.register_model(name="acme/base", version="2", manifest=fake_manifest("b2"))
    plan = ImportPlan(
        repo_id="acme/ft",
        version="1",
        bases=(HubRef(repo_id="acme/base"), HubRef(repo_id="unknown/base")),
        relation=Relation.MERGE,
        relation_basis="card",
    )
    with unit_of_work(engine) as session:
        assert registered_bases(session, plan) == ["acme/base@2"]  # the newest; none created
    assert [a.ref for a in reg.list_artifacts()] == ["acme/base@1", "acme/base@2"]
