"""mbom's content-addressed artifact store: blobs named by the SHA-256 of their bytes.

Two backends keep the same promises (``BlobStore``): a local directory and S3 (or any
S3-compatible server). ``open_store`` picks one from a URL; ``copy_verified`` is the
only way bytes should leave a store, because it re-checks them on the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from registry.errors import ConfigurationError
from registry.store._common import (
    CHUNK,
    DIGEST_RE,
    BlobCheck,
    BlobInfo,
    Progress,
    hashed_chunks,
    hex_of,
)
from registry.store._local import LocalBlobStore

if TYPE_CHECKING:
    from registry.store._s3 import S3BlobStore

__all__ = [
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
]


class BlobStore(Protocol):
    """Where artifact bytes live, named by digest.

    Implementations guarantee: ``put`` reads in bounded chunks and hashes while it
    writes; a blob is visible (``exists``, ``digests``, ``open``) only once complete and
    verified; a refused or failed ``put`` (BlobMismatch, LimitExceeded, an error of the
    stream) stores nothing and leaves no temp file; storing present content again is
    harmless; every digest is checked against ``DIGEST_RE`` before a path or key is
    built from it (InvalidInput otherwise). ``progress`` callbacks get the number of
    bytes just handled (a delta, as ``rich``'s ``advance``), not a running total.
    """

    url: str

    def put(
        self,
        stream: BinaryIO,
        *,
        expected: str | None = None,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> BlobInfo:
        """Store the stream's bytes; BlobMismatch or LimitExceeded stores nothing."""
        ...

    def put_path(self, path: Path, *, progress: Progress | None = None) -> BlobInfo:
        """Store a file's bytes."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether a complete blob with this digest is stored."""
        ...

    def size(self, digest: str) -> int | None:
        """The stored size, None when absent."""
        ...

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        """The stored bytes, unverified; BlobMissing when absent."""
        ...

    def read_verified(
        self, digest: str, size: int, *, chunk: int = CHUNK
    ) -> Iterator[bytes | memoryview]:
        """The stored bytes in chunks of at most ``chunk``, for handing out.

        The last chunk comes only once the blob is known to be ``digest`` and ``size``
        bytes long, BlobCorrupt instead of it otherwise: a corrupt blob never reaches a
        reader complete. Known by hashing it on the way, or (a local store) by its file
        being unchanged since the store last hashed it in full. BlobMissing when absent.
        """
        ...

    def local_path(self, digest: str) -> Path | None:
        """A real file of the blob for a local store (BlobMissing when absent), else None."""
        ...

    def delete(self, digest: str) -> None:
        """Remove the blob; an absent one is fine."""
        ...

    def digests(self) -> Iterator[str]:
        """Every complete blob's digest."""
        ...

    def check(self, digest: str) -> BlobCheck:
        """Re-hash the stored bytes: ok, missing or corrupt."""
        ...


def open_store(url: str, *, spool_dir: Path | None = None) -> BlobStore:
    """The store a URL names: ``file:///abs/dir`` or a path, or ``s3://bucket/prefix``.

    An S3 store's bucket and credentials are checked here, so a wrong setting fails at
    start-up with a hint (ConfigurationError) instead of at the first upload.
    ``spool_dir`` is where an S3 store spools uploads (the system temp dir by default).
    """
    if url.startswith("s3:"):
        from registry.store._s3 import S3BlobStore, parse_s3_url, s3_client

        bucket, prefix = parse_s3_url(url)
        store = S3BlobStore(bucket, prefix, client=s3_client(), spool_dir=spool_dir)
        store.verify_access()
        return store
    return LocalBlobStore(_local_root(url))


def _local_root(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = Path(unquote(parts.path))
        if path.is_absolute():
            return path
    elif "://" not in url and parts.scheme != "file" and url.strip():
        return Path(url).expanduser().absolute()
    raise ConfigurationError(
        f"{url!r} is not a usable artifact store URL",
        hint="write file:///absolute/dir, a directory path, or s3://bucket/prefix",
    )


def copy_verified(
    store: BlobStore,
    digest: str,
    size: int,
    dest: BinaryIO,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream a blob to ``dest``, hashing while writing; BlobCorrupt if hash or size differ.

    The last chunk is held back until the whole blob is verified, so a corrupt blob
    never reaches ``dest`` complete: a reader of ``dest`` (a file, an HTTP response)
    sees it cut short as well as the error. ``dest`` must be discarded on any error.
    """
    hex_of(digest)
    with store.open(digest) as source:
        for chunk in hashed_chunks(source, digest, size, store=store.url):
            dest.write(chunk)
            if progress is not None:
                progress(len(chunk))


def __getattr__(name: str) -> object:
    # S3BlobStore imports boto3, which only S3 users need to pay for at import time.
    if name == "S3BlobStore":
        from registry.store._s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(name)
