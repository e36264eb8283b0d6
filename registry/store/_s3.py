"""The blob store on S3 or any S3-compatible server: ``<prefix>/sha256/<hex[:2]>/<hex>``.

An upload is spooled to a local temp file while it is hashed, and sent to its key only
once verified: S3 makes an object visible only when its upload completes, so the bucket
never holds a wrong or partial blob. The endpoint, credentials and region come from the
standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), which
boto3 reads itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from registry.errors import BlobMissing, ConfigurationError
from registry.store._common import (
    CHUNK,
    BlobCheck,
    BlobInfo,
    Progress,
    hash_stream,
    hashed_chunks,
    hex_of,
    receive,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_TAIL = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
#: S3 allows 10,000 parts per upload; parts grow with the blob so any size fits.
_MAX_PARTS = 9000
_PART = 8 * CHUNK


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` as ``("bucket", "some/prefix")``; the prefix may be empty."""
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    segments = prefix.split("/") if prefix else []
    if (
        parts.scheme != "s3"
        or not _BUCKET.fullmatch(parts.netloc)
        or parts.query
        or parts.fragment
        or any(s in ("", ".", "..") for s in segments)
    ):
        raise ConfigurationError(
            f"{url!r} is not a usable S3 store URL",
            hint="write s3://bucket or s3://bucket/prefix (a lowercase bucket name, "
            "a prefix without empty, . or .. parts)",
        )
    return parts.netloc, prefix


def s3_client() -> S3Client:
    """A client configured from the standard AWS environment, us-east-1 when none is set."""
    session = boto3.session.Session()
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120
    )
    return session.client("s3", region_name=session.region_name or "us-east-1", config=config)


class S3BlobStore:
    """Blobs as objects under ``prefix`` in ``bucket``; no local paths."""

    def __init__(
        self, bucket: str, prefix: str, *, client: S3Client, spool_dir: Path | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._base = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        self._client = client
        #: Where uploads are spooled while hashed (the system temp dir when None).
        self.spool_dir = spool_dir
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def key(self, digest: str) -> str:
        """The object key of a blob (InvalidInput for a malformed digest)."""
        hex_ = hex_of(digest)
        return f"{self._base}{hex_[:2]}/{hex_}"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """S3's refusals and an unreachable endpoint as ConfigurationError, at the boundary."""
        endpoint = self._client.meta.endpoint_url
        try:
            yield
        except NoCredentialsError as exc:
            raise ConfigurationError(
                f"no S3 credentials for {self.url}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
            ) from exc
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise self._no_bucket() from exc
            if code in _REFUSED:
                raise ConfigurationError(
                    f"S3 at {endpoint} refused access to {self.url} ({code})",
                    hint="check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL",
                ) from exc
            raise
        except BotoCoreError as exc:
            raise ConfigurationError(
                f"cannot reach S3 at {endpoint} for {self.url}: {exc}",
                hint="check AWS_ENDPOINT_URL and that the server is running",
            ) from exc

    def _no_bucket(self) -> ConfigurationError:
        return ConfigurationError(
            f"the S3 bucket {self.bucket} does not exist at {self._client.meta.endpoint_url}",
            hint="create it, or fix the bucket in the store URL",
        )

    def verify_access(self) -> None:
        """Fail now, with a hint, when the bucket is missing or the credentials are refused."""
        try:
            with self._translated():
                self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # HEAD answers carry no error body: a bare 404 is the missing bucket.
            if _code(exc) in _NOT_FOUND:
                raise self._no_bucket() from exc
            raise

    def put(
        self,
        stream: BinaryIO,
        *,
        expected: str | None = None,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> BlobInfo:
        """Spool and hash the stream, then upload it to its key once verified."""
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="mbom-put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as sink:
                info = receive(
                    stream,
                    sink,
                    expected=expected,
                    expected_size=expected_size,
                    max_bytes=max_bytes,
                    progress=progress,
                )
            # A present blob is kept only when it is intact: uploading the true bytes
            # again is how a blob `mbom store verify` calls corrupt is repaired.
            if self.size(info.digest) != info.size or self.check(info.digest).state != "ok":
                self._upload(Path(name), info)
        finally:
            Path(name).unlink(missing_ok=True)
        return info

    def _upload(self, spool: Path, info: BlobInfo) -> None:
        part = max(_PART, -(-info.size // _MAX_PARTS))
        config = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=4
        )
        with self._translated():
            self._client.upload_file(str(spool), self.bucket, self.key(info.digest), Config=config)

    def put_path(self, path: Path, *, progress: Progress | None = None) -> BlobInfo:
        """Store a file's bytes (copied to the spool first, so later edits cannot slip in)."""
        with path.open("rb") as stream:
            return self.put(stream, progress=progress)

    def _head(self, digest: str) -> dict[str, Any] | None:
        key = self.key(digest)
        with self._translated():
            try:
                return dict(self._client.head_object(Bucket=self.bucket, Key=key))
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return None
                raise

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self._head(digest) is not None

    def size(self, digest: str) -> int | None:
        """The stored blob's size, None when it is absent."""
        head = self._head(digest)
        return None if head is None else int(head["ContentLength"])

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[BinaryIO]:
        """The blob's bytes as they stream from S3, unverified (see ``copy_verified``)."""
        key = self.key(digest)
        with self._translated():
            try:
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise BlobMissing(digest, store=self.url) from None
                raise
        with io.BufferedReader(_BodyReader(body), buffer_size=CHUNK) as stream:
            yield stream

    def read_verified(
        self, digest: str, size: int, *, chunk: int = CHUNK
    ) -> Iterator[bytes | memoryview]:
        """The blob's bytes in chunks, hashed on the way; the last one only once verified."""
        with self.open(digest) as stream:
            yield from hashed_chunks(stream, digest, size, chunk=chunk, store=self.url)

    def local_path(self, digest: str) -> Path | None:
        """None: an S3 blob has no local file (copy it out with ``copy_verified``)."""
        hex_of(digest)
        return None

    def delete(self, digest: str) -> None:
        """Remove the blob; an absent one is fine."""
        key = self.key(digest)
        with self._translated():
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def digests(self) -> Iterator[str]:
        """Every complete blob (S3 lists an object only once its upload completed)."""
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translated():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base):
                for item in page.get("Contents", []):
                    match = _KEY_TAIL.fullmatch(item.get("Key", "")[len(self._base) :])
                    if match and match[2].startswith(match[1]):
                        yield f"sha256:{match[2]}"

    def check(self, digest: str) -> BlobCheck:
        """Re-hash the stored bytes (downloads the blob once)."""
        try:
            with self.open(digest) as stream:
                actual, size = hash_stream(stream)
        except BlobMissing:
            return BlobCheck(digest, "missing", None)
        return BlobCheck(digest, "ok" if actual == digest else "corrupt", size)


class _BodyReader(io.RawIOBase):
    """botocore's streaming body as a raw binary stream, so it reads like a file."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
