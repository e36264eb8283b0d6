"""Keras, HDF5, ONNX, safetensors, GGUF and JSON configs: each rule on a built file."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scanning.report import Finding, ScanReport, Severity, Verdict
from scanning.static import scan_bytes, scan_path


def only(report: ScanReport, kind: str) -> Finding:
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, report.findings
    return found[0]


# -- Keras ------------------------------------------------------------------------------


def dense(name: str) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "name": name,
            "units": 4,
            "activation": "relu",
            "dtype": {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": "float32"},
                "registered_name": None,
            },
            "kernel_initializer": {
                "module": "keras.initializers",
                "class_name": "GlorotUniform",
                "config": {"seed": None},
                "registered_name": None,
            },
        },
        "registered_name": None,
        "build_config": {"input_shape": [None, 8]},
    }


def sequential(layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "layers": layers},
        "registered_name": None,
    }


LAMBDA_LAYER: dict[str, Any] = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {
        "name": "sneaky",
        "function": {
            "class_name": "__lambda__",
            "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA", "defaults": None, "closure": None},
        },
    },
    "registered_name": None,
}


def keras_archive(config: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    return buffer.getvalue()


def test_lambda_nested_in_a_functional_inside_a_sequential() -> None:
    inner = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"name": "block", "layers": [dense("a"), LAMBDA_LAYER]},
        "registered_name": "Functional",
    }
    report = scan_bytes(keras_archive(sequential([dense("d0"), inner])), name="model.keras")
    findings = [f for f in report.findings if f.kind == "keras.lambda"]
    assert [f.member for f in findings] == ["config.json", "config.json"]
    assert any("(layer 'sneaky')" in f.detail for f in findings)
    assert report.verdict is Verdict.MALICIOUS
    assert report.files[0].format == "keras"


def test_function_reference_outside_keras() -> None:
    layer = dense("d0")
    layer["config"]["activation"] = {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": "function",
    }
    report = scan_bytes(keras_archive(sequential([layer])), name="model.keras")
    finding = only(report, "keras.module")
    assert finding.severity is Severity.MALICIOUS
    assert finding.detail.startswith("builtins.exec at ")


def test_custom_module_is_suspicious() -> None:
    layer = dense("d0") | {
        "module": "my_project.layers",
        "class_name": "Fancy",
        "registered_name": "my_project>Fancy",
    }
    report = scan_bytes(keras_archive(sequential([layer])), name="model.keras")
    assert only(report, "keras.module").severity is Severity.SUSPICIOUS
    assert only(report, "keras.custom_object").detail.startswith("my_project>Fancy")


def test_tf_keras_lambda_in_a_bare_json_config() -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "TimeDistributed",
                    "config": {
                        "layer": {
                            "class_name": "Lambda",
                            "config": {
                                "name": "l",
                                "function": ["4wEAAAAA", None, None],
                                "function_type": "lambda",
                                "module": "__main__",
                            },
                        }
                    },
                }
            ]
        },
    }
    report = scan_bytes(json.dumps(config).encode(), name="model.json")
    assert {f.kind for f in report.findings} >= {"keras.lambda", "keras.module"}


def test_h5_model_config_with_lambda(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "Dense", "config": {"name": "d", "units": 2}},
                {
                    "class_name": "Lambda",
                    "config": {
                        "name": "evil",
                        "function": ["4wEAAAAA", None, None],
                        "function_type": "lambda",
                    },
                },
            ],
        },
    }
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        f.create_dataset("model_weights/d/kernel", data=np.ones((64, 64), dtype=np.float32))
    report = scan_path(path)
    assert report.files[0].format == "hdf5"
    assert any(f.kind == "keras.lambda" and "'evil'" in f.detail for f in report.findings)
    assert all(f.offset is not None for f in report.findings)


def test_h5_benign_model_config_is_clean(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = np.bytes_(json.dumps(sequential([dense("d0")])))
        f.create_dataset("w", data=np.arange(100.0))
    assert scan_path(path).verdict is Verdict.CLEAN


# -- ONNX -------------------------------------------------------------------------------


def onnx_model(location: str) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    weight = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), name="w")
    set_external_data(weight, location=location)
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        initializer=[weight],
    )
    model: Any = helper.make_model(graph, producer_name="test")
    assert onnx.checker is not None
    return bytes(model.SerializeToString())


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("../../etc/passwd", "climbs out"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("sub/../../x.bin", "climbs out"),
    ],
)
def test_onnx_external_data_escaping_the_model_directory(location: str, problem: str) -> None:
    report = scan_bytes(onnx_model(location), name="model.onnx")
    finding = only(report, "onnx.external_data_path")
    assert problem in finding.detail
    assert finding.severity is Severity.SUSPICIOUS
    assert report.files[0].format == "onnx"


def test_onnx_missing_external_file_is_info(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(onnx_model("weights.bin"))
    report = scan_path(tmp_path)
    assert only(report, "onnx.external_data_missing").severity is Severity.INFO
    (tmp_path / "weights.bin").write_bytes(bytes(16))
    assert scan_path(tmp_path).findings == ()


def test_onnx_symlink_out_of_the_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (model_dir / "weights.bin").symlink_to(tmp_path / "secret.txt")
    (model_dir / "model.onnx").write_bytes(onnx_model("weights.bin"))
    report = scan_path(model_dir / "model.onnx")
    assert "link" in only(report, "onnx.external_data_path").detail


# -- safetensors --------------------------------------------------------------------------


def safetensors_file(header: object, data: bytes = b"", *, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


GOOD_HEADER = {
    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [8, 16]},
    "__metadata__": {"format": "pt"},
}


def mutate(change: Callable[[dict[str, Any]], None]) -> bytes:
    header = json.loads(json.dumps(GOOD_HEADER))
    change(header)
    return safetensors_file(header, bytes(16))


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (safetensors_file(GOOD_HEADER, bytes(16))[:-1], "safetensors.out_of_bounds"),
        (mutate(lambda h: h["a"].update(dtype="F33")), "safetensors.dtype"),
        (mutate(lambda h: h["a"].update(shape=[-2])), "safetensors.shape"),
        (mutate(lambda h: h["a"].update(shape=[2.5])), "safetensors.shape"),
        (mutate(lambda h: h["a"].update(shape=[3])), "safetensors.size"),
        (mutate(lambda h: h["a"].update(data_offsets=[8, 0])), "safetensors.offsets"),
        (mutate(lambda h: h["a"].update(data_offsets=[0, 8, 9])), "safetensors.offsets"),
        (mutate(lambda h: h["b"].update(data_offsets=[4, 12])), "safetensors.overlap"),
        (mutate(lambda h: h["b"].update(data_offsets=[8, 24])), "safetensors.out_of_bounds"),
        (mutate(lambda h: h["__metadata__"].update(n=1)), "safetensors.metadata"),
        (mutate(lambda h: h.update(c="tensor")), "safetensors.entry"),
        (safetensors_file(GOOD_HEADER, bytes(20)), "safetensors.trailing_data"),
        (safetensors_file(None, raw=b'{"a": 1, "a": 2}'), "safetensors.duplicate_key"),
        (safetensors_file(None, raw=b'{"a": \xff}'), "safetensors.header_encoding"),
        (safetensors_file(None, raw=b'{"a": [1, 2}'), "safetensors.header_json"),
        ((10**9).to_bytes(8, "little") + b"{}", "safetensors.header_length"),
        ((200_000_000).to_bytes(8, "little") + b"{}", "safetensors.header_length"),
    ],
)
def test_safetensors_header_rules(data: bytes, kind: str) -> None:
    report = scan_bytes(data, name="model.safetensors")
    assert kind in {f.kind for f in report.findings}, report.findings
    assert report.verdict is Verdict.SUSPICIOUS
    assert report.files[0].format == "safetensors"


def test_safetensors_gap_between_tensors() -> None:
    data = mutate(lambda h: h["b"].update(data_offsets=[12, 20]))
    report = scan_bytes(data + bytes(4), name="x.safetensors")
    assert only(report, "safetensors.gap").detail.startswith("4 unused bytes")


def test_valid_safetensors_header_is_clean() -> None:
    assert scan_bytes(safetensors_file(GOOD_HEADER, bytes(16)), name="x").findings == ()


# -- GGUF ---------------------------------------------------------------------------------


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf_file(
    *,
    version: int = 3,
    template: str = "{{ messages[0]['content'] }}",
    tensor_count: int | None = None,
    offset: int = 0,
) -> bytes:
    kvs = [
        gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama"),
        gguf_string("general.alignment") + struct.pack("<II", 4, 32),
        gguf_string("tokenizer.chat_template") + struct.pack("<I", 8) + gguf_string(template),
        gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 2)
        + gguf_string("a")
        + gguf_string("b"),
    ]
    tensor = gguf_string("w") + struct.pack("<I", 1) + struct.pack("<Q", 4)
    tensor += struct.pack("<I", 0) + struct.pack("<Q", offset)
    n_tensors = 1 if tensor_count is None else tensor_count
    body = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + b"".join(kvs) + tensor
    return body + bytes(-len(body) % 32) + bytes(16)


def test_gguf_benign_is_clean() -> None:
    report = scan_bytes(gguf_file(), name="model.gguf")
    assert (report.files[0].format, report.findings) == ("gguf", ())


def test_gguf_chat_template_injection() -> None:
    template = "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}"
    finding = only(scan_bytes(gguf_file(template=template), name="m.gguf"), "template.injection")
    assert finding.severity is Severity.MALICIOUS
    assert finding.detail.startswith("tokenizer.chat_template contains")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (gguf_file(version=7), "unknown GGUF version 7"),
        (gguf_file(tensor_count=10**12), "tensor count"),
        (gguf_file(offset=3), "not aligned"),
        (gguf_file(offset=1 << 40), "past the end"),
    ],
)
def test_gguf_header_sanity(data: bytes, detail: str) -> None:
    finding = only(scan_bytes(data, name="m.gguf"), "gguf.header")
    assert detail in finding.detail


def test_gguf_truncated() -> None:
    cut = gguf_file()[:120]
    assert "cannot fit in the file" in only(scan_bytes(cut, name="m.gguf"), "gguf.header").detail
    # Inside a stream the size is unknown until the data runs out.
    report = scan_bytes(gzip.compress(cut), name="m.gguf.gz")
    assert only(report, "gguf.truncated").member == "m.gguf"


# -- JSON -----------------------------------------------------------------------------------


def test_tokenizer_config_chat_template_injection() -> None:
    config = {"chat_template": "{% for m in messages %}{{ m.__class__.__mro__ }}{% endfor %}"}
    report = scan_bytes(json.dumps(config).encode(), name="tokenizer_config.json")
    assert only(report, "template.injection").member is None
