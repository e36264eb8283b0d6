"""The artifact store's promises, on a local directory and on a real S3 server.

Every test runs on both backends through the ``blob_store`` fixture (S3 from
``bash scripts/s3.sh``); the S3 half needs ``MBOM_TEST_S3_URL``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from registry import errors
from registry.api.problems import status_for
from registry.client.remote import _PROBLEM_CLASSES
from registry.store import (
    CHUNK,
    BlobCheck,
    BlobInfo,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    copy_verified,
    open_store,
)
from registry.store._s3 import parse_s3_url, s3_client

MiB = 1024 * 1024


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Generated(io.RawIOBase):
    """``size`` bytes made on the fly, never all in memory; ``fail_at`` raises mid-way."""

    def __init__(self, size: int, *, fail_at: int | None = None) -> None:
        self.size = size
        self.fail_at = fail_at
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.fail_at is not None and self.position >= self.fail_at:
            raise OSError("the connection was reset")
        n = min(len(buffer), self.size - self.position)
        block = hashlib.sha256(self.position.to_bytes(8, "big")).digest()
        buffer[:n] = (block * (n // 32 + 1))[:n]
        self.position += n
        return n

    def digest(self) -> str:
        """The digest of all the bytes this stream makes (computed from a fresh copy)."""
        hasher = hashlib.sha256()
        copy = Generated(self.size)
        while chunk := copy.read(CHUNK):
            hasher.update(chunk)
        return f"sha256:{hasher.hexdigest()}"


def temp_files(store: BlobStore) -> list[Path]:
    """The files a store's uploads are spooled to until verified."""
    if isinstance(store, LocalBlobStore):
        return list(store.temp_dir.iterdir())
    assert isinstance(store, S3BlobStore)
    assert store.spool_dir is not None
    return list(store.spool_dir.iterdir())


def corrupt(store: BlobStore, digest: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind the store's back (bit rot, tampering)."""
    if isinstance(store, LocalBlobStore):
        path = store.local_path(digest)
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        s3_client().put_object(Bucket=store.bucket, Key=store.key(digest), Body=data)


def assert_nothing_stored(store: BlobStore, *digests: str) -> None:
    assert list(store.digests()) == []
    for digest in digests:
        assert not store.exists(digest)
    assert temp_files(store) == []


def test_round_trip(blob_store: BlobStore) -> None:
    data = b"the weights of a tiny model" * 1000
    info = blob_store.put(io.BytesIO(data))
    assert info == BlobInfo(digest_of(data), len(data))
    assert blob_store.exists(info.digest)
    assert blob_store.size(info.digest) == len(data)
    with blob_store.open(info.digest) as stream:
        assert stream.read() == data
    out = io.BytesIO()
    copy_verified(blob_store, info.digest, info.size, out)
    assert out.getvalue() == data
    assert list(blob_store.digests()) == [info.digest]
    assert blob_store.check(info.digest) == BlobCheck(info.digest, "ok", len(data))
    path = blob_store.local_path(info.digest)
    if isinstance(blob_store, LocalBlobStore):
        assert path is not None
        assert path.read_bytes() == data
    else:
        assert path is None
    blob_store.delete(info.digest)
    assert not blob_store.exists(info.digest)


def test_empty_blob(blob_store: BlobStore) -> None:
    info = blob_store.put(io.BytesIO(b""), expected=digest_of(b""), expected_size=0)
    assert info == BlobInfo(digest_of(b""), 0)
    out = io.BytesIO()
    copy_verified(blob_store, info.digest, 0, out)
    assert out.getvalue() == b""


def test_put_path_reports_progress(blob_store: BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    seen: list[int] = []
    info = blob_store.put_path(source, progress=seen.append)
    assert info == BlobInfo(digest_of(data), len(data))
    assert sum(seen) == len(data)
    assert all(0 < n <= CHUNK for n in seen)


def test_put_is_idempotent(blob_store: BlobStore) -> None:
    data = b"same bytes"
    first = blob_store.put(io.BytesIO(data))
    second = blob_store.put(io.BytesIO(data), expected=first.digest, expected_size=len(data))
    assert first == second
    assert list(blob_store.digests()) == [first.digest]
    assert temp_files(blob_store) == []


def test_concurrent_puts_of_the_same_content(blob_store: BlobStore) -> None:
    data = b"x" * (3 * CHUNK + 5)
    failures: list[BaseException] = []

    def upload() -> None:
        try:
            blob_store.put(io.BytesIO(data))
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert list(blob_store.digests()) == [digest_of(data)]
    assert blob_store.check(digest_of(data)).state == "ok"


def test_hash_mismatch_stores_nothing(blob_store: BlobStore) -> None:
    data = b"what arrived"
    announced = digest_of(b"what was announced")
    with pytest.raises(errors.BlobMismatch, match="does not match: expected sha256:") as raised:
        blob_store.put(io.BytesIO(data), expected=announced)
    assert raised.value.code == "blob-mismatch"
    assert raised.value.expected == announced
    assert raised.value.actual == digest_of(data)
    assert_nothing_stored(blob_store, digest_of(data), announced)


@pytest.mark.parametrize("announced", [5, 11, 13, 0])
def test_size_mismatch_stores_nothing(blob_store: BlobStore, announced: int) -> None:
    data = b"twelve bytes"
    stream = io.BytesIO(data)
    with pytest.raises(errors.BlobMismatch, match=f"expected {announced} bytes"):
        blob_store.put(stream, expected_size=announced)
    # A stream longer than announced is read only one byte past the announcement.
    assert stream.tell() == min(len(data), announced + 1)
    assert_nothing_stored(blob_store, digest_of(data))


def test_max_bytes_stops_reading_at_the_limit(blob_store: BlobStore) -> None:
    stream = Generated(10 * MiB)
    with pytest.raises(errors.LimitExceeded, match="more than 1048576 bytes"):
        blob_store.put(cast(BinaryIO, stream), max_bytes=MiB)  # unbuffered: reads are exact
    assert stream.position == MiB + 1
    assert_nothing_stored(blob_store)


def test_max_bytes_admits_exactly_the_limit(blob_store: BlobStore) -> None:
    data = b"z" * 1000
    assert blob_store.put(io.BytesIO(data), max_bytes=1000).size == 1000


def test_stream_failing_midway_leaves_nothing(blob_store: BlobStore) -> None:
    stream = Generated(8 * MiB, fail_at=3 * MiB)
    with pytest.raises(OSError, match="reset"):
        blob_store.put(io.BufferedReader(stream))
    assert_nothing_stored(blob_store)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"X" + data[1:], id="flipped"),
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: data + b"!", id="extended"),
    ],
)
def test_corrupt_blob_is_detected(blob_store: BlobStore, damage: Callable[[bytes], bytes]) -> None:
    data = b"0123456789" * (CHUNK // 5)  # two chunks and more
    info = blob_store.put(io.BytesIO(data))
    damaged = damage(data)
    corrupt(blob_store, info.digest, damaged)
    assert blob_store.check(info.digest) == BlobCheck(info.digest, "corrupt", len(damaged))
    out = io.BytesIO()
    with pytest.raises(errors.BlobCorrupt, match=f"blob {info.digest} .* is corrupt") as raised:
        copy_verified(blob_store, info.digest, info.size, out)
    assert raised.value.code == "blob-corrupt"
    # The last chunk is held back: a corrupt blob never reaches the reader complete.
    assert len(out.getvalue()) < info.size


def test_copy_verified_refuses_a_wrong_recorded_size(blob_store: BlobStore) -> None:
    data = b"recorded wrongly"
    info = blob_store.put(io.BytesIO(data))
    for size in (info.size - 1, info.size + 1):
        with pytest.raises(errors.BlobCorrupt, match="recorded"):
            copy_verified(blob_store, info.digest, size, io.BytesIO())


def test_missing_blob(blob_store: BlobStore) -> None:
    digest = digest_of(b"never stored")
    assert not blob_store.exists(digest)
    assert blob_store.size(digest) is None
    with pytest.raises(errors.BlobMissing, match="is not in the artifact store") as raised:
        blob_store.open(digest).__enter__()
    assert raised.value.code == "blob-missing"
    assert isinstance(raised.value, errors.NotFound)
    assert blob_store.check(digest) == BlobCheck(digest, "missing", None)
    with pytest.raises(errors.BlobMissing):
        copy_verified(blob_store, digest, 0, io.BytesIO())
    blob_store.delete(digest)
    if isinstance(blob_store, LocalBlobStore):
        with pytest.raises(errors.BlobMissing):
            blob_store.local_path(digest)
    else:
        assert blob_store.local_path(digest) is None


HOSTILE = [
    "sha256:../../x",
    "sha256:" + "0" * 62 + "/..",
    "sha256:" + "A" * 64,
    "sha256:" + "0" * 63,
    "sha256:" + "0" * 65,
    "sha256:" + "0" * 64 + "\n",
    "sha256:" + "0" * 64 + "/../../etc",
    "md5:" + "0" * 32,
    "0" * 64,
    "",
]


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda s, d: s.exists(d), id="exists"),
        pytest.param(lambda s, d: s.size(d), id="size"),
        pytest.param(lambda s, d: s.open(d).__enter__(), id="open"),
        pytest.param(lambda s, d: s.local_path(d), id="local_path"),
        pytest.param(lambda s, d: s.delete(d), id="delete"),
        pytest.param(lambda s, d: s.check(d), id="check"),
        pytest.param(lambda s, d: s.put(io.BytesIO(b"x"), expected=d), id="put"),
        pytest.param(lambda s, d: copy_verified(s, d, 1, io.BytesIO()), id="copy"),
    ],
)
def test_hostile_digests_are_refused(
    blob_store: BlobStore, use: Callable[[BlobStore, str], object]
) -> None:
    for digest in HOSTILE:
        with pytest.raises(errors.InvalidInput, match="is not a blob digest"):
            use(blob_store, digest)
    assert list(blob_store.digests()) == []


def test_digests_lists_only_complete_blobs(blob_store: BlobStore) -> None:
    stored = sorted(blob_store.put(io.BytesIO(bytes([i]) * 100)).digest for i in range(3))
    other = hashlib.sha256(b"other").hexdigest()
    if isinstance(blob_store, LocalBlobStore):
        (blob_store.temp_dir / "put-half.part").write_bytes(b"half an upload")
        (blob_store.root / "sha256" / "zz").mkdir()
        (blob_store.root / "sha256" / "zz" / ("z" * 64)).write_bytes(b"junk")
        misplaced = blob_store.root / "sha256" / stored[0][7:9] / other
        misplaced.write_bytes(b"other")  # a blob in the wrong shard is no blob
        assert sorted(blob_store.digests()) == stored
        misplaced.unlink()
        return
    assert isinstance(blob_store, S3BlobStore)
    client = s3_client()
    base = blob_store.key(stored[0]).rsplit("/", 2)[0]
    junk = [f"{base}/zz/{'z' * 64}", f"{base}/{stored[0][7:9]}/{other}", f"{base}/notes.txt"]
    for key in junk:
        client.put_object(Bucket=blob_store.bucket, Key=key, Body=b"junk")
    half = blob_store.key(digest_of(b"half"))
    upload = client.create_multipart_upload(Bucket=blob_store.bucket, Key=half)
    client.upload_part(
        Bucket=blob_store.bucket, Key=half, UploadId=upload["UploadId"], PartNumber=1, Body=b"h"
    )
    try:
        assert sorted(blob_store.digests()) == stored
        assert not blob_store.exists(digest_of(b"half"))
    finally:
        client.abort_multipart_upload(
            Bucket=blob_store.bucket, Key=half, UploadId=upload["UploadId"]
        )
        for key in junk:
            client.delete_object(Bucket=blob_store.bucket, Key=key)


@pytest.mark.slow
def test_large_blob_with_bounded_memory(blob_store: BlobStore) -> None:
    size = 64 * MiB
    expected = Generated(size).digest()
    seen: list[int] = []
    tracemalloc.start()
    try:
        info = blob_store.put(io.BufferedReader(Generated(size)), progress=seen.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info == BlobInfo(expected, size)
    assert sum(seen) == size
    # A chunk at a time (S3: the upload streams from the spool file in parts).
    assert peak < 16 * MiB
    assert blob_store.check(info.digest) == BlobCheck(info.digest, "ok", size)

    class Counting(io.RawIOBase):
        written = 0

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.written += len(data)
            return len(data)

    sink = Counting()
    copy_verified(blob_store, info.digest, size, sink)  # type: ignore[arg-type]
    assert sink.written == size


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://mbom-test", "mbom-test", ""),
        ("s3://mbom-test/", "mbom-test", ""),
        ("s3://mbom-test/ci", "mbom-test", "ci"),
        ("s3://mbom.artifacts/a/b/c/", "mbom.artifacts", "a/b/c"),
    ],
)
def test_s3_url_parsing(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://Upper-Case/x",
        "s3://ab/x",
        "s3://bucket_underscore/x",
        "s3://mbom-test/a//b",
        "s3://mbom-test/a/../b",
        "s3://mbom-test/./b",
        "s3://mbom-test/x?versionId=1",
        "s3://mbom-test/x#frag",
        "s3://user@mbom-test/x",
        "s3:mbom-test/x",
    ],
)
def test_unusable_s3_urls(url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="is not a usable S3 store URL"):
        open_store(url)


def test_local_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "some store"
    for url in (root.as_uri(), str(root), f"file://localhost{root}"):
        store = open_store(url)
        assert isinstance(store, LocalBlobStore)
        assert store.root == root
        assert store.url == root.as_uri()
    monkeypatch.chdir(tmp_path)
    relative = open_store("relative/store")
    assert isinstance(relative, LocalBlobStore)
    assert relative.root == tmp_path / "relative/store"


@pytest.mark.parametrize(
    "url", ["", "file://otherhost/x", "file:relative/x", "http://example.com/x", "gs://bucket"]
)
def test_unusable_local_urls(url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="not a usable artifact store URL"):
        open_store(url)


def test_bad_credentials_are_a_configuration_error(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(errors.ConfigurationError, match="refused access") as raised:
        open_store(s3_url)
    assert "AWS_SECRET_ACCESS_KEY" in raised.value.diagnostics()


@pytest.mark.usefixtures("s3_url")
def test_missing_bucket_is_a_configuration_error() -> None:
    with pytest.raises(errors.ConfigurationError, match="bucket mbom-no-such-bucket does not"):
        open_store("s3://mbom-no-such-bucket/x")


def test_unreachable_endpoint_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(errors.ConfigurationError, match="cannot reach S3 at http://127.0.0.1:9"):
        open_store("s3://mbom-test/x")


def test_blob_errors_map_to_http_and_back() -> None:
    digest = digest_of(b"")
    assert status_for(errors.BlobMismatch("a", "b")) == 400
    assert status_for(errors.BlobMissing(digest, store="file:///s")) == 404
    assert status_for(errors.BlobCorrupt(digest, "bad", store="file:///s")) == 500
    for cls in (errors.BlobMismatch, errors.BlobMissing, errors.BlobCorrupt, errors.LimitExceeded):
        assert _PROBLEM_CLASSES[cls.code] is cls


def test_clean_temp_removes_only_old_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    old = store.temp_dir / "put-crashed.part"
    old.write_bytes(b"left by a crash")
    os.utime(old, (1, 1))
    fresh = store.temp_dir / "put-running.part"
    fresh.write_bytes(b"an upload in progress")
    assert store.clean_temp(older_than=3600) == 1
    assert list(store.temp_dir.iterdir()) == [fresh]


def test_public_names_are_pinned() -> None:
    import registry.store as store_package
    from registry.store import blobs

    pinned = {
        "CHUNK",
        "DIGEST_RE",
        "BlobCheck",
        "BlobInfo",
        "BlobStore",
        "LocalBlobStore",
        "S3BlobStore",
        "copy_verified",
        "hex_of",
        "open_store",
    }
    assert set(store_package.__all__) == pinned
    assert set(blobs.__all__) == pinned
    for name in pinned:
        assert getattr(store_package, name) is getattr(blobs, name)


def test_a_file_is_no_store_directory(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    with pytest.raises(errors.ConfigurationError, match="cannot use .*a-file as an artifact store"):
        open_store(str(taken))
