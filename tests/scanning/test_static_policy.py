"""The import policy: what real checkpoints need is safe, code execution is malicious."""

from __future__ import annotations

import pytest

from scanning._static.policy import SAFE_IMPORTS, ImportVerdict, classify_import

SAFE = ImportVerdict.SAFE
SUSPICIOUS = ImportVerdict.SUSPICIOUS
MALICIOUS = ImportVerdict.MALICIOUS


@pytest.mark.parametrize(
    ("module", "name", "verdict", "resolved"),
    [
        ("torch._utils", "_rebuild_tensor_v2", SAFE, "torch._utils._rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter", SAFE, "torch._utils._rebuild_parameter"),
        ("torch", "BFloat16Storage", SAFE, "torch.BFloat16Storage"),
        ("torch", "bfloat16", SAFE, "torch.bfloat16"),
        ("torch", "Size", SAFE, "torch.Size"),
        ("collections", "OrderedDict", SAFE, "collections.OrderedDict"),
        ("__builtin__", "set", SAFE, "builtins.set"),
        ("numpy.core.multiarray", "_reconstruct", SAFE, "numpy.core.multiarray._reconstruct"),
        ("numpy._core.multiarray", "scalar", SAFE, "numpy._core.multiarray.scalar"),
        ("_codecs", "encode", SAFE, "_codecs.encode"),
        ("collections", "Counter", SUSPICIOUS, "collections.Counter"),
        ("functools", "partial", SUSPICIOUS, "functools.partial"),
        ("operator", "itemgetter", SUSPICIOUS, "operator.itemgetter"),
        ("torch.nn.modules.linear", "Linear", SUSPICIOUS, "torch.nn.modules.linear.Linear"),
        ("torch.storage", "_load_from_bytes", MALICIOUS, "torch.storage._load_from_bytes"),
        ("torch", "load", MALICIOUS, "torch.load"),
        ("torch.hub", "load", MALICIOUS, "torch.hub.load"),
        ("numpy", "load", MALICIOUS, "numpy.load"),
        ("joblib", "load", MALICIOUS, "joblib.load"),
        ("os", "system", MALICIOUS, "os.system"),
        ("posix", "system", MALICIOUS, "posix.system"),
        ("nt", "system", MALICIOUS, "nt.system"),
        ("os", "popen", MALICIOUS, "os.popen"),
        ("subprocess", "Popen", MALICIOUS, "subprocess.Popen"),
        ("commands", "getoutput", MALICIOUS, "subprocess.getoutput"),
        ("builtins", "eval", MALICIOUS, "builtins.eval"),
        ("__builtin__", "exec", MALICIOUS, "builtins.exec"),
        ("builtins", "getattr", MALICIOUS, "builtins.getattr"),
        ("builtins", "__import__", MALICIOUS, "builtins.__import__"),
        ("builtins", "open", MALICIOUS, "builtins.open"),
        ("runpy", "run_module", MALICIOUS, "runpy.run_module"),
        ("importlib", "import_module", MALICIOUS, "importlib.import_module"),
        ("importlib._bootstrap", "_load", MALICIOUS, "importlib._bootstrap._load"),
        ("pkgutil", "resolve_name", MALICIOUS, "pkgutil.resolve_name"),
        ("marshal", "loads", MALICIOUS, "marshal.loads"),
        ("types", "FunctionType", MALICIOUS, "types.FunctionType"),
        ("types", "CodeType", MALICIOUS, "types.CodeType"),
        ("ctypes", "CDLL", MALICIOUS, "ctypes.CDLL"),
        ("_pickle", "loads", MALICIOUS, "_pickle.loads"),
        ("dill", "loads", MALICIOUS, "dill.loads"),
        ("cProfile", "run", MALICIOUS, "cProfile.run"),
        ("profile", "run", MALICIOUS, "profile.run"),
        ("pdb", "run", MALICIOUS, "pdb.run"),
        ("timeit", "timeit", MALICIOUS, "timeit.timeit"),
        ("trace", "Trace", MALICIOUS, "trace.Trace"),
        ("webbrowser", "open", MALICIOUS, "webbrowser.open"),
        ("requests", "get", MALICIOUS, "requests.get"),
        ("urllib.request", "urlopen", MALICIOUS, "urllib.request.urlopen"),
        ("http.client", "HTTPConnection", MALICIOUS, "http.client.HTTPConnection"),
        (
            "asyncio.subprocess",
            "create_subprocess_shell",
            MALICIOUS,
            "asyncio.subprocess.create_subprocess_shell",
        ),
        ("multiprocessing", "Process", MALICIOUS, "multiprocessing.Process"),
        ("operator", "attrgetter", MALICIOUS, "operator.attrgetter"),
        ("operator", "methodcaller", MALICIOUS, "operator.methodcaller"),
        ("pathlib", "os.system", MALICIOUS, "os.system"),
        ("torch", "serialization.os.system", MALICIOUS, "os.system"),
        ("mylib", "__builtins__.eval", MALICIOUS, "builtins.eval"),
        ("collections", "OrderedDict.__class__", MALICIOUS, "collections.OrderedDict.__class__"),
        ("pathlib", "Path.write_text", MALICIOUS, "pathlib.Path.write_text"),
        (
            "numpy.testing._private.utils",
            "runstring",
            MALICIOUS,
            "numpy.testing._private.utils.runstring",
        ),
        (
            "torch.fx.graph_module",
            "reduce_graph_module",
            MALICIOUS,
            "torch.fx.graph_module.reduce_graph_module",
        ),
        ("mylib", "code", SUSPICIOUS, "mylib.code"),
        ("osx", "thing", SUSPICIOUS, "osx.thing"),
        ("collections_extra", "x", SUSPICIOUS, "collections_extra.x"),
    ],
)
def test_classification(module: str, name: str, verdict: ImportVerdict, resolved: str) -> None:
    judgement = classify_import(module, name)
    assert (judgement.verdict, judgement.name) == (verdict, resolved)
    assert judgement.why


def test_allowlist_has_no_dangerous_entry() -> None:
    for full in SAFE_IMPORTS:
        module, _, name = full.rpartition(".")
        assert classify_import(module, name).verdict is SAFE
    assert not any(n.endswith((".load", ".loads", "._load_from_bytes")) for n in SAFE_IMPORTS)
