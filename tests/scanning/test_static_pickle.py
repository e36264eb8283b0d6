"""Pickle techniques: each file is built here with a harmless payload, never loaded."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from scanning.report import Finding, ScanReport, Severity, Verdict
from scanning.static import ScanLimits, scan_bytes, scan_path

ECHO = "echo pwned"


class SystemCall:
    """Pickles to ``os.system("echo pwned")``; only ever dumped, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (ECHO,))


def only(report: ScanReport, kind: str) -> Finding:
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, report.findings
    return found[0]


def kinds(report: ScanReport) -> set[str]:
    return {f.kind for f in report.findings}


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE of ``text``."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_to_os_system_is_malicious_in_every_protocol(protocol: int) -> None:
    report = scan_bytes(pickle.dumps(SystemCall(), protocol=protocol), name="model.pkl")
    finding = only(report, "pickle.global")
    assert report.verdict is Verdict.MALICIOUS
    assert finding.severity is Severity.MALICIOUS
    assert finding.detail == f"{os.name == 'nt' and 'nt' or 'posix'}.system"
    assert finding.file == "model.pkl"
    assert finding.member is None
    assert finding.offset == (0 if protocol < 2 else 2 if protocol < 4 else 28)
    assert "system" in finding.why


def test_scan_path_names_the_file_and_offset(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(pickle.dumps(SystemCall(), protocol=2))
    finding = only(scan_path(tmp_path / "weights.bin"), "pickle.global")
    assert (finding.file, finding.offset) == ("weights.bin", 2)


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "x.data", "noextension", "a.txt"])
def test_detection_ignores_the_extension(name: str) -> None:
    report = scan_bytes(pickle.dumps(SystemCall(), protocol=3), name=name)
    assert report.verdict is Verdict.MALICIOUS
    assert report.files[0].format == "pickle"


def test_stack_global_operands_from_the_memo() -> None:
    # Push "os" and "system", memoize them, drop them, then fetch both back.
    data = (
        b"\x80\x04" + sbu("os") + b"\x94" + sbu("system") + b"\x94" + b"00"
        b"h\x00h\x01\x93" + sbu(ECHO) + b"\x85R."
    )
    finding = only(scan_bytes(data, name="m.pkl"), "pickle.global")
    assert (finding.detail, finding.offset) == ("os.system", 22)


def test_stack_global_with_put_and_long_binget() -> None:
    data = (
        b"\x80\x04" + sbu("subprocess") + b"q\x07" + sbu("Popen") + b"r\x09\x00\x00\x000"
        b"0h\x07j\x09\x00\x00\x00\x93."
    )
    assert only(scan_bytes(data, name="m.pkl"), "pickle.global").detail == "subprocess.Popen"


def test_stack_global_from_protocol_0_strings() -> None:
    data = b"\x80\x04S'builtins'\nS'exec'\n\x93."
    assert only(scan_bytes(data, name="m.pkl"), "pickle.global").detail == "builtins.exec"


def test_dotted_name_resolves_through_another_module() -> None:
    data = b"\x80\x04" + sbu("pathlib") + sbu("os.system") + b"\x93" + sbu(ECHO) + b"\x85R."
    finding = only(scan_bytes(data, name="m.pkl"), "pickle.global")
    assert finding.detail == "pathlib.os.system (resolves to os.system)"
    assert finding.severity is Severity.MALICIOUS


def test_dunder_traversal_is_malicious() -> None:
    data = b"\x80\x04" + sbu("collections") + sbu("OrderedDict.__init__.__globals__") + b"\x93."
    assert only(scan_bytes(data, name="m.pkl"), "pickle.global").severity is Severity.MALICIOUS


def test_python2_builtin_alias_is_resolved() -> None:
    data = b"c__builtin__\neval\n(S'print(1)'\ntR."
    finding = only(scan_bytes(data, name="m.pkl"), "pickle.global")
    assert finding.detail == "__builtin__.eval (resolves to builtins.eval)"


@pytest.mark.parametrize(
    ("opcodes", "detail"),
    [
        (b"(S'echo pwned'\nios\nsystem\n.", "os.system"),
        (b"(cposix\nsystem\nS'echo pwned'\no.", "posix.system"),
        (b"\x80\x04" + sbu("nt") + sbu("system") + b"\x93)\x81.", "nt.system"),
        (b"\x80\x04" + sbu("runpy") + sbu("run_path") + b"\x93)}\x92.", "runpy.run_path"),
    ],
    ids=["INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"],
)
def test_every_call_opcode_is_seen(opcodes: bytes, detail: str) -> None:
    report = scan_bytes(opcodes, name="m.pkl")
    assert only(report, "pickle.global").detail == detail
    assert report.verdict is Verdict.MALICIOUS


def test_build_on_an_imported_module_is_malicious() -> None:
    # BUILD on the torch._utils module itself: patches a function every load calls.
    data = b"\x80\x02ctorch\n_utils\n}S'x'\nK\x01sb."
    report = scan_bytes(data, name="m.pkl")
    finding = only(report, "pickle.build_on_global")
    assert (finding.detail, finding.offset, finding.severity) == (
        "torch._utils",
        25,
        Severity.MALICIOUS,
    )


def test_build_on_an_unknown_class_is_suspicious() -> None:
    data = b"\x80\x02cmylib.models\nNet\n)\x81}S'w'\nK\x01sb."
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.build").detail == "mylib.models.Net"
    assert only(report, "pickle.unknown_global").severity is Severity.SUSPICIOUS
    assert report.verdict is Verdict.SUSPICIOUS


def test_setitem_on_an_imported_object_is_malicious() -> None:
    data = b"\x80\x02cos\nenviron\nS'LD_PRELOAD'\nS'/tmp/x.so'\ns."
    assert only(scan_bytes(data, name="m.pkl"), "pickle.global_mutation").detail == "os.environ"


def test_dynamic_stack_global_is_malicious() -> None:
    # The module name is computed while loading: _codecs.encode("bf", "rot13") == "os".
    data = (
        b"\x80\x04c_codecs\nencode\n"
        + sbu("bf")
        + sbu("rot13")
        + b"\x86R"
        + sbu("system")
        + b"\x93."
    )
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.dynamic_global").severity is Severity.MALICIOUS
    assert only(report, "pickle.codecs").severity is Severity.SUSPICIOUS


def test_extension_codes_are_suspicious() -> None:
    report = scan_bytes(b"\x80\x02\x82\x01)R.", name="m.pkl")
    assert only(report, "pickle.extension").detail == "extension code 1"


def test_stacked_pickles_are_all_scanned() -> None:
    benign = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
    data = benign + pickle.dumps(SystemCall(), protocol=4)
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.global").offset == len(benign) + 28
    assert only(report, "pickle.stacked").offset == len(benign)


def test_stacked_pickle_reusing_the_first_pickles_memo() -> None:
    first = b"\x80\x04" + sbu("os") + b"\x94" + sbu("system") + b"\x94N."
    second = b"\x80\x04h\x00h\x01\x93."
    assert only(scan_bytes(first + second, name="m.pkl"), "pickle.global").detail == "os.system"


def test_truncated_pickle_reports_what_came_before() -> None:
    data = pickle.dumps(SystemCall(), protocol=2)[:-4]
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.global").offset == 2
    truncated = only(report, "pickle.truncated")
    assert truncated.severity is Severity.SUSPICIOUS
    assert truncated.offset is not None


def test_invalid_opcode_after_payload() -> None:
    """The nullifAI trick: payload first, then a broken stream."""
    data = pickle.dumps(SystemCall(), protocol=2)[:-1] + b"\xff\xfe"
    report = scan_bytes(data, name="m.pkl")
    assert report.verdict is Verdict.MALICIOUS
    invalid = only(report, "pickle.invalid")
    assert invalid.offset == len(data) - 2
    assert "0xff" in invalid.detail


def test_broken_pickle_without_imports_is_still_reported() -> None:
    report = scan_bytes(b"\x80\x02]q\x00(K\x01K\x02\xfe", name="model.pkl")
    assert only(report, "pickle.invalid").severity is Severity.SUSPICIOUS
    assert report.verdict is Verdict.SUSPICIOUS


def test_frame_longer_than_the_data() -> None:
    data = b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00" + sbu("os") + sbu("system") + b"\x93."
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.frame").offset == 2
    assert only(report, "pickle.global").detail == "os.system"


def test_opcode_crossing_a_frame_end() -> None:
    body = sbu("os") + sbu("system") + b"\x93."
    data = b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00" + body
    report = scan_bytes(data, name="m.pkl")
    assert "runs past the end of its frame" in only(report, "pickle.frame").detail


def test_trailing_garbage_after_stop_is_noted() -> None:
    data = pickle.dumps([1, 2], protocol=2) + b"\xff\xfe\xfd"
    report = scan_bytes(data, name="m.pkl")
    assert only(report, "pickle.trailing_data").severity is Severity.INFO
    assert report.verdict is Verdict.CLEAN


def test_unknown_global_is_suspicious_not_malicious() -> None:
    report = scan_bytes(b"\x80\x02cfunctools\npartial\n.", name="m.pkl")
    assert report.verdict is Verdict.SUSPICIOUS


def test_opcode_limit_is_an_error_not_clean(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"\x80\x02" + b"N0" * 20_000 + b"N.")
    report = scan_path(tmp_path / "m.pkl", limits=ScanLimits(max_pickle_opcodes=1000))
    assert only(report, "scan.limit").severity is Severity.ERROR
    assert report.verdict is Verdict.ERROR


def test_huge_string_lengths_are_skipped_not_allocated() -> None:
    data = b"\x80\x04\x8e" + (1 << 60).to_bytes(8, "little") + b"x"
    report = scan_bytes(data, name="m.pkl")
    assert kinds(report) == {"pickle.truncated"}


def test_long_protocol_0_strings_are_skipped_not_refused() -> None:
    report = scan_bytes(pickle.dumps({"blob": "x" * 200_000}, protocol=0), name="m.pkl")
    assert report.findings == ()


def test_text_that_only_looks_like_a_pickle_is_text() -> None:
    report = scan_bytes(b"cos\nthis is not a name\n(S'x'\ntR.", name="notes.txt")
    assert (report.files[0].format, report.findings) == ("text", ())
