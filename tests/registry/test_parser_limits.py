"""Every parser has limits on size, depth and count, and answers bad shapes with an mbom error.

BOM (reader, CLI, API), model-signing bundles, model cards, scan-profile ``.npz``
files and JSON request bodies: hostile shapes (deep nesting, huge counts, YAML
aliases, wrong types) are refused before the work with a short, clear
:class:`~registry.errors.InvalidInput` (HTTP 4xx problem, CLI exit 2), never a
traceback; hypothesis feeds each parser random shapes and checks that only mbom
errors come out.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from registry import limits
from registry import model_signing_format as msf
from registry.api import create_app
from registry.bom import import_cyclonedx
from registry.bom.reader import read_document
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.errors import InvalidInput, InvalidModelCard, LimitExceeded, MbomError
from registry.hf import read_card
from registry.identity import Actor, Role
from registry.settings import Settings
from scanning.behavioral.profile import MIN_REFERENCES, profile_from_npz
from tests.registry.live_server import serve_in_thread

BOB = Actor(user="bob", role=Role.PUBLISHER)
MBOM = Path(sys.executable).parent / "mbom"
#: An error message never repeats more than this much of its input.
MESSAGE_CHARS = 600
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def refusal(call: Callable[[], object], errors: type[Exception] = MbomError) -> str:
    """The message of the error ``call`` raises among ``errors`` ("" when it returns)."""
    try:
        call()
    except errors as error:
        return error.diagnostics() if isinstance(error, MbomError) else str(error)
    return ""


def nested(depth: int, leaf: str = "0") -> str:
    """JSON text: ``depth`` arrays inside each other."""
    return "[" * depth + leaf + "]" * depth


# --- a small valid CycloneDX document -----------------------------------------------------


def model(name: str = "acme/ft", version: str = "1", **extra: Any) -> dict[str, Any]:
    """A model component with one file, a parent and a dataset."""
    return {
        "type": "machine-learning-model",
        "bom-ref": f"model:{name}@{version}",
        "name": name,
        "version": version,
        "supplier": {"name": "acme"},
        "components": [
            {
                "type": "file",
                "name": "weights.bin",
                "hashes": [{"alg": "SHA-256", "content": "ab" * 32}],
                "properties": [{"name": "mbom:size", "value": "3"}],
            }
        ],
        "pedigree": {
            "ancestors": [
                {
                    "type": "machine-learning-model",
                    "name": "acme/base",
                    "version": "1",
                    "properties": [
                        {"name": "mbom:ref", "value": "model:acme/base@1"},
                        {"name": "mbom:relation", "value": "finetune"},
                    ],
                }
            ]
        },
        "modelCard": {"modelParameters": {"datasets": [{"ref": "dataset:acme/data@1"}]}},
        **extra,
    }


def document(**component_fields: Any) -> dict[str, Any]:
    """A BOM whose first component is :func:`model` with ``component_fields`` replaced."""
    first = model()
    first.update(component_fields)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            first,
            {"type": "machine-learning-model", "name": "acme/base", "version": "1"},
            {
                "type": "data",
                "bom-ref": "dataset:acme/data@1",
                "name": "acme/data",
                "version": "1",
                "hashes": [{"alg": "SHA-256", "content": "cd" * 32}],
            },
        ],
    }


HUGE = "x" * 5_000_000
WRONG_FIELDS = [
    ({"supplier": "acme"}, r"components\[0\]\.supplier is not an object"),
    ({"modelCard": "x"}, r"components\[0\]\.modelCard is not an object"),
    ({"modelCard": {"modelParameters": "x"}}, r"components\[0\]\.modelCard\.modelParameters is"),
    ({"modelCard": {"modelParameters": {"datasets": {"a": 1}}}}, r"datasets is not a list"),
    ({"modelCard": {"modelParameters": {"datasets": [{"ref": 5}]}}}, r"datasets\[0\]\.ref is not"),
    ({"pedigree": "x"}, r"components\[0\]\.pedigree is not an object"),
    ({"pedigree": {"ancestors": {"name": "a"}}}, r"pedigree\.ancestors is not a list"),
    ({"properties": "mbom:format"}, r"components\[0\]\.properties is not a list"),
    ({"properties": [{"name": "mbom:format", "value": {"a": 1}}]}, r"properties\[0\]\.value is"),
    ({"hashes": "SHA-256"}, r"components\[0\]\.hashes is not a list"),
    ({"hashes": [{"alg": "SHA-256", "content": 12}]}, r"hashes\[0\]\.content is not a SHA-256"),
    ({"components": {"type": "file"}}, r"components\[0\]\.components is not a list"),
    ({"externalReferences": ["https://x"]}, r"externalReferences\[0\] is not an object"),
    ({"externalReferences": [{"url": 7}]}, r"externalReferences\[0\]\.url is not a string"),
    ({"bom-ref": ["a"]}, r"components\[0\]\.bom-ref is not a string"),
    ({"name": 12}, r"components\[0\]\.name is not a string"),
    ({"name": HUGE}, r"components\[0\]\.name is longer than 300 characters"),
    ({"supplier": {"name": HUGE}}, r"supplier\.name is longer than 200 characters"),
    ({"externalReferences": [{"url": HUGE}]}, r"url is longer than 2000 characters"),
    (
        {"properties": [{"name": "mbom:format", "value": HUGE}]},
        "property mbom:format is longer than 64 characters",
    ),
    (
        {
            "pedigree": {
                "ancestors": [
                    {
                        "name": "a",
                        "version": "1",
                        "properties": [{"name": "mbom:relation", "value": HUGE}],
                    }
                ]
            }
        },
        r"ancestors\[0\]: unknown relation 'xxxx",
    ),
    (
        {
            "pedigree": {
                "ancestors": [
                    {
                        "name": "a",
                        "version": "1",
                        "properties": [{"name": "mbom:ref", "value": HUGE}],
                    }
                ]
            }
        },
        r"mbom:ref is longer than",
    ),
]


@pytest.mark.parametrize(("fields", "message"), WRONG_FIELDS)
def test_a_wrong_type_or_size_in_a_bom_field_names_the_component_and_field(
    engine: Engine, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as caught, unit_of_work(engine) as session:
        import_cyclonedx(session, document(**fields), actor=BOB)
    assert len(caught.value.diagnostics()) < MESSAGE_CHARS


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(metadata="x"), "metadata is not an object"),
        (lambda d: d.update(specVersion=1.6), "specVersion is missing or not 1.x"),
        (lambda d: d["components"].append(7), r"components\[3\] is not an object"),
    ],
)
def test_a_wrong_type_at_the_top_of_a_bom_is_refused(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = document()
    mutate(doc)
    with pytest.raises(InvalidInput, match=message):
        read_document(doc)


def test_the_document_itself_still_imports(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        assert import_cyclonedx(session, document(), actor=BOB) == [
            "acme/base@1",
            "acme/data@1",
            "acme/ft@1",
        ]


def test_a_bom_with_more_components_than_the_limit_is_refused_before_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "MAX_BOM_COMPONENTS", 2)
    with pytest.raises(LimitExceeded, match="components is too large: 3 items, more than the 2"):
        read_document(document())


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (nested(200_000).encode(), LimitExceeded, "nested 200,000 deep, more than the 64 allowed"),
        (nested(65).encode(), LimitExceeded, "nested 65 deep"),
        (b'{"a": [1, 2', InvalidInput, "is not a JSON document"),
        (b'{"a": "\xff"}', InvalidInput, "is not UTF-8 text"),
    ],
)
def test_json_files_are_refused_before_parsing(
    tmp_path: Path, raw: bytes, error: type[Exception], message: str
) -> None:
    (tmp_path / "bom.json").write_bytes(raw)
    with pytest.raises(error, match=message):
        limits.read_json_file(tmp_path / "bom.json", max_bytes=limits.MAX_BOM_BYTES)


def test_an_oversized_json_file_is_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "bom.json").write_text(json.dumps(document()))
    with pytest.raises(
        LimitExceeded, match=r"bom\.json is too large: 989 bytes, more than the 500"
    ):
        limits.read_json_file(tmp_path / "bom.json", max_bytes=500)


@FUZZ
@given(field=st.sampled_from(sorted(model())), value=json_values)
def test_fuzz_any_value_in_any_component_field_gives_a_result_or_an_mbom_error(
    field: str, value: Any
) -> None:
    doc = document(**{field: value})
    assert len(refusal(lambda: read_document(doc))) < MESSAGE_CHARS


@FUZZ
@given(data=st.data())
def test_fuzz_any_value_anywhere_in_a_bom_gives_a_result_or_an_mbom_error(
    data: st.DataObject,
) -> None:
    doc = document()
    target: Any = doc
    while isinstance(target, dict | list) and target and data.draw(st.booleans()):
        keys = sorted(target) if isinstance(target, dict) else list(range(len(target)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(target[key], dict | list):
            target[key] = data.draw(json_values)
            break
        target = target[key]
    else:
        if isinstance(target, dict):
            target[data.draw(st.text(max_size=10))] = data.draw(json_values)
    assert len(refusal(lambda: read_document(doc))) < MESSAGE_CHARS


@FUZZ
@given(value=json_values)
def test_fuzz_json_depth_is_the_nesting_of_the_parsed_value(value: Any) -> None:
    def depth(item: Any) -> int:
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, dict | list):
            return 0
        return 1 + max((depth(child) for child in children), default=0)

    text = json.dumps(value, ensure_ascii=False)
    assert limits.json_depth(text.encode("utf-8", "surrogatepass")) == depth(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('"[[[["', 0),
        (r'["\\", "[", "\"[", {"]": "\\\"{"}]', 2),
        ('{"a": {"b": {"c": []}}}', 4),
        ("", 0),
    ],
)
def test_json_depth_ignores_brackets_inside_strings(text: str, depth: int) -> None:
    assert limits.json_depth(text.encode()) == depth


def test_brief_keeps_error_messages_short() -> None:
    assert len(limits.brief("x" * 10_000_000)) == limits.MAX_ECHO_CHARS
    assert limits.brief(list(range(1000))) == "a list of 1000 items"
    assert limits.brief("acme") == "'acme'"


# --- the CLI: one line on stderr, exit 2 ---------------------------------------------------


def mbom(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``mbom`` console script against an embedded registry in ``home``."""
    env = {**os.environ, "MBOM_HOME": str(home)}
    env.pop("MBOM_SERVER", None)
    env.pop("MBOM_DATABASE_URL", None)
    return subprocess.run(
        [str(MBOM), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_refuses_malformed_and_deep_documents_with_one_line(tmp_path: Path) -> None:
    files = {
        "supplier.json": json.dumps(document(supplier="acme")),
        "card.json": json.dumps(document(modelCard="x")),
        "parameters.json": json.dumps(document(modelCard={"modelParameters": "x"})),
        "deep.json": nested(200_000),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "key.pub").write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "deep.sig").write_text(nested(50_000))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"abc")
    runs = [("bom", "import", tmp_path / name) for name in files] + [
        (
            "verify",
            tmp_path / "model",
            "--model-signing",
            tmp_path / "deep.sig",
            "--public-key",
            tmp_path / "key.pub",
        ),
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda args: mbom(*args, home=tmp_path / "home"), runs))
    expected = [
        r"components\[0\]\.supplier is not an object",
        r"components\[0\]\.modelCard is not an object",
        r"components\[0\]\.modelCard\.modelParameters is not an object",
        r"deep\.json is too large: nested 200,000 deep, more than the 64 allowed",
        r"deep\.sig is not a usable OpenSSF model-signing bundle: it is too large: nested 50,000",
    ]
    for result, message in zip(results, expected, strict=True):
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr[-2000:]
        assert re.search(message, lines[0]), lines[0]


# --- the API: 4xx problems -----------------------------------------------------------------


@pytest.fixture
def http(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[httpx.Client]:
    """An admin client of a live server whose request bodies may be 200 kB at most."""
    monkeypatch.setattr(limits, "MAX_REQUEST_BYTES", 200_000)
    token = (
        LocalRegistry(engine, Actor("root", Role.ADMIN))
        .create_token(user="root", role=Role.ADMIN)
        .token
    )
    app = create_app(Settings(database_url=database_url), engine=engine)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client,
    ):
        yield client


def test_api_answers_malformed_deep_and_oversized_bodies_with_4xx_problems(
    http: httpx.Client,
) -> None:
    headers = {"Content-Type": "application/json"}
    for fields in ({"supplier": "acme"}, {"modelCard": "x"}, {"modelCard": {"modelParameters": 1}}):
        answer = http.post("/bom/import", json=document(**fields))
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "invalid-bom"
    deep = http.post("/bom/import", content=nested(50_000), headers=headers)
    assert deep.status_code == 400, deep.text
    assert deep.json()["code"] == "limit-exceeded"
    assert "nested 50,000 deep" in deep.json()["detail"]
    report = {"report": {"verdict": "clean", "deep": json.loads(nested(900))}}
    deep_report = http.post("/models/acme%2Fa@1/rescan", json=report)
    assert deep_report.status_code == 400, deep_report.text
    huge = http.post("/bom/import", content=b" " * 300_000, headers=headers)
    assert huge.status_code == 413, huge.text
    assert http.post("/bom/import", json=document()).status_code == 201


# --- model-signing bundles -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (nested(50_000), "it is too large: nested 50,000 deep"),
        ("{" * 100, "it is too large: nested 100 deep"),
        ('{"mediaType": 5', "it is not JSON"),
        ("[]", "it is not a JSON object"),
    ],
)
def test_bundles_are_read_within_limits(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "model.sig"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        msf.read_bundle(path)


def test_an_oversized_bundle_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_BUNDLE_BYTES", 100)
    path = tmp_path / "model.sig"
    path.write_text(json.dumps({"mediaType": "x" * 200}))
    with pytest.raises(InvalidInput, match=r"model\.sig is not a usable .* 2\d\d bytes, more than"):
        msf.read_bundle(path)


def test_a_deep_dsse_payload_is_refused() -> None:
    with pytest.raises(InvalidInput, match="the DSSE payload is too large: nested 20,000 deep"):
        msf.Statement.from_payload(nested(20_000).encode())


@FUZZ
@given(value=json_values)
def test_fuzz_bundles_give_a_bundle_or_an_mbom_error(value: Any) -> None:
    for data in (
        value,
        {
            "mediaType": msf.BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {}},
            "dsseEnvelope": value,
        },
    ):
        assert len(refusal(lambda: msf.Bundle.from_json(data))) < MESSAGE_CHARS  # noqa: B023
    payload = json.dumps(value).encode()
    assert len(refusal(lambda: msf.Statement.from_payload(payload))) < MESSAGE_CHARS


# --- model cards ---------------------------------------------------------------------------


def write_card(folder: Path, front_matter: str) -> Path:
    """A snapshot folder whose README.md carries ``front_matter``."""
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front_matter}\n---\n# A model\n", encoding="utf-8")
    return folder


def alias_bomb(levels: int = 9) -> str:
    """YAML whose ``base_model`` expands to 9**levels strings through aliases."""
    lines = ["l0: &l0 [acme/a, acme/a, acme/a, acme/a, acme/a, acme/a, acme/a, acme/a, acme/a]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join([*lines, f"base_model: *l{levels - 1}"])


@pytest.mark.parametrize(
    ("front_matter", "message"),
    [
        (alias_bomb(), r"aliases \(\*name\) are not allowed in a model card"),
        ("tags:\n" + "- t\n" * 2_000_000, "front matter is 8,000,006 bytes, more than the"),
        ("base_model: " + nested(10_000), "nested more than 64 deep"),
        ("tags: [" + ", ".join(["t"] * 60_000) + "]", "more than 50,000 values"),
        ("base_model: [" + ", ".join([f"a/m{i}" for i in range(1001)]) + "]", "lists 1,001 ids"),
        ("base_model: {name: " + "x" * 900_000 + "}", r"not \{'name': 'xxxx"),
        ("license: " + "x" * 900_000, "license is longer than 200 characters"),
        ("base_model: '" + "x" * 900_000 + "/y'", r"base_model 'xxxx"),
    ],
)
def test_hostile_model_cards_are_refused_quickly_and_briefly(
    tmp_path: Path, front_matter: str, message: str
) -> None:
    with pytest.raises(InvalidModelCard, match=message) as caught:
        read_card(write_card(tmp_path / "snapshot", front_matter))
    assert len(caught.value.diagnostics()) < MESSAGE_CHARS


def test_an_oversized_card_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("registry.hf._card.MAX_CARD_BYTES", 1000)
    folder = write_card(tmp_path / "snapshot", "license: mit\n" + "#" * 2000)
    with pytest.raises(
        InvalidModelCard, match="README.md: it is 2,03\\d bytes, more than the 1,000"
    ):
        read_card(folder)


def test_a_card_with_many_tags_is_read_without_the_quadratic_tag_check(tmp_path: Path) -> None:
    # huggingface_hub de-duplicates tags in O(n^2): 40,000 tags took 30 s before.
    tags = "\n".join(f"- tag-{i}" for i in range(40_000))
    folder = write_card(tmp_path / "snapshot", f"base_model: acme/base\ntags:\n{tags}")
    started = time.perf_counter()
    card = read_card(folder)
    assert time.perf_counter() - started < 20  # ~2 s now; 45 s with every tag de-duplicated
    assert card is not None
    assert card.bases == ("acme/base",)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "base_model",
                "datasets",
                "base_model_relation",
                "license",
                "pipeline_tag",
                "tags",
                "model-index",
                "x",
            ]
        ),
        yaml_values,
    )
)
def test_fuzz_model_cards_give_facts_or_an_invalid_card(
    tmp_path_factory: pytest.TempPathFactory, fields: dict[str, Any]
) -> None:
    folder = write_card(tmp_path_factory.mktemp("card"), yaml.safe_dump(fields))
    assert len(refusal(lambda: read_card(folder), InvalidModelCard)) < MESSAGE_CHARS


@FUZZ
@given(text=st.text(alphabet="[]{}:-,&*!|>'\"\n abc", max_size=200))
def test_fuzz_broken_yaml_gives_facts_or_an_invalid_card(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    folder = write_card(tmp_path_factory.mktemp("card"), text)
    assert len(refusal(lambda: read_card(folder), InvalidModelCard)) < MESSAGE_CHARS


# --- scan-profile .npz ---------------------------------------------------------------------


def good_arrays() -> dict[str, np.ndarray[Any, Any]]:
    """Enough valid references for a profile of 4 inputs in [0, 1] and 2 classes."""
    rng = np.random.default_rng(0)
    return {
        "x": rng.random((MIN_REFERENCES, 4), dtype=np.float32),
        "y": np.arange(MIN_REFERENCES) % 2,
    }


def npz(**arrays: Any) -> bytes:
    """``np.savez`` of ``arrays`` as bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def forged_header(shape: tuple[int, ...]) -> bytes:
    """An ``.npz`` whose ``x`` header declares ``shape`` of float32 with no data behind it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", buffer.getvalue())
        archive.writestr("y.npy", npz_member(np.zeros(MIN_REFERENCES, dtype=np.int64)))
    return out.getvalue()


def npz_member(array: np.ndarray[Any, Any]) -> bytes:
    """One ``.npy`` file's bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


PROFILE = {"value_range": (0.0, 1.0), "num_classes": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (forged_header((10**9, 10**3)), r"array 'x\.npy' of the reference \.npz declares"),
        (npz(**good_arrays(), **{f"a{i}": np.zeros(1) for i in range(20)}), "22 members"),
        (npz(**good_arrays()).replace(b"\x93NUMPY", b"\x93NUMPI"), "is not a .npy array"),
    ],
)
def test_npz_members_and_headers_are_checked_before_loading(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile_from_npz(data, **PROFILE)  # type: ignore[arg-type]


def test_a_valid_reference_npz_still_reads() -> None:
    profile = profile_from_npz(npz(**good_arrays()), **PROFILE)  # type: ignore[arg-type]
    assert profile.x.shape == (MIN_REFERENCES, 4)


@FUZZ
@given(
    arrays=st.dictionaries(
        st.sampled_from(["x", "y", "input_shape", "value_range", "num_classes", "z"]),
        st.builds(
            np.asarray,
            st.lists(st.integers(-3, 3) | st.floats(-2, 2), max_size=40),
        ),
        max_size=6,
    ),
    cut=st.integers(0, 400),
)
def test_fuzz_reference_npz_gives_a_profile_or_a_value_error(
    arrays: dict[str, Any], cut: int
) -> None:
    data = npz(**arrays)
    for candidate in (data, data[: len(data) - cut]):
        read = lambda: profile_from_npz(candidate, **PROFILE)  # type: ignore[arg-type]  # noqa: B023, E731
        assert len(refusal(read, ValueError)) < MESSAGE_CHARS
