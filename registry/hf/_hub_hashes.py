"""Checking a snapshot against the per-file hashes the Hub publishes.

``HfApi.model_info(repo_id, files_metadata=True)`` lists each file of a
revision as a *sibling*: ``rfilename``, ``size``, ``blobId`` (the git blob
SHA-1) and, for files stored in LFS, ``lfs: {sha256, size, pointerSize}``.
An LFS file is checked by SHA-256 (the digest the manifest already holds); a
small file kept in git by its git blob SHA-1, ``sha1(b"blob <size>\\0" + content)``.

Both spellings are read: the Hub's JSON (``blobId``, ``pointerSize``) and
``dataclasses.asdict`` of ``huggingface_hub``'s ``ModelInfo`` (``blob_id``,
``pointer_size``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from registry.errors import InvalidInput
from registry.manifest import FileState, Manifest, ManifestEntry

__all__ = [
    "HubFileCheck",
    "HubFiles",
    "HubLfs",
    "HubSibling",
    "HubVerifyReport",
    "check_against_hub",
    "git_blob_sha1",
]

Algorithm = Literal["sha256", "git-sha1"]
_CHUNK = 1024 * 1024


class HubLfs(BaseModel):
    """The LFS pointer of a file: the content's SHA-256 and size."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    pointer_size: int | None = Field(
        default=None, validation_alias=AliasChoices("pointerSize", "pointer_size")
    )


class HubSibling(BaseModel):
    """One file of a Hub revision, as ``model_info(files_metadata=True)`` lists it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    rfilename: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    blob_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{40}$", validation_alias=AliasChoices("blobId", "blob_id")
    )
    lfs: HubLfs | None = None


class HubFiles(BaseModel):
    """The published files of one revision (the rest of ``model_info`` is ignored)."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    sha: str | None = None
    siblings: tuple[HubSibling, ...]

    @classmethod
    def from_json(cls, data: object) -> HubFiles:
        """Read a ``model_info`` JSON object; :class:`InvalidInput` names the bad field."""
        try:
            files = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise InvalidInput(
                f"not a model_info(files_metadata=True) answer: {where}: {first['msg']}",
                hint="save HfApi().model_info(repo, files_metadata=True) with its siblings",
            ) from exc
        for i, sibling in enumerate(files.siblings):
            if sibling.lfs is None and sibling.blob_id is None:
                raise InvalidInput(
                    f"siblings[{i}] ({sibling.rfilename}) has neither lfs.sha256 nor blobId",
                    hint="fetch the model info with files_metadata=True",
                )
        return files

    @classmethod
    def read(cls, path: Path) -> HubFiles:
        """Read a JSON file holding a ``model_info`` answer."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{path} is not a JSON document: {exc}") from exc
        return cls.from_json(data)


@dataclass(frozen=True)
class HubFileCheck:
    """One file checked against the Hub: by SHA-256 (LFS) or git blob SHA-1 (in git)."""

    path: str
    state: FileState
    algorithm: Algorithm | None
    expected: str | None
    actual: str | None
    expected_size: int | None
    actual_size: int | None

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON object with the same field names."""
        return {
            "path": self.path,
            "state": self.state,
            "algorithm": self.algorithm,
            "expected": self.expected,
            "actual": self.actual,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
        }


@dataclass(frozen=True)
class HubVerifyReport:
    """A snapshot compared with the Hub's published hashes, file by file."""

    repo_id: str | None
    revision: str | None
    files: tuple[HubFileCheck, ...]

    @property
    def ok(self) -> bool:
        """Every file matches: none changed, missing or extra."""
        return all(check.state == "match" for check in self.files)

    @property
    def problems(self) -> list[str]:
        """``state: path`` for each file that does not match."""
        return [f"{check.state}: {check.path}" for check in self.files if check.state != "match"]

    def to_json(self) -> dict[str, Any]:
        """``{"repo_id", "revision", "ok", "matched", "files", "problems"}``."""
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "ok": self.ok,
            "matched": sum(1 for check in self.files if check.state == "match"),
            "files": [check.to_json() for check in self.files],
            "problems": self.problems,
        }


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file: SHA-1 over ``blob <size>\\0`` and the content.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "f").write_bytes(b"hello\\n")
    ...     git_blob_sha1(Path(d) / "f")
    'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as stream:
        digest.update(b"blob %d\0" % path.stat().st_size)
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_against_hub(root: Path, manifest: Manifest, published: HubFiles) -> HubVerifyReport:
    """Compare the hashed snapshot at ``root`` with the Hub's files, one check per path.

    ``manifest`` is ``hash_tree(root)``: its checks on symlinks were made
    already, so reading a small file again for its git blob id is safe.
    """
    wanted = {sibling.rfilename: sibling for sibling in published.siblings}
    found = {entry.path: entry for entry in manifest.entries}
    checks = tuple(
        _check(root, path, wanted.get(path), found.get(path)) for path in sorted(wanted | found)
    )
    return HubVerifyReport(repo_id=published.id, revision=published.sha, files=checks)


def _check(
    root: Path, path: str, sibling: HubSibling | None, entry: ManifestEntry | None
) -> HubFileCheck:
    if sibling is None:
        assert entry is not None
        return HubFileCheck(path, "extra", None, None, entry.sha256, None, entry.size)
    algorithm: Algorithm = "sha256" if sibling.lfs is not None else "git-sha1"
    expected = sibling.lfs.sha256 if sibling.lfs is not None else sibling.blob_id
    expected_size = sibling.lfs.size if sibling.lfs is not None else sibling.size
    if entry is None:
        return HubFileCheck(path, "missing", algorithm, expected, None, expected_size, None)
    actual = entry.sha256 if algorithm == "sha256" else git_blob_sha1(root / path)
    same_size = expected_size is None or expected_size == entry.size
    state: FileState = "match" if actual == expected and same_size else "mismatch"
    return HubFileCheck(path, state, algorithm, expected, actual, expected_size, entry.size)
