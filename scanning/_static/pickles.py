"""Whole pickle streams: every pickle in a file, legacy torch files, joblib arrays.

:func:`scan_pickles` walks a stream pickle after pickle (stacked pickles: a
loader may call ``pickle.load`` again), recognises the legacy (non-zip) torch
format by its magic-number pickle and stops before its raw storage bytes, and
follows joblib's arrays written inline between opcodes. Each pickle is judged by
a :class:`PickleAnalyst` built on the import :mod:`policy`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanning._static.blobs import Blob
from scanning._static.context import ScanContext, Where
from scanning._static.pickle_vm import (
    Call,
    Global,
    Opaque,
    Persistent,
    PickleBroken,
    PickleMachine,
    Reader,
    SimDict,
)
from scanning._static.policy import ImportVerdict, classify_import
from scanning.report import Severity

__all__ = ["TORCH_LEGACY_MAGIC", "PickleAnalyst", "scan_pickles"]

#: The first pickle of a legacy (non-zip) ``torch.save`` file holds this number.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: After the magic number: protocol version, sys info, the data, the storage keys.
_LEGACY_PICKLES_AFTER_MAGIC = 4
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_DTYPE_RE = re.compile(r"^[<>|=]?([biufcmMOSUVa?])(\d*)$")

_WHY_TRUNCATED = (
    "the pickle ends before STOP: pickle.load runs every import and call before the "
    "break and then fails, a known way to slip a payload past scanners"
)
_WHY_INVALID = (
    "the pickle is malformed: everything before the bad opcode runs on load, and "
    "scanners that give up on it report nothing"
)


@dataclass
class _Pending:
    kind: str
    detail: str
    severity: Severity
    why: str
    offset: int
    count: int = 1


class PickleAnalyst:
    """Turns what a pickle would do into findings (an :class:`Observer`).

    Findings are held until :meth:`flush`, so that a stream that turns out not to
    be a pickle at all (raw tensor bytes) leaves no trace. Repeats of the same
    finding are folded into the first one, with a count.
    """

    def __init__(self, ctx: ScanContext, where: Where) -> None:
        self.ctx = ctx
        self.where = where
        self.pending: dict[tuple[str, str], _Pending] = {}
        self.joblib_arrays = 0

    def _emit(self, kind: str, detail: str, severity: Severity, why: str, offset: int) -> None:
        key = (kind, detail)
        found = self.pending.get(key)
        if found is None:
            self.pending[key] = _Pending(kind, detail, severity, why, offset)
        else:
            found.count += 1

    def flush(self) -> None:
        """Hand the findings held so far to the scan context."""
        for p in self.pending.values():
            detail = p.detail if p.count == 1 else f"{p.detail} ({p.count} times)"
            self.ctx.report(self.where, p.kind, detail, p.severity, p.why, offset=p.offset)
        self.pending.clear()

    # -- Observer --------------------------------------------------------------

    def on_import(self, glob: Global, opcode: str) -> None:
        judgement = classify_import(glob.module, glob.name)
        if judgement.verdict is ImportVerdict.SAFE:
            return
        detail = glob.dotted
        if judgement.name != glob.dotted:
            detail = f"{glob.dotted} (resolves to {judgement.name})"
        if judgement.verdict is ImportVerdict.MALICIOUS:
            why = f"{opcode} imports {judgement.name}, which {judgement.why}"
            self._emit("pickle.global", detail, Severity.MALICIOUS, why, glob.offset)
        else:
            why = f"{opcode} imports {judgement.name}: {judgement.why}"
            self._emit("pickle.unknown_global", detail, Severity.SUSPICIOUS, why, glob.offset)

    def on_dynamic_import(self, module: object, name: object, offset: int) -> None:
        detail = f"module {_describe(module)}, name {_describe(name)}"
        why = (
            "STACK_GLOBAL takes its module or name from a value computed while loading "
            "(not a literal string): the import cannot be known without running the pickle"
        )
        self._emit("pickle.dynamic_global", detail, Severity.MALICIOUS, why, offset)

    def on_call(self, call: Call) -> None:
        func = call.func
        if isinstance(func, Global):
            if func.dotted == "_codecs.encode" and not _latin1_encode(call.args):
                why = "_codecs.encode is allowed only as NumPy uses it (latin-1 bytes)"
                self._emit(
                    "pickle.codecs", _describe(call.args), Severity.SUSPICIOUS, why, call.offset
                )
            return
        if isinstance(func, Call | Opaque | Persistent):
            why = (
                f"{call.opcode} calls an object produced while loading (not an import): "
                "a way to reach functions the import check does not see"
            )
            self._emit(
                "pickle.indirect_call", _describe(func), Severity.SUSPICIOUS, why, call.offset
            )

    def on_build(self, machine: PickleMachine, target: object, state: object, offset: int) -> None:
        if isinstance(target, Global):
            why = (
                "BUILD sets attributes on an imported module, class or function itself: "
                "it patches code that runs later"
            )
            self._emit("pickle.build_on_global", target.dotted, Severity.MALICIOUS, why, offset)
            return
        cls = _instance_class(target)
        if cls is None:
            return
        if cls.dotted == _JOBLIB_WRAPPER:
            self.joblib_arrays += 1
            _skip_joblib_array(machine, self, state, offset)
            return
        if classify_import(cls.module, cls.name).verdict is not ImportVerdict.SAFE:
            why = (
                f"BUILD applies state to an instance of {cls.dotted}: its __setstate__ "
                "runs, or setattr on arbitrary attributes"
            )
            self._emit("pickle.build", cls.dotted, Severity.SUSPICIOUS, why, offset)

    def on_mutation(self, target: object, opcode: str, offset: int) -> None:
        if isinstance(target, Global):
            why = f"{opcode} changes an imported object in place (e.g. os.environ, sys.path)"
            self._emit("pickle.global_mutation", target.dotted, Severity.MALICIOUS, why, offset)
        elif (
            isinstance(target, Call)
            and isinstance(target.func, Global)
            and classify_import(target.func.module, target.func.name).verdict
            is not ImportVerdict.SAFE
        ):
            why = f"{opcode} calls __setitem__/append/add of a {target.func.dotted} object"
            self._emit("pickle.mutation", target.func.dotted, Severity.SUSPICIOUS, why, offset)

    def on_extension(self, code: int, offset: int) -> None:
        why = (
            "EXT opcodes import whatever the loading process registered under this "
            "copyreg extension code: the import cannot be checked"
        )
        self._emit("pickle.extension", f"extension code {code}", Severity.SUSPICIOUS, why, offset)

    def on_frame(self, detail: str, offset: int) -> None:
        why = (
            "FRAME lengths that disagree with the content make scanners and unpicklers "
            "read different opcodes (a parser-differential evasion)"
        )
        self._emit("pickle.frame", detail, Severity.SUSPICIOUS, why, offset)


_CONSTRUCTORS = frozenset(
    {
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
    }
)


def _instance_class(target: object) -> Global | None:
    """The class an object was made from (seen through copyreg's constructors)."""
    if not isinstance(target, Call) or not isinstance(target.func, Global):
        return None
    args = target.args
    if (
        target.func.dotted in _CONSTRUCTORS
        and isinstance(args, tuple)
        and args
        and isinstance(args[0], Global)
    ):
        return args[0]
    return target.func


def _describe(value: object) -> str:
    if isinstance(value, Global):
        return value.dotted
    if isinstance(value, Call):
        func = value.func.dotted if isinstance(value.func, Global) else type(value.func).__name__
        return f"result of calling {func}"
    if isinstance(value, Opaque):
        return value.what
    if isinstance(value, Persistent):
        return "a persistent reference"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _latin1_encode(args: object) -> bool:
    return (
        isinstance(args, tuple)
        and len(args) == 2
        and isinstance(args[0], str | Opaque)
        and args[1] in ("latin1", "latin-1")
    )


# -- joblib ---------------------------------------------------------------------


def _skip_joblib_array(
    machine: PickleMachine, analyst: PickleAnalyst, state: object, offset: int
) -> None:
    """Follow the array joblib writes right after a ``NumpyArrayWrapper``'s BUILD."""
    layout = _joblib_layout(state)
    if layout is None:
        raise PickleBroken(
            "invalid",
            offset,
            "a joblib array wrapper whose array size cannot be worked out: the bytes "
            "after it cannot be told apart from pickle opcodes",
        )
    nbytes, has_object, aligned = layout
    if has_object:  # joblib pickles object arrays as a nested pickle, inline
        PickleMachine(machine.reader, analyst, machine.ctx).run()
        return
    if aligned:
        machine.reader.skip(machine.reader.byte())
    machine.reader.skip(nbytes)


def _joblib_layout(state: object) -> tuple[int, bool, bool] | None:
    if not isinstance(state, SimDict):
        return None
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        return None
    itemsize = _dtype_itemsize(dtype)
    if itemsize is None:
        return None
    count = 1
    for n in shape:
        count *= n
    nbytes = count * itemsize[0]
    if nbytes >= 1 << 62:
        return None
    aligned = state.get("numpy_array_alignment_bytes") is not None
    return nbytes, itemsize[1], aligned


def _dtype_itemsize(dtype: object) -> tuple[int, bool] | None:
    """(item size, holds objects) of a pickled ``numpy.dtype(...)`` call."""
    if not isinstance(dtype, Call) or not isinstance(dtype.func, Global):
        return None
    if dtype.func.dotted != "numpy.dtype" or not isinstance(dtype.args, tuple) or not dtype.args:
        return None
    descr = dtype.args[0]
    st = dtype.state
    flags = st[7] if isinstance(st, tuple) and len(st) >= 8 and isinstance(st[7], int) else 0
    elsize = st[5] if isinstance(st, tuple) and len(st) >= 6 and isinstance(st[5], int) else -1
    match = _DTYPE_RE.match(descr) if isinstance(descr, str) else None
    if match is None:
        return None
    kind, digits = match.groups()
    if kind == "O" or flags & 1:
        return 8, True
    if elsize > 0:
        return elsize, False
    if not digits:
        return (1, False) if kind in "b?" else None
    size = int(digits)
    return (size * 4 if kind == "U" else size), False


# -- streams of pickles ------------------------------------------------------------


def scan_pickles(
    blob: Blob, ctx: ScanContext, where: Where, *, start: int = 0, strict: bool
) -> str | None:
    """Scan every pickle from ``start`` to the end of ``blob``.

    Returns the format (``pickle``, ``torch-legacy``, ``joblib``) or None when the
    bytes are not a pickle: the first one breaks before importing anything and
    ``strict`` (the bytes were announced as a pickle) is off.
    """
    with blob.open() as stream:
        reader = Reader(stream, size=blob.size)
        if start:
            reader.skip(start)
        return _PickleStream(reader, ctx, where).walk(strict=strict)


class _PickleStream:
    def __init__(self, reader: Reader, ctx: ScanContext, where: Where) -> None:
        self.reader = reader
        self.ctx = ctx
        self.where = where
        self.memo: dict[int, object] = {}
        self.format = "pickle"

    def walk(self, *, strict: bool) -> str | None:
        index, legacy_left = 0, -1
        while True:
            offset = self.reader.pos
            analyst = PickleAnalyst(self.ctx, self.where)
            machine = PickleMachine(self.reader, analyst, self.ctx, memo=self.memo)
            try:
                value = machine.run()
            except PickleBroken as broken:
                return self._broken(broken, machine, analyst, index=index, strict=strict)
            if index == 0 and not strict and machine.imports == 0:
                # Without an import nothing can run: raw bytes that happen to parse.
                return None
            if index > 0:
                self._stacked(offset)
            analyst.flush()
            if analyst.joblib_arrays:
                self.format = "joblib"
            index += 1
            if index == 1 and value == TORCH_LEGACY_MAGIC and not isinstance(value, bool):
                self.format, legacy_left = "torch-legacy", _LEGACY_PICKLES_AFTER_MAGIC
            elif legacy_left > 0:
                legacy_left -= 1
                if legacy_left == 0:
                    return self.format  # raw storage bytes follow, torch never unpickles them
            if self.reader.at_eof():
                return self.format

    def _broken(
        self,
        broken: PickleBroken,
        machine: PickleMachine,
        analyst: PickleAnalyst,
        *,
        index: int,
        strict: bool,
    ) -> str | None:
        if machine.imports == 0:
            if index == 0 and not strict:
                return None
            if index > 0 and not analyst.pending:
                self._trailing(machine.start)
                return self.format
        if index > 0:
            self._stacked(machine.start)
        analyst.flush()
        if broken.kind == "truncated":
            self.ctx.report(
                self.where,
                "pickle.truncated",
                broken.message,
                Severity.SUSPICIOUS,
                _WHY_TRUNCATED,
                offset=broken.offset,
            )
        else:
            self.ctx.report(
                self.where,
                "pickle.invalid",
                broken.message,
                Severity.SUSPICIOUS,
                _WHY_INVALID,
                offset=broken.offset,
            )
        return self.format

    def _stacked(self, offset: int) -> None:
        if self.format == "torch-legacy":
            return
        self.ctx.report(
            self.where,
            "pickle.stacked",
            "another pickle follows the previous STOP",
            Severity.INFO,
            "pickle.load reads only the first pickle, but a loader calling it again runs "
            "this one: it is scanned like the first",
            offset=offset,
        )

    def _trailing(self, offset: int) -> None:
        self.ctx.report(
            self.where,
            "pickle.trailing_data",
            "bytes after the last pickle that are not a pickle",
            Severity.INFO,
            "pickle.load ignores them and they import nothing, but they may hide data",
            offset=offset,
        )
