"""File manifests: what exactly a model version is, file by file.

A :class:`Manifest` lists every file of a model directory with its size and
SHA-256 (the same per-file digest the Hugging Face Hub publishes for LFS files)
and has one :attr:`Manifest.digest`, the content address of the whole tree:
identical files under identical names give the identical digest, so an unknown
directory can be identified and a signature over the digest covers every byte.

:func:`hash_tree` builds a manifest from disk, :func:`compare` checks one against
another. Nothing here imports more than the standard library, so a CLI that only
hashes starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from registry import _hashing
from registry._hashing import ProgressCallback
from registry.errors import InvalidInput

__all__ = [
    "FileCheck",
    "FileState",
    "Manifest",
    "ManifestEntry",
    "ProgressCallback",
    "all_match",
    "check_layable",
    "compare",
    "hash_tree",
]

#: The outcome of checking one file: ``match`` (same size and SHA-256),
#: ``mismatch`` (present in both, different content), ``missing`` (expected, not
#: found) or ``extra`` (found, not expected).
FileState = Literal["match", "mismatch", "missing", "extra"]


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a manifest: its path inside the model directory, size and SHA-256.

    ``path`` is relative and POSIX: ``/`` separators, no backslash, no empty,
    ``.`` or ``..`` component, no NUL, valid UTF-8. ``sha256`` is 64 lowercase
    hex digits and ``size`` a byte count. Anything else raises
    :class:`~registry.errors.InvalidInput`.
    """

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        problem = _hashing.path_problem(self.path)
        if problem is not None:
            raise InvalidInput(f"manifest path {self.path!r} {problem}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidInput(
                f"size of {self.path} must be a non-negative integer, not {self.size!r}"
            )
        if not isinstance(self.sha256, str) or not _hashing.SHA256_HEX_RE.fullmatch(self.sha256):
            raise InvalidInput(
                f"sha256 of {self.path} must be 64 lowercase hex digits, not {self.sha256!r}"
            )

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object: ``{"path", "size", "sha256"}``."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: object) -> ManifestEntry:
        """Rebuild an entry from :meth:`to_json` output, validating every field."""
        fields = _exact_keys(data, required={"path", "size", "sha256"}, what="manifest entry")
        return cls(path=fields["path"], size=fields["size"], sha256=fields["sha256"])


@dataclass(frozen=True)
class Manifest:
    """The files of a model version, sorted by path, each path once.

    ``entries`` may be given in any order; they are stored sorted by path
    (Unicode code point order). A path given twice raises
    :class:`~registry.errors.InvalidInput`. Empty directories are not recorded:
    a manifest lists files, and an empty directory holds no bytes to trust.
    """

    entries: tuple[ManifestEntry, ...] = ()

    def __post_init__(self) -> None:
        entries = tuple(sorted(_checked_entries(self.entries), key=lambda entry: entry.path))
        for before, after in zip(entries, entries[1:], strict=False):
            if before.path == after.path:
                raise InvalidInput(f"manifest lists {after.path} twice")
        # Frozen: assigning the normalised tuple once, here, is the only mutation.
        object.__setattr__(self, "entries", entries)

    @cached_property
    def digest(self) -> str:
        """The content address: ``"sha256:"`` + hex SHA-256 of the canonical encoding.

        The canonical encoding is the UTF-8 bytes of the compact JSON array of
        ``[path, size, sha256]`` triples in path order, exactly::

            json.dumps([[e.path, e.size, e.sha256] for e in entries],
                       separators=(",", ":"), ensure_ascii=False).encode("utf-8")

        so ``[["a.bin",3,"ba78…"],["dir/b.txt",0,"e3b0…"]]``: no spaces,
        non-ASCII characters written as themselves (UTF-8), and only ``"``,
        ``\\`` and control characters escaped, as Python's ``json`` does.
        """
        triples = [[entry.path, entry.size, entry.sha256] for entry in self.entries]
        encoded = json.dumps(triples, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return "sha256:" + hashlib.sha256(encoded).hexdigest()

    @property
    def total_size(self) -> int:
        """The sum of the sizes of all files, in bytes."""
        return sum(entry.size for entry in self.entries)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object: ``{"entries": [...], "digest": "sha256:..."}``."""
        return {"entries": [entry.to_json() for entry in self.entries], "digest": self.digest}

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Rebuild a manifest from :meth:`to_json` output.

        A recorded ``digest`` is optional; when present it must equal the digest
        recomputed from the entries, so a manifest edited by hand is refused.
        """
        fields = _exact_keys(data, required={"entries"}, optional={"digest"}, what="manifest")
        if not isinstance(fields["entries"], list):
            raise InvalidInput("manifest entries must be a JSON array")
        manifest = cls(tuple(ManifestEntry.from_json(item) for item in fields["entries"]))
        recorded = fields.get("digest")
        if recorded is not None and recorded != manifest.digest:
            raise InvalidInput(
                f"manifest digest mismatch: recorded {recorded}, computed {manifest.digest}",
                hint="the manifest was altered or corrupted; hash the files again",
            )
        return manifest


@dataclass(frozen=True)
class FileCheck:
    """The result of checking one path of an expected manifest against an actual one.

    The ``expected_*`` fields are ``None`` for an ``extra`` file, the
    ``actual_*`` fields ``None`` for a ``missing`` one.
    """

    path: str
    state: FileState
    expected_sha256: str | None
    actual_sha256: str | None
    expected_size: int | None
    actual_size: int | None

    def __post_init__(self) -> None:
        if self.state not in get_args(FileState):
            raise InvalidInput(f"file check state must be one of {get_args(FileState)}")

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON object with the same field names."""
        return {
            "path": self.path,
            "state": self.state,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
        }

    @classmethod
    def from_json(cls, data: object) -> FileCheck:
        """Rebuild a check from :meth:`to_json` output."""
        names = {"path", "state", "expected_sha256", "actual_sha256"}
        names |= {"expected_size", "actual_size"}
        return cls(**_exact_keys(data, required=names, what="file check"))


def hash_tree(
    path: Path,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    allowed_roots: Sequence[Path] = (),
) -> Manifest:
    """Hash every file under ``path`` (a directory, or one regular file) into a manifest.

    Every file is hashed, hidden ones (``.gitattributes``, ``.cache/…``)
    included: nothing is skipped, so the digest covers all that ships. A single
    file gives one entry named by its file name. Files are SHA-256'd in
    ``CHUNK_SIZE`` chunks on ``workers`` threads (default ``os.cpu_count()``),
    biggest first.

    The whole tree is checked before the first byte is read, and
    :class:`~registry.errors.UnsafePath` names the first offending entry:

    * a symlink is followed and hashed under the link's own name only if its
      resolved target is inside ``path`` or one of ``allowed_roots`` (e.g. a
      Hugging Face cache's ``blobs/`` directory, where snapshot files point),
      and is a regular file; a symlink to a directory is refused (following
      them can loop), as are broken and looping links;
    * fifos, sockets and block or character devices are refused;
    * an unreadable file or directory is refused;
    * a file name that is no valid manifest path (a backslash, undecodable
      bytes) is refused.

    A ``path`` that does not exist, a directory without any file, or
    ``workers < 1`` raise :class:`~registry.errors.InvalidInput`.
    """
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, not {workers}")
    planned = _hashing.plan_tree(Path(path), allowed_roots=allowed_roots)
    hashed = _hashing.hash_planned(
        planned, workers=workers or os.cpu_count() or 1, progress=progress
    )
    return Manifest(tuple(ManifestEntry(item.name, item.size, item.sha256) for item in hashed))


def check_layable(manifest: Manifest) -> None:
    """Refuse a manifest that cannot be laid out as files: a path that is also a directory.

    ``a`` and ``a/b`` are each a valid path, but no file system holds both; a
    registry that stores files (and writes them out for scans and pulls) refuses
    such a manifest with :class:`~registry.errors.InvalidInput`.
    """
    paths = {entry.path for entry in manifest.entries}
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in paths:
                raise InvalidInput(
                    f"manifest lists {directory} as a file and as the directory of {path}",
                    hint="a path cannot be both a file and a directory",
                )


def compare(expected: Manifest, actual: Manifest) -> list[FileCheck]:
    """Check ``actual`` against ``expected``, one :class:`FileCheck` per path, sorted by path.

    A path in both is a ``match`` when size and SHA-256 agree and a ``mismatch``
    otherwise; a path only in ``expected`` is ``missing``, one only in
    ``actual`` is ``extra``.
    """
    wanted = {entry.path: entry for entry in expected.entries}
    found = {entry.path: entry for entry in actual.entries}
    return [_check_path(path, wanted.get(path), found.get(path)) for path in sorted(wanted | found)]


def all_match(checks: Iterable[FileCheck]) -> bool:
    """Whether every check is a ``match`` (so no file is changed, missing or extra)."""
    return all(check.state == "match" for check in checks)


def _check_path(
    path: str, expected: ManifestEntry | None, actual: ManifestEntry | None
) -> FileCheck:
    """The :class:`FileCheck` for one path, given its entry on either side."""
    state: FileState
    if expected is None:
        state = "extra"
    elif actual is None:
        state = "missing"
    elif (expected.size, expected.sha256) == (actual.size, actual.sha256):
        state = "match"
    else:
        state = "mismatch"
    return FileCheck(
        path=path,
        state=state,
        expected_sha256=expected.sha256 if expected else None,
        actual_sha256=actual.sha256 if actual else None,
        expected_size=expected.size if expected else None,
        actual_size=actual.size if actual else None,
    )


def _checked_entries(entries: Iterable[object]) -> list[ManifestEntry]:
    """``entries`` as a list, refusing anything that is not a :class:`ManifestEntry`."""
    checked: list[ManifestEntry] = []
    for entry in entries:
        if not isinstance(entry, ManifestEntry):
            raise InvalidInput(
                f"manifest entries must be ManifestEntry, not {type(entry).__name__}"
            )
        checked.append(entry)
    return checked


def _exact_keys(
    data: object, *, required: set[str], optional: Set[str] = frozenset(), what: str
) -> Mapping[str, Any]:
    """``data`` as a mapping with all ``required`` keys and nothing unknown.

    Unknown keys are refused rather than dropped: a field a reader ignores would
    ride along outside the digest and the signature.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{what} must be a JSON object, not {type(data).__name__}")
    missing = sorted(required - data.keys())
    unknown = sorted(data.keys() - required - optional)
    if missing:
        raise InvalidInput(f"{what} lacks {', '.join(missing)}")
    if unknown:
        raise InvalidInput(f"{what} has unknown field(s) {', '.join(map(str, unknown))}")
    return data
