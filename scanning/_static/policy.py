"""Which imports a pickle (or a Keras config) may make: allowlist, denylist, the rest.

A pickle can only run code through the objects it imports (``GLOBAL``,
``STACK_GLOBAL``, ``INST``, extension codes), so every import is classified:

* ``SAFE`` – on the allowlist of what real checkpoints need (tensor and storage
  rebuilding, dtypes, ``collections.OrderedDict``, NumPy array reconstruction…);
* ``MALICIOUS`` – a known route to code execution, file or network access,
  reached directly or through attribute traversal (``pathlib`` + ``os.system``
  resolves to ``os.system``; ``x.__builtins__.eval`` to ``builtins.eval``);
* ``SUSPICIOUS`` – anything else: not known to be safe, a person must look.
"""

from __future__ import annotations

import _compat_pickle
from dataclasses import dataclass
from enum import Enum

__all__ = ["ImportVerdict", "Judgement", "classify_import"]


class ImportVerdict(Enum):
    """How an import is judged."""

    SAFE = "safe"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"


@dataclass(frozen=True)
class Judgement:
    """The verdict on ``name`` (the resolved dotted name) and the reason."""

    verdict: ImportVerdict
    name: str
    why: str


_TORCH_DTYPES = [
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "complex32",
    "chalf",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "bool",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
]
_TORCH_STORAGES = [
    "Double",
    "Float",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexFloat",
    "ComplexDouble",
    "QInt8",
    "QUInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
    "Untyped",
]
_TORCH_REBUILDERS = [
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
]
_TORCH_CONSTANTS = [
    "Size",
    "device",
    "dtype",
    "Tensor",
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "jagged",
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
]

#: Exactly these fully qualified names are safe: what torch.save, numpy and joblib emit.
SAFE_IMPORTS: frozenset[str] = frozenset(
    [f"torch.{n}" for n in _TORCH_DTYPES + _TORCH_CONSTANTS]
    + [f"torch.{n}Storage" for n in _TORCH_STORAGES]
    + [f"torch.storage.{n}" for n in ("UntypedStorage", "TypedStorage")]
    + [f"torch._utils.{n}" for n in _TORCH_REBUILDERS]
    + [
        "torch._tensor._rebuild_from_type_v2",
        "torch._tensor.Tensor",
        "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.torch_version.TorchVersion",
        "collections.OrderedDict",
        "collections.defaultdict",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.complex",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.range",
        "builtins.object",
        "_codecs.encode",
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "argparse.Namespace",
        "joblib.numpy_pickle.NumpyArrayWrapper",
    ]
    + [
        f"{core}.{name}"
        for core in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ]
    + ["numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"]
    + ["numpy.ndarray", "numpy.dtype"]
)

#: Modules (and all their submodules and attributes) that lead to code execution,
#: file system or network access.
DANGEROUS_MODULES: dict[str, str] = {
    **dict.fromkeys(
        ("os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "commands", "popen2"),
        "runs operating-system commands",
    ),
    **dict.fromkeys(("sys", "signal", "_signal", "resource", "gc"), "controls the interpreter"),
    **dict.fromkeys(
        ("runpy", "importlib", "imp", "zipimport", "pkgutil", "code", "codeop", "marshal"),
        "imports or executes arbitrary Python code",
    ),
    **dict.fromkeys(
        ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "jsonpickle"),
        "unpickles a nested payload the outer scan cannot see",
    ),
    **dict.fromkeys(("ctypes", "_ctypes", "cffi"), "calls native code and writes arbitrary memory"),
    **dict.fromkeys(
        ("pdb", "bdb", "cProfile", "profile", "timeit", "trace", "doctest", "pydoc", "idlelib"),
        "executes a string of Python code (debuggers, profilers, timers)",
    ),
    **dict.fromkeys(
        ("multiprocessing", "_multiprocessing", "concurrent", "asyncio", "_thread"),
        "starts processes or threads running arbitrary callables",
    ),
    **dict.fromkeys(
        (
            "socket",
            "_socket",
            "ssl",
            "requests",
            "urllib",
            "urllib2",
            "urllib3",
            "http",
            "httplib",
            "httpx",
            "aiohttp",
            "ftplib",
            "smtplib",
            "telnetlib",
            "socketserver",
            "xmlrpc",
            "webbrowser",
            "paramiko",
        ),
        "opens network connections (download or exfiltration)",
    ),
    **dict.fromkeys(("shutil", "tempfile", "fileinput"), "reads, writes or deletes files"),
    **dict.fromkeys(
        ("distutils", "setuptools", "pip", "venv", "ensurepip", "site"),
        "installs packages or runs build code",
    ),
    "torch.hub": "downloads and runs code from the network",
    "torch.jit": "loads TorchScript code",
    "torch.package": "imports code packaged with the model",
    "torch.fx": "executes generated Python source",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch._inductor": "loads compiled code",
    "torch.multiprocessing": "starts processes",
    "torch.distributed": "opens network connections and runs remote calls",
    "numpy.testing": "executes strings of code (runstring)",
    "numpy.f2py": "compiles and runs code",
    "numpy.distutils": "runs shell commands",
    "numpy.ctypeslib": "loads native libraries",
    "pandas.io.pickle": "unpickles a nested payload",
    "yaml.unsafe_load": "constructs arbitrary Python objects",
}

#: Single functions and classes that run code or touch files.
DANGEROUS_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "builtins.eval",
            "builtins.exec",
            "builtins.compile",
            "builtins.execfile",
            "builtins.__import__",
            "builtins.__build_class__",
            "builtins.breakpoint",
            "builtins.input",
            "builtins.help",
        ),
        "evaluates or imports Python code",
    ),
    **dict.fromkeys(
        (
            "builtins.getattr",
            "builtins.setattr",
            "builtins.delattr",
            "builtins.globals",
            "builtins.locals",
            "builtins.vars",
            "builtins.type",
            "builtins.object.__reduce__",
            "operator.attrgetter",
            "operator.methodcaller",
            "_operator.attrgetter",
            "_operator.methodcaller",
        ),
        "reaches or changes arbitrary attributes (a route to any function)",
    ),
    **dict.fromkeys(
        (
            "builtins.open",
            "builtins.exit",
            "builtins.quit",
            "io.open",
            "io.FileIO",
            "_io.open",
            "_io.FileIO",
            "codecs.open",
            "os.open",
        ),
        "opens files or stops the process",
    ),
    **dict.fromkeys(
        (
            "types.FunctionType",
            "types.LambdaType",
            "types.CodeType",
            "types.MethodType",
            "types.ModuleType",
        ),
        "builds functions from raw bytecode",
    ),
    **dict.fromkeys(
        (
            "torch.load",
            "torch.serialization.load",
            "torch.storage._load_from_bytes",
            "torch.serialization._load",
            "torch._weights_only_unpickler.load",
            "numpy.load",
            "numpy.lib.npyio.load",
            "numpy.lib._npyio_impl.load",
            "numpy.lib.format.read_array",
            "joblib.load",
            "joblib.numpy_pickle.load",
            "pandas.read_pickle",
            "keras.models.load_model",
            "yaml.load",
            "yaml.full_load",
            "torch.ops.load_library",
            "torch.classes.load_library",
        ),
        "loads a nested model or pickle the outer scan cannot see",
    ),
    **dict.fromkeys(
        (
            "numpy.memmap",
            "numpy.fromfile",
            "numpy.tofile",
            "numpy.save",
            "numpy.savez",
            "numpy.savetxt",
            "numpy.loadtxt",
            "numpy.genfromtxt",
            "platform.popen",
        ),
        "reads or writes files",
    ),
    "pkgutil.resolve_name": "imports any object by name",
}

#: Attribute names that, at the end of a dotted import, mean running code or touching files.
DANGEROUS_ATTRIBUTES: frozenset[str] = frozenset(
    [
        "system",
        "popen",
        "spawn",
        "spawnv",
        "spawnl",
        "execv",
        "execve",
        "execl",
        "execlp",
        "execvp",
        "fork",
        "forkpty",
        "eval",
        "exec",
        "execfile",
        "compile",
        "load",
        "loads",
        "load_module",
        "import_module",
        "__import__",
        "check_call",
        "check_output",
        "getoutput",
        "getstatusoutput",
        "Popen",
        "run_path",
        "run_module",
        "write_text",
        "write_bytes",
        "unlink",
        "rmtree",
        "rmdir",
        "remove",
        "rename",
        "chmod",
        "chown",
        "symlink_to",
        "kill",
        "killpg",
        "load_model",
        "load_library",
        "start_new_thread",
    ]
)

_REASON_DUNDER = "reaches interpreter internals through a dunder attribute (a sandbox escape)"


def _compat(module: str, name: str) -> tuple[str, str]:
    """Python 2 names the unpickler maps for old protocols (``__builtin__`` → ``builtins``)."""
    key = (module, name)
    if key in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[key]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _candidates(module: str, name: str) -> list[str]:
    """Every fully qualified name the lookup of ``module.name`` may really reach.

    ``getattr`` traversal through a module attribute lands in another module, so
    ``pathlib`` + ``os.system`` really is ``os.system``: each suffix of the dotted
    name is a candidate too.
    """
    parts = name.split(".")
    found = [f"{module}.{name}"]
    for i in range(len(parts) - 1):
        head = "builtins" if parts[i] in ("__builtins__", "__builtin__") else parts[i]
        found.append(".".join([head, *parts[i + 1 :]]))
    return found


def _dangerous(candidate: str) -> str | None:
    if candidate in DANGEROUS_NAMES:
        return DANGEROUS_NAMES[candidate]
    parts = candidate.split(".")
    for i in range(len(parts), 0, -1):
        reason = DANGEROUS_MODULES.get(".".join(parts[:i]))
        if reason is not None:
            return reason
    return None


def classify_import(module: str, name: str) -> Judgement:
    """Judge the import of ``name`` from ``module`` as a pickle would resolve it.

    >>> classify_import("torch._utils", "_rebuild_tensor_v2").verdict.value
    'safe'
    >>> j = classify_import("pathlib", "os.system")
    >>> (j.verdict.value, j.name)
    ('malicious', 'os.system')
    >>> classify_import("mypackage.models", "Net").verdict.value
    'suspicious'
    """
    module, name = _compat(module, name)
    full = f"{module}.{name}"
    if full in SAFE_IMPORTS:
        return Judgement(ImportVerdict.SAFE, full, "on the allowlist of checkpoint globals")
    for candidate in _candidates(module, name):
        reason = _dangerous(candidate)
        if reason is not None:
            return Judgement(ImportVerdict.MALICIOUS, candidate, reason)
    last = name.rsplit(".", 1)[-1]
    if last in DANGEROUS_ATTRIBUTES:
        why = f"calls {last!r}, a function that runs code or touches files"
        return Judgement(ImportVerdict.MALICIOUS, full, why)
    if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in name.split(".")):
        return Judgement(ImportVerdict.MALICIOUS, full, _REASON_DUNDER)
    return Judgement(
        ImportVerdict.SUSPICIOUS,
        full,
        "not on the allowlist of globals real checkpoints need: loading it imports and "
        "may run code from that module",
    )
