"""From an mbom manifest to model-signing resources and back: names, ignores, checks.

``model_signing`` names files like our manifest does (relative POSIX paths,
symlinks under their own name) and hashes them with SHA-256, so a manifest
entry's digest *is* the resource digest. The differences are what it leaves
out: the git files (``.git/``, ``.github/``, ``.gitignore``, ``.gitattributes``)
and the signature file, recorded in ``serialization.ignore_paths``, and the
name ``"."`` for the only file of a single-file model.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

from registry.manifest import FileCheck, FileState, Manifest, ManifestEntry
from registry.model_signing_format._statement import SINGLE_FILE_NAME, Resource, Statement

__all__ = [
    "GIT_PATHS",
    "check_files",
    "has_symlinks",
    "is_ignored",
    "path_inside",
    "resources_of",
    "without_path",
]

#: What ``model_signing`` leaves out of every signature unless told otherwise.
GIT_PATHS = (".git", ".github", ".gitignore", ".gitattributes")


def is_ignored(path: str, ignore_paths: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``ignore_paths`` or below one (``pathlib.is_relative_to``).

    >>> is_ignored(".git/HEAD", [".git"]), is_ignored(".gitx", [".git"])
    (True, False)
    """
    for ignored in ignore_paths:
        prefix = posixpath.normpath(ignored.replace("\\", "/"))
        if prefix in (".", "") or path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def resources_of(
    manifest: Manifest, *, ignore_paths: Sequence[str], single_file: bool = False
) -> list[Resource]:
    """The resources ``model_signing`` would list for these files.

    ``single_file`` is a model that is one file (not a directory): its only
    entry is named ``"."``, as model_signing names it.
    """
    if single_file:
        return [Resource(SINGLE_FILE_NAME, entry.sha256) for entry in manifest.entries]
    return [
        Resource(entry.path, entry.sha256)
        for entry in manifest.entries
        if not is_ignored(entry.path, ignore_paths)
    ]


def check_files(statement: Statement, manifest: Manifest) -> list[FileCheck]:
    """Each signed resource and each unsigned, not ignored file, checked; sorted by path.

    A file the statement lists is always checked, even below an ignored path;
    a file it does not list is ``extra`` unless the statement's
    ``ignore_paths`` or the git paths cover it, as ``model_signing verify`` does.
    """
    expected = statement.digests
    found = {entry.path: entry for entry in manifest.entries}
    if set(expected) == {SINGLE_FILE_NAME} and len(found) == 1:
        expected = {next(iter(found)): expected[SINGLE_FILE_NAME]}
    ignore = (*statement.serialization.ignore_paths, *GIT_PATHS)
    checked = sorted(set(expected) | {p for p in found if not is_ignored(p, ignore)})
    return [_check(path, expected.get(path), found.get(path)) for path in checked]


def path_inside(root: Path, path: Path) -> str | None:
    """``path`` as a manifest path relative to the directory ``root``; ``None`` if outside."""
    if not root.is_dir():
        return None
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return None
    return relative.as_posix() if relative.parts else None


def without_path(manifest: Manifest, path: str | None) -> Manifest:
    """``manifest`` without the entry named ``path`` (the signature file's own entry)."""
    if path is None:
        return manifest
    return Manifest(tuple(entry for entry in manifest.entries if entry.path != path))


def has_symlinks(root: Path) -> bool:
    """Whether the tree under ``root`` holds a symbolic link (model_signing's allow_symlinks)."""
    if root.is_symlink() or not root.is_dir():
        return root.is_symlink()
    for directory, subdirs, files in os.walk(root):
        if any(os.path.islink(os.path.join(directory, name)) for name in (*subdirs, *files)):
            return True
    return False


def _check(path: str, expected: str | None, actual: ManifestEntry | None) -> FileCheck:
    state: FileState
    if expected is None:
        state = "extra"
    elif actual is None:
        state = "missing"
    else:
        state = "match" if actual.sha256 == expected else "mismatch"
    return FileCheck(
        path=path,
        state=state,
        expected_sha256=expected,
        actual_sha256=actual.sha256 if actual else None,
        expected_size=None,
        actual_size=actual.size if actual else None,
    )
