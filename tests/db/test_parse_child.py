"""Large imports parse in a child process (db.parse_child): same results, errors and cleanup."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest

import db.importing as importing
import db.parse_child as parse_child
from db.errors import ImportFailed
from db.importing import ImportReport, import_file, import_stream
from db.migrate import upgrade
from db.settings import Settings
from tests.conftest import sqlite_settings
from tests.db.test_import import annotations, examples, write

CSV = (
    "id,text,label,section\n"
    "1,First text,sport,a\n"
    "2,\"A quoted, multi\nline text\",tech,b\n"
    "3,,sport,c\n"  # empty text: a bad row
    "4,First   text,sport,d\n"  # a duplicate once normalised
    "5,Unknown label,sport,e\n"
    "6,Fourth,,f\n"
)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every file of any size is parsed in a child; the children started are listed."""
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(importing, "_PARSE_PROCESS_MIN_BYTES", 1)
    monkeypatch.setattr(importing.subprocess, "Popen", popen)
    return started


def _outcome(settings: Settings, path: Path, **kwargs: Any) -> tuple[Any, ...]:
    try:
        report = import_file(settings, path, "p", **kwargs)
    except ImportFailed as exc:
        return ("failed", str(exc), _report_fields(exc.report))
    return ("ok", _report_fields(report), examples(settings), annotations(settings))


def _report_fields(report: Any) -> tuple[Any, ...]:
    assert isinstance(report, ImportReport)
    return (report.rows_read, report.accepted, report.labelled, report.duplicates_in_file,
            report.rejected_total, report.rejected_lines())


CASES = {
    "csv, bad rows skipped": ("d.csv", CSV, {"label_field": "label", "skip_bad_rows": True}),
    "csv, bad rows fail": ("d.csv", CSV, {"label_field": "label"}),
    "jsonl with a NaN": ("d.jsonl", '{"text": "a", "n": 1}\n{"text": "b", "x": NaN}\n',
                         {"skip_bad_rows": True}),
    "json list": ("d.json", '[{"text": "a"},\n {"text": "b", "tags": ["x"]}]', {}),
    "json list, broken": ("d.json", '[{"text": "a"},\n {"text": "b"', {}),
    "undecodable byte": ("d.txt", b"fine\nalso fine\nbad \xff here\n", {}),
    "header only": ("d.csv", "id,text\n", {}),
    "too many rows": ("d.txt", "".join(f"text {i}\n" for i in range(50)), {"max_rows": 10}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_child_process_gives_what_the_thread_gives(
    tmp_path: Path, settings: Settings, children: list[Any], monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    name, content, kwargs = CASES[case]
    path = write(tmp_path, name, content)
    in_child = _outcome(settings, path, **kwargs)
    assert len(children) == 1 and children[0].poll() is not None  # started, and gone

    other = sqlite_settings(tmp_path / "thread")
    upgrade(other)
    monkeypatch.setattr(importing, "_PARSE_PROCESS_MIN_BYTES", 1 << 60)
    assert _outcome(other, path, **kwargs) == in_child
    assert len(children) == 1  # the thread path started none


def test_small_files_and_streams_are_parsed_in_a_thread(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(importing.subprocess, "Popen", lambda *a, **k: started.append(a))
    import_file(settings, write(tmp_path, "d.txt", "one\ntwo\n"), "p")  # under 64 MB
    monkeypatch.setattr(importing, "_PARSE_PROCESS_MIN_BYTES", 1)
    import_stream(settings, io.BytesIO(b"three\n"), "d.txt", "p")  # not a file
    assert started == [] and len(examples(settings)) == 3


def test_the_child_starts_where_the_stream_stands(
        tmp_path: Path, settings: Settings, children: list[Any]) -> None:
    path = write(tmp_path, "d.txt", "skipped\nkept\n")
    with path.open("rb") as stream:
        stream.readline()
        import_stream(settings, stream, "d.txt", "p")
    assert [row.text for row in examples(settings)] == ["kept"] and len(children) == 1


def test_a_child_that_dies_fails_the_import_cleanly(
        tmp_path: Path, settings: Settings, children: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "_PARSE_CHILD", ("-c", "import sys; sys.exit(3)"))
    with pytest.raises(ImportFailed, match=r"d.txt: the process reading the file stopped "
                                           r"\(exit code 3\); nothing was imported"):
        import_file(settings, write(tmp_path, "d.txt", "one\n"), "p")
    assert examples(settings) == []


def test_an_import_stopped_early_kills_its_child(
        tmp_path: Path, settings: Settings, children: list[Any]) -> None:
    # 3,000 rows over max_rows: the parent stops at row 11 while the child still parses.
    path = write(tmp_path, "d.txt", "".join(f"text number {i}\n" for i in range(3000)))
    with pytest.raises(ImportFailed, match="more than 10 rows"):
        import_file(settings, path, "p", max_rows=10)
    assert children[0].poll() is not None and examples(settings) == []


def _messages(data: bytes) -> list[tuple[str, Any]]:
    stream, out = io.BytesIO(data), []
    while stream.tell() < len(data):
        out.append(pickle.load(stream))
    return out


def _serve(tmp_path: Path, content: str) -> list[tuple[str, Any]]:
    path = write(tmp_path, "d.txt", content)
    options = importing._options(None, "d.txt", "text", None, None, "utf-8", False, False, None,
                                 "import", 10)
    fd = os.open(path, os.O_RDONLY)
    stdin, stdout = io.BytesIO(pickle.dumps((fd, 0, "d.txt", options))), io.BytesIO()
    parse_child.serve(stdin, stdout)
    return _messages(stdout.getvalue())


def test_the_child_sends_rows_in_batches_then_done(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_child, "BATCH", 2)
    got = _serve(tmp_path, "a\nb\nc\n")
    assert [kind for kind, _ in got] == ["items", "items", "done"]
    assert [row.text for _, rows in got[:2] for row in rows] == ["a", "b", "c"]
    assert got[-1][1] == 6  # bytes read


def test_a_bug_in_the_child_reaches_the_parent_with_its_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise ZeroDivisionError("a bug")
        yield

    monkeypatch.setattr(parse_child, "_parsed", broken)
    got = _serve(tmp_path, "a\n")
    assert got[-1][0] == "crashed" and "ZeroDivisionError: a bug" in got[-1][1]

    class Child:
        stdout = io.BytesIO(pickle.dumps(got[-1]))

    with pytest.raises(RuntimeError, match="(?s)failed in db.parse_child.*ZeroDivisionError"):
        list(importing._from_child(Child(), importing._Source(io.BytesIO(), "d.txt", "utf-8")))
