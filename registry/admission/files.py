"""A stored version's files laid out as a model directory, for the scanners to read."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from registry.errors import BlobCorrupt
from registry.manifest import Manifest
from registry.store import BlobStore, copy_verified


@contextmanager
def materialized(
    store: BlobStore, manifest: Manifest, *, verify: Collection[str] = ()
) -> Iterator[Path]:
    """A temporary directory holding ``manifest``'s files under their manifest paths.

    Yields the directory, or the file itself for a one-file model (as it was
    registered). A local store's blobs are hard-linked (no copy; the behavioral
    sandbox can only read them); others are downloaded and verified while written.
    The directory is removed afterwards. Manifest paths are checked on
    construction (relative, no ``..``), so nothing lands outside it. Blobs named
    in ``verify`` are re-hashed before a scan reads them (a corrupt one raises
    :class:`~registry.errors.BlobCorrupt`): what is scanned is what is handed out.
    """
    root = Path(tempfile.mkdtemp(prefix="mbom-admission-"))
    try:
        for entry in manifest.entries:
            target = root / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = f"sha256:{entry.sha256}"
            if digest in verify:
                check = store.check(digest)
                if check.state != "ok":
                    raise BlobCorrupt(digest, f"it is {check.state}", store=store.url)
            local = store.local_path(digest)
            if local is not None:
                try:
                    os.link(local, target)
                    continue
                except OSError:
                    pass  # another file system: copy below
            with open(target, "xb") as out:
                copy_verified(store, digest, entry.size, out)
        if len(manifest.entries) == 1 and "/" not in manifest.entries[0].path:
            yield root / manifest.entries[0].path
        else:
            yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
