"""Finding a snapshot's files: a directory, or a repository in the local Hugging Face cache.

The cache keeps each repository as ``models--org--name/`` with the file
contents in ``blobs/<hash>``, branch and tag names in ``refs/<name>`` (holding
a commit hash), and one directory per commit in ``snapshots/<commit>/`` whose
files are symlinks to ``../../blobs/<hash>``. Everything here is offline:
``huggingface_hub`` is asked with ``local_files_only=True`` and never reaches
the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from registry.errors import InvalidInput, NotInHfCache

__all__ = ["Snapshot", "blobs_dir_of", "locate_snapshot"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_MODEL_FOLDER = "models--"


@dataclass(frozen=True)
class Snapshot:
    """A model's files on disk and what the cache records of where they come from.

    ``repo_id`` is ``None`` for a directory outside any cache (the user names
    it); ``commit`` is the snapshot's commit hash when known; ``blobs`` is the
    repository's ``blobs/`` directory, the only place its symlinks may lead.
    """

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    blobs: Path | None = None

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        """Where, besides ``path``, the snapshot's symlinks may resolve."""
        return (self.blobs,) if self.blobs is not None else ()


def blobs_dir_of(path: Path) -> Path | None:
    """The ``blobs/`` directory of the cached repository ``path`` is a snapshot of, if any.

    >>> blobs_dir_of(Path("/c/models--acme--m/snapshots/" + "a" * 40))
    PosixPath('/c/models--acme--m/blobs')
    >>> blobs_dir_of(Path("/tmp/model")) is None
    True
    """
    parent = path.parent
    if parent.name == "snapshots" and parent.parent.name.startswith(_MODEL_FOLDER):
        return parent.parent / "blobs"
    return None


def locate_snapshot(
    target: str | Path, *, revision: str | None = None, cache_dir: Path | None = None
) -> Snapshot:
    """The snapshot ``target`` names: an existing directory, else a repo id in the cache.

    A directory inside a cache (``…/models--org--name/snapshots/<commit>``) keeps
    its repository and commit. A repository id is resolved at ``revision``
    (a branch, a tag or a commit hash; default ``main``) in ``cache_dir``
    (default: the Hugging Face cache, ``HF_HUB_CACHE``). Raises
    :class:`~registry.errors.NotInHfCache` when the cache lacks it and
    :class:`~registry.errors.InvalidInput` when ``target`` is neither.
    """
    path = Path(target).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InvalidInput(
                f"{target} is a file, not a snapshot directory",
                hint="give the directory holding README.md and the weights, or a repo id",
            )
        return _from_directory(path, revision)
    if _looks_like_path(str(target)):
        raise InvalidInput(f"{target} does not exist", hint="check the snapshot directory")
    return _from_cache(str(target), revision or "main", cache_dir)


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _from_directory(path: Path, revision: str | None) -> Snapshot:
    real = path.resolve()
    blobs = blobs_dir_of(real)
    if blobs is None or not _COMMIT.match(real.name):
        return Snapshot(path=path, revision=revision)
    repo = blobs.parent
    repo_id = repo.name[len(_MODEL_FOLDER) :].replace("--", "/")
    refs = _refs_of(repo)
    if revision is not None and revision != real.name and refs.get(revision) != real.name:
        raise InvalidInput(
            f"{path} is the snapshot of commit {real.name}, not of revision {revision}",
            hint="drop --revision, or give the repo id to resolve the revision in the cache",
        )
    pointing = sorted(name for name, commit in refs.items() if commit == real.name)
    chosen = revision or ("main" if "main" in pointing else (pointing or [real.name])[0])
    return Snapshot(path=path, repo_id=repo_id, revision=chosen, commit=real.name, blobs=blobs)


def _refs_of(repo: Path) -> dict[str, str]:
    """Branch and tag names of a cached repository and the commit each points at."""
    refs = repo / "refs"
    if not refs.is_dir():
        return {}
    found = {}
    for ref in refs.rglob("*"):
        if ref.is_file():
            found[ref.relative_to(refs).as_posix()] = ref.read_text(encoding="utf-8").strip()
    return found


def _from_cache(repo_id: str, revision: str, cache_dir: Path | None) -> Snapshot:
    from huggingface_hub import constants, errors, snapshot_download

    from registry.hf._refs import check_repo_id

    problem = check_repo_id(repo_id)
    if problem is not None:
        raise InvalidInput(
            f"{repo_id!r} is neither a directory nor a Hugging Face repo id ({problem})",
            hint="give a snapshot directory or a repo id such as org/name",
        )
    cache = Path(cache_dir or constants.HF_HUB_CACHE).expanduser()
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache, local_files_only=True
        )
    except errors.LocalEntryNotFoundError as exc:
        # huggingface_hub 1.x+ knows, from its cached file listing, when a snapshot is partial.
        if isinstance(exc, getattr(errors, "IncompleteSnapshotError", ())):
            raise InvalidInput(
                f"the cached snapshot of {repo_id} at {revision} is incomplete",
                hint=f"download it again with: hf download {repo_id} --revision {revision}",
            ) from exc
        cached = _cached_revisions(cache, repo_id)
        raise NotInHfCache(repo_id, revision, str(cache), cached=cached) from exc
    except errors.HFValidationError as exc:
        raise InvalidInput(f"cannot look up {repo_id} at {revision}: {exc}") from exc
    assert isinstance(folder, str)
    return _from_directory(Path(folder), revision)


def _cached_revisions(cache: Path, repo_id: str) -> list[str]:
    """The refs and commits of ``repo_id`` in the cache, for the error's hint."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    names: list[str] = []
    for repo in info.repos:
        if repo.repo_type == "model" and repo.repo_id == repo_id:
            for cached in sorted(repo.revisions, key=lambda r: r.commit_hash):
                names.extend(sorted(cached.refs))
                names.append(cached.commit_hash)
    return names
