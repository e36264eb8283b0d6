"""OpenSSF model signing (key method): our implementation against the real ``model_signing``.

The format tests need nothing but ``cryptography``. The interop tests drive the
``model_signing`` package (a test dependency) on the other side: it signs and
we verify, we sign and it verifies, and both refuse the same tampering. The
registry tests run on SQLite and PostgreSQL (the parametrized ``reg`` and
``database_url`` fixtures); the CLI tests run the real ``mbom`` executable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Engine

from registry import model_signing_format as msf
from registry.api import create_app
from registry.client import LocalRegistry, RemoteRegistry
from registry.errors import InvalidInput, MalformedBundle, NotFound, SignatureError
from registry.identity import Actor, Role
from registry.manifest import Manifest, hash_tree
from registry.settings import Settings
from tests.registry.live_server import serve_in_thread
from tests.registry.test_cli import Cli, cli_env, local_registry, tensors

MODEL_FILES: dict[str, bytes | str] = {
    "model.safetensors": tensors(1.0),  # valid: the admission scan reads its header
    "config.json": '{"layers": 2}',
    "tokenizer/vocab.txt": "a b c",
    "a-b/c.txt": "orders by components",  # PurePosixPath puts a/… before a-b/…
    "a/b.txt": "first",
    ".gitattributes": "*.bin filter=lfs",  # ignored by model_signing, kept by mbom
}


@dataclass(frozen=True)
class KeyPair:
    """An EC key pair written as PEM files."""

    private: Path
    public: Path
    key: ec.EllipticCurvePrivateKey


@pytest.fixture
def make_keys(tmp_path: Path) -> Callable[..., KeyPair]:
    """Factory: a PEM key pair (EC P-256 unless told otherwise) under ``tmp_path/keys``."""

    def make(name: str, curve: ec.EllipticCurve | None = None) -> KeyPair:
        key = ec.generate_private_key(curve or ec.SECP256R1())
        folder = tmp_path / "keys"
        folder.mkdir(exist_ok=True)
        private, public = folder / f"{name}.pem", folder / f"{name}.pub"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public.write_text(msf.public_key_pem(key.public_key()))
        return KeyPair(private, public, key)

    return make


@pytest.fixture
def alice(make_keys: Callable[..., KeyPair]) -> KeyPair:
    """The publisher's key pair."""
    return make_keys("alice")


@pytest.fixture
def model(make_model: Callable[..., Path]) -> Path:
    """A tiny model directory with nested files, a name-order trap and a git file."""
    return make_model("tiny", MODEL_FILES)


def ms_sign(model_path: Path, keys: KeyPair, signature: Path) -> None:
    """Sign with the real model_signing, as ``model_signing sign key`` does."""
    model_signing = pytest.importorskip("model_signing")
    ignored = [signature.relative_to(model_path)] if signature.parent == model_path else []
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=ignored)
    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.private)
    config.set_hashing_config(hashing).sign(model_path, signature)


def ms_verify(model_path: Path, keys: KeyPair, signature: Path) -> None:
    """Verify with the real model_signing; raises ValueError when it refuses."""
    model_signing = pytest.importorskip("model_signing")
    ignored = [signature.relative_to(model_path)] if signature.parent == model_path else []
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=ignored)
    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public)
    config.set_hashing_config(hashing).verify(model_path, signature)


def our_sign(model_path: Path, keys: KeyPair, signature: Path) -> Manifest:
    """Sign with our implementation as ``mbom register --model-signing-key`` does."""
    inside = msf.path_inside(model_path, signature)
    manifest = msf.without_path(hash_tree(model_path), inside)
    bundle = msf.sign_manifest(
        manifest,
        keys.key,
        model_name=model_path.name,
        ignore_paths=(*msf.GIT_PATHS, *([inside] if inside else [])),
        single_file=not model_path.is_dir(),
    )
    msf.write_bundle(bundle, signature)
    return manifest


def our_checks(model_path: Path, keys: KeyPair, signature: Path) -> dict[str, str]:
    """Verify with our implementation: path -> state."""
    statement = msf.verify_bundle(msf.read_bundle(signature), msf.read_public_key(keys.public))
    manifest = msf.without_path(hash_tree(model_path), msf.path_inside(model_path, signature))
    return {check.path: check.state for check in msf.check_files(statement, manifest)}


def payload_of(signature: Path) -> dict[str, Any]:
    """The statement inside a signature file."""
    bundle = json.loads(signature.read_text())
    decoded: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return decoded


# --- the format, value by value -------------------------------------------------------------------


def test_the_public_api_is_pinned() -> None:
    assert sorted(msf.__all__) == [
        "BUNDLE_MEDIA_TYPE", "Bundle", "DEFAULT_SIGNATURE_NAME", "DsseSignature", "EcKeySigner",
        "EcKeyVerifier", "Envelope", "GIT_PATHS", "PAYLOAD_TYPE", "PREDICATE_TYPE",
        "PaeSigner", "PaeVerifier", "Resource", "STATEMENT_TYPE", "Serialization", "Statement",
        "check_files", "has_symlinks", "is_ignored", "key_fingerprint", "key_hint",
        "load_private_key", "load_public_key", "path_inside", "public_key_pem", "read_bundle",
        "read_public_key", "sign_manifest", "verify_bundle", "without_path", "write_bundle",
    ]  # fmt: skip
    assert all(hasattr(msf, name) for name in msf.__all__)


def test_statement_and_bundle_round_trip_through_json(model: Path, alice: KeyPair) -> None:
    manifest = hash_tree(model)
    bundle = msf.sign_manifest(manifest, alice.key, model_name="tiny")
    assert msf.Bundle.from_json(bundle.to_json()) == bundle
    assert msf.Bundle.from_text(bundle.to_text()) == bundle
    statement = msf.Statement.from_payload(bundle.envelope.payload)
    assert msf.Statement.from_json(statement.to_json()) == statement
    assert [r.name for r in statement.resources] == [
        "a/b.txt",
        "a-b/c.txt",
        "config.json",
        "model.safetensors",
        "tokenizer/vocab.txt",
    ]
    by_path = {entry.path: entry.sha256 for entry in manifest.entries}
    assert all(by_path[r.name] == r.digest for r in statement.resources)
    assert bundle.key_hint == msf.key_hint(alice.key.public_key())
    assert bundle.to_json()["verificationMaterial"] == {
        "publicKey": {"hint": bundle.key_hint},
        "tlogEntries": [],
    }


def test_pae_is_the_dsse_v1_encoding() -> None:
    assert msf.Envelope.sign(b"{}", "t", _Echo()).signatures[0].sig == b"DSSEv1 1 t 2 {}"


class _Echo:
    """A signer whose signature is the message itself (to see what gets signed)."""

    def sign(self, message: bytes) -> bytes:
        return message


def _tampered(bundle: dict[str, Any], **statement_changes: Any) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for dotted, value in statement_changes.items():
        target = statement
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    envelope = {
        **bundle["dsseEnvelope"],
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
    }
    return {**bundle, "dsseEnvelope": envelope}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda b: [b], MalformedBundle, "not a JSON object"),
        (lambda b: {**b, "mediaType": "application/json"}, MalformedBundle, "mediaType"),
        (
            lambda b: {**b, "verificationMaterial": {"certificate": {"rawBytes": "AA=="}}},
            MalformedBundle,
            "key method only",
        ),
        (
            lambda b: {k: v for k, v in b.items() if k != "dsseEnvelope"},
            MalformedBundle,
            "no dsseEnvelope",
        ),
        (
            lambda b: {**b, "dsseEnvelope": {**b["dsseEnvelope"], "payload": "%%%"}},
            MalformedBundle,
            "not base64",
        ),
        (
            lambda b: {**b, "dsseEnvelope": {**b["dsseEnvelope"], "signatures": []}},
            MalformedBundle,
            "no signatures",
        ),
    ],
)
def test_malformed_bundles_are_refused_when_read(
    model: Path,
    alice: KeyPair,
    change: Callable[[dict[str, Any]], Any],
    error: type[Exception],
    match: str,
) -> None:
    bundle = msf.sign_manifest(hash_tree(model), alice.key, model_name="tiny").to_json()
    with pytest.raises(error, match=match):
        msf.Bundle.from_json(change(bundle))


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"_type": "https://in-toto.io/Statement/v0.1"}, MalformedBundle, "in-toto"),
        ({"predicateType": "https://model_signing/Digests/v0.1"}, MalformedBundle, "before 1.0"),
        ({"predicate__serialization__method": "shards"}, MalformedBundle, "'files'"),
        ({"predicate__resources__0__algorithm": "blake3"}, MalformedBundle, "sha256 only"),
        ({"predicate__resources__0__name": "../etc/passwd"}, MalformedBundle, "resource name"),
        ({"subject__0__digest__sha256": "0" * 64}, MalformedBundle, "inconsistent"),
    ],
)
def test_statements_we_cannot_check_are_refused(
    model: Path, alice: KeyPair, changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each change is checked on an honestly re-signed statement: the refusal is the shape's."""
    bundle = msf.sign_manifest(hash_tree(model), alice.key, model_name="tiny").to_json()
    forged = _tampered(bundle, **changes)
    payload = base64.b64decode(forged["dsseEnvelope"]["payload"])
    resigned = msf.Envelope.sign(payload, msf.PAYLOAD_TYPE, msf.EcKeySigner(alice.key))
    with pytest.raises(error, match=match):
        msf.verify_bundle(
            msf.Bundle(resigned, bundle["verificationMaterial"]["publicKey"]["hint"]),
            alice.key.public_key(),
        )


def test_signature_failures_are_signature_errors(
    model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair]
) -> None:
    bundle = msf.sign_manifest(hash_tree(model), alice.key, model_name="tiny")
    mallory = make_keys("mallory").key.public_key()
    with pytest.raises(SignatureError, match="made with another key"):
        msf.verify_bundle(bundle, mallory)
    no_hint = msf.Bundle(bundle.envelope, key_hint=None)
    with pytest.raises(SignatureError, match="does not verify with public key"):
        msf.verify_bundle(no_hint, mallory)
    forged = msf.Bundle.from_json(_tampered(bundle.to_json(), predicate__resources=[]))
    with pytest.raises(SignatureError, match="does not verify"):
        msf.verify_bundle(forged, alice.key.public_key())
    retyped = msf.Envelope(bundle.envelope.payload, "application/json", bundle.envelope.signatures)
    with pytest.raises(MalformedBundle, match="payloadType"):
        msf.verify_bundle(msf.Bundle(retyped, bundle.key_hint), alice.key.public_key())


def test_keys_other_than_pem_ec_p256_are_refused(
    tmp_path: Path, alice: KeyPair, make_keys: Callable[..., KeyPair]
) -> None:
    p384 = make_keys("p384", ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        alice.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(InvalidInput, match="secp384r1; mbom signs and verifies EC P-256"):
        msf.load_private_key(p384.private)
    with pytest.raises(InvalidInput, match="secp384r1"):
        msf.read_public_key(p384.public)
    with pytest.raises(InvalidInput, match="not an EC key"):
        msf.read_public_key(rsa_pub)
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        msf.read_public_key(garbage)
    with pytest.raises(InvalidInput, match="not a PEM private key"):
        msf.load_private_key(garbage)
    with pytest.raises(InvalidInput, match="is encrypted"):
        msf.load_private_key(encrypted)
    with pytest.raises(InvalidInput, match="is a private key"):
        msf.read_public_key(alice.private)
    with pytest.raises(InvalidInput, match="cannot read"):
        msf.read_public_key(tmp_path / "absent.pub")


def test_a_file_signed_below_an_ignored_path_is_still_checked(alice: KeyPair) -> None:
    manifest = Manifest.from_json(
        {
            "entries": [
                {"path": ".github/w.yml", "size": 1, "sha256": "a" * 64},
                {"path": "w.bin", "size": 1, "sha256": "b" * 64},
            ]
        }
    )
    bundle = msf.sign_manifest(manifest, alice.key, model_name="m", ignore_paths=())
    statement = msf.verify_bundle(bundle, alice.key.public_key())
    changed = Manifest.from_json(
        {
            "entries": [
                {"path": ".github/w.yml", "size": 1, "sha256": "c" * 64},
                {"path": "w.bin", "size": 1, "sha256": "b" * 64},
                {"path": ".git/HEAD", "size": 1, "sha256": "d" * 64},
            ]
        }
    )
    states = {c.path: c.state for c in msf.check_files(statement, changed)}
    assert states == {".github/w.yml": "mismatch", "w.bin": "match"}


# --- interop with the model_signing package -------------------------------------------------------


def test_model_signing_signs_and_we_verify(model: Path, alice: KeyPair) -> None:
    signature = model / "model.sig"
    ms_sign(model, alice, signature)
    assert our_checks(model, alice, signature) == dict.fromkeys(
        ["a-b/c.txt", "a/b.txt", "config.json", "model.safetensors", "tokenizer/vocab.txt"], "match"
    )
    # Ours, written over theirs, has the same statement: resources, order, subject digest.
    theirs = payload_of(signature)
    mine = our_sign(model, alice, signature)
    ours = payload_of(signature)
    assert theirs["subject"] == ours["subject"]
    assert theirs["predicate"]["resources"] == ours["predicate"]["resources"]
    assert theirs["predicateType"] == ours["predicateType"] == msf.PREDICATE_TYPE
    assert sorted(theirs["predicate"]["serialization"]["ignore_paths"]) == sorted(
        [*msf.GIT_PATHS, "model.sig"]
    )
    assert len(mine.entries) == len(MODEL_FILES)  # .gitattributes stays in mbom's manifest


def test_we_sign_and_model_signing_verifies(model: Path, alice: KeyPair) -> None:
    signature = model / "model.sig"
    our_sign(model, alice, signature)
    ms_verify(model, alice, signature)
    outside = model.parent / "tiny.sig"
    our_sign(model, alice, outside)
    ms_verify(model, alice, outside)


def test_single_file_models_interoperate(make_model: Callable[..., Path], alice: KeyPair) -> None:
    weights = make_model("single", {"w.safetensors": "only file"}) / "w.safetensors"
    theirs, ours = weights.with_name("theirs.sig"), weights.with_name("ours.sig")
    ms_sign(weights, alice, theirs)
    our_sign(weights, alice, ours)
    ms_verify(weights, alice, ours)
    assert our_checks(weights, alice, theirs) == {"w.safetensors": "match"}
    assert payload_of(ours)["predicate"]["resources"][0]["name"] == "."


TAMPERING: list[tuple[str, Callable[[Path], None], dict[str, str]]] = [
    (
        "changed bytes",
        lambda m: (m / "config.json").write_text('{"layers": 3}'),
        {"config.json": "mismatch"},
    ),
    (
        "added file",
        lambda m: (m / "backdoor.pkl").write_bytes(b"cos\nsystem\n"),
        {"backdoor.pkl": "extra"},
    ),
    (
        "removed file",
        lambda m: (m / "tokenizer" / "vocab.txt").unlink(),
        {"tokenizer/vocab.txt": "missing"},
    ),
]


@pytest.mark.parametrize(("what", "tamper", "expected"), TAMPERING, ids=[t[0] for t in TAMPERING])
@pytest.mark.parametrize("signer", ["model_signing", "mbom"])
def test_both_refuse_tampered_files(
    model: Path,
    alice: KeyPair,
    signer: str,
    what: str,
    tamper: Callable[[Path], None],
    expected: dict[str, str],
) -> None:
    pytest.importorskip("model_signing")
    signature = model / "model.sig"
    (ms_sign if signer == "model_signing" else our_sign)(model, alice, signature)
    tamper(model)
    with pytest.raises(ValueError, match="Signature mismatch"):
        ms_verify(model, alice, signature)
    differing = {p: s for p, s in our_checks(model, alice, signature).items() if s != "match"}
    assert differing == expected, what


@pytest.mark.parametrize("signer", ["model_signing", "mbom"])
def test_both_refuse_another_key(
    model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair], signer: str
) -> None:
    pytest.importorskip("model_signing")
    mallory = make_keys("mallory")
    signature = model / "model.sig"
    (ms_sign if signer == "model_signing" else our_sign)(model, mallory, signature)
    with pytest.raises(ValueError, match="Key mismatch"):
        ms_verify(model, alice, signature)
    with pytest.raises(SignatureError, match="another key"):
        our_checks(model, alice, signature)


# --- the registry (SQLite and PostgreSQL) --------------------------------------------------------


def _register(
    reg: LocalRegistry | RemoteRegistry, manifest: Manifest, name: str = "acme/tiny", **fields: Any
) -> Any:
    return reg.register_model(name=name, version="1", manifest=manifest, **fields)


def test_the_registry_stores_a_verified_bundle_and_hands_it_back(
    reg: LocalRegistry, model: Path, alice: KeyPair, tmp_path: Path
) -> None:
    signature = model / "model.sig"
    manifest = our_sign(model, alice, signature)
    bundle = json.loads(signature.read_text())
    pem = alice.public.read_text()
    registered = _register(reg, manifest, model_signing_bundle=bundle, model_signing_public_key=pem)
    fingerprint = msf.key_fingerprint(alice.key.public_key())
    assert registered.model_signing_key == fingerprint
    assert reg.show("acme/tiny@1").model_signing_key == fingerprint
    stored = reg.model_signing_bundle("acme/tiny@1")
    assert (stored.ref, stored.key_fingerprint, stored.bundle) == (
        "acme/tiny@1",
        fingerprint,
        bundle,
    )
    exported = tmp_path / "exported.sig"
    exported.write_text(json.dumps(stored.bundle))
    ms_verify(model, alice, exported)
    events = [e for e in reg.list_events() if e.subject == "acme/tiny@1"]
    assert [e.operation for e in events] == ["register", "model_signing.store"]
    assert events[1].details["key"] == fingerprint
    unsigned = _register(reg, msf.without_path(manifest, "config.json"), name="acme/plain")
    assert unsigned.model_signing_key is None
    with pytest.raises(NotFound, match="model-signing signature of acme/plain@1"):
        reg.model_signing_bundle("acme/plain@1")


def test_the_registry_refuses_a_bundle_for_other_files_and_writes_nothing(
    reg: LocalRegistry, model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair]
) -> None:
    signature = model / "model.sig"
    manifest = our_sign(model, alice, signature)
    bundle, pem = json.loads(signature.read_text()), alice.public.read_text()
    fewer = msf.without_path(manifest, "config.json")
    with pytest.raises(SignatureError, match=r"does not cover these files \(extra: config.json"):
        _register(
            reg,
            manifest,
            model_signing_bundle=_drop_resource(bundle, alice),
            model_signing_public_key=pem,
        )
    with pytest.raises(SignatureError, match="missing: config.json"):
        _register(reg, fewer, model_signing_bundle=bundle, model_signing_public_key=pem)
    with pytest.raises(SignatureError, match="another key"):
        _register(
            reg,
            manifest,
            model_signing_bundle=bundle,
            model_signing_public_key=make_keys("mallory").public.read_text(),
        )
    with pytest.raises(InvalidInput, match="needs its public key"):
        _register(reg, manifest, model_signing_bundle=bundle)
    with pytest.raises(MalformedBundle, match="mediaType"):
        _register(
            reg, manifest, model_signing_bundle={"mediaType": "x"}, model_signing_public_key=pem
        )
    assert reg.list_artifacts() == []
    assert reg.list_events() == []


def _drop_resource(bundle: dict[str, Any], keys: KeyPair) -> dict[str, Any]:
    """The bundle re-signed without config.json (a genuine signature over fewer files)."""
    statement = msf.Statement.from_json(payload_of_bundle(bundle))
    kept = [r for r in statement.resources if r.name != "config.json"]
    smaller = msf.Statement.for_resources(statement.model_name, kept, statement.serialization)
    envelope = msf.Envelope.sign(smaller.to_payload(), msf.PAYLOAD_TYPE, msf.EcKeySigner(keys.key))
    return msf.Bundle(envelope, msf.key_hint(keys.key.public_key())).to_json()


def payload_of_bundle(bundle: dict[str, Any]) -> Any:
    """The decoded statement of a bundle given as JSON."""
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def test_verify_reports_each_file_and_the_lineage(
    reg: LocalRegistry, model: Path, alice: KeyPair
) -> None:
    signature = model / "model.sig"
    manifest = our_sign(model, alice, signature)
    bundle, pem = json.loads(signature.read_text()), alice.public.read_text()
    unknown = reg.verify_model_signing(manifest, bundle=bundle, public_key_pem=pem)
    assert (unknown.ok, unknown.registry, unknown.problems) == (True, None, [])
    assert unknown.model_signing.model_name == "tiny"
    with pytest.raises(NotFound, match="acme/tiny@1"):
        reg.verify_model_signing(manifest, bundle=bundle, public_key_pem=pem, ref="acme/tiny@1")
    _register(reg, manifest, model_signing_bundle=bundle, model_signing_public_key=pem)
    known = reg.verify_model_signing(manifest, bundle=bundle, public_key_pem=pem)
    assert known.ok
    assert known.registry is not None
    assert (known.registry.ref, known.registry.signature.state) == ("acme/tiny@1", "unsigned")
    reg.flag("acme/tiny@1", reason="advisory 12")
    flagged = reg.verify_model_signing(
        manifest, bundle=bundle, public_key_pem=pem, ref="acme/tiny@1"
    )
    assert (flagged.ok, flagged.problems) == (False, ["registry: lineage status is compromised"])


def test_the_api_takes_and_returns_bundles(
    engine: Engine, database_url: str, model: Path, alice: KeyPair
) -> None:
    signature = model / "model.sig"
    manifest = our_sign(model, alice, signature)
    bundle, pem = json.loads(signature.read_text()), alice.public.read_text()
    bootstrap = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN))
    token = bootstrap.create_token(user="root", role=Role.ADMIN).token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url:
        remote = RemoteRegistry(base_url, token)
        try:
            _check_remote(remote, manifest, bundle, pem, alice)
        finally:
            remote._http.close()  # RemoteRegistry lives as long as a CLI run; close it here


def _check_remote(
    remote: RemoteRegistry, manifest: Manifest, bundle: dict[str, Any], pem: str, keys: KeyPair
) -> None:
    registered = _register(
        remote, manifest, model_signing_bundle=bundle, model_signing_public_key=pem
    )
    assert registered.model_signing_key == msf.key_fingerprint(keys.key.public_key())
    assert remote.model_signing_bundle("acme/tiny@1").bundle == bundle
    report = remote.verify_model_signing(manifest, bundle=bundle, public_key_pem=pem)
    assert report.ok
    assert report.registry is not None
    with pytest.raises(MalformedBundle, match="mediaType"):
        remote.verify_model_signing(manifest, bundle={"mediaType": "x"}, public_key_pem=pem)
    with pytest.raises(SignatureError, match="does not cover"):
        _register(
            remote,
            msf.without_path(manifest, "config.json"),
            name="x",
            model_signing_bundle=bundle,
            model_signing_public_key=pem,
        )


# --- the mbom executable --------------------------------------------------------------------------


@pytest.fixture
def db_cli(tmp_path: Path, database_url: str) -> Cli:
    """``mbom`` with MBOM_DATABASE_URL on this test's database (SQLite, then PostgreSQL)."""
    local_registry(database_url).engine.dispose()
    return Cli(cli_env(tmp_path, MBOM_DATABASE_URL=database_url), tmp_path)


def test_cli_register_sign_verify_export_and_tamper(
    db_cli: Cli, model: Path, alice: KeyPair, tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    registered = db_cli(
        "register",
        model,
        "--name",
        "acme/tiny",
        "--version",
        "1",
        "--model-signing-key",
        alice.private,
        "--json",
    )
    signature = model / "model.sig"
    assert "wrote the OpenSSF model-signing signature" in registered.err
    fingerprint = msf.key_fingerprint(alice.key.public_key())
    assert registered.json()["model_signing_key"] == fingerprint
    assert registered.json()["file_count"] == len(MODEL_FILES)  # model.sig left out
    ms_verify(model, alice, signature)

    exported = tmp_path / "exported.sig"
    verified, shown, plain, unsigned, named = db_cli.many(
        ["verify", model, "--model-signing", signature, "--public-key", alice.public, "--json", 0],
        ["show", "acme/tiny@1", "--model-signing-out", exported, 0],
        ["verify", model, "--model-signing", signature, "--public-key", alice.public, 0],
        # Plain verify wants an Ed25519 signature (none here), but sees no extra file.
        ["verify", model, "--json", 1],
        ["identify", model, "--json", 0],
    )
    assert {f["state"] for f in unsigned.json()["files"]} == {"match"}
    assert not [p for p in unsigned.json()["problems"] if "model.sig" in p]
    assert "leaving out" in unsigned.err
    assert [m["ref"] for m in named.json()["matches"]] == ["acme/tiny@1"]
    report = verified.json()
    assert report["ok"] is True
    assert report["registry"]["ref"] == "acme/tiny@1"
    assert report["model_signing"]["key_fingerprint"] == fingerprint
    assert {f["state"] for f in report["model_signing"]["files"]} == {"match"}
    assert fingerprint in shown.out
    assert json.loads(exported.read_text()) == json.loads(signature.read_text())
    assert "model-signing verification OK" in plain.out

    (model / "config.json").write_text('{"layers": 3}')
    with pytest.raises(ValueError, match="Signature mismatch"):
        ms_verify(model, alice, signature)
    failed = db_cli(
        "verify",
        model,
        "--model-signing",
        signature,
        "--public-key",
        alice.public,
        "--json",
        code=1,
    ).json()
    assert failed["ok"] is False
    assert failed["registry"] is None  # changed files are no registered version
    assert failed["problems"] == ["model-signing mismatch: config.json"]


def test_cli_verifies_model_signing_output_and_refuses_clearly(
    db_cli: Cli, model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair], tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    signature = model / "model.sig"
    ms_sign(model, alice, signature)
    mallory = make_keys("mallory")
    not_json = tmp_path / "not.sig"
    not_json.write_text("{oops")
    p384 = make_keys("p384", ec.SECP384R1())
    good, other_key, bad_json, bad_curve, half, attached = db_cli.many(
        ["verify", model, "--model-signing", signature, "--public-key", alice.public, 0],
        ["verify", model, "--model-signing", signature, "--public-key", mallory.public, 1],
        ["verify", model, "--model-signing", not_json, "--public-key", alice.public, 2],
        ["verify", model, "--model-signing", signature, "--public-key", p384.public, 2],
        ["verify", model, "--model-signing", signature, 2],
        [
            "register",
            model,
            "--name",
            "acme/theirs",
            "--version",
            "1",
            "--model-signing",
            signature,
            "--public-key",
            alice.public,
            "--json",
            0,
        ],
    )
    assert "5/5 files match" in good.out
    assert "made with another key" in other_key.error_line()
    assert "is not a usable OpenSSF model-signing bundle: it is not JSON" in bad_json.error_line()
    assert "secp384r1" in bad_curve.error_line()
    assert "--model-signing and --public-key go together" in half.error_line()
    assert attached.json()["model_signing_key"] == msf.key_fingerprint(alice.key.public_key())
    (model / "extra.bin").write_text("smuggled")
    refused = db_cli(
        "register",
        model,
        "--name",
        "acme/more",
        "--version",
        "1",
        "--model-signing",
        signature,
        "--public-key",
        alice.public,
        code=1,
    )
    assert "does not cover these files (extra: extra.bin)" in refused.error_line()
    reg = local_registry(db_cli.env["MBOM_DATABASE_URL"])
    assert [a.ref for a in reg.list_artifacts()] == ["acme/theirs@1"]
    reg.engine.dispose()


# --- the signer the registry recorded -------------------------------------------------------------


def test_verify_refuses_a_signature_by_another_key_than_the_recorded_one(
    reg: LocalRegistry, model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair]
) -> None:
    signature = model.parent / "alice.sig"
    manifest = our_sign(model, alice, signature)
    bundle, pem = json.loads(signature.read_text()), alice.public.read_text()
    _register(reg, manifest, model_signing_bundle=bundle, model_signing_public_key=pem)
    mallory = make_keys("mallory")
    forged = model.parent / "mallory.sig"
    assert our_sign(model, mallory, forged).digest == manifest.digest
    other = reg.verify_model_signing(
        manifest,
        bundle=json.loads(forged.read_text()),
        public_key_pem=mallory.public.read_text(),
    )
    alice_fp = msf.key_fingerprint(alice.key.public_key())
    mallory_fp = msf.key_fingerprint(mallory.key.public_key())
    assert (other.ok, other.registered_key) == (False, alice_fp)
    assert other.model_signing.key_fingerprint == mallory_fp
    assert other.problems == [
        "registry: signature unsigned",
        f"registry: the model-signing signature was made with key {mallory_fp}, "
        f"but acme/tiny@1 was registered signed with key {alice_fp}",
    ]
    own = reg.verify_model_signing(manifest, bundle=bundle, public_key_pem=pem)
    assert (own.ok, own.registered_key, own.problems) == (True, alice_fp, [])


def test_a_signature_stands_in_for_the_ed25519_one_only_with_the_recorded_key(
    reg: LocalRegistry, model: Path, make_keys: Callable[..., KeyPair]
) -> None:
    mallory = make_keys("mallory")
    signature = model.parent / "mallory.sig"
    manifest = our_sign(model, mallory, signature)
    _register(reg, manifest)  # no model-signing signature, no Ed25519 one
    report = reg.verify_model_signing(
        manifest,
        bundle=json.loads(signature.read_text()),
        public_key_pem=mallory.public.read_text(),
    )
    assert (report.ok, report.registered_key) == (False, None)
    assert report.problems == ["registry: signature unsigned"]


def test_cli_verify_with_another_signers_key_exits_1(
    db_cli: Cli, model: Path, alice: KeyPair, make_keys: Callable[..., KeyPair]
) -> None:
    db_cli(
        "register",
        model,
        "--name",
        "acme/tiny",
        "--version",
        "1",
        "--model-signing-key",
        alice.private,
        "--model-signing-out",
        model.parent / "alice.sig",
    )
    mallory = make_keys("mallory")
    forged = model.parent / "mallory.sig"
    our_sign(model, mallory, forged)
    failed = db_cli(
        "verify", model, "--model-signing", forged, "--public-key", mallory.public, "--json", code=1
    ).json()
    assert failed["ok"] is False
    assert failed["registered_key"] == msf.key_fingerprint(alice.key.public_key())
    assert "was registered signed with key" in failed["problems"][-1]
    plain = db_cli(
        "verify", model, "--model-signing", forged, "--public-key", mallory.public, code=1
    )
    assert "(not this signature's)" in plain.out
    assert "model-signing verification FAILED" in plain.out
