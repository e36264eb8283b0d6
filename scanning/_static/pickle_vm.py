"""A pickle opcode reader and stack simulator that never executes anything.

:class:`PickleMachine` walks one pickle (protocols 0–5) opcode by opcode, the way
CPython's ``_pickle`` unpickler would, but instead of importing and calling it
builds inert stand-ins (:class:`Global`, :class:`Call`) and tells an
:class:`Observer` about every import, call, ``BUILD``, container mutation,
extension code and framing anomaly. The stack and the memo are simulated so that
``STACK_GLOBAL`` operands pushed by any string opcode or fetched from the memo are
resolved. Errors (truncation, unknown opcodes, stack underflow) stop the walk
with a :class:`PickleBroken` that says where; everything seen before the break
has already been reported, since the real unpickler would have run it.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import BinaryIO, Protocol

from scanning._static.context import ScanContext

__all__ = [
    "Call",
    "EndOfData",
    "Global",
    "Observer",
    "Opaque",
    "Persistent",
    "PickleBroken",
    "PickleMachine",
    "Reader",
    "SimDict",
]

_CHUNK = 1 << 20
_MAX_LINE = 1 << 16
HIGHEST_PROTOCOL = 5


class PickleBroken(Exception):
    """The pickle cannot go on: ``truncated`` (data ends) or ``invalid`` (bad content)."""

    def __init__(self, kind: str, offset: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.offset = offset
        self.message = message


class Global:
    """An imported object: ``module`` and (possibly dotted) ``name``."""

    __slots__ = ("module", "name", "offset")

    def __init__(self, module: str, name: str, offset: int) -> None:
        self.module = module
        self.name = name
        self.offset = offset

    @property
    def dotted(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


class Call:
    """The result of calling ``func`` (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST)."""

    __slots__ = ("args", "func", "kwargs", "offset", "opcode", "state")

    def __init__(self, func: object, args: object, offset: int, opcode: str) -> None:
        self.func = func
        self.args = args
        self.kwargs: object = None
        self.offset = offset
        self.opcode = opcode
        self.state: object = None


class Persistent:
    """A persistent reference (``PERSID``/``BINPERSID``), e.g. a torch storage."""

    __slots__ = ("pid",)

    def __init__(self, pid: object) -> None:
        self.pid = pid


class Opaque:
    """A value the simulation does not keep (a huge string, a buffer, an extension)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class SimDict:
    """A dict whose keys may be unhashable stand-ins; kept as pairs in order."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[object, object]] | None = None) -> None:
        self.items: list[tuple[object, object]] = items or []

    def get(self, key: object) -> object:
        """The last value stored under ``key`` (by equality), else None."""
        for k, v in reversed(self.items):
            if type(k) is type(key) and k == key:
                return v
        return None


class SimSet:
    """A set under construction (``EMPTY_SET`` + ``ADDITEMS``)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[object] = []


class Observer(Protocol):
    """Receives what a pickle would do; implementations decide what is a finding."""

    def on_import(self, glob: Global, opcode: str) -> None:
        """An import (GLOBAL, STACK_GLOBAL, INST) at ``glob.offset``."""

    def on_dynamic_import(self, module: object, name: object, offset: int) -> None:
        """A STACK_GLOBAL whose operands are not plain strings."""

    def on_call(self, call: Call) -> None:
        """A call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST)."""

    def on_build(self, machine: PickleMachine, target: object, state: object, offset: int) -> None:
        """A BUILD (``__setstate__`` or setattr) of ``state`` onto ``target``."""

    def on_mutation(self, target: object, opcode: str, offset: int) -> None:
        """SETITEM(S)/APPEND(S)/ADDITEMS on something that is not a plain container."""

    def on_extension(self, code: int, offset: int) -> None:
        """An EXT1/EXT2/EXT4 import through the copyreg extension registry."""

    def on_frame(self, detail: str, offset: int) -> None:
        """A FRAME that disagrees with the content."""


class EndOfData(Exception):
    """The underlying stream ended before a read could be satisfied."""


class Reader:
    """Buffered sequential reader with absolute offsets and bounded skipping."""

    def __init__(self, stream: BinaryIO, *, base: int = 0, size: int | None = None) -> None:
        self._stream = stream
        self._buf = b""
        self._i = 0
        self._base = base  # absolute offset of _buf[0]
        self.size = size  # absolute end offset when known
        self._chunk = 1 << 14  # grows: a probe of raw bytes should read little

    @property
    def pos(self) -> int:
        """Absolute offset of the next byte."""
        return self._base + self._i

    def _fill(self, n: int) -> bool:
        """Make ``n`` bytes available at the cursor; False at end of data."""
        avail = len(self._buf) - self._i
        if avail >= n:
            return True
        more = self._stream.read(max(n - avail, self._chunk))
        self._chunk = min(self._chunk * 4, _CHUNK)
        while more and len(self._buf) - self._i + len(more) < n:
            extra = self._stream.read(max(n - avail - len(more), _CHUNK))
            if not extra:
                break
            more += extra
        self._base += self._i
        self._buf = self._buf[self._i :] + more
        self._i = 0
        return len(self._buf) >= n

    def at_eof(self) -> bool:
        """True when no byte is left."""
        return not self._fill(1)

    def byte(self) -> int:
        """One byte, or raise at end of data."""
        if self._i >= len(self._buf) and not self._fill(1):
            raise EndOfData
        b = self._buf[self._i]
        self._i += 1
        return b

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (callers bound ``n``)."""
        if not self._fill(n):
            raise EndOfData
        data = self._buf[self._i : self._i + n]
        self._i += n
        return data

    def skip(self, n: int) -> None:
        """Move ``n`` bytes forward without keeping them."""
        avail = len(self._buf) - self._i
        if n <= avail:
            self._i += n
            return
        target = self.pos + n
        if self.size is not None and target > self.size:
            raise EndOfData
        n -= avail
        self._base, self._buf, self._i = self.pos + avail, b"", 0
        if self._stream.seekable():
            self._stream.seek(n, 1)
            self._base += n
            return
        while n:
            part = self._stream.read(min(n, _CHUNK))
            if not part:
                raise EndOfData
            n -= len(part)
            self._base += len(part)

    def readline(self) -> bytes | None:
        """One line without its newline; None if longer than 64 KiB (then skipped)."""
        while True:
            nl = self._buf.find(b"\n", self._i)
            if nl >= 0:
                line = self._buf[self._i : nl]
                self._i = nl + 1
                return None if len(line) > _MAX_LINE else line
            if len(self._buf) - self._i > _MAX_LINE:
                self._skip_to_newline()
                return None
            if not self._fill(len(self._buf) - self._i + 1):
                raise EndOfData

    def _skip_to_newline(self) -> None:
        while True:
            nl = self._buf.find(b"\n", self._i)
            if nl >= 0:
                self._i = nl + 1
                return
            self._base += len(self._buf)
            self._buf, self._i = b"", 0
            if not self._fill(1):
                raise EndOfData


_MARK = object()


class PickleMachine:
    """Simulate one pickle from the reader's position until STOP.

    ``memo`` may be shared by the pickles of one file, so that a later pickle
    fetching memo entries of an earlier one (one ``Unpickler`` used several
    times) is still resolved.
    """

    def __init__(
        self,
        reader: Reader,
        observer: Observer,
        ctx: ScanContext,
        *,
        memo: dict[int, object] | None = None,
    ) -> None:
        self.reader = reader
        self.observer = observer
        self.ctx = ctx
        self.memo: dict[int, object] = {} if memo is None else memo
        self.stack: list[object] = []
        self.metastack: list[list[object]] = []
        self.protocol = 0
        self.imports = 0  # literal imports (GLOBAL, STACK_GLOBAL of strings, INST)
        self.start = reader.pos
        self.opcode_offset = reader.pos
        self.frame_end: int | None = None
        self._frame_reported = False
        self._kept = ctx.limits.max_kept_string
        self._table = self._dispatch_table()

    # -- driver ------------------------------------------------------------

    def run(self) -> object:
        """Walk until STOP and return the pickled value (an inert stand-in)."""
        reader, table, count = self.reader, self._table, 0
        try:
            while True:
                self.opcode_offset = start = reader.pos
                op = reader.byte()
                handler = table.get(op)
                if handler is None:
                    raise self._invalid(f"unknown opcode 0x{op:02x}")
                count += 1
                if count & 0xFFF == 0:
                    self.ctx.count_opcodes(0x1000)
                if op == 0x2E:  # STOP
                    self._check_frame_at_stop(start)
                    self.ctx.count_opcodes(count & 0xFFF)
                    return self._pop()
                handler()
                if self.frame_end is not None:
                    self._check_frame(start, reader.pos)
        except EndOfData:
            self.ctx.count_opcodes(count & 0xFFF)
            raise PickleBroken(
                "truncated", self.opcode_offset, "the data ends in the middle of the pickle"
            ) from None
        except PickleBroken:
            self.ctx.count_opcodes(count & 0xFFF)
            raise

    def _invalid(self, message: str) -> PickleBroken:
        return PickleBroken("invalid", self.opcode_offset, message)

    # -- framing -----------------------------------------------------------

    def _frame_problem(self, detail: str) -> None:
        if not self._frame_reported:
            self._frame_reported = True
            self.observer.on_frame(detail, self.opcode_offset)

    def _check_frame(self, start: int, end: int) -> None:
        frame_end = self.frame_end
        assert frame_end is not None
        if start < frame_end < end:
            self._frame_problem(
                f"an opcode at {start} runs past the end of its frame at {frame_end}"
            )
        if end >= frame_end:
            self.frame_end = None

    def _check_frame_at_stop(self, start: int) -> None:
        if self.frame_end is not None and self.frame_end > start + 1:
            self._frame_problem(f"the frame claims {self.frame_end - start - 1} bytes after STOP")

    # -- stack helpers -----------------------------------------------------

    def _pop(self) -> object:
        if not self.stack:
            raise self._invalid("stack underflow")
        return self.stack.pop()

    def _top(self) -> object:
        if not self.stack:
            raise self._invalid("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[object]:
        if not self.metastack:
            raise self._invalid("MARK expected but not found")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _push(self, value: object) -> None:
        self.stack.append(value)

    def _data(self, n: int, what: str, *, text: bool) -> object:
        """``n`` bytes of string data: kept when short, skipped otherwise."""
        if n < 0:
            raise self._invalid(f"negative {what} length")
        if n > self._kept:
            self.reader.skip(n)
            return Opaque(what)
        raw = self.reader.read(n)
        if not text:
            return raw
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self._invalid(f"{what} is not valid UTF-8") from None

    def _line(self, what: str) -> bytes:
        line = self.reader.readline()
        if line is None:
            raise self._invalid(f"{what} line longer than 64 KiB")
        return line

    def _name_line(self, what: str) -> str:
        try:
            return self._line(what).decode("utf-8")
        except UnicodeDecodeError:
            raise self._invalid(f"{what} is not valid UTF-8") from None

    def _uint(self, n: int) -> int:
        return int.from_bytes(self.reader.read(n), "little")

    # -- opcode table --------------------------------------------------------

    def _dispatch_table(self) -> dict[int, Callable[[], None]]:
        t: dict[int, Callable[[], None]] = {}
        simple: dict[bytes, Callable[[], None]] = {
            b"(": self._mark,
            b"0": self._op_pop,
            b"1": self._op_pop_mark,
            b"2": lambda: self._push(self._top()),
            b"N": lambda: self._push(None),
            b"\x88": lambda: self._push(True),
            b"\x89": lambda: self._push(False),
            b")": lambda: self._push(()),
            b"]": lambda: self._push([]),
            b"}": lambda: self._push(SimDict()),
            b"\x8f": lambda: self._push(SimSet()),
            b"t": lambda: self._push(tuple(self._pop_mark())),
            b"\x85": lambda: self._tuple_n(1),
            b"\x86": lambda: self._tuple_n(2),
            b"\x87": lambda: self._tuple_n(3),
            b"l": lambda: self._push(list(self._pop_mark())),
            b"d": self._op_dict,
            b"\x91": lambda: self._push(frozenset(_hashable(self._pop_mark()))),
            b"I": self._op_int,
            b"J": lambda: self._push(int.from_bytes(self.reader.read(4), "little", signed=True)),
            b"K": lambda: self._push(self.reader.byte()),
            b"M": lambda: self._push(self._uint(2)),
            b"L": self._op_long,
            b"\x8a": lambda: self._op_long_n(self.reader.byte()),
            b"\x8b": lambda: self._op_long_n(self._uint(4)),
            b"F": self._op_float,
            b"G": lambda: self._push(struct.unpack(">d", self.reader.read(8))[0]),
            b"S": self._op_string,
            b"T": lambda: self._push(_latin1(self._data(self._uint(4), "BINSTRING", text=False))),
            b"U": lambda: self._push(_latin1(self._data(self.reader.byte(), "STRING", text=False))),
            b"V": self._op_unicode,
            b"X": lambda: self._push(self._data(self._uint(4), "BINUNICODE", text=True)),
            b"\x8c": lambda: self._push(self._data(self.reader.byte(), "BINUNICODE", text=True)),
            b"\x8d": lambda: self._push(self._data(self._uint(8), "BINUNICODE8", text=True)),
            b"B": lambda: self._push(self._data(self._uint(4), "BINBYTES", text=False)),
            b"C": lambda: self._push(self._data(self.reader.byte(), "BINBYTES", text=False)),
            b"\x8e": lambda: self._push(self._data(self._uint(8), "BINBYTES8", text=False)),
            b"\x96": lambda: self._push(self._data(self._uint(8), "BYTEARRAY8", text=False)),
            b"\x97": lambda: self._push(Opaque("out-of-band buffer")),
            b"\x98": lambda: None,  # READONLY_BUFFER: the top stays
            b"P": self._op_persid,
            b"Q": lambda: self._push(Persistent(self._pop())),
            b"g": lambda: self._get(self._line_int("GET")),
            b"h": lambda: self._get(self.reader.byte()),
            b"j": lambda: self._get(self._uint(4)),
            b"p": lambda: self._put(self._line_int("PUT")),
            b"q": lambda: self._put(self.reader.byte()),
            b"r": lambda: self._put(self._uint(4)),
            b"\x94": lambda: self._put(len(self.memo)),
            b"a": self._op_append,
            b"e": self._op_appends,
            b"s": self._op_setitem,
            b"u": self._op_setitems,
            b"\x90": self._op_additems,
            b"c": self._op_global,
            b"\x93": self._op_stack_global,
            b"i": self._op_inst,
            b"o": self._op_obj,
            b"R": self._op_reduce,
            b"\x81": self._op_newobj,
            b"\x92": self._op_newobj_ex,
            b"b": self._op_build,
            b"\x82": lambda: self._op_ext(self.reader.byte()),
            b"\x83": lambda: self._op_ext(self._uint(2)),
            b"\x84": lambda: self._op_ext(self._uint(4)),
            b"\x80": self._op_proto,
            b"\x95": self._op_frame,
            b".": lambda: None,  # STOP is handled by the driver
        }
        for key, handler in simple.items():
            t[key[0]] = handler
        return t

    # -- simple opcodes ------------------------------------------------------

    def _mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def _op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def _op_pop_mark(self) -> None:
        self._pop_mark()

    def _tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise self._invalid("stack underflow")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self._push(items)

    def _op_dict(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise self._invalid("odd number of items for DICT")
        self._push(SimDict(list(zip(items[::2], items[1::2], strict=True))))

    def _op_int(self) -> None:
        line = self._line("INT")
        if line == b"00":
            self._push(False)
        elif line == b"01":
            self._push(True)
        else:
            self._push(self._parse_int(line, "INT"))

    def _op_long(self) -> None:
        line = self._line("LONG")
        self._push(self._parse_int(line[:-1] if line.endswith(b"L") else line, "LONG"))

    def _parse_int(self, line: bytes, what: str) -> int:
        try:
            return int(line, 0)
        except ValueError:
            try:
                return int(line)
            except ValueError:
                raise self._invalid(f"{what} argument is not an integer") from None

    def _line_int(self, what: str) -> int:
        value = self._parse_int(self._line(what), what)
        if value < 0:
            raise self._invalid(f"negative {what} argument")
        return value

    def _op_long_n(self, n: int) -> None:
        if n > self._kept:
            self.reader.skip(n)
            self._push(Opaque("huge integer"))
        else:
            self._push(int.from_bytes(self.reader.read(n), "little", signed=True))

    def _op_float(self) -> None:
        try:
            self._push(float(self._line("FLOAT")))
        except ValueError:
            raise self._invalid("FLOAT argument is not a number") from None

    def _op_string(self) -> None:
        line = self.reader.readline()
        if line is None:
            self._push(Opaque("long STRING"))
            return
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise self._invalid("the STRING opcode argument must be quoted")
        try:
            self._push(_latin1(codecs.escape_decode(line[1:-1])[0]))
        except ValueError:
            raise self._invalid("bad escape in STRING") from None

    def _op_unicode(self) -> None:
        line = self.reader.readline()
        if line is None:
            self._push(Opaque("long UNICODE"))
            return
        try:
            self._push(line.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise self._invalid("bad escape in UNICODE") from None

    def _op_persid(self) -> None:
        try:
            self._push(Persistent(self._line("PERSID").decode("ascii")))
        except UnicodeDecodeError:
            raise self._invalid("persistent IDs in protocol 0 must be ASCII strings") from None

    def _get(self, index: int) -> None:
        if index not in self.memo:
            raise self._invalid(f"memo value not found at index {index}")
        self._push(self.memo[index])

    def _put(self, index: int) -> None:
        self.memo[index] = self._top()

    # -- containers ----------------------------------------------------------

    def _op_append(self) -> None:
        value = self._pop()
        self._extend(self._top(), [value], "APPEND")

    def _op_appends(self) -> None:
        items = self._pop_mark()
        self._extend(self._top(), items, "APPENDS")

    def _extend(self, target: object, items: list[object], opcode: str) -> None:
        if isinstance(target, list):
            target.extend(items)
        else:
            self.observer.on_mutation(target, opcode, self.opcode_offset)

    def _op_setitem(self) -> None:
        value = self._pop()
        key = self._pop()
        self._set_items(self._top(), [key, value], "SETITEM")

    def _op_setitems(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise self._invalid("odd number of items for SETITEMS")
        self._set_items(self._top(), items, "SETITEMS")

    def _set_items(self, target: object, items: list[object], opcode: str) -> None:
        if isinstance(target, SimDict):
            target.items.extend(zip(items[::2], items[1::2], strict=True))
        else:
            self.observer.on_mutation(target, opcode, self.opcode_offset)

    def _op_additems(self) -> None:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, SimSet):
            target.items.extend(items)
        else:
            self.observer.on_mutation(target, "ADDITEMS", self.opcode_offset)

    # -- imports and calls -----------------------------------------------------

    def _import(self, module: str, name: str, opcode: str) -> Global:
        if not (_dotted_identifier(module) and _dotted_identifier(name)):
            # find_class fails on such names: the real unpickler stops right here.
            raise self._invalid(f"{opcode} of {module!r}, {name!r}: not an importable name")
        glob = Global(module, name, self.opcode_offset)
        self.imports += 1
        self.observer.on_import(glob, opcode)
        return glob

    def _op_global(self) -> None:
        module = self._name_line("GLOBAL module")
        name = self._name_line("GLOBAL name")
        self._push(self._import(module, name, "GLOBAL"))

    def _op_stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        if isinstance(module, str) and isinstance(name, str):
            self._push(self._import(module, name, "STACK_GLOBAL"))
            return
        self.observer.on_dynamic_import(module, name, self.opcode_offset)
        self._push(Opaque("dynamic import"))

    def _op_inst(self) -> None:
        module = self._name_line("INST module")
        name = self._name_line("INST name")
        args = tuple(self._pop_mark())
        self._call(self._import(module, name, "INST"), args, "INST")

    def _op_obj(self) -> None:
        items = self._pop_mark()
        if not items:
            raise self._invalid("OBJ without a class")
        self._call(items[0], tuple(items[1:]), "OBJ")

    def _op_reduce(self) -> None:
        args = self._pop()
        func = self._pop()
        self._call(func, args, "REDUCE")

    def _op_newobj(self) -> None:
        args = self._pop()
        cls = self._pop()
        self._call(cls, args, "NEWOBJ")

    def _op_newobj_ex(self) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        self._call(cls, args, "NEWOBJ_EX", kwargs)

    def _call(self, func: object, args: object, opcode: str, kwargs: object = None) -> None:
        call = Call(func, args, self.opcode_offset, opcode)
        call.kwargs = kwargs
        self.observer.on_call(call)
        self._push(call)

    def _op_build(self) -> None:
        state = self._pop()
        target = self._top()
        offset = self.opcode_offset
        if isinstance(target, Call):
            target.state = state
        if self.frame_end is not None:
            # Judge framing before an observer consumes inline data (joblib arrays).
            self._check_frame(offset, self.reader.pos)
        self.observer.on_build(self, target, state, offset)

    def _op_ext(self, code: int) -> None:
        self.observer.on_extension(code, self.opcode_offset)
        self._push(Opaque(f"extension {code}"))

    # -- protocol and framing ------------------------------------------------------

    def _op_proto(self) -> None:
        proto = self.reader.byte()
        if proto > HIGHEST_PROTOCOL:
            raise self._invalid(f"unsupported pickle protocol {proto}")
        self.protocol = proto

    def _op_frame(self) -> None:
        length = self._uint(8)
        here = self.reader.pos
        if self.frame_end is not None and here - 9 < self.frame_end:
            self._frame_problem("a new frame begins before the end of the current frame")
        size = self.reader.size
        if size is not None and here + length > size:
            self._frame_problem(f"the frame claims {length} bytes but only {size - here} remain")
        self.frame_end = here + length if length else None


def _dotted_identifier(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _latin1(value: object) -> object:
    """Protocol 0–2 byte strings load as ``str`` (decoded as latin-1 here)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _hashable(items: list[object]) -> list[object]:
    return [i for i in items if isinstance(i, str | int | float | bytes | bool | type(None))]
