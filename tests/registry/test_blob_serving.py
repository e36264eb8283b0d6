"""``BlobStore.read_verified``: how a pull's bytes leave the store, on both backends.

The promise: the last chunk comes only once the blob is known to be its digest, so a
corrupt blob never reaches a reader complete. S3 hashes on the way; the local store
skips the hash for a blob it hashed in full before whose file is unchanged since
(same inode, size, modification time and mode), and hashes any other.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from registry import errors
from registry.store import CHUNK, BlobStore, LocalBlobStore
from tests.registry.test_blob_store import corrupt


def _served(store: BlobStore, digest: str, size: int) -> tuple[bytes, BaseException | None]:
    """What a reader got (each chunk copied as it came), and the error that ended it."""
    got = bytearray()
    try:
        for chunk in store.read_verified(digest, size, chunk=CHUNK):
            assert 0 < len(chunk) <= CHUNK
            got += bytes(chunk)
    except errors.BlobCorrupt as error:
        return bytes(got), error
    return bytes(got), None


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 5])
def test_a_stored_blob_is_served_whole(blob_store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    info = blob_store.put(io.BytesIO(data))
    for _ in range(2):  # the local store: hashed on the way in, then remembered
        assert _served(blob_store, info.digest, info.size) == (data, None)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="same-size"),
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: data + b"!", id="extended"),
    ],
)
def test_a_blob_changed_after_it_was_stored_never_arrives_complete(
    blob_store: BlobStore, damage: object
) -> None:
    data = os.urandom(2 * CHUNK + 7)
    info = blob_store.put(io.BytesIO(data))
    corrupt(blob_store, info.digest, damage(data))  # type: ignore[operator]
    got, error = _served(blob_store, info.digest, info.size)
    assert isinstance(error, errors.BlobCorrupt)
    assert len(got) < info.size


def test_a_blob_damaged_while_the_server_was_down_is_hashed_and_caught(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 7)
    info = LocalBlobStore(tmp_path).put(io.BytesIO(data))
    corrupt(LocalBlobStore(tmp_path), info.digest, data[:-1] + b"?")
    restarted = LocalBlobStore(tmp_path)  # remembers nothing: it hashes
    got, error = _served(restarted, info.digest, info.size)
    assert isinstance(error, errors.BlobCorrupt)
    assert len(got) < info.size


def test_a_file_swapped_in_under_the_old_times_and_mode_is_caught(tmp_path: Path) -> None:
    """A rename over the blob makes a new inode, whatever times and mode it is given."""
    store = LocalBlobStore(tmp_path)
    data = os.urandom(CHUNK + 3)
    info = store.put(io.BytesIO(data))
    blob = store.local_path(info.digest)
    before = blob.stat()
    impostor = tmp_path / "impostor"
    impostor.write_bytes(data[:-1] + b"?")
    impostor.chmod(before.st_mode & 0o777)
    os.utime(impostor, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(impostor, blob)
    got, error = _served(store, info.digest, info.size)
    assert isinstance(error, errors.BlobCorrupt)
    assert len(got) < info.size


def test_a_change_while_a_blob_is_served_cuts_it_short(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = os.urandom(3 * CHUNK)
    info = store.put(io.BytesIO(data))
    chunks = store.read_verified(info.digest, info.size, chunk=CHUNK)
    got = bytes(next(chunks))  # served unhashed: the store stored it
    corrupt(store, info.digest, data[:-1] + b"?")
    with pytest.raises(errors.BlobCorrupt, match="changed while it was read"):
        got += b"".join(bytes(chunk) for chunk in chunks)
    assert len(got) < info.size


def test_what_the_local_store_remembers_as_verified(tmp_path: Path) -> None:
    """Stored, checked or served-and-hashed: remembered. A hard link (admission makes one
    to scan the blob) changes no byte and keeps it; any change forgets it."""
    store = LocalBlobStore(tmp_path / "store")
    data = os.urandom(CHUNK + 1)
    digest = store.put(io.BytesIO(data)).digest
    assert store._vouched_for(digest) is not None
    os.link(store.local_path(digest), tmp_path / "scanned")
    (tmp_path / "scanned").unlink()
    assert _served(store, digest, len(data)) == (data, None)
    assert store._vouched_for(digest) is not None

    restarted = LocalBlobStore(tmp_path / "store")
    assert restarted._vouched_for(digest) is None
    assert _served(restarted, digest, len(data)) == (data, None)  # hashed on the way
    assert restarted._vouched_for(digest) is not None
    assert LocalBlobStore(tmp_path / "store").check(digest).state == "ok"

    corrupt(restarted, digest, data[:-1] + b"?")
    assert _served(restarted, digest, len(data))[1] is not None
    assert restarted._vouched_for(digest) is None
    assert restarted.check(digest).state == "corrupt"
    assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
