# ruff: noqa: F811  (the served/store fixtures are imported from test_artifact_store)
"""Attacks on the artifact store's promises: each test fails while its hole is open.

Every test drives a real ``uvicorn`` server over HTTP (the ``served`` fixture of
``test_artifact_store``). A passing test is a promise kept; a failing one names
the hole in its docstring.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from registry.errors import BlobCorrupt, RemoteError
from registry.identity import Role
from registry.store import BlobStore
from tests.registry.test_artifact_store import (  # noqa: F401  (fixtures)
    Served,
    clean_model,
    corrupt,
    served,
    store,
)


def _entry(path: str, data: bytes) -> dict[str, object]:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _upload(http: httpx.Client, data: bytes) -> None:
    answer = http.post("/blobs", content=data)
    assert answer.status_code == 201, answer.text


def _register(
    http: httpx.Client, name: str, entries: list[dict[str, object]], **extra: object
) -> httpx.Response:
    body = {"name": name, "version": "1", "manifest": {"entries": entries}, **extra}
    return http.post("/models/stored", json=body)


# --- who may make the registry work ----------------------------------------------------------


@pytest.mark.parametrize("role", [Role.READER, "other-team"])
def test_a_registration_it_may_not_make_is_refused_before_any_scan(
    served: Served, role: Role | str
) -> None:
    """Hole: /models/stored materializes and scans (minutes of sandboxed work for a
    profiled model) before asking whether the actor may register at all. A reader, or
    a publisher of another team, reaches the scanner: here the file layout makes the
    materialization crash, so the refusal that should be a 403 is a 500."""
    data = b"weights"
    with served.http() as admin:
        _upload(admin, data)
    if role == "other-team":
        served.bootstrap.create_team(name="red")
        served.bootstrap.create_team(name="blue")
        token = served.token("pat", Role.PUBLISHER, team="red")
        extra: dict[str, object] = {"team": "blue"}
    else:
        token = served.token("rita", Role.READER)
        extra = {}
    with served.http(token) as http:
        answer = _register(http, "m", [_entry("a", data), _entry("a/b", data)], **extra)
    assert answer.status_code == 403, answer.text


def test_a_reader_cannot_make_the_registry_scan_an_hf_snapshot(served: Served) -> None:
    """Hole: /models/hf/stored, like /models/stored, scans before admit_hf's import
    authorizes (IMPORT_HF is checked inside hf_import.import_hf, after the scan)."""
    data = b"weights"
    with served.http() as admin:
        _upload(admin, data)
    with served.http(served.token("rita", Role.READER)) as http:
        answer = http.post(
            "/models/hf/stored",
            json={
                "plan": {"repo_id": "acme/x", "version": "1"},
                "manifest": {"entries": [_entry("a", data), _entry("a/b", data)]},
            },
        )
    assert answer.status_code == 403, answer.text


def test_a_file_and_a_directory_of_the_same_name_are_refused_cleanly(served: Served) -> None:
    """Hole: manifest paths 'a' and 'a/b' both pass validation; materializing them for
    the scan raises FileExistsError, an unexpected 500, instead of a 400 problem."""
    data = b"weights"
    with served.http() as http:
        _upload(http, data)
        answer = _register(http, "m", [_entry("a", data), _entry("a/b", data)])
        assert answer.status_code == 400, answer.text
        assert http.get("/artifacts/m@1").status_code == 404


# --- corrupt blobs ----------------------------------------------------------------------------


def _registered_clean(served: Served, tmp_path: Path) -> tuple[str, bytes]:
    """Register a clean model through the server; the digest and bytes of its weights."""
    model = clean_model(tmp_path / "m")
    remote = served.remote()
    manifest = remote.store_files(model)
    remote.admit_model(manifest=manifest, name="m", version="1")
    weights = next(e for e in manifest.entries if e.path == "model.safetensors")
    return f"sha256:{weights.sha256}", (model / "model.safetensors").read_bytes()


def test_the_server_never_streams_a_corrupt_blob_as_a_success(
    served: Served, store: BlobStore, tmp_path: Path
) -> None:
    """Hole: GET /pulls/{id}/files/{i} streams ``store.open`` (unverified) with a 200 and
    the full Content-Length: a corrupt blob reaches any HTTP client as a complete,
    successful download (copy_verified, which holds back the last chunk, is unused)."""
    digest, _ = _registered_clean(served, tmp_path)
    corrupt(store, digest)
    with served.http() as http:
        ticket = http.post("/models/m@1/pulls", json={}).json()
        index = next(i for i, f in enumerate(ticket["files"]) if f["path"] == "model.safetensors")
        size = ticket["files"][index]["size"]
        try:
            answer = http.get(f"/pulls/{ticket['id']}/files/{index}")
        except httpx.HTTPError:
            return  # cut short: the client sees an error, not a file
    complete = answer.status_code == 200 and len(answer.content) == size
    assert not complete, "a corrupt blob was served whole, with 200"


def test_admission_of_a_corrupt_local_blob_is_an_error(
    served: Served, store: BlobStore, database_url: str, engine: Engine
) -> None:
    """Hole (local store): materialized() hard-linked the blob file without hashing it, so
    the registry scanned, registered and vouched (clean) for bytes whose digest is not the
    one it records. A blob uploaded minutes ago was hashed on the way in; one recorded
    earlier (content shared with older versions, which may have rotted since) is
    re-hashed before admission reads it."""
    if store.local_path is None or database_url.startswith("postgresql"):
        pytest.skip("the hard-link path is the local store's")
    data = b"x" * 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with served.http() as http:
        _upload(http, data)
        with engine.begin() as conn:  # uploaded long ago (an earlier version's file)
            conn.execute(
                text("UPDATE blob SET created_at = :old WHERE digest = :d"),
                {"old": datetime(2020, 1, 1, tzinfo=UTC), "d": digest},
            )
        corrupt(store, digest)
        answer = _register(http, "m", [_entry("w.bin", data)])
        assert answer.status_code >= 400, answer.text
        assert http.get("/artifacts/m@1").status_code == 404


def test_uploading_the_true_bytes_again_repairs_a_corrupt_blob(
    served: Served, store: BlobStore
) -> None:
    """Hole: LocalBlobStore._publish keeps a present blob 'of that size' as is, so the
    upload of the right bytes answers 201 (durable, it says) while the store still holds
    the corrupt ones: the remedy `store verify` implies does nothing."""
    data = b"y" * 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with served.http() as http:
        _upload(http, data)
        corrupt(store, digest)
        answer = http.post("/blobs", content=data)
        assert answer.status_code == 201
        assert answer.json()["digest"] == digest
    assert store.check(digest).state == "ok"


# --- the client's pull destination ---------------------------------------------------------


def test_a_path_named_like_a_partial_file_never_swaps_pulled_contents(
    served: Served, tmp_path: Path
) -> None:
    """Hole: write_verified writes FILE to 'FILE.mbom-partial' and renames it when its own
    hash matched. A version listing both 'w.bin' and 'w.bin.mbom-partial' (a valid
    manifest) makes the parallel pull rename the small file over the big one's partial
    path: the pull succeeds, 'w.bin' holds the other file's bytes (a silent wrong copy)."""
    big = os.urandom(48 * 2**20)
    small = b"tiny but vetted"
    with served.http() as http:
        _upload(http, big)
        _upload(http, small)
        answer = _register(http, "m", [_entry("w.bin", big), _entry("w.bin.mbom-partial", small)])
        assert answer.status_code == 201, answer.text
    dest = tmp_path / "out"
    try:
        served.remote().pull("m@1", dest)
    except Exception:  # refused or failed: an error, not a silent copy
        return
    got = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert got.get("w.bin") == big, "w.bin was swapped for another file"
    assert got.get("w.bin.mbom-partial") == small


def test_a_failed_pull_leaves_nothing_half_written(
    served: Served, store: BlobStore, tmp_path: Path
) -> None:
    """Hole (promise: nothing half-written on failure): a pull failing on one corrupt
    file leaves the files fetched before it in DEST, a partial model that looks usable."""
    digest, _ = _registered_clean(served, tmp_path)
    corrupt(store, digest)
    dest = tmp_path / "out"
    with pytest.raises((BlobCorrupt, RemoteError)):  # the server cuts the download short
        served.remote().pull("m@1", dest)
    leftovers = sorted(p.name for p in dest.rglob("*") if p.is_file()) if dest.exists() else []
    assert leftovers == []


# --- pull gating --------------------------------------------------------------------------------


def test_a_block_after_the_ticket_stops_the_download(served: Served, tmp_path: Path) -> None:
    """Hole: pulled_file re-checks taint only; a team block (or revoked approval) decided
    after the ticket was issued still lets the team download for 6 hours, unaudited."""
    served.bootstrap.create_team(name="fraud")
    _registered_clean(served, tmp_path)
    with served.http() as http:
        ticket = http.post("/models/m@1/pulls", json={"team": "fraud"})
        assert ticket.status_code == 201, ticket.text
        served.bootstrap.decide(ref="m@1", team="fraud", verdict="block", reason="licence")
        answer = http.get(f"/pulls/{ticket.json()['id']}/files/0")
        assert answer.status_code == 403


def test_a_team_scoped_reader_cannot_pull_for_another_team_or_none(
    served: Served, tmp_path: Path
) -> None:
    """Held: the pull is TEAM-scoped, so a token of team red names red."""
    served.bootstrap.create_team(name="red")
    served.bootstrap.create_team(name="blue")
    _registered_clean(served, tmp_path)
    with served.http(served.token("rita", Role.READER, team="red")) as http:
        assert http.post("/models/m@1/pulls", json={"team": "blue"}).status_code == 403
        assert http.post("/models/m@1/pulls", json={}).status_code == 403
        assert http.post("/models/m@1/pulls", json={"team": "red"}).status_code == 201


def test_a_reader_uploads_nothing_and_runs_no_replay(served: Served) -> None:
    """Held: uploads need a publisher, replays an admin (checked before any work)."""
    token = served.token("rita", Role.READER)
    with served.http(token) as http:
        assert http.post("/blobs", content=b"abc").status_code == 403
        assert http.post("/models/m@1/replays/run", json={}).status_code == 403


def test_an_upload_larger_than_the_limit_is_refused_chunked_or_not(
    engine: Engine, database_url: str, store: BlobStore
) -> None:
    """Held: MBOM_MAX_UPLOAD_BYTES applies to a chunked body (no Content-Length)."""
    from registry.api import create_app
    from registry.client import LocalRegistry
    from registry.identity import Actor
    from registry.settings import Settings
    from tests.registry.live_server import serve_in_thread

    token = LocalRegistry(engine, Actor("setup", Role.ADMIN)).create_token(
        user="root", role=Role.ADMIN
    ).token
    settings = Settings(database_url=database_url, max_upload_bytes=1024)
    app = create_app(settings, engine=engine, store=store)

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"z" * 512

    with serve_in_thread(app) as base_url, httpx.Client(
        base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        chunked = http.post("/blobs", content=chunks())
        assert chunked.status_code in (400, 413), chunked.text
        assert chunked.json()["code"] == "limit-exceeded"
        announced = http.post("/blobs", content=b"z" * 2048)
        assert announced.status_code in (400, 413), announced.text
    assert list(store.digests()) == []


def test_a_metadata_only_version_is_never_pullable(served: Served) -> None:
    """Held: a /models registration (client scan) is metadata-only, so no pull."""
    data = b"abc"
    with served.http() as http:
        _upload(http, data)  # the bytes are even held
        answer = http.post(
            "/models",
            json={"name": "meta", "version": "1", "manifest": {"entries": [_entry("w.bin", data)]}},
        )
        assert answer.status_code == 201, answer.text
        assert http.post("/models/meta@1/pulls", json={}).status_code == 404


def test_a_duplicated_path_is_refused(served: Served) -> None:
    """Held: the same path twice is a 400, nothing recorded."""
    with served.http() as http:
        _upload(http, b"one")
        _upload(http, b"two")
        answer = _register(http, "m", [_entry("w.bin", b"one"), _entry("w.bin", b"two")])
        assert answer.status_code in (400, 422), answer.text
        assert http.get("/artifacts/m@1").status_code == 404
