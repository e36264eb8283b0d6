"""Shared fixtures: a fresh registry per test, on SQLite and on PostgreSQL.

PostgreSQL tests run when ``MBOM_TEST_POSTGRES_URL`` names a server URL
(``postgresql+psycopg://user@host/postgres``); each test gets its own database
cloned from a migrated template. With ``MBOM_REQUIRE_POSTGRES=1`` (CI) a
missing server fails the run instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from registry.audit_key import KEY_FILENAME, AuditKeyFile
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.manifest import Manifest, ManifestEntry
from registry.service.audit import bind_key
from registry.store import BlobStore, open_store

PG_URL = os.environ.get("MBOM_TEST_POSTGRES_URL")
# Unique per test run, so that concurrent runs (xdist, several checkouts) never collide.
TEMPLATE = f"mbom_test_template_{os.getpid()}"


def _admin_engine() -> Engine:
    assert PG_URL
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database the per-test databases are cloned from."""
    if not PG_URL:
        if os.environ.get("MBOM_REQUIRE_POSTGRES") == "1":
            pytest.fail("MBOM_REQUIRE_POSTGRES=1 but MBOM_TEST_POSTGRES_URL is not set")
        pytest.skip("set MBOM_TEST_POSTGRES_URL to run the PostgreSQL tests")
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    url = make_url(PG_URL).set(database=TEMPLATE).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield TEMPLATE
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def audit_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditKeyFile:
    """This test's audit key file (``MBOM_AUDIT_KEY_FILE`` too, for the CLIs it starts)."""
    path = tmp_path / KEY_FILENAME
    monkeypatch.setenv("MBOM_AUDIT_KEY_FILE", str(path))
    return AuditKeyFile(path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty, migrated registry database: SQLite file, then PostgreSQL."""
    request.getfixturevalue("audit_key_file")  # the CLIs a test starts share its key
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"mbom_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def engine(database_url: str, audit_key_file: AuditKeyFile) -> Iterator[Engine]:
    """An engine on a fresh, migrated registry, keying its audit log with this test's key."""
    created = bind_key(make_engine(database_url), audit_key_file)
    migrate(created)
    yield created
    created.dispose()


@pytest.fixture
def admin() -> Actor:
    """An admin actor."""
    return Actor(user="alice", role=Role.ADMIN)


@pytest.fixture
def reg(engine: Engine, admin: Actor, tmp_path: Path) -> LocalRegistry:
    """The registry as an admin sees it: each call is one unit of work."""
    return LocalRegistry(engine, admin, store=open_store(str(tmp_path / "artifact-store")))


def fake_manifest(*contents: str) -> Manifest:
    """A manifest for files whose bytes are the given strings (no disk needed)."""
    return Manifest(
        tuple(
            ManifestEntry(f"file{i}.bin", len(c.encode()), hashlib.sha256(c.encode()).hexdigest())
            for i, c in enumerate(contents)
        )
    )


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a model directory with the given files (name -> bytes or text)."""

    def make(name: str, files: dict[str, bytes | str] | None = None) -> Path:
        root = tmp_path / "models" / name
        for rel, data in (files or {"weights.bin": f"weights of {name}"}).items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)
        return root

    return make


@pytest.fixture(autouse=True)
def _own_artifact_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's registries keep files in its own store, never in the user's data directory."""
    if not os.environ.get("MBOM_STORE_URL"):
        monkeypatch.setenv("MBOM_STORE_URL", str(tmp_path / "artifact-store"))


S3_URL = os.environ.get("MBOM_TEST_S3_URL")


@pytest.fixture
def s3_url() -> str:
    """The test bucket's URL (``s3://bucket/prefix``), from ``bash scripts/s3.sh``.

    Skips without ``MBOM_TEST_S3_URL``; with ``MBOM_REQUIRE_S3=1`` (CI) that fails instead.
    """
    if not S3_URL:
        if os.environ.get("MBOM_REQUIRE_S3") == "1":
            pytest.fail("MBOM_REQUIRE_S3=1 but MBOM_TEST_S3_URL is not set")
        pytest.skip('set MBOM_TEST_S3_URL (eval "$(bash scripts/s3.sh)") to run the S3 tests')
    return S3_URL.rstrip("/")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """An empty artifact store: a local directory, then a fresh prefix of the S3 test bucket."""
    if request.param == "local":
        yield open_store(str(tmp_path / "blobs"))
        return
    url = f"{request.getfixturevalue('s3_url')}/{uuid.uuid4().hex[:12]}"
    store = open_store(url, spool_dir=tmp_path / "spool")
    yield store
    for digest in list(store.digests()):
        store.delete(digest)
