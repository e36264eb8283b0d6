"""Tests of registry.manifest: entries, digests, hash_tree on real trees, compare."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import registry.manifest as manifest_module
from registry.errors import InvalidInput, UnsafePath
from registry.manifest import (
    FileCheck,
    Manifest,
    ManifestEntry,
    all_match,
    compare,
    hash_tree,
)

SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA_ONE = "1" * 64

MakeTree = Callable[..., Path]


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    """Factory: write ``{relative path: bytes}`` under a fresh directory and return it."""
    counter = iter(range(1_000_000))

    def make(files: dict[str, bytes], *, name: str | None = None) -> Path:
        root = tmp_path / (name or f"tree{next(counter)}")
        root.mkdir()
        for rel, content in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return root

    return make


class RecordingProgress:
    """A thread-safe ProgressCallback that remembers what it was told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[int, int]] = []
        self.advanced = 0

    def start(self, total_bytes: int, files: int) -> None:
        self.started.append((total_bytes, files))

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.advanced += nbytes


# --- ManifestEntry -------------------------------------------------------------


def test_entry_round_trips_through_json() -> None:
    entry = ManifestEntry("dir/model.safetensors", 3, SHA_ABC)
    assert entry.to_json() == {"path": "dir/model.safetensors", "size": 3, "sha256": SHA_ABC}
    assert ManifestEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "is empty"),
        ("/etc/passwd", "is absolute"),
        ("dir\\file.bin", "backslash"),
        ("a/../b", r"'\.' or '\.\.' component"),
        ("./a", r"'\.' or '\.\.' component"),
        ("..", r"'\.' or '\.\.' component"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a\x00b", "NUL"),
        ("bad\udcff.bin", "not valid UTF-8"),
        (7, "must be a string"),
    ],
)
def test_entry_refuses_bad_paths(path: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ManifestEntry(path, 0, SHA_EMPTY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "sha256", "message"),
    [
        (-1, SHA_EMPTY, "non-negative integer"),
        (True, SHA_EMPTY, "non-negative integer"),
        (1.5, SHA_EMPTY, "non-negative integer"),
        (0, SHA_EMPTY.upper(), "64 lowercase hex"),
        (0, SHA_EMPTY[:-1], "64 lowercase hex"),
        (0, "g" * 64, "64 lowercase hex"),
        (0, None, "64 lowercase hex"),
    ],
)
def test_entry_refuses_bad_size_or_sha(size: object, sha256: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ManifestEntry("a.bin", size, sha256)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["a.bin", 0, SHA_EMPTY], "must be a JSON object"),
        ({"path": "a.bin", "size": 0}, "lacks sha256"),
        ({"path": "a.bin", "size": 0, "sha256": SHA_EMPTY, "mode": 420}, "unknown field"),
        ({"path": "a.bin", "size": "0", "sha256": SHA_EMPTY}, "non-negative integer"),
    ],
)
def test_entry_from_json_refuses_malformed(data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ManifestEntry.from_json(data)


# --- Manifest ------------------------------------------------------------------


def test_manifest_sorts_entries_by_path() -> None:
    manifest = Manifest((ManifestEntry("b", 0, SHA_EMPTY), ManifestEntry("a/z", 3, SHA_ABC)))
    assert [entry.path for entry in manifest.entries] == ["a/z", "b"]
    assert manifest.total_size == 3


def test_manifest_refuses_duplicate_paths() -> None:
    with pytest.raises(InvalidInput, match="lists a.bin twice"):
        Manifest((ManifestEntry("a.bin", 0, SHA_EMPTY), ManifestEntry("a.bin", 3, SHA_ABC)))


def test_manifest_refuses_non_entries() -> None:
    with pytest.raises(InvalidInput, match="must be ManifestEntry, not dict"):
        Manifest(({"path": "a"},))  # type: ignore[arg-type]


def test_digest_follows_the_documented_canonical_encoding() -> None:
    manifest = Manifest(
        (ManifestEntry("dir/empty.txt", 0, SHA_EMPTY), ManifestEntry("a.bin", 3, SHA_ABC))
    )
    canonical = f'[["a.bin",3,"{SHA_ABC}"],["dir/empty.txt",0,"{SHA_EMPTY}"]]'.encode()
    assert manifest.digest == "sha256:" + hashlib.sha256(canonical).hexdigest()
    # Golden value (also `printf '<canonical>' | sha256sum`): changing the
    # encoding would change every registered content address.
    assert manifest.digest == (
        "sha256:f7d3694269052d97be4251fe8b9834d4eaf9f6d5cdec0270f82b3f23d5074b8e"
    )


def test_digest_encodes_non_ascii_paths_as_utf8() -> None:
    manifest = Manifest((ManifestEntry("modèle/权重.bin", 0, SHA_EMPTY),))
    canonical = f'[["modèle/权重.bin",0,"{SHA_EMPTY}"]]'.encode()
    assert manifest.digest == "sha256:" + hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "manifest",
    [
        Manifest(),
        Manifest((ManifestEntry("a.bin", 3, SHA_ABC),)),
        Manifest((ManifestEntry("x/y/z.bin", 10, SHA_ONE), ManifestEntry("é", 0, SHA_EMPTY))),
    ],
)
def test_manifest_round_trips_through_json(manifest: Manifest) -> None:
    data = json.loads(json.dumps(manifest.to_json()))
    assert data["digest"] == manifest.digest
    restored = Manifest.from_json(data)
    assert restored == manifest
    assert restored.digest == manifest.digest


def test_manifest_from_json_without_digest_is_accepted() -> None:
    manifest = Manifest((ManifestEntry("a.bin", 3, SHA_ABC),))
    assert Manifest.from_json({"entries": [manifest.entries[0].to_json()]}) == manifest


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not a manifest", "must be a JSON object"),
        ({"entries": {}}, "entries must be a JSON array"),
        ({"digest": "sha256:" + "0" * 64}, "lacks entries"),
        ({"entries": [], "signature": "x"}, "unknown field"),
        ({"entries": [], "digest": "sha256:" + "0" * 64}, "digest mismatch: recorded sha256:0"),
    ],
)
def test_manifest_from_json_refuses_malformed(data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Manifest.from_json(data)


def test_manifest_from_json_refuses_an_edited_entry() -> None:
    data = Manifest((ManifestEntry("a.bin", 3, SHA_ABC),)).to_json()
    data["entries"][0]["sha256"] = SHA_ONE
    with pytest.raises(InvalidInput, match="digest mismatch"):
        Manifest.from_json(data)


# --- hash_tree -----------------------------------------------------------------


def test_hash_tree_records_known_sha256(make_tree: MakeTree) -> None:
    root = make_tree({"a.bin": b"abc", "dir/empty.txt": b""})
    manifest = hash_tree(root)
    assert manifest.entries == (
        ManifestEntry("a.bin", 3, SHA_ABC),
        ManifestEntry("dir/empty.txt", 0, SHA_EMPTY),
    )
    assert manifest.digest == (
        "sha256:f7d3694269052d97be4251fe8b9834d4eaf9f6d5cdec0270f82b3f23d5074b8e"
    )


def test_same_files_give_same_digest_whatever_the_creation_order(make_tree: MakeTree) -> None:
    files = {"config.json": b"{}", "weights/0.bin": b"\x00" * 1000, "tok.txt": b"hello"}
    first = make_tree(files)
    second = make_tree(dict(reversed(files.items())))
    assert hash_tree(first).digest == hash_tree(second).digest


def test_one_changed_byte_changes_the_digest(make_tree: MakeTree) -> None:
    root = make_tree({"w.bin": bytes(range(256)) * 10, "c.json": b"{}"})
    before = hash_tree(root)
    data = bytearray((root / "w.bin").read_bytes())
    data[1234] ^= 0x01
    (root / "w.bin").write_bytes(bytes(data))
    after = hash_tree(root)
    assert after.digest != before.digest
    assert [check.path for check in compare(before, after) if check.state != "match"] == ["w.bin"]


def test_renaming_a_file_changes_the_digest(make_tree: MakeTree) -> None:
    first = make_tree({"a.bin": b"abc"})
    second = make_tree({"b.bin": b"abc"})
    assert hash_tree(first).digest != hash_tree(second).digest


def test_hidden_files_and_nested_paths_are_hashed(make_tree: MakeTree) -> None:
    root = make_tree({".gitattributes": b"*.bin lfs", ".cache/x/y.bin": b"abc", "m.bin": b""})
    paths = [entry.path for entry in hash_tree(root).entries]
    assert paths == [".cache/x/y.bin", ".gitattributes", "m.bin"]


def test_single_file_gives_one_entry_named_by_file_name(make_tree: MakeTree) -> None:
    root = make_tree({"model.safetensors": b"abc"})
    manifest = hash_tree(root / "model.safetensors")
    assert manifest.entries == (ManifestEntry("model.safetensors", 3, SHA_ABC),)


def test_big_file_is_streamed_in_chunks(make_tree: MakeTree) -> None:
    # 9 MiB + 1 byte: several chunks and a short last one.
    data = os.urandom(9 * 1024 * 1024 + 1)
    root = make_tree({"big.bin": data, "small.bin": b"abc"})
    progress = RecordingProgress()
    manifest = hash_tree(root, workers=2, progress=progress)
    assert manifest.entries[0] == ManifestEntry(
        "big.bin", len(data), hashlib.sha256(data).hexdigest()
    )
    assert progress.started == [(len(data) + 3, 2)]
    assert progress.advanced == len(data) + 3


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_worker_count_does_not_change_the_manifest(make_tree: MakeTree, workers: int) -> None:
    files = {f"shard-{index}.bin": os.urandom(index * 50_000) for index in range(7)}
    root = make_tree(files, name="shards")
    expected = Manifest(
        tuple(
            ManifestEntry(name, len(data), hashlib.sha256(data).hexdigest())
            for name, data in files.items()
        )
    )
    assert hash_tree(root, workers=workers) == expected


def test_symlink_inside_root_is_followed_under_its_own_name(make_tree: MakeTree) -> None:
    root = make_tree({"blobs/abc": b"abc"})
    (root / "model.bin").symlink_to("blobs/abc")
    assert hash_tree(root).entries == (
        ManifestEntry("blobs/abc", 3, SHA_ABC),
        ManifestEntry("model.bin", 3, SHA_ABC),
    )


def test_symlinks_into_an_allowed_root_are_followed(make_tree: MakeTree) -> None:
    # The Hugging Face cache layout: snapshot files link to ../../blobs/<sha>.
    repo = make_tree({f"blobs/{SHA_ABC}": b"abc"})
    snapshot = repo / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(f"../../blobs/{SHA_ABC}")
    with pytest.raises(UnsafePath, match="config.json: symlink resolves to .*outside"):
        hash_tree(snapshot)
    manifest = hash_tree(snapshot, allowed_roots=[repo / "blobs"])
    assert manifest.entries == (ManifestEntry("config.json", 3, SHA_ABC),)


def test_root_given_as_symlink_is_followed(make_tree: MakeTree, tmp_path: Path) -> None:
    root = make_tree({"a.bin": b"abc", "link.bin": b""})
    (root / "link.bin").unlink()
    (root / "link.bin").symlink_to("a.bin")
    (tmp_path / "latest").symlink_to(root)
    assert hash_tree(tmp_path / "latest") == hash_tree(root)


def test_nothing_is_hashed_before_a_refusal(make_tree: MakeTree, tmp_path: Path) -> None:
    root = make_tree({"a.bin": b"abc" * 1000})
    (tmp_path / "secret").write_bytes(b"x")
    (root / "zz-escape").symlink_to(tmp_path / "secret")
    progress = RecordingProgress()
    with pytest.raises(UnsafePath, match="zz-escape: symlink resolves to .*secret, outside"):
        hash_tree(root, progress=progress)
    assert progress.started == []
    assert progress.advanced == 0


def _symlink_to_outside_file(root: Path, tmp_path: Path) -> str:
    (tmp_path / "outside.bin").write_bytes(b"x")
    (root / "sub").mkdir()
    (root / "sub" / "link").symlink_to(tmp_path / "outside.bin")
    return r"sub/link: symlink resolves to .*outside\.bin, outside the model directory"


def _relative_symlink_escaping(root: Path, tmp_path: Path) -> str:
    (tmp_path / "outside.bin").write_bytes(b"x")
    (root / "link").symlink_to("../outside.bin")
    return "link: symlink resolves to .*, outside the model directory"


def _symlink_to_directory_inside(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    (root / "sub").mkdir()
    (root / "sub" / "f.bin").write_bytes(b"x")
    (root / "alias").symlink_to("sub")
    return "alias: symlinked directory"


def _broken_symlink(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    (root / "dangling").symlink_to("nowhere.bin")
    return "dangling: symlink is broken or loops"


def _symlink_loop(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    (root / "ping").symlink_to("pong")
    (root / "pong").symlink_to("ping")
    return "symlink is broken or loops"


def _fifo(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    os.mkfifo(root / "pipe")
    return r"pipe: is a fifo \(named pipe\); only regular files"


def _backslash_name(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    (root / "dir\\file.bin").write_bytes(b"x")
    return "file name contains a backslash"


def _undecodable_name(root: Path, tmp_path: Path) -> str:  # noqa: ARG001
    (root / os.fsdecode(b"w\xff.bin")).write_bytes(b"x")
    return r"w\\xff\.bin: file name is not valid UTF-8"


@pytest.mark.parametrize(
    "build",
    [
        _symlink_to_outside_file,
        _relative_symlink_escaping,
        _symlink_to_directory_inside,
        _broken_symlink,
        _symlink_loop,
        _fifo,
        _backslash_name,
        _undecodable_name,
    ],
)
def test_unsafe_entries_are_refused(
    make_tree: MakeTree, tmp_path: Path, build: Callable[[Path, Path], str]
) -> None:
    root = make_tree({"ok.bin": b"abc"})
    message = build(root, tmp_path)
    with pytest.raises(UnsafePath, match=message):
        hash_tree(root)


def test_device_reached_through_an_allowed_root_is_refused(make_tree: MakeTree) -> None:
    root = make_tree({"ok.bin": b"abc"})
    (root / "null").symlink_to("/dev/null")
    with pytest.raises(UnsafePath, match="null: is a character device"):
        hash_tree(root, allowed_roots=[Path("/dev")])


def test_fifo_given_as_the_path_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsafePath, match="pipe: is a fifo"):
        hash_tree(tmp_path / "pipe")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files whatever their mode")
def test_unreadable_file_is_refused(make_tree: MakeTree) -> None:
    root = make_tree({"ok.bin": b"abc", "locked.bin": b"x"})
    (root / "locked.bin").chmod(0)
    with pytest.raises(UnsafePath, match="locked.bin: file is not readable"):
        hash_tree(root)


def test_unreadable_file_is_refused_even_for_root(
    make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads everything, so simulate the permission check failing.
    root = make_tree({"ok.bin": b"abc", "locked.bin": b"x"})
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: not str(path).endswith("locked.bin") and real_access(path, mode),
    )
    with pytest.raises(UnsafePath, match="locked.bin: file is not readable"):
        hash_tree(root)


class SwapAfterPlanning(RecordingProgress):
    """Changes the tree between the checks and the hashing (``start`` sits in between)."""

    def __init__(self, change: Callable[[], None]) -> None:
        super().__init__()
        self.change = change

    def start(self, total_bytes: int, files: int) -> None:
        super().start(total_bytes, files)
        self.change()


def _to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _to_symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/hostname")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_to_fifo, r"w.bin: changed while hashing: is a fifo"),
        (_to_symlink, "w.bin: cannot be opened"),
        (Path.unlink, "w.bin: cannot be opened: No such file"),
    ],
)
def test_file_swapped_after_the_checks_is_refused(
    make_tree: MakeTree, change: Callable[[Path], None], message: str
) -> None:
    root = make_tree({"w.bin": b"abc"})
    with pytest.raises(UnsafePath, match=message):
        hash_tree(root, progress=SwapAfterPlanning(lambda: change(root / "w.bin")))


class AppendWhileHashing(RecordingProgress):
    """Appends to a file after every chunk hashed, as a busy writer racing us would."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        with self.path.open("ab") as stream:
            stream.write(b"more")


@pytest.mark.parametrize("size", [100, 5 * 1024 * 1024])
def test_file_growing_while_hashed_is_refused(make_tree: MakeTree, size: int) -> None:
    # Also proves hashing stops: a reader that followed the writer never would.
    root = make_tree({"grows.bin": b"x" * size})
    with pytest.raises(UnsafePath, match="grows.bin: file changed while it was hashed"):
        hash_tree(root, progress=AppendWhileHashing(root / "grows.bin"))


@pytest.mark.parametrize(
    ("files", "dirs"),
    [({}, []), ({}, ["a", "b/c"])],
)
def test_directory_without_files_is_refused(
    make_tree: MakeTree, files: dict[str, bytes], dirs: list[str]
) -> None:
    root = make_tree(files)
    for rel in dirs:
        (root / rel).mkdir(parents=True)
    with pytest.raises(InvalidInput, match="no files to register"):
        hash_tree(root)


def test_missing_path_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does-not-exist does not exist"):
        hash_tree(tmp_path / "does-not-exist")


@pytest.mark.parametrize("workers", [0, -3])
def test_worker_count_must_be_positive(make_tree: MakeTree, workers: int) -> None:
    with pytest.raises(InvalidInput, match="workers must be at least 1"):
        hash_tree(make_tree({"a": b""}), workers=workers)


# --- compare -------------------------------------------------------------------


def test_compare_reports_every_state_sorted_by_path() -> None:
    expected = Manifest(
        (
            ManifestEntry("same.bin", 3, SHA_ABC),
            ManifestEntry("changed.bin", 3, SHA_ABC),
            ManifestEntry("resized.bin", 3, SHA_ABC),
            ManifestEntry("gone.bin", 0, SHA_EMPTY),
        )
    )
    actual = Manifest(
        (
            ManifestEntry("same.bin", 3, SHA_ABC),
            ManifestEntry("changed.bin", 3, SHA_ONE),
            ManifestEntry("resized.bin", 4, SHA_ABC),
            ManifestEntry("added.bin", 0, SHA_EMPTY),
        )
    )
    assert compare(expected, actual) == [
        FileCheck("added.bin", "extra", None, SHA_EMPTY, None, 0),
        FileCheck("changed.bin", "mismatch", SHA_ABC, SHA_ONE, 3, 3),
        FileCheck("gone.bin", "missing", SHA_EMPTY, None, 0, None),
        FileCheck("resized.bin", "mismatch", SHA_ABC, SHA_ABC, 3, 4),
        FileCheck("same.bin", "match", SHA_ABC, SHA_ABC, 3, 3),
    ]


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (Manifest(), Manifest(), True),
        (
            Manifest((ManifestEntry("a", 3, SHA_ABC),)),
            Manifest((ManifestEntry("a", 3, SHA_ABC),)),
            True,
        ),
        (Manifest((ManifestEntry("a", 3, SHA_ABC),)), Manifest(), False),
        (Manifest(), Manifest((ManifestEntry("a", 3, SHA_ABC),)), False),
        (
            Manifest((ManifestEntry("a", 3, SHA_ABC),)),
            Manifest((ManifestEntry("a", 3, SHA_ONE),)),
            False,
        ),
    ],
)
def test_all_match(expected: Manifest, actual: Manifest, matches: bool) -> None:
    assert all_match(compare(expected, actual)) is matches


def test_file_check_round_trips_and_validates_state() -> None:
    check = FileCheck("a.bin", "missing", SHA_ABC, None, 3, None)
    assert FileCheck.from_json(json.loads(json.dumps(check.to_json()))) == check
    with pytest.raises(InvalidInput, match="state must be one of"):
        FileCheck("a.bin", "gone", None, None, None, None)  # type: ignore[arg-type]


def test_public_names_are_exactly_all() -> None:
    defined = {
        name
        for name, value in vars(manifest_module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ in {"registry.manifest", "registry._hashing"}
    }
    assert defined | {"FileState"} == set(manifest_module.__all__)
    assert all(hasattr(manifest_module, name) for name in manifest_module.__all__)
