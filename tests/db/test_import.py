"""The importer: formats, line numbers, duplicates, labels, and all-or-nothing failures."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

import db.importing as importing
from db.engine import read_unit, write_unit
from db.errors import ImportFailed
from db.importing import (
    ImportReport,
    RejectedRow,
    detect_format,
    import_file,
    import_stream,
    read_labelled,
)
from db.models import Annotation, Annotator, Example, Label, Project, Role
from db.projects import IMPORT_ANNOTATOR, create_project
from db.settings import Settings


# ------------------------------------------------------------------------------------ helpers


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def count(settings: Settings, model: type) -> int:
    with read_unit(settings) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def examples(settings: Settings) -> list[Any]:
    """The examples as rows (``text``, ``source_row``, ``meta``, ``reference_label``)."""
    with read_unit(settings) as session:
        return list(
            session.execute(
                select(Example.text, Example.source_row, Example.meta, Example.reference_label)
                .order_by(Example.id)
            )
        )


def annotations(settings: Settings) -> list[tuple[str, str, str]]:
    """``(text, label, annotator)`` for every annotation, in example order."""
    with read_unit(settings) as session:
        rows = session.execute(
            select(Example.text, Label.name, Annotator.name)
            .join(Annotation, Annotation.example_id == Example.id)
            .join(Label, Label.id == Annotation.label_id)
            .join(Annotator, Annotator.id == Annotation.annotator_id)
            .order_by(Example.id)
        ).all()
    return [tuple(row) for row in rows]


def label_set(settings: Settings, project: str) -> list[str]:
    with read_unit(settings) as session:
        return list(
            session.scalars(
                select(Label.name)
                .join(Project, Project.id == Label.project_id)
                .where(Project.name == project)
                .order_by(Label.position)
            )
        )


def assert_nothing_written(settings: Settings) -> None:
    assert count(settings, Project) == 0
    assert count(settings, Example) == 0
    assert count(settings, Annotation) == 0
    assert count(settings, Label) == 0
    assert count(settings, Annotator) == 0


def failure(settings: Settings, path: Path, **kwargs: Any) -> ImportFailed:
    """Import expecting failure; checks the report is attached and nothing is written."""
    with pytest.raises(ImportFailed) as info:
        import_file(settings, path, "p", **kwargs)
    assert isinstance(info.value.report, ImportReport)
    assert_nothing_written(settings)
    return info.value


def make_project(settings: Settings, labels: list[str]) -> None:
    with write_unit(settings) as session:
        create_project(session, "p", labels)


# ------------------------------------------------------------------------------ the happy path


def test_csv_labels_meta_and_source_rows(any_settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.csv",
        "id,text,label,source\n"
        "1,Great film,pos,imdb\n"
        '2,"A film\nover two lines",,imdb\n'
        "3,Terrible film,neg,rt\n",
    )
    report = import_file(any_settings, path, "reviews", label_field="label")

    assert report == ImportReport(
        accepted=3, labelled=2, labels_added=["pos", "neg"], project_created=True, rows_read=3
    )
    rows = examples(any_settings)
    assert [(e.text, e.source_row) for e in rows] == [
        ("Great film", 2),
        ("A film\nover two lines", 3),
        ("Terrible film", 5),
    ]
    assert [e.meta for e in rows] == [
        {"id": "1", "source": "imdb"},
        {"id": "2", "source": "imdb"},
        {"id": "3", "source": "rt"},
    ]
    assert all(e.reference_label is None for e in rows)
    assert label_set(any_settings, "reviews") == ["pos", "neg"]
    assert annotations(any_settings) == [
        ("Great film", "pos", IMPORT_ANNOTATOR),
        ("Terrible film", "neg", IMPORT_ANNOTATOR),
    ]
    with read_unit(any_settings) as session:
        role = session.scalar(select(Annotator.role).where(Annotator.name == IMPORT_ANNOTATOR))
    assert role == Role.SYSTEM.value


def test_duplicates_in_file_and_existing_are_counted_apart(
    any_settings: Settings, tmp_path: Path
) -> None:
    first = write(tmp_path, "first.txt", "alpha\nbeta\n")
    import_file(any_settings, first, "p")
    second = write(
        tmp_path,
        "second.csv",
        "text\nalpha\ngamma\n  gamma \ndelta\nbeta\ndelta\ngamma\nepsilon\n",
    )
    # batch_size=2: in-file duplicates in later batches are told apart from existing ones.
    report = import_file(any_settings, second, "p", batch_size=2)

    assert (report.accepted, report.duplicates_in_file, report.duplicates_existing) == (3, 3, 2)
    assert report.rows_read == 8
    assert [e.text for e in examples(any_settings)] == [
        "alpha", "beta", "gamma", "delta", "epsilon"
    ]


def test_reimport_adds_nothing_and_counts_existing(any_settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    first = import_file(any_settings, path, "p", label_field="label")
    again = import_file(any_settings, path, "p", label_field="label")

    assert (first.accepted, first.labelled) == (2, 2)
    assert again == ImportReport(duplicates_existing=2, rows_read=2)
    assert count(any_settings, Example) == 2
    assert count(any_settings, Annotation) == 2


def test_jsonl_meta_keeps_json_types(any_settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.jsonl",
        '{"text": "one", "score": 0.5, "tags": ["a", "b"], "label": 3}\n'
        "\n"
        '{"text": "two"}\n',
    )
    report = import_file(any_settings, path, "p", label_field="label")

    assert (report.accepted, report.labelled, report.labels_added) == (2, 1, ["3"])
    rows = examples(any_settings)
    assert [(e.source_row, e.meta) for e in rows] == [
        (1, {"score": 0.5, "tags": ["a", "b"]}),
        (3, None),
    ]


def test_json_list_source_row_is_item_position(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.json",
        '[\n  {"body": "first", "topic": "a"},\n  {"body": "second", "topic": "b"}\n]\n',
    )
    report = import_file(settings, path, "p", text_field="body", reference_label_field="topic")

    assert (report.accepted, report.labelled) == (2, 0)
    rows = examples(settings)
    assert [(e.text, e.source_row, e.reference_label, e.meta) for e in rows] == [
        ("first", 1, "a", None),
        ("second", 2, "b", None),
    ]
    assert count(settings, Annotation) == 0


def test_tsv_and_txt(settings: Settings, tmp_path: Path) -> None:
    tsv = write(tmp_path, "d.tsv", "text\tlang\nbonjour, monde\tfr\n")
    txt = write(tmp_path, "d.txt", "first line\r\n\r\n   \nthird, text\rfourth\n")

    assert import_file(settings, tsv, "p").accepted == 1
    report = import_file(settings, txt, "p")

    assert (report.accepted, report.rows_read) == (3, 3)
    rows = examples(settings)
    assert [(e.text, e.source_row, e.meta) for e in rows] == [
        ("bonjour, monde", 2, {"lang": "fr"}),
        ("first line", 1, None),
        ("third, text", 4, None),
        ("fourth", 5, None),
    ]


def test_import_stream_from_an_upload(settings: Settings) -> None:
    upload = io.BytesIO(b"text,label\nhello,greeting\n")
    report = import_stream(settings, upload, "upload.csv", "p", label_field="label")
    assert (report.accepted, report.labelled, report.project_created) == (1, 1, True)


def test_import_stream_wants_bytes(settings: Settings) -> None:
    with pytest.raises(TypeError, match="binary stream"):
        text_stream: Any = io.StringIO("text\nhello\n")
        import_stream(settings, text_stream, "upload.csv", "p")
    assert_nothing_written(settings)


def test_sqlite_cache_size_is_restored(settings: Settings, tmp_path: Path) -> None:
    with read_unit(settings) as session:
        before = session.execute(text("PRAGMA cache_size")).scalar()
    import_file(settings, write(tmp_path, "d.txt", "a\n"), "p")
    failure_path = write(tmp_path, "e.csv", "text\n\" \"\n")
    with pytest.raises(ImportFailed):
        import_file(settings, failure_path, "q")
    with read_unit(settings) as session:
        assert session.execute(text("PRAGMA cache_size")).scalar() == before


def test_reference_label_is_kept_aside(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text,truth\nsome text,sport\nother,\n")
    report = import_file(settings, path, "p", reference_label_field="truth", labels=["sport"])

    assert (report.accepted, report.labelled, report.labels_added) == (2, 0, [])
    assert [e.reference_label for e in examples(settings)] == ["sport", None]
    assert label_set(settings, "p") == ["sport"]


# ------------------------------------------------------------------------------------- labels


def test_unknown_labels_are_listed_and_nothing_written(
    any_settings: Settings, tmp_path: Path
) -> None:
    make_project(any_settings, ["pos", "neg"])
    path = write(tmp_path, "d.csv", "text,label\na,pos\nb,zzz\nc,meh\nd,zzz\n")

    with pytest.raises(ImportFailed) as info:
        import_file(any_settings, path, "p", label_field="label")

    message = str(info.value)
    assert "'meh' (first on line 4), 'zzz' (first on line 3)" in message
    assert "'Add labels found in the file'; CLI: --add-labels" in message
    assert count(any_settings, Example) == 0
    assert label_set(any_settings, "p") == ["pos", "neg"]


def test_add_labels_appends_to_the_label_set(settings: Settings, tmp_path: Path) -> None:
    make_project(settings, ["pos", "neg"])
    path = write(tmp_path, "d.csv", "text,label\na,pos\nb,zzz\nc,meh\nd,zzz\n")

    report = import_file(settings, path, "p", label_field="label", add_labels=True)

    assert report.labels_added == ["zzz", "meh"]
    assert report.labelled == 4
    assert label_set(settings, "p") == ["pos", "neg", "zzz", "meh"]


def test_labels_given_for_a_new_project_make_others_unknown(
    settings: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "d.jsonl", '{"text": "a", "label": "pos"}\n{"text": "b", "label": "x"}\n'
    )

    error = failure(settings, path, label_field="label", labels=["pos", "neg"])

    assert "'x' (first on line 2)" in str(error)


# ----------------------------------------------------------------------------- bad input files


def test_utf8_bom_is_stripped(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\nhello,x\n")
    report = import_file(settings, path, "p", label_field="label")
    assert report.accepted == 1
    assert examples(settings)[0].meta is None


def test_non_utf8_bytes_name_the_offset_and_latin1_works(
    settings: Settings, tmp_path: Path
) -> None:
    content = "text\ncaf\xe9 au lait\n".encode("latin-1")
    path = write(tmp_path, "d.csv", content)

    error = failure(settings, path)

    assert "cannot decode byte 8 (line 2) as utf-8" in str(error)
    assert "'Encoding'; CLI: --encoding latin-1" in str(error)  # the form's words and the flag
    report = import_file(settings, path, "p", encoding="latin-1")
    assert report.accepted == 1
    assert examples(settings)[0].text == "café au lait"


def test_decode_error_offset_across_chunks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "_CHUNK_BYTES", 3)
    content = "text\nnaïve\nb\n".encode() + b"ok \xc3(\n"
    path = write(tmp_path, "d.csv", content)

    error = failure(settings, path)

    offset = content.rindex(b"\xc3")
    assert f"cannot decode byte {offset} (line 4)" in str(error)


def test_nul_byte_names_the_line(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"text\nfine\nbro\x00ken\n")
    error = failure(settings, path)
    assert "line 3 contains a NUL byte" in str(error)


def test_escaped_nul_in_json_text_is_rejected(any_settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "fine"}\n{"text": "a\\u0000b"}\n')
    error = failure(any_settings, path)
    assert "line 2: the text contains a NUL character" in str(error)


def test_field_over_the_csv_default_limit(settings: Settings, tmp_path: Path) -> None:
    big = "word " * 60_000  # 300,000 characters, over csv's default 131,072
    path = write(tmp_path, "d.csv", f'text,id\n"{big}",1\nsmall,2\n')
    report = import_file(settings, path, "p")
    assert report.accepted == 2
    assert len(examples(settings)[0].text) == len(big)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("a,b,c,d", "line 3: 4 fields, but the header (line 1) has 3"),
        ("a,b", "line 3: 2 fields, but the header (line 1) has 3"),
    ],
)
def test_ragged_rows_name_the_line(
    settings: Settings, tmp_path: Path, row: str, problem: str
) -> None:
    path = write(tmp_path, "d.csv", f"text,label,id\nok,,1\n{row}\nalso ok,,3\n")
    error = failure(settings, path)
    assert problem in str(error)
    assert "1 bad row" in str(error)
    assert error.report.rejected == [RejectedRow(3, error.report.rejected[0].reason)]


def test_unclosed_quote(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", 'text\nfine\n"never closed\nmore\n')
    error = failure(settings, path)
    assert "line 3: malformed CSV record" in str(error)


def test_broken_jsonl_line(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "a"}\n{"text": "b",}\n["not", "object"]\n')
    error = failure(settings, path)
    message = str(error)
    assert "line 2: invalid JSON: Expecting property name" in message
    assert "line 3: expected a JSON object, found a list" in message
    assert error.report.rejected_total == 2


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.txt"])
def test_empty_file(settings: Settings, tmp_path: Path, name: str) -> None:
    error = failure(settings, write(tmp_path, name, b""))
    assert "d." in str(error) and "the file is empty" in str(error)
    assert "no rows" in str(error)


def test_header_only(settings: Settings, tmp_path: Path) -> None:
    error = failure(settings, write(tmp_path, "d.csv", "text,label\n\n"))
    assert "d.csv: the file has a header but no rows" in str(error)


def test_blank_only_jsonl(settings: Settings, tmp_path: Path) -> None:
    error = failure(settings, write(tmp_path, "d.jsonl", "\n  \n"))
    assert "no rows to import" in str(error)


def test_missing_text_column_lists_columns(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "id,body,label\n1,hello,x\n")
    error = failure(settings, path)
    assert "no text column 'text' in the header (line 1)" in str(error)
    assert "Columns found: 'id', 'body', 'label'" in str(error)


def test_missing_label_column(settings: Settings, tmp_path: Path) -> None:
    error = failure(settings, write(tmp_path, "d.csv", "text\nhello\n"), label_field="label")
    assert "no label column 'label'" in str(error)


def test_empty_texts_are_rejected(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", 'text,id\nfine,1\n,2\n"   ",3\nalso fine,4\n')
    error = failure(settings, path)
    assert "2 bad rows" in str(error)
    assert "line 3: empty text" in str(error)
    assert "line 4: empty text" in str(error)
    assert "'Skip bad rows'; CLI: --skip-bad-rows" in str(error)


def test_skip_bad_rows_imports_the_good_ones(any_settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.jsonl",
        '{"text": "good"}\n{"text": ""}\n{broken\n{"text": 5}\n{"text": "also good"}\n',
    )
    report = import_file(any_settings, path, "p", skip_bad_rows=True)

    assert (report.accepted, report.rows_read, report.rejected_total) == (2, 5, 3)
    assert report.rejected == [
        RejectedRow(2, "empty text"),
        RejectedRow(3, report.rejected[1].reason),
        RejectedRow(4, "'text' is a number, expected a string"),
    ]
    assert [e.text for e in examples(any_settings)] == ["good", "also good"]


def test_rejections_are_capped_and_counted(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text\n" + "ok\n" + "\" \"\n" * 70)

    error = failure(settings, path)

    report = error.report
    assert report.rejected_total == 70
    assert len(report.rejected) == importing.MAX_REPORTED_REJECTIONS
    assert "70 bad rows" in str(error)
    assert "... and 60 more" in str(error)


def test_every_row_bad_fails_even_when_skipping(settings: Settings, tmp_path: Path) -> None:
    error = failure(settings, write(tmp_path, "d.csv", "text\n \n\" \"\n"), skip_bad_rows=True)
    assert "2 bad rows" in str(error)
    assert "None of the rows could be imported" in str(error)


def test_failure_after_written_batches_writes_nothing(
    any_settings: Settings, tmp_path: Path
) -> None:
    rows = "".join(f"text {i},x\n" for i in range(20))
    path = write(tmp_path, "d.csv", "text,label\n" + rows + "last,\x7f\x01\n")
    error = failure(any_settings, path, label_field="label", batch_size=3)
    assert "line 22: Label name" in str(error)


def test_json_that_is_not_a_list(settings: Settings, tmp_path: Path) -> None:
    error = failure(settings, write(tmp_path, "d.json", '\n{"text": "a"}'))
    assert "must be a list of objects" in str(error)
    assert "the file holds an object at line 2" in str(error)
    assert ".jsonl" in str(error)


def test_json_item_that_is_not_an_object(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", '[{"text": "a"},\n "b",\n {"text": "c"}]')
    error = failure(settings, path)
    assert "line 2: item 2: expected an object, found a string" in str(error)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[{"text": "a"},\n{"text": "b" "c"}]', "line 2: invalid JSON in item 2: Expecting ','"),
        ('[{"text": "a"},\n{"text": "b"},\n]', "line 3: a ',' after the last item (2)"),
        ('[{"text": "a"}\n{"text": "b"}]', "line 2: expected ',' or ']' after item 1"),
        ('[{"text": "a"}] x', "line 1: unexpected text after the end of the list"),
        ('[{"text": "a"}, {"text": "unterminated', "line 1: invalid JSON in item 2"),
    ],
)
def test_json_syntax_errors_name_the_line(
    settings: Settings, tmp_path: Path, content: str, problem: str
) -> None:
    error = failure(settings, write(tmp_path, "d.json", content))
    assert problem in str(error)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_json_list_is_read_item_by_item_across_chunks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(importing, "_CHUNK_BYTES", chunk)
    items = [
        {"text": "naïve café \u2014 \"quoted\"", "n": 12345, "f": -1.5e3},
        {"text": "second", "nested": {"a": [1, 2, {"b": None}]}, "t": True},
        {"text": "x" * 200, "n": 7},
    ]
    path = write(tmp_path, "d.json", json.dumps(items, indent=1, ensure_ascii=False))

    report = import_file(settings, path, "p")

    assert report.accepted == 3
    assert [e.meta for e in examples(settings)] == [
        {"n": 12345, "f": -1500.0},
        {"nested": {"a": [1, 2, {"b": None}]}, "t": True},
        {"n": 7},
    ]


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_csv_line_numbers_across_chunks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(importing, "_CHUNK_BYTES", chunk)
    path = write(tmp_path, "d.csv", 'text,n\r\n"a\r\nb",1\r\nc,2\rd,3\n')
    report = import_file(settings, path, "p")
    assert report.accepted == 3
    assert [(e.text, e.source_row) for e in examples(settings)] == [
        ("a\r\nb", 2),
        ("c", 4),
        ("d", 5),
    ]


def test_format_detection_and_errors(settings: Settings, tmp_path: Path) -> None:
    assert detect_format("x.NDJSON") == "jsonl"
    assert detect_format("x.data", "TSV") == "tsv"
    with pytest.raises(ImportFailed, match="Cannot tell the format of 'x.data'"):
        detect_format("x.data")
    with pytest.raises(ImportFailed, match="Unknown format 'xml'"):
        detect_format("x.csv", "xml")
    failure(settings, write(tmp_path, "d.csv", "text\na\n"), encoding="no-such-codec")
    failure(settings, tmp_path / "missing.csv")
    error = failure(settings, write(tmp_path, "d.txt", "a\n"), label_field="label")
    assert "no label column" in str(error)


# ------------------------------------------------------------------------- read_labelled


def test_read_labelled_reads_without_writing(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path, "d.csv", "body,topic\nfirst,a\nsecond,b\n  first ,b\nthird,a\n"
    )
    texts, labels = read_labelled(path, "body", "topic")
    assert (texts, labels) == (["first", "second", "third"], ["a", "b", "a"])
    assert_nothing_written(settings)


def test_read_labelled_lists_unlabelled_and_bad_rows(tmp_path: Path) -> None:
    content = '{"text": "a", "label": "x"}\n{"text": "b"}\n{"label": "y"}\n'
    path = write(tmp_path, "d.jsonl", content)
    with pytest.raises(ImportFailed) as info:
        read_labelled(path)
    message = str(info.value)
    assert "2 bad rows" in message
    assert "line 2: no label in 'label'" in message
    assert "line 3: no 'text' field" in message


def test_row_cap_refuses_and_writes_nothing(settings, tmp_path):
    from db.engine import read_unit
    from db.projects import find_project

    big = tmp_path / "big.txt"  # far more than the read-ahead thread holds
    big.write_text("\n".join(f"line {i}" for i in range(20_000)), encoding="utf-8")
    with pytest.raises(ImportFailed, match="more than 20 rows") as info:
        import_file(settings, big, "capped", max_rows=20)
    # The import stopped early: its read-ahead thread was stopped before the file was closed,
    # even while the exception (and so the import's frames) is still held.
    import threading

    assert not any(t.name == "read-ahead" for t in threading.enumerate()), info
    path = tmp_path / "many.txt"
    path.write_text("\n".join(f"line {i}" for i in range(30)), encoding="utf-8")
    with pytest.raises(ImportFailed, match="more than 20 rows"):
        import_file(settings, path, "capped", max_rows=20)
    with read_unit(settings) as session:
        assert find_project(session, "capped") is None
    assert import_file(settings, path, "capped", max_rows=30).accepted == 30


def test_sqlite_fast_path_stores_what_the_orm_reads_back(settings, tmp_path):
    from datetime import timezone

    from sqlalchemy import select

    from db.engine import read_unit
    from db.models import Example

    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "caf\\u00e9 \\u00e0 la carte", "n": 1, "tags": ["x", "\\u00e9"]}\n'
                    '{"text": "plain", "ref": "sport"}\n', encoding="utf-8")
    import_file(settings, path, "fast", reference_label_field="ref")
    with read_unit(settings) as session:
        rows = session.scalars(select(Example).order_by(Example.id)).all()
        assert [(r.text, r.meta, r.reference_label, r.source_row) for r in rows] == [
            ("café à la carte", {"n": 1, "tags": ["x", "é"]}, None, 1),
            ("plain", None, "sport", 2)]
        assert rows[0].created_at.tzinfo == timezone.utc
        assert abs((rows[0].created_at - rows[1].created_at).total_seconds()) < 1
        import datetime as dt

        assert abs((dt.datetime.now(dt.timezone.utc) - rows[0].created_at).total_seconds()) < 60


def test_nan_and_infinity_are_rejected_by_line_and_big_numbers_keep_their_digits(
        any_settings, tmp_path):
    # Python's JSON reader takes NaN and Infinity; JSON and PostgreSQL do not (it failed the
    # whole import there with a driver error). They are bad rows, named by their line.
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "one", "x": NaN}\n'
                    '{"text": "two", "big": 123456789012345678901234567890}\n'
                    '{"text": "three", "y": [-Infinity]}\n'
                    '{"text": "four", "z": {"k": [1.5, "\\u00e9", null]}}\n', encoding="utf-8")
    with pytest.raises(ImportFailed) as failed:
        import_file(any_settings, path, "odd")
    message = str(failed.value)
    assert "line 1: invalid JSON: NaN is not valid JSON" in message
    assert "line 3: invalid JSON: -Infinity is not valid JSON" in message
    assert count(any_settings, Example) == 0

    report = import_file(any_settings, path, "odd", skip_bad_rows=True, batch_size=1)
    assert (report.accepted, report.rejected_total) == (2, 2)
    assert [e.meta for e in examples(any_settings)] == [
        {"big": 123456789012345678901234567890}, {"z": {"k": [1.5, "\u00e9", None]}}]


def test_nan_in_a_json_list_fails_naming_the_item_and_line(settings, tmp_path):
    path = tmp_path / "m.json"
    path.write_text('[{"text": "one"},\n {"text": "two", "x": Infinity}]', encoding="utf-8")
    with pytest.raises(ImportFailed, match="line 2: invalid JSON in item 2: Infinity is not valid"):
        import_file(settings, path, "odd")
    assert count(settings, Example) == 0


def test_mixed_width_utf8_texts_round_trip_in_file_order(any_settings, tmp_path):
    # The SQLite path cuts each batch's texts out of one UTF-8 blob by byte offsets: texts of
    # 1-, 2-, 3- and 4-byte characters, in batches of 3, must come back whole and in order.
    texts = [f"{i} " + ["plain", "caf\u00e9 na\u00efve", "\u4e2d\u6587\u6587\u672c",
                        "emoji \U0001F600\U0001F4DA", "line\nbreak"][i % 5] for i in range(40)]
    path = tmp_path / "w.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    report = import_file(any_settings, path, "p", batch_size=3)
    assert report.accepted == 40
    assert [(e.text, e.source_row) for e in examples(any_settings)] == [
        (t, i + 1) for i, t in enumerate(texts)]


def test_unpaired_surrogate_in_json_is_rejected_by_line(settings, tmp_path):
    path = write(tmp_path, "s.jsonl", '{"text": "fine"}\n{"text": "bad \\ud800 text"}\n')
    exc = failure(settings, path)
    assert "line 2" in str(exc) and "unpaired surrogate (U+D800)" in str(exc)
    assert import_file(settings, path, "p", skip_bad_rows=True).accepted == 1


@pytest.mark.parametrize("universal", [True, False])
def test_lines_match_a_stringio_for_any_chunking(universal: bool) -> None:
    import random

    rng = random.Random(7)
    pieces = ["a", "bc", ",", '"', "\n", "\r\n", "\r", " ", "\u00e9", "\u2028", "\x0c"]
    newline = "" if universal else "\n"
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if b > a]
        expected = io.StringIO(text, newline=newline).readlines()
        assert list(importing._lines(chunks, universal)) == expected, (text, chunks)


def test_a_large_import_commits_without_waiting_for_the_checkpoint(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import's commit makes it durable in the write-ahead log; copying the pages into the
    database file (the checkpoint) runs after it, in the background, and then the log shrinks."""
    import sqlite3

    import db.engine as engine

    engine.dispose_all()
    monkeypatch.setattr(engine, "_WAL_KEEP_BYTES", 1_000_000)  # for the connections from now on
    started: list[tuple[Path, int]] = []
    checkpoint_in_background = engine._checkpoint_in_background
    monkeypatch.setattr(engine, "_checkpoint_in_background", lambda *a: started.append(a))
    body = " ".join(["word"] * 400)
    rows = "".join(f'"{i} {body}"\n' for i in range(12_000))  # about 24 MB: past 1,000 pages
    report = import_file(settings, write(tmp_path, "big.csv", "text\n" + rows), "big")
    assert report.accepted == 12_000 and count(settings, Example) == 12_000
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    wal = Path(f"{database}-wal")
    assert len(started) == 1 and started[0][0] == database
    # Committed, but only in the log: the database file has not received the texts yet.
    assert database.stat().st_size < 2_000_000 < 20_000_000 < wal.stat().st_size
    with read_unit(settings) as session:  # pooled connections checkpoint again as usual
        assert session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    checkpoint_in_background(*started[0])
    engine.wait_for_checkpoints()
    assert database.stat().st_size > 20_000_000 < wal.stat().st_size  # copied; log still long
    with write_unit(settings) as session:  # the next write starts the log afresh and shrinks it
        session.execute(text("UPDATE projects SET guidelines = 'x'"))
    assert wal.stat().st_size <= 1_000_000
    with sqlite3.connect(database) as raw:
        assert raw.execute("SELECT count(*) FROM examples").fetchone()[0] == 12_000


def test_a_new_project_takes_the_default_backbone_of_its_day(settings: Settings,
                                                              tmp_path: Path) -> None:
    """LABELWISE_MODEL is the backbone of projects created from then on; a project keeps the
    one it was created with."""
    import dataclasses

    from db.projects import get_project

    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    mine = dataclasses.replace(settings, model_path="/models/mine")
    importing.import_file(mine, path, "custom")
    importing.import_file(settings, path, "plain")
    importing.import_file(settings, path, "custom")  # an existing project keeps its own
    with read_unit(settings) as session:
        assert get_project(session, "custom").config.model_path == "/models/mine"
        assert get_project(session, "plain").config.model_path == settings.model_path
    assert settings.model_path != "/models/mine"


def test_a_parquet_export_imports_back(settings: Settings, tmp_path: Path) -> None:
    """The export's Parquet reads back: texts exactly, labels, other columns as metadata
    (times as ISO text); a missing column and a file that is not Parquet say so."""
    from db.annotations import annotate
    from db.exporting import ExportFilters, export
    from db.projects import get_project

    texts = ["=SUM(A1:A2)", "line one\nline two", "  spaced  ", "مرحبا 👋", "x" * 100_000]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "topic": i}) + "\n"
                              for i, t in enumerate(texts)), encoding="utf-8")
    importing.import_file(settings, source, "a", labels=["yes", "no"])
    with read_unit(settings) as session:
        ids = list(session.scalars(select(Example.id).order_by(Example.id)))
        project_id = get_project(session, "a").id
    annotate(settings, project_id, ids[0], "ann", "yes")
    for shape, extra in ((False, "n_annotations"), (True, "created_at")):
        out = tmp_path / f"a-{shape}.parquet"
        export(settings, "a", out, "parquet", ExportFilters(include_unlabelled=True),
               all_annotations=shape)
        name = f"b-{shape}"
        report = importing.import_file(settings, out, name, label_field="label",
                                       add_labels=True)
        assert (report.accepted, report.labelled) == (5, 1)
        with read_unit(settings) as session:
            rows = session.execute(select(Example.text, Example.meta)
                                   .join(Project, Project.id == Example.project_id)
                                   .where(Project.name == name).order_by(Example.id)).all()
        assert [r.text for r in rows] == texts
        assert extra in rows[0].meta
    missing = r"no text column 'body'\. Columns found: 'example_id', 'text'"
    with pytest.raises(ImportFailed, match=missing):
        importing.import_file(settings, out, "c", text_field="body")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ImportFailed, match="bad.parquet: not a readable Parquet file"):
        importing.import_file(settings, bad, "c")
