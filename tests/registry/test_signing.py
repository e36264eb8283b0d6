"""Tests of registry.signing: Ed25519 keys, signatures over manifest digests."""

from __future__ import annotations

import base64
import hashlib
import inspect
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

import registry.signing as signing_module
from registry.errors import InvalidInput
from registry.manifest import hash_tree
from registry.signing import (
    DEFAULT_KEY_NAME,
    generate_keypair,
    key_fingerprint,
    load_private_key,
    load_public_key,
    public_key_pem,
    sign_digest,
    verify_digest,
    write_keypair,
)

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "ab" * 31 + "ac"

ForeignKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed448.Ed448PrivateKey


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh key pair written under tmp_path: (private key path, public key path)."""
    return write_keypair(tmp_path / "alice")


@pytest.fixture(scope="module")
def foreign_keys() -> dict[str, tuple[bytes, bytes]]:
    """Keys of other algorithms as (private PKCS8 PEM, public PEM), made once."""
    keys: dict[str, ForeignKey] = {
        "EC": ec.generate_private_key(ec.SECP256R1()),
        "RSA": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "Ed448": ed448.Ed448PrivateKey.generate(),
    }
    return {name: _pems(key) for name, key in keys.items()}


def _pems(key: ForeignKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_generate_keypair_gives_ed25519_pems() -> None:
    private_pem, public_pem = generate_keypair()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    private = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert public_key_pem(private).encode() == public_pem
    assert isinstance(load_public_key(public_pem), Ed25519PublicKey)


def test_sign_then_verify(keypair: tuple[Path, Path]) -> None:
    key_path, pub_path = keypair
    signature = sign_digest(load_private_key(key_path), DIGEST)
    assert verify_digest(pub_path.read_bytes(), DIGEST, signature)
    assert verify_digest(pub_path.read_text(), DIGEST, signature)


def test_signature_is_ed25519_over_the_digest_string(keypair: tuple[Path, Path]) -> None:
    key_path, _ = keypair
    key = load_private_key(key_path)
    signature = sign_digest(key, DIGEST)
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 64
    key.public_key().verify(raw, DIGEST.encode("utf-8"))  # raises if not
    assert sign_digest(key, DIGEST) == signature  # Ed25519 is deterministic


def _flip_first_char(signature: str) -> str:
    return ("B" if signature[0] == "A" else "A") + signature[1:]


@pytest.mark.parametrize(
    ("digest", "tamper"),
    [
        pytest.param(OTHER_DIGEST, lambda sig: sig, id="other-digest"),
        pytest.param(DIGEST, _flip_first_char, id="flipped-signature"),
        pytest.param(DIGEST, lambda _sig: base64.b64encode(bytes(64)).decode(), id="zero-sig"),
        pytest.param(DIGEST, lambda sig: sig[:-4], id="truncated-valid-base64"),
        pytest.param(DIGEST, lambda _sig: "not base64 at all!", id="not-base64"),
        pytest.param(DIGEST, lambda _sig: "", id="empty-signature"),
        pytest.param(DIGEST, lambda sig: "é" + sig, id="non-ascii-signature"),
        pytest.param("", lambda sig: sig, id="empty-digest"),
        pytest.param(DIGEST.upper(), lambda sig: sig, id="malformed-digest"),
    ],
)
def test_tampered_signature_or_digest_does_not_verify(
    keypair: tuple[Path, Path], digest: str, tamper: Callable[[str], str]
) -> None:
    key_path, pub_path = keypair
    signature = sign_digest(load_private_key(key_path), DIGEST)
    assert verify_digest(pub_path.read_bytes(), digest, tamper(signature)) is False


def test_signature_from_another_key_does_not_verify(tmp_path: Path) -> None:
    alice_key, _ = write_keypair(tmp_path / "alice")
    _, bob_pub = write_keypair(tmp_path / "bob")
    signature = sign_digest(load_private_key(alice_key), DIGEST)
    assert verify_digest(bob_pub.read_bytes(), DIGEST, signature) is False


def test_signature_over_a_manifest_breaks_when_a_file_changes(
    keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    key_path, pub_path = keypair
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 4096)
    signature = sign_digest(load_private_key(key_path), hash_tree(model).digest)
    assert verify_digest(pub_path.read_bytes(), hash_tree(model).digest, signature)
    (model / "weights.bin").write_bytes(b"\x00" * 4095 + b"\x01")
    assert verify_digest(pub_path.read_bytes(), hash_tree(model).digest, signature) is False


@pytest.mark.parametrize(
    "digest", ["", "sha256:abc", "md5:" + "0" * 32, DIGEST.upper(), DIGEST + "\n"]
)
def test_signing_refuses_what_is_not_a_manifest_digest(
    keypair: tuple[Path, Path], digest: str
) -> None:
    with pytest.raises(InvalidInput, match="is not a manifest digest"):
        sign_digest(load_private_key(keypair[0]), digest)


def test_write_keypair_modes_and_contents(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    key_path, pub_path = keypair
    assert (key_path, pub_path) == (tmp_path / "alice.key", tmp_path / "alice.pub")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub_path.stat().st_mode) == 0o644
    assert public_key_pem(load_private_key(key_path)) == pub_path.read_text()


def test_write_keypair_into_a_directory_uses_the_default_name(tmp_path: Path) -> None:
    key_path, pub_path = write_keypair(tmp_path)
    assert key_path == tmp_path / f"{DEFAULT_KEY_NAME}.key"
    assert pub_path == tmp_path / f"{DEFAULT_KEY_NAME}.pub"


def test_write_keypair_keeps_dots_in_the_prefix(tmp_path: Path) -> None:
    key_path, _ = write_keypair(tmp_path / "team.alice")
    assert key_path.name == "team.alice.key"


@pytest.mark.parametrize("existing", ["alice.key", "alice.pub"])
def test_write_keypair_never_overwrites(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious")
    with pytest.raises(InvalidInput, match=f"{existing} exists already; refusing to overwrite"):
        write_keypair(tmp_path / "alice")
    assert (tmp_path / existing).read_text() == "precious"
    assert sorted(path.name for path in tmp_path.iterdir()) == [existing]


def test_write_keypair_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="directory .*nowhere does not exist"):
        write_keypair(tmp_path / "nowhere" / "alice")


def test_key_fingerprint_hashes_the_raw_public_key(keypair: tuple[Path, Path]) -> None:
    pem = keypair[1].read_text()
    raw = load_public_key(pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert key_fingerprint(pem) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert key_fingerprint(pem.encode()) == key_fingerprint(pem.replace("\n", "\r\n"))


@pytest.mark.parametrize("algorithm", ["EC", "RSA", "Ed448"])
def test_private_keys_of_other_algorithms_are_refused(
    tmp_path: Path, foreign_keys: dict[str, tuple[bytes, bytes]], algorithm: str
) -> None:
    path = tmp_path / "other.key"
    path.write_bytes(foreign_keys[algorithm][0])
    with pytest.raises(InvalidInput, match=f"is an? {algorithm}.*; it must be Ed25519"):
        load_private_key(path)


@pytest.mark.parametrize("algorithm", ["EC", "RSA", "Ed448"])
def test_public_keys_of_other_algorithms_are_refused(
    foreign_keys: dict[str, tuple[bytes, bytes]], algorithm: str
) -> None:
    with pytest.raises(InvalidInput, match=f"public key is an? {algorithm}.*; it must be Ed25519"):
        load_public_key(foreign_keys[algorithm][1])


def test_error_names_the_ec_curve(foreign_keys: dict[str, tuple[bytes, bytes]]) -> None:
    with pytest.raises(InvalidInput, match=r"an EC key \(secp256r1\)"):
        load_public_key(foreign_keys["EC"][1])


def test_encrypted_private_key_is_refused(tmp_path: Path) -> None:
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = tmp_path / "locked.key"
    path.write_bytes(encrypted)
    with pytest.raises(InvalidInput, match="locked.key is encrypted") as caught:
        load_private_key(path)
    assert "openssl pkey" in caught.value.diagnostics()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello", "is not a PEM private key"),
        (b"", "is not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private"),
    ],
)
def test_private_key_files_that_are_not_keys_are_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        load_private_key(path)


def test_missing_private_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read private key .*absent.key"):
        load_private_key(tmp_path / "absent.key")


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("hello", "not a PEM public key"),
        (b"", "not a PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (generate_keypair()[0], "a private key was given where a public key is expected"),
    ],
)
def test_public_keys_that_are_not_keys_are_refused(pem: bytes | str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_public_key(pem)


def test_verify_with_a_malformed_key_raises_instead_of_answering() -> None:
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        verify_digest("not a key", DIGEST, "AAAA")


def test_public_names_are_exactly_all() -> None:
    defined = {
        name
        for name, value in vars(signing_module).items()
        if not name.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == "registry.signing"
    }
    assert defined | {"DEFAULT_KEY_NAME"} == set(signing_module.__all__)
