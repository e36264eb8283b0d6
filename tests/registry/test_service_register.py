"""The registration contract: manifests, identity, lineage edges, signatures, verify, identify."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, update

from lineage import Relation
from registry import signing
from registry.cli.cmd_models import parse_dataset
from registry.client import LocalRegistry
from registry.errors import (
    AlreadyExists,
    AmbiguousReference,
    DuplicateContent,
    InvalidInput,
    LineageCycle,
    NotFound,
    PermissionDenied,
    SignatureError,
)
from registry.identity import Actor, Role
from registry.manifest import Manifest, hash_tree
from registry.tables import PublisherKey, Signature
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    SQLITE_ONLY,
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)

DIGEST = "sha256:" + "d" * 64


@pytest.fixture
def lineage(reg: LocalRegistry) -> LocalRegistry:
    """a -> b -> c, a second base x, and a dataset d@1."""
    reg.register_model(name="a", version="1", manifest=fake_manifest("a"))
    reg.register_model(name="b", version="1", manifest=fake_manifest("b"), parents=["a@1"])
    reg.register_model(name="c", version="1", manifest=fake_manifest("c"), parents=["b@1"])
    reg.register_model(name="x", version="1", manifest=fake_manifest("x"))
    reg.register_dataset(name="d", version="1", digest=DIGEST)
    return reg


def register(reg: LocalRegistry, ref: str, **options: object) -> object:
    name, version = ref.split("@")
    options.setdefault("manifest", fake_manifest(ref))
    return reg.register_model(name=name, version=version, **options)


def parents_of(reg: LocalRegistry, ref: str) -> list[tuple[str, str, str]]:
    return [(p.ref, p.kind, p.relation) for p in reg.show(ref, kind="model").parents]


# --- manifests and identity -------------------------------------------------------------


def test_registration_records_the_manifest_and_metadata(
    reg: LocalRegistry, make_model: Callable[..., Path]
) -> None:
    manifest = hash_tree(
        make_model("bert", {"model.safetensors": "w" * 100, "cfg/config.json": "{}"})
    )
    created = reg.register_model(name="acme/bert",
        version="1.0",
        manifest=manifest,
        publisher="acme",
        source="hf://acme/bert@abc",
        format="safetensors",
    )
    assert created == reg.show("acme/bert@1.0")
    assert (created.ref, created.kind, created.digest, created.file_count, created.total_size) == (
        "acme/bert@1.0",
        "model",
        manifest.digest,
        2,
        102,
    )
    assert (created.publisher, created.source, created.format, created.created_by) == (
        "acme",
        "hf://acme/bert@abc",
        "safetensors",
        "alice",
    )
    assert (created.finding, created.status, created.signed, created.parents) == (
        "unscanned",
        "clean",
        False,
        [],
    )


def test_another_version_of_a_name_is_a_new_model(reg: LocalRegistry) -> None:
    register(reg, "m@1")
    register(reg, "m@2", parents=["m@1"])
    assert [a.ref for a in reg.list_artifacts()] == ["m@1", "m@2"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("has space", "1"),
        ("at@sign", "1"),
        ("m", "1/2"),
        ("m", ""),
        ("", "1"),
        (":m", "1"),
    ],
)
def test_names_that_cannot_be_written_as_references_are_refused(
    reg: LocalRegistry, name: str, version: str
) -> None:
    with pytest.raises(InvalidInput, match="is not a reference"):
        reg.register_model(name=name, version=version, manifest=fake_manifest("x"))


def test_a_duplicate_version_is_refused_and_nothing_is_written(lineage: LocalRegistry) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(AlreadyExists, match="model b@1 is already registered"):
        register(lineage, "b@1", manifest=fake_manifest("new content"), parents=["x@1"])
    assert snapshot(lineage.engine) == before


def test_duplicate_content_names_the_existing_model(lineage: LocalRegistry) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(DuplicateContent, match="already registered as b@1") as caught:
        register(lineage, "copy@1", manifest=fake_manifest("b"))
    assert (caught.value.existing, caught.value.digest) == ("b@1", fake_manifest("b").digest)
    assert snapshot(lineage.engine) == before


def test_duplicate_content_is_recorded_when_allowed(lineage: LocalRegistry) -> None:
    copy = register(lineage, "copy@1", manifest=fake_manifest("b"), allow_duplicate_content=True)
    assert copy.digest == lineage.show("b@1").digest
    assert [a.ref for a in lineage.identify(fake_manifest("b"))] == ["b@1", "copy@1"]


def test_a_dataset_may_share_a_models_reference_but_bare_refs_become_ambiguous(
    lineage: LocalRegistry,
) -> None:
    lineage.register_dataset(name="a", version="1", digest=DIGEST)
    with pytest.raises(AmbiguousReference, match="a@1 names both a model and a dataset") as caught:
        lineage.show("a@1")
    assert caught.value.hint == "write model:a@1 or dataset:a@1"
    assert lineage.show("dataset:a@1").kind == "dataset"
    assert lineage.show("model:a@1").kind == "model"


def test_publishers_register_but_readers_may_not(lineage: LocalRegistry) -> None:
    publisher = LocalRegistry(lineage.engine, Actor("bob", Role.PUBLISHER))
    assert register(publisher, "p@1", parents=["a@1"]).created_by == "bob"
    reader = LocalRegistry(lineage.engine, Actor("eve", Role.READER))
    with pytest.raises(PermissionDenied, match="needs the publisher role"):
        register(reader, "r@1")


# --- lineage edges ----------------------------------------------------------------------


def test_a_model_cannot_be_its_own_parent(lineage: LocalRegistry) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(LineageCycle, match="m@1 -> m@1"):
        register(lineage, "m@1", parents=["m@1"])
    with pytest.raises(LineageCycle, match="a@1 -> a@1"):
        lineage.add_parents("a@1", parents=["a@1"])
    assert snapshot(lineage.engine) == before


@pytest.mark.parametrize(("child", "parent"), [("a@1", "b@1"), ("a@1", "c@1"), ("b@1", "c@1")])
def test_an_edge_closing_a_cycle_is_refused(
    lineage: LocalRegistry, child: str, parent: str
) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(LineageCycle, match="would be cyclic") as caught:
        lineage.add_parents(child, parents=[parent])
    assert caught.value.cycle[0] == caught.value.cycle[-1] == child
    assert parent in caught.value.cycle
    assert snapshot(lineage.engine) == before


def test_a_refused_cycle_is_reported_along_real_edges(lineage: LocalRegistry) -> None:
    with pytest.raises(LineageCycle) as caught:
        lineage.add_parents("a@1", parents=["c@1"])
    assert caught.value.cycle == ("a@1", "b@1", "c@1", "a@1")


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"parents": ["a@1", "nope@1"]}, NotFound, "model nope@1 is not registered"),
        ({"parents": ["d@1"]}, NotFound, "model d@1 is not registered"),
        (
            {"datasets": [("nope@1", Relation.TRAINED_ON)]},
            NotFound,
            "dataset nope@1 is not registered",
        ),
        ({"datasets": [("a@1", Relation.TRAINED_ON)]}, NotFound, "dataset a@1 is not registered"),
        (
            {"parents": ["a@1"], "relation": Relation.MERGE},
            InvalidInput,
            "a merge needs at least two",
        ),
        (
            {"parents": ["a@1", "x@1"], "relation": Relation.FINETUNE},
            InvalidInput,
            "several parents make a merge, not a finetune",
        ),
        (
            {"parents": ["a@1"], "relation": Relation.TRAINED_ON},
            InvalidInput,
            "trained_on is a dataset use",
        ),
        ({"parents": ["a@1", "a@1"]}, InvalidInput, "the same --parent is given twice"),
        ({"parents": ["not a ref"]}, InvalidInput, "is not a reference"),
        ({"datasets": [("d@1", Relation.FINETUNE)]}, InvalidInput, "finetune is not a dataset use"),
        (
            {"datasets": [("d@1", Relation.TRAINED_ON), ("d@1", Relation.EVALUATED_ON)]},
            InvalidInput,
            "the same --dataset is given twice",
        ),
        ({"team": "nobody"}, NotFound, "team nobody is not registered"),
        ({"manifest": Manifest(())}, InvalidInput, "the manifest lists no files"),
    ],
)
def test_bad_registrations_are_refused_and_nothing_is_written(
    lineage: LocalRegistry, options: dict[str, object], error: type[Exception], message: str
) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(error, match=message):
        register(lineage, "m@1", **options)
    assert snapshot(lineage.engine) == before


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"parents": ["a@1"]}, [("a@1", "model", "finetune")]),
        ({"parents": ["a@1"], "relation": Relation.QUANTIZED}, [("a@1", "model", "quantized")]),
        ({"parents": ["c@1", "x@1"]}, [("c@1", "model", "merge"), ("x@1", "model", "merge")]),
        (
            {"parents": ["a@1", "c@1", "x@1"], "relation": Relation.MERGE},
            [("a@1", "model", "merge"), ("c@1", "model", "merge"), ("x@1", "model", "merge")],
        ),
        ({"datasets": [("d@1", Relation.EVALUATED_ON)]}, [("d@1", "dataset", "evaluated_on")]),
        (
            {"parents": ["x@1"], "datasets": [("dataset:d@1", Relation.FINE_TUNED_ON)]},
            [("d@1", "dataset", "fine_tuned_on"), ("x@1", "model", "finetune")],
        ),
    ],
)
def test_parents_and_dataset_uses_are_recorded_with_their_relation(
    lineage: LocalRegistry, options: dict[str, object], expected: list[tuple[str, str, str]]
) -> None:
    assert [
        (p.ref, p.kind, p.relation) for p in register(lineage, "m@1", **options).parents
    ] == expected
    assert parents_of(lineage, "m@1") == expected


def test_a_merge_is_an_ancestor_of_every_parent_line(lineage: LocalRegistry) -> None:
    register(lineage, "m@1", parents=["c@1", "x@1"], datasets=[("d@1", Relation.TRAINED_ON)])
    assert [(e.ref, e.depth, e.path) for e in lineage.ancestors("m@1")] == [
        ("c@1", 1, ["c@1", "m@1"]),
        ("d@1", 1, ["d@1", "m@1"]),
        ("x@1", 1, ["x@1", "m@1"]),
        ("b@1", 2, ["b@1", "c@1", "m@1"]),
        ("a@1", 3, ["a@1", "b@1", "c@1", "m@1"]),
    ]
    assert [e.ref for e in lineage.descendants("x@1")] == ["m@1"]


def test_add_parents_records_a_late_base_and_a_dataset(lineage: LocalRegistry) -> None:
    updated = lineage.add_parents("x@1", parents=["a@1"], datasets=[("d@1", Relation.TRAINED_ON)]
    )
    assert [(p.ref, p.relation) for p in updated.parents] == [
        ("a@1", "finetune"),
        ("d@1", "trained_on"),
    ]
    assert [(e.ref, e.depth) for e in lineage.descendants("a@1")] == [
        ("b@1", 1),
        ("x@1", 1),
        ("c@1", 2),
    ]
    lineage.add_parents("x@1", parents=["c@1"])
    assert parents_of(lineage, "x@1") == [
        ("a@1", "model", "finetune"),
        ("c@1", "model", "merge"),
        ("d@1", "dataset", "trained_on"),
    ]


def test_add_parents_does_not_count_datasets_as_merge_parents(lineage: LocalRegistry) -> None:
    register(lineage, "m@1", datasets=[("d@1", Relation.TRAINED_ON)])
    updated = lineage.add_parents("m@1", parents=["a@1"])
    assert [(p.ref, p.relation) for p in updated.parents] == [
        ("a@1", "finetune"),
        ("d@1", "trained_on"),
    ]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"parents": ["a@1"]}, InvalidInput, "that edge exists already"),
        ({"parents": []}, InvalidInput, "give at least one --parent or --dataset"),
        ({"parents": ["nope@1"]}, NotFound, "model nope@1 is not registered"),
        ({"parents": ["x@1", "nope@1"]}, NotFound, "model nope@1 is not registered"),
    ],
)
def test_add_parents_refusals_write_nothing(
    lineage: LocalRegistry, options: dict[str, object], error: type[Exception], message: str
) -> None:
    before = snapshot(lineage.engine)
    with pytest.raises(error, match=message):
        lineage.add_parents("b@1", **options)
    assert snapshot(lineage.engine) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d@1", ("d@1", Relation.TRAINED_ON)),
        ("d@1:trained_on", ("d@1", Relation.TRAINED_ON)),
        ("d@1:fine_tuned_on", ("d@1", Relation.FINE_TUNED_ON)),
        ("org/data@2024.1:evaluated_on", ("org/data@2024.1", Relation.EVALUATED_ON)),
        ("dataset:d@1", ("dataset:d@1", Relation.TRAINED_ON)),
        ("dataset:d@1:evaluated_on", ("dataset:d@1", Relation.EVALUATED_ON)),
    ],
)
def test_dataset_uses_are_parsed(text: str, expected: tuple[str, Relation]) -> None:
    assert parse_dataset(text) == expected


@SQLITE_ONLY
def test_an_unknown_dataset_use_is_named_in_the_error(lineage: LocalRegistry) -> None:
    with pytest.raises(InvalidInput, match="fine-tuned-on"):
        register(lineage, "m@1", datasets=[parse_dataset("d@1:fine-tuned-on")])


# --- datasets ---------------------------------------------------------------------------


def test_a_dataset_is_registered_by_digest_or_by_files(reg: LocalRegistry) -> None:
    by_digest = reg.register_dataset(name="d", version="1", digest=DIGEST, source="s3://d")
    assert (by_digest.kind, by_digest.digest, by_digest.source, by_digest.file_count) == (
        "dataset",
        DIGEST,
        "s3://d",
        0,
    )
    files = fake_manifest("row 1", "row 2", "row 3")
    by_files = reg.register_dataset(name="d", version="2", manifest=files)
    assert (by_files.digest, by_files.file_count, by_files.total_size) == (files.digest, 3, 15)
    assert [a.ref for a in reg.list_artifacts(kind="dataset")] == ["d@1", "d@2"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"digest": "sha256:abc"}, InvalidInput, "is not a digest"),
        ({"digest": "md5:" + "d" * 64}, InvalidInput, "is not a digest"),
        ({"digest": "sha256:" + "D" * 64}, InvalidInput, "is not a digest"),
        ({}, InvalidInput, "give either a dataset PATH or --digest"),
        ({"digest": DIGEST, "manifest": fake_manifest("x")}, InvalidInput, "not both or neither"),
        ({"digest": DIGEST, "version": "1"}, AlreadyExists, "dataset d@1 is already registered"),
        ({"digest": DIGEST, "name": "bad name"}, InvalidInput, "is not a reference"),
    ],
)
def test_bad_dataset_registrations_are_refused(
    reg: LocalRegistry, options: dict[str, object], error: type[Exception], message: str
) -> None:
    reg.register_dataset(name="d", version="1", digest=DIGEST)
    before = snapshot(reg.engine)
    with pytest.raises(error, match=message):
        reg.register_dataset(**{"name": "d", "version": "2", **options})
    assert snapshot(reg.engine) == before


# --- signatures -------------------------------------------------------------------------


def new_key(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, str]:
    private, public = signing.write_keypair(tmp_path / name)
    return signing.load_private_key(private), public.read_text()


@pytest.fixture
def acme(reg: LocalRegistry, tmp_path: Path) -> Ed25519PrivateKey:
    """The private key whose public half is enrolled for publisher acme."""
    key, public = new_key(tmp_path, "acme")
    reg.enroll_key(publisher="acme", public_key_pem=public)
    return key


def test_a_signed_registration_is_verified_and_recorded(
    reg: LocalRegistry, acme: Ed25519PrivateKey
) -> None:
    manifest = fake_manifest("signed")
    signature = signing.sign_digest(acme, manifest.digest)
    created = register(reg, "s@1", manifest=manifest, publisher="acme", signature=signature)
    assert created.signed
    check = reg.verify(manifest).signature
    assert (check.state, check.publisher) == ("valid", "acme")
    assert check.fingerprint == reg.list_keys(publisher="acme")[0].fingerprint


@pytest.mark.usefixtures("acme")
def test_any_enrolled_key_of_the_publisher_may_sign(reg: LocalRegistry, tmp_path: Path) -> None:
    second, public = new_key(tmp_path, "acme-2")
    reg.enroll_key(publisher="acme", public_key_pem=public)
    manifest = fake_manifest("signed")
    register(
        reg,
        "s@1",
        manifest=manifest,
        publisher="acme",
        signature=signing.sign_digest(second, manifest.digest),
    )
    assert reg.verify(manifest).signature.fingerprint == signing.key_fingerprint(public)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("other digest", SignatureError, "does not verify against any key enrolled for acme"),
        ("foreign key", SignatureError, "does not verify against any key enrolled for acme"),
        (
            "key of another publisher",
            SignatureError,
            "does not verify against any key enrolled for acme",
        ),
        ("flipped bit", SignatureError, "does not verify"),
        ("not base64", SignatureError, "does not verify"),
        ("unknown publisher", SignatureError, "publisher ghost has no enrolled key"),
        ("no publisher", InvalidInput, "needs --publisher"),
    ],
)
def test_a_bad_signature_is_refused_and_nothing_is_written(
    reg: LocalRegistry,
    acme: Ed25519PrivateKey,
    tmp_path: Path,
    case: str,
    error: type[Exception],
    message: str,
) -> None:
    manifest = fake_manifest("signed")
    foreign, _ = new_key(tmp_path, "foreign")
    other, other_public = new_key(tmp_path, "other")
    reg.enroll_key(publisher="other", public_key_pem=other_public)
    good = base64.b64decode(signing.sign_digest(acme, manifest.digest))
    signature, publisher = {
        "other digest": (signing.sign_digest(acme, fake_manifest("else").digest), "acme"),
        "foreign key": (signing.sign_digest(foreign, manifest.digest), "acme"),
        "key of another publisher": (signing.sign_digest(other, manifest.digest), "acme"),
        "flipped bit": (base64.b64encode(bytes([good[0] ^ 1]) + good[1:]).decode(), "acme"),
        "not base64": ("!!not base64!!", "acme"),
        "unknown publisher": (signing.sign_digest(acme, manifest.digest), "ghost"),
        "no publisher": (signing.sign_digest(acme, manifest.digest), None),
    }[case]
    before = snapshot(reg.engine)
    with pytest.raises(error, match=message):
        register(reg, "s@1", manifest=manifest, publisher=publisher, signature=signature)
    assert snapshot(reg.engine) == before


def test_enrolling_a_key_twice_or_a_private_key_is_refused(
    reg: LocalRegistry, acme: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(AlreadyExists, match="is already registered") as caught:
        reg.enroll_key(publisher="bob", public_key_pem=signing.public_key_pem(acme))
    assert caught.value.hint == "it is enrolled for acme"
    private, _ = signing.write_keypair(tmp_path / "leaked")
    with pytest.raises(InvalidInput, match="a private key was given"):
        reg.enroll_key(publisher="bob", public_key_pem=private.read_text())


# --- verify and identify ----------------------------------------------------------------

FILES = {"model.safetensors": "weights", "config.json": "{}", "tokenizer/vocab.txt": "a b c"}


@pytest.fixture
def shipped(reg: LocalRegistry, acme: Ed25519PrivateKey, make_model: Callable[..., Path]) -> Path:
    """A model directory registered as app@1 on base@1, signed by acme."""
    register(reg, "base@1")
    root = make_model("app", FILES)
    manifest = hash_tree(root)
    register(
        reg,
        "app@1",
        manifest=manifest,
        parents=["base@1"],
        publisher="acme",
        signature=signing.sign_digest(acme, manifest.digest),
    )
    return root


def test_verify_passes_for_the_registered_signed_clean_files(
    reg: LocalRegistry, shipped: Path
) -> None:
    report = reg.verify(hash_tree(shipped))
    assert (report.ok, report.ref, report.status, report.signature.state, report.problems) == (
        True,
        "app@1",
        "clean",
        "valid",
        [],
    )
    assert report.expected_digest == report.actual_digest
    assert {f.path: f.state for f in report.files} == dict.fromkeys(sorted(FILES), "match")
    assert reg.verify(hash_tree(shipped), ref="app@1").ok


def test_verify_reports_each_changed_missing_and_extra_file(
    reg: LocalRegistry, shipped: Path
) -> None:
    (shipped / "model.safetensors").write_text("backdoored weights")
    (shipped / "config.json").unlink()
    (shipped / "extra.pkl").write_bytes(b"\x80\x04")
    report = reg.verify(hash_tree(shipped), ref="app@1")
    assert not report.ok
    assert {f.path: f.state for f in report.files} == {
        "config.json": "missing",
        "extra.pkl": "extra",
        "model.safetensors": "mismatch",
        "tokenizer/vocab.txt": "match",
    }
    changed = next(f for f in report.files if f.path == "model.safetensors")
    assert changed.expected_sha256 != changed.actual_sha256
    assert report.problems == [
        "missing: config.json",
        "extra: extra.pkl",
        "mismatch: model.safetensors",
    ]


def test_verify_finds_unknown_files_by_digest_or_refuses(reg: LocalRegistry, shipped: Path) -> None:
    (shipped / "model.safetensors").write_text("something else")
    manifest = hash_tree(shipped)
    with pytest.raises(NotFound, match=f"{manifest.digest} is not registered") as caught:
        reg.verify(manifest)
    assert caught.value.hint is not None
    assert "mbom verify PATH NAME@VERSION" in caught.value.hint
    with pytest.raises(NotFound, match="model nope@1 is not registered"):
        reg.verify(manifest, ref="nope@1")


@SQLITE_ONLY
def test_verify_of_unknown_files_says_so_plainly(reg: LocalRegistry) -> None:
    with pytest.raises(NotFound) as caught:
        reg.verify(fake_manifest("never registered"))
    assert not str(caught.value).startswith("no "), str(caught.value)


def test_verify_fails_an_unsigned_model(reg: LocalRegistry) -> None:
    manifest = fake_manifest("plain")
    register(reg, "plain@1", manifest=manifest)
    report = reg.verify(manifest)
    assert (report.ok, report.signature.state, report.problems) == (
        False,
        "unsigned",
        ["signature unsigned"],
    )


@pytest.mark.parametrize(
    ("tamper", "state"),
    [
        (update(Signature).values(signature=base64.b64encode(bytes(64)).decode()), "invalid"),
        (delete(PublisherKey), "unknown-key"),
    ],
)
def test_verify_rechecks_the_stored_signature(
    reg: LocalRegistry, engine: Engine, shipped: Path, tamper: object, state: str
) -> None:
    with engine.begin() as conn:
        conn.execute(tamper)
    report = reg.verify(hash_tree(shipped))
    assert (report.ok, report.signature.state, report.problems) == (
        False,
        state,
        [f"signature {state}"],
    )


def test_verify_needs_a_clean_lineage_or_an_accepted_clearance(
    reg: LocalRegistry, shipped: Path
) -> None:
    manifest = hash_tree(shipped)
    reg.flag("base@1", reason="backdoor")
    report = reg.verify(manifest)
    assert (report.ok, report.status, report.problems) == (
        False,
        "infected",
        ["lineage status is infected"],
    )
    reg.clear("app@1", reason="retrained from clean data")
    assert reg.verify(manifest).problems == ["lineage status is cleared"]
    assert reg.verify(manifest, accept_cleared=True).ok
    reg.flag("app@1", reason="trigger replayed")
    assert not reg.verify(manifest, accept_cleared=True).ok


def test_identify_names_every_version_with_these_files(reg: LocalRegistry, shipped: Path) -> None:
    manifest = hash_tree(shipped)
    assert [a.ref for a in reg.identify(manifest)] == ["app@1"]
    register(reg, "app@2", manifest=manifest, allow_duplicate_content=True)
    assert [a.ref for a in reg.identify(manifest)] == ["app@1", "app@2"]
    assert reg.identify(fake_manifest("unknown")) == []
