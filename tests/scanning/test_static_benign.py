"""Real benign files, built with the libraries that write them, must scan clean."""

from __future__ import annotations

import collections
import gzip
import json
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scanning.report import Severity, Verdict
from scanning.static import scan_path

Builder = Callable[[Path], None]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))


def _checkpoint() -> dict[str, object]:
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "metrics": {"acc": 0.91, "history": [0.5, 0.7, 0.91], "name": "digits"},
        "size": torch.Size([1, 8, 8]),
        "param": nn.Parameter(torch.randn(3)),
        "bf16": torch.randn(4, dtype=torch.bfloat16),
        "half": torch.zeros(2, dtype=torch.float16),
        "ints": torch.arange(5, dtype=torch.int8),
        "mask": torch.ones(3, dtype=torch.bool),
        "dtype": torch.float32,
        "device": torch.device("cpu"),
        "ordered": collections.OrderedDict(a=1, b=[2, 3]),
        "sparse": torch.eye(3).to_sparse(),
        "misc": {
            "set": {1, 2},
            "frozen": frozenset({3}),
            "complex": 1 + 2j,
            "bytes": b"\x00\x01",
            "bytearray": bytearray(b"ab"),
            "slice": slice(1, 5),
            "none": None,
        },
    }


def torch_zip(path: Path) -> None:
    torch.save(_model().state_dict(), path)


def torch_legacy(path: Path) -> None:
    torch.save(_model().state_dict(), path, _use_new_zipfile_serialization=False)


def torch_checkpoint(path: Path) -> None:
    torch.save(_checkpoint(), path)


def torch_checkpoint_legacy(path: Path) -> None:
    torch.save(_checkpoint(), path, _use_new_zipfile_serialization=False)


def torch_export(path: Path) -> None:
    model = _model().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.randn(2, 1, 8, 8),))
        torch.export.save(program, path)


def safetensors_torch(path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in _model().state_dict().items()}
    tensors["bf16"] = torch.randn(3, 3, dtype=torch.bfloat16)
    tensors["empty"] = torch.zeros(0, 4)
    save_file(tensors, path, metadata={"format": "pt"})


def safetensors_numpy(path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"a": np.arange(10, dtype=np.int64), "b": np.ones((2, 3), np.float16)}, path)


def npy(path: Path) -> None:
    np.save(path, np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32))


def npy_strings(path: Path) -> None:
    np.save(path, np.array(["cat", "dog"]))


def npz(path: Path) -> None:
    np.savez(path, w=np.ones((3, 3)), b=np.zeros(3, dtype=np.int8))


def npz_compressed(path: Path) -> None:
    np.savez_compressed(path, w=np.arange(1000.0))


def joblib_arrays(path: Path) -> None:
    import joblib  # type: ignore[import-untyped]

    joblib.dump({"coef": np.arange(100.0), "intercept": np.float64(0.5), "classes": [0, 1]}, path)


def joblib_compressed(path: Path) -> None:
    import joblib

    joblib.dump({"coef": np.arange(100.0)}, path, compress=3)


def pickled_data(path: Path) -> None:
    data = {"weights": [0.1, 0.2], "name": "x", "shape": (2, 3), "nested": {"a": {"b": [1]}}}
    with path.open("wb") as f:
        for protocol in range(6):
            pickle.dump(data, f, protocol=protocol)


def pickled_numpy(path: Path) -> None:
    path.write_bytes(pickle.dumps({"a": np.arange(4), "s": np.float32(1.5)}, protocol=2))


def raw_float_weights(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).normal(size=4096).astype(np.float32).tobytes())


def hf_config(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "model_type": "llama",
                "torch_dtype": "bfloat16",
            }
        )
    )


def tokenizer_json(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "model": {"type": "BPE", "vocab": {"a": 0}},
                "added_tokens": [{"id": 0, "content": "<s>"}],
            }
        )
    )


def tokenizer_config(path: Path) -> None:
    template = (
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
        "{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
    )
    path.write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))


def readme(path: Path) -> None:
    path.write_text("---\nlicense: apache-2.0\nbase_model: org/base\n---\n# Model card\n")


def notes(path: Path) -> None:
    path.write_text("cos\nthis is just text that starts like a pickle opcode\n")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def checkpoint_gz(path: Path) -> None:
    torch_zip(path.with_suffix(""))
    path.write_bytes(gzip.compress(path.with_suffix("").read_bytes()))
    path.with_suffix("").unlink()


def model_tar(path: Path) -> None:
    weights = path.parent / "inner.safetensors"
    safetensors_torch(weights)
    with tarfile.open(path, "w") as archive:
        archive.add(weights, arcname="model/model.safetensors")
    weights.unlink()


def keras_archive(path: Path) -> None:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {
            "name": "seq",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None, 8], "name": "input"},
                    "registered_name": None,
                },
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "registered_name": None,
                    "config": {
                        "name": "dense",
                        "units": 2,
                        "activation": "softmax",
                        "dtype": {
                            "module": "keras",
                            "class_name": "DTypePolicy",
                            "config": {"name": "float32"},
                            "registered_name": None,
                        },
                    },
                },
            ],
        },
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(128))


def onnx_inline(path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(np.eye(4, dtype=np.float32), name="w")],
    )
    path.write_bytes(helper.make_model(graph, producer_name="mbom-test").SerializeToString())


BENIGN: dict[str, Builder] = {
    "pytorch_model.bin": torch_zip,
    "legacy.pt": torch_legacy,
    "checkpoint.ckpt": torch_checkpoint,
    "checkpoint_legacy.pth": torch_checkpoint_legacy,
    "exported.pt2": torch_export,
    "model.safetensors": safetensors_torch,
    "numpy.safetensors": safetensors_numpy,
    "array.npy": npy,
    "strings.npy": npy_strings,
    "arrays.npz": npz,
    "compressed.npz": npz_compressed,
    "model.joblib": joblib_arrays,
    "compressed.joblib": joblib_compressed,
    "data.pkl": pickled_data,
    "numpy.pkl": pickled_numpy,
    "raw.bin": raw_float_weights,
    "config.json": hf_config,
    "tokenizer.json": tokenizer_json,
    "tokenizer_config.json": tokenizer_config,
    "README.md": readme,
    "notes.txt": notes,
    "empty": empty,
    "model.pt.gz": checkpoint_gz,
    "model.tar": model_tar,
    "model.keras": keras_archive,
    "model.onnx": onnx_inline,
}


@pytest.fixture(scope="module")
def benign_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("benign")
    for name, build in BENIGN.items():
        build(root / name)
    return root


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_file_is_clean(benign_dir: Path, name: str) -> None:
    report = scan_path(benign_dir / name)
    assert report.findings == (), report.findings
    assert report.verdict is Verdict.CLEAN
    assert report.files[0].scanned


def test_benign_directory_is_clean_with_relative_paths(benign_dir: Path) -> None:
    report = scan_path(benign_dir)
    assert report.verdict is Verdict.CLEAN
    assert sorted(f.path for f in report.files) == sorted(BENIGN)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("pytorch_model.bin", "torch-zip"),
        ("legacy.pt", "torch-legacy"),
        ("exported.pt2", "torch-export"),
        ("model.safetensors", "safetensors"),
        ("arrays.npz", "npz"),
        ("model.joblib", "joblib"),
        ("model.keras", "keras"),
        ("config.json", "json"),
        ("model.onnx", "onnx"),
        ("array.npy", "npy"),
        ("model.tar", "tar"),
        ("raw.bin", "data"),
        ("README.md", "text"),
    ],
)
def test_formats_are_detected(benign_dir: Path, name: str, fmt: str) -> None:
    assert scan_path(benign_dir / name).files[0].format == fmt


def test_whole_module_pickle_is_suspicious_not_malicious(tmp_path: Path) -> None:
    torch.save(_model(), tmp_path / "full.pt")
    report = scan_path(tmp_path / "full.pt")
    assert report.verdict is Verdict.SUSPICIOUS
    details = {f.detail for f in report.findings if f.kind == "pickle.unknown_global"}
    assert "torch.nn.modules.container.Sequential" in details
    assert all(f.severity is not Severity.MALICIOUS for f in report.findings)
