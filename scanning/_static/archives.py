"""Containers: zip (PyTorch, NumPy ``.npz``, Keras), tar, 7z and compressed wrappers.

Every member is handed back to the dispatcher whatever its name, so a pickle
called ``weights/0`` is found as surely as ``data.pkl``. Members are read only
as far as their format needs (a head of a few KiB decides), so a large tensor
member costs one seek. Zip members are located through the central directory
and their local headers, as PyTorch's reader does, and decompressed here: bad
CRCs, odd flag bits and mismatched names do not stop the scan, they are findings.
"""

from __future__ import annotations

import io
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from scanning._static.blobs import (
    Blob,
    BytesBlob,
    DecompressReader,
    StreamBlob,
    WindowBlob,
)
from scanning._static.context import LimitExceeded, ScanContext, Where
from scanning.report import Severity

if TYPE_CHECKING:
    from tarfile import TarFile, TarInfo

__all__ = ["ScanMember", "scan_7z", "scan_compressed", "scan_tar", "scan_zip"]

#: Scans one member and returns its format (the dispatcher's entry point).
ScanMember = Callable[[Blob, Where], str]

_KNOWN_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0800
_RAW_FORMATS = frozenset({"data", "text", "empty"})
_CRC_CHECK_LIMIT = 64 << 20
_BUF = 1 << 16


def _decompressor(kind: str) -> Callable[[], Any]:
    """A factory of fresh decompressors for ``kind`` (bz2 and lzma load on demand)."""
    if kind == "gzip":
        return lambda: zlib.decompressobj(31)
    if kind == "zlib":
        return zlib.decompressobj
    if kind == "bz2":
        import bz2

        return bz2.BZ2Decompressor
    import lzma

    fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
    return lambda: lzma.LZMADecompressor(fmt)


_SUFFIXES = {"gzip": ".gz", "zlib": ".z", "bz2": ".bz2", "xz": ".xz", "lzma": ".lzma"}


def _name_problem(name: str) -> str | None:
    """Why an archive member name would be written outside the extraction directory."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        return "climbs out of the extraction directory"
    return None


def _report_name(ctx: ScanContext, where: Where, kind: str, name: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        ctx.report(
            where,
            f"{kind}.path_traversal",
            f"member {name!r} {problem}",
            Severity.SUSPICIOUS,
            "extracting the archive writes outside its directory "
            "(zip-slip): it can overwrite code or configuration",
        )


def _too_deep(ctx: ScanContext, where: Where, what: str) -> bool:
    if where.depth < ctx.limits.max_depth:
        return False
    ctx.report(
        where,
        "archive.depth",
        f"{what} nested more than {ctx.limits.max_depth} deep",
        Severity.ERROR,
        "its content was not inspected: could not scan",
    )
    return True


# -- zip --------------------------------------------------------------------------


def scan_zip(
    blob: Blob, ctx: ScanContext, where: Where, scan: ScanMember, *, appended: bool = False
) -> str | None:
    """Scan every member of a zip archive; None if there is no readable zip directory.

    ``appended``: the blob does not start like a zip, only its end does; then an
    unreadable directory means "not a zip" rather than a broken one.
    """
    handle = blob.seekable(ctx)
    end_record = getattr(zipfile, "_EndRecData")(handle)  # noqa: B009 - private helper
    if end_record is None:
        return None
    entries = end_record[getattr(zipfile, "_ECD_ENTRIES_TOTAL")]  # noqa: B009
    if entries > ctx.limits.max_members:
        ctx.report(
            where,
            "archive.limit",
            f"zip directory lists {entries} members",
            Severity.ERROR,
            f"more than {ctx.limits.max_members} members: not scanned",
        )
        return "zip"
    try:
        archive = zipfile.ZipFile(handle)
    except (
        zipfile.BadZipFile,
        OSError,
        ValueError,
        NotImplementedError,
        EOFError,
        struct.error,
    ) as exc:
        if appended:
            return None
        ctx.report(
            where,
            "zip.invalid",
            f"unreadable zip directory: {exc}",
            Severity.ERROR,
            "the members could not be listed, so they were not scanned",
        )
        return "zip"
    if appended:
        ctx.report(
            where,
            "file.polyglot",
            "a zip archive is appended to other data",
            Severity.SUSPICIOUS,
            "zip readers find the archive at the end while other "
            "loaders read the start: one file, two different contents",
            offset=0,
        )
    if _too_deep(ctx, where, "zip archive"):
        return "zip"
    with archive:
        return _scan_members(archive, handle, ctx, where, scan)


def _scan_members(
    archive: zipfile.ZipFile, handle: BinaryIO, ctx: ScanContext, where: Where, scan: ScanMember
) -> str:
    seen: set[str] = set()
    names = [info.filename for info in archive.infolist()]
    for info in archive.infolist():
        ctx.check_time()
        name = info.filename
        _report_name(ctx, where, "zip", name)
        if name in seen:
            ctx.report(
                where,
                "zip.duplicate_name",
                f"member {name!r} appears more than once",
                Severity.SUSPICIOUS,
                "loaders disagree on which copy they read; both are scanned",
            )
        seen.add(name)
        if name.endswith("/") and info.compress_size == 0:
            continue
        member_where = where.inside(name)
        member = _member_blob(archive, info, handle, ctx, member_where)
        if member is None:
            continue
        fmt = scan(member, member_where)
        if fmt not in _RAW_FORMATS or info.file_size <= (1 << 20):
            _check_crc(member, info, ctx, member_where)
    return _zip_label(names)


def _zip_label(names: list[str]) -> str:
    base = {n.rsplit("/", 1)[-1] for n in names}
    if "archive_format" in base:
        return "torch-export"
    if "data.pkl" in base:
        return "torch-zip"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return "keras"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _member_blob(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    handle: BinaryIO,
    ctx: ScanContext,
    where: Where,
) -> Blob | None:
    flags = info.flag_bits
    if flags & 0x41:
        ctx.report(
            where,
            "zip.encrypted",
            f"member {info.filename!r} is encrypted",
            Severity.SUSPICIOUS,
            "its content cannot be inspected",
        )
        return None
    if flags & 0x20:
        ctx.report(
            where,
            "zip.unsupported",
            "compressed patched data (flag bit 5)",
            Severity.SUSPICIOUS,
            "its content cannot be inspected",
        )
        return None
    if flags & ~_KNOWN_FLAGS & 0xFFFF:
        ctx.report(
            where,
            "zip.flags",
            f"unusual general-purpose flag bits 0x{flags:04x}",
            Severity.INFO,
            "not set by PyTorch, NumPy or Keras writers: the archive "
            "was made or edited by another tool",
        )
    start = _data_start(archive, info, handle, ctx, where)
    if start is None:
        return None
    method = info.compress_type
    if method == zipfile.ZIP_STORED:
        return WindowBlob(handle, start, info.compress_size)
    make = _member_decompressor(method)
    if make is None:
        ctx.report(
            where,
            "zip.unsupported_compression",
            f"compression method {method}",
            Severity.SUSPICIOUS,
            "its content cannot be inspected",
        )
        return None
    size = info.compress_size

    def factory() -> BinaryIO:
        raw = WindowBlob(handle, start, size).open()
        if method == zipfile.ZIP_LZMA:
            return io.BufferedReader(_lzma_member(raw, ctx), _BUF)
        return io.BufferedReader(DecompressReader(raw, make, ctx), _BUF)

    return StreamBlob(factory, info.file_size)


def _member_decompressor(method: int) -> Callable[[], Any] | None:
    if method == zipfile.ZIP_DEFLATED:
        return lambda: zlib.decompressobj(-15)
    if method == zipfile.ZIP_BZIP2:
        return _decompressor("bz2")
    if method == zipfile.ZIP_LZMA:
        return lambda: None
    return None


def _lzma_member(raw: IO[bytes], ctx: ScanContext) -> DecompressReader:
    """Zip's LZMA members start with a 4-byte version/size and the filter properties."""
    import lzma

    header = raw.read(4)
    props = raw.read(struct.unpack("<H", header[2:4])[0]) if len(header) == 4 else b""
    decode = getattr(lzma, "_decode_filter_properties")  # noqa: B009 - as zipfile does

    def make() -> Any:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[decode(lzma.FILTER_LZMA1, props)])

    return DecompressReader(raw, make, ctx)


def _data_start(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    handle: BinaryIO,
    ctx: ScanContext,
    where: Where,
) -> int | None:
    del archive
    local = b""
    if info.header_offset >= 0:
        handle.seek(info.header_offset)
        local = handle.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        ctx.report(
            where,
            "zip.bad_local_header",
            f"no local header at {info.header_offset}",
            Severity.SUSPICIOUS,
            "the directory points at something that is not a "
            "member: readers will disagree on the content",
            offset=info.header_offset,
        )
        return None
    name_len, extra_len = (int(v) for v in struct.unpack("<HH", local[26:30]))
    raw_name = handle.read(name_len)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    local_name = raw_name.decode(encoding, "replace")
    if local_name != info.filename:
        ctx.report(
            where,
            "zip.name_mismatch",
            f"directory name {info.filename!r}, local header name {local_name!r}",
            Severity.SUSPICIOUS,
            "readers that trust the local header see another "
            "file name than those that trust the directory",
            offset=info.header_offset,
        )
    return info.header_offset + 30 + name_len + extra_len


def _check_crc(member: Blob, info: zipfile.ZipInfo, ctx: ScanContext, where: Where) -> None:
    if info.file_size > _CRC_CHECK_LIMIT:
        return
    crc = 0
    with member.open() as stream:
        while chunk := stream.read(_BUF):
            crc = zlib.crc32(chunk, crc)
    if crc != info.CRC:
        ctx.report(
            where,
            "zip.bad_crc",
            f"CRC-32 is 0x{crc:08x}, the directory says 0x{info.CRC:08x}",
            Severity.SUSPICIOUS,
            "the member was altered after the "
            "archive was written; PyTorch does not check CRCs but most scanners stop here",
        )
    problem = getattr(member, "last", None)
    raw = getattr(problem, "raw", None)
    if isinstance(raw, DecompressReader) and raw.problem:
        ctx.report(
            where,
            "zip.corrupt_member",
            raw.problem,
            Severity.SUSPICIOUS,
            "the compressed data is damaged: loaders may read it differently",
        )


# -- tar --------------------------------------------------------------------------


def scan_tar(blob: Blob, ctx: ScanContext, where: Where, scan: ScanMember) -> str:
    """Scan every regular file of a tar archive."""
    import tarfile

    if _too_deep(ctx, where, "tar archive"):
        return "tar"
    handle = blob.seekable(ctx)
    try:
        archive = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, ValueError) as exc:
        ctx.report(
            where,
            "tar.invalid",
            f"unreadable tar archive: {exc}",
            Severity.ERROR,
            "the members could not be listed, so they were not scanned",
        )
        return "tar"
    count = 0
    while True:
        ctx.check_time()
        try:
            member = archive.next()
        except (tarfile.TarError, OSError, ValueError) as exc:
            ctx.report(
                where,
                "tar.invalid",
                f"unreadable tar header: {exc}",
                Severity.ERROR,
                "the members after it were not scanned",
            )
            break
        if member is None:
            break
        count += 1
        if count > ctx.limits.max_members:
            ctx.report(
                where,
                "archive.limit",
                f"more than {ctx.limits.max_members} members",
                Severity.ERROR,
                "the rest was not scanned",
            )
            break
        _scan_tar_member(archive, member, handle, ctx, where, scan)
    return "tar"


def _scan_tar_member(
    archive: TarFile,
    member: TarInfo,
    handle: BinaryIO,
    ctx: ScanContext,
    where: Where,
    scan: ScanMember,
) -> None:
    _report_name(ctx, where, "tar", member.name)
    if member.issym() or member.islnk():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        if _name_problem(member.linkname if member.linkname.startswith("/") else target):
            ctx.report(
                where,
                "tar.link",
                f"{member.name!r} links to {member.linkname!r}",
                Severity.SUSPICIOUS,
                "extracting it creates a link out of the extraction directory",
            )
        return
    if not member.isreg():
        return
    if member.issparse():
        extracted = archive.extractfile(member)
        if extracted is None:
            return
        data = extracted.read(ctx.limits.max_read_bytes)
        scan(BytesBlob(data), where.inside(member.name))
        return
    scan(WindowBlob(handle, member.offset_data, member.size), where.inside(member.name))


# -- compressed single streams -------------------------------------------------------


def scan_compressed(blob: Blob, ctx: ScanContext, where: Where, scan: ScanMember, kind: str) -> str:
    """Decompress (within the zip-bomb budget) and scan what is inside."""
    if _too_deep(ctx, where, f"{kind} stream"):
        return kind
    readers: list[DecompressReader] = []
    make = _decompressor(kind)

    def factory() -> BinaryIO:
        reader = DecompressReader(blob.open(), make, ctx, concatenated=kind != "zlib")
        readers.append(reader)
        return io.BufferedReader(reader, _BUF)

    inner_name = _inner_name(where.hint, kind)
    scan(StreamBlob(factory), where.inside(inner_name))
    problems = dict.fromkeys(r.problem for r in readers if r.problem)
    for problem in problems:
        assert problem is not None
        ctx.report(
            where,
            "compression.corrupt",
            f"{kind}: {problem}",
            Severity.SUSPICIOUS,
            "the compressed stream is damaged or cut short: only what came before "
            "the damage was scanned",
        )
    return kind


def _inner_name(hint: str, kind: str) -> str:
    base = hint.rsplit("/", 1)[-1] or "content"
    suffix = _SUFFIXES[kind]
    if base.endswith(suffix) and len(base) > len(suffix):
        return base[: -len(suffix)]
    if kind == "gzip" and base.endswith(".tgz"):
        return base[:-4] + ".tar"
    return f"{base}#{kind}"


# -- 7z -------------------------------------------------------------------------------


class _SpoolWriter:
    """Where py7zr writes one extracted member: a temp file charged to the budget."""

    def __init__(self, ctx: ScanContext) -> None:
        import tempfile

        self.ctx = ctx
        self.file = ctx.cleanup.enter_context(tempfile.TemporaryFile())  # noqa: SIM115

    def write(self, data: bytes | bytearray) -> int:
        self.ctx.count_decompressed(len(data))
        return self.file.write(data)

    def read(self, size: int | None = None) -> bytes:
        return self.file.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def flush(self) -> None:
        self.file.flush()

    def size(self) -> int:
        return self.file.seek(0, 2)

    def close(self) -> None:
        """Kept open until the scan ends (the context closes it)."""


class _SpoolFactory:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.products: dict[str, _SpoolWriter] = {}

    def create(self, filename: str) -> _SpoolWriter:
        writer = _SpoolWriter(self.ctx)
        self.products[filename] = writer
        return writer


def scan_7z(blob: Blob, ctx: ScanContext, where: Where, scan: ScanMember) -> str:
    """Extract (with py7zr, within the budget) and scan every member of a 7z archive."""
    import importlib

    try:
        py7zr = importlib.import_module("py7zr")
    except ImportError:
        ctx.report(
            where,
            "archive.uninspectable",
            "7z archive (py7zr is not installed)",
            Severity.SUSPICIOUS,
            "its content cannot be inspected, so it cannot be called clean",
        )
        return "7z"
    if _too_deep(ctx, where, "7z archive"):
        return "7z"
    factory = _SpoolFactory(ctx)
    try:
        with py7zr.SevenZipFile(blob.seekable(ctx), mode="r") as archive:
            if archive.needs_password():
                ctx.report(
                    where,
                    "archive.encrypted",
                    "password-protected 7z archive",
                    Severity.SUSPICIOUS,
                    "its content cannot be inspected",
                )
                return "7z"
            infos = archive.list()
            if len(infos) > ctx.limits.max_members:
                raise LimitExceeded(f"7z archive lists {len(infos)} members")
            for info in infos:
                _report_name(ctx, where, "7z", info.filename)
            archive.extract(factory=factory)
    except LimitExceeded:
        raise
    except Exception as exc:  # py7zr raises many types on hostile input
        ctx.report(
            where,
            "archive.invalid",
            f"unreadable 7z archive: {exc}",
            Severity.ERROR,
            "its content could not be extracted, so it was not scanned",
        )
        return "7z"
    for name, writer in factory.products.items():
        writer.file.seek(0)
        size = writer.size()
        scan(WindowBlob(writer.file, 0, size), where.inside(name))
    return "7z"
