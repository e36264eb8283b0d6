"""The artifact store: content-addressed blobs on a local directory or S3 (see ``blobs``)."""

from typing import TYPE_CHECKING

from registry.store.blobs import (
    CHUNK,
    DIGEST_RE,
    BlobCheck,
    BlobInfo,
    BlobStore,
    LocalBlobStore,
    copy_verified,
    hex_of,
    open_store,
)

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


def __getattr__(name: str) -> object:
    # S3BlobStore imports boto3, which only S3 users need to pay for at import time.
    if name == "S3BlobStore":
        from registry.store._s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(name)
