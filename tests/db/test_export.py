"""Exports: formats, final-label rule, filters, CSV formula neutralisation, round trips."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text as sql_text
from sqlalchemy import update

from db.annotations import annotate, final_label
from db.engine import write_unit
from db.errors import ExportFailed, LabelwiseError, NotFound
from db.exporting import (
    ANNOTATION_COLUMNS,
    EXAMPLE_COLUMNS,
    KEEP_EXPORTS,
    ExportFilters,
    Extension,
    export,
    export_to_folder,
    neutralise_cell,
)
from db.models import Annotation, Example
from db.projects import create_project
from db.settings import Settings
from db.texts import text_hash


def add_project(
    settings: Settings,
    name: str,
    labels: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[dict[str, Any] | None] | None = None,
) -> list[int]:
    """A project with one example per text (source_row = position); returns the ids."""
    with write_unit(settings) as session:
        info = create_project(session, name, labels)
        examples = [
            Example(
                project_id=info.id,
                text=t,
                text_hash=text_hash(t),
                source_row=i,
                meta=None if metas is None else metas[i],
            )
            for i, t in enumerate(texts)
        ]
        session.add_all(examples)
        session.flush()
        return [e.id for e in examples]


def jsonl_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def run_export(settings: Settings, project: str, fmt: str, **kwargs: Any) -> tuple[int, bytes]:
    buffer = io.BytesIO()
    n = export(settings, project, buffer, fmt, **kwargs)
    return n, buffer.getvalue()


def set_updated_at(settings: Settings, example_id: int, when: datetime) -> None:
    with write_unit(settings) as session:
        session.execute(
            update(Annotation).where(Annotation.example_id == example_id).values(updated_at=when)
        )


@pytest.fixture
def sentiment(settings: Settings) -> dict[str, int]:
    """Project ``films``: 4 examples, 3 labelled (one by two annotators), one unlabelled.

    A second project's examples are interleaved by id to check nothing leaks across.
    """
    ids: dict[str, int] = {}
    (ids["great"],) = add_project(
        settings, "films", ["pos", "neg"], ["A great film"], [{"lang": "en"}]
    )
    add_project(settings, "books", ["pos", "neg"], ["A great book"])
    with write_unit(settings) as session:
        project_id = session.execute(
            sql_text("SELECT id FROM projects WHERE name='films'")
        ).scalar_one()
        rows = [
            Example(project_id=project_id, text=t, text_hash=text_hash(t), source_row=i + 1)
            for i, t in enumerate(["Dull and long", "Mixed feelings", "Never labelled"])
        ]
        session.add_all(rows)
        session.flush()
        ids["dull"], ids["mixed"], ids["unlabelled"] = (r.id for r in rows)
    annotate(settings, "films", ids["great"], "alice", "pos", seconds_spent=4.5)
    annotate(settings, "films", ids["dull"], "alice", "neg")
    annotate(settings, "films", ids["mixed"], "alice", "pos")
    annotate(settings, "films", ids["mixed"], "bob", "neg")  # a tie: bob's is the most recent
    annotate(settings, "books", ids["great"] + 1, "alice", "pos")
    return ids


# --- formats -------------------------------------------------------------------------------


def test_jsonl_by_example(settings: Settings, sentiment: dict[str, int]) -> None:
    n, data = run_export(settings, "films", "jsonl")
    rows = jsonl_rows(data)
    assert n == len(rows) == 3
    assert data.endswith(b"\n")
    assert [tuple(r) for r in rows] == [EXAMPLE_COLUMNS] * 3
    assert rows[0] == {
        "id": sentiment["great"],
        "text": "A great film",
        "label": "pos",
        "source_row": 0,
        "n_annotations": 1,
        "meta": {"lang": "en"},
    }
    assert [(r["text"], r["label"], r["n_annotations"], r["meta"]) for r in rows[1:]] == [
        ("Dull and long", "neg", 1, None),
        ("Mixed feelings", "neg", 2, None),
    ]


def test_csv_by_example(settings: Settings, sentiment: dict[str, int]) -> None:
    n, data = run_export(settings, "films", "csv")
    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM
    assert data.splitlines()[0] == b"id,text,label,source_row,n_annotations,meta"
    rows = csv_rows(data)
    assert n == len(rows) == 3
    assert rows[0] == {
        "id": str(sentiment["great"]),
        "text": "A great film",
        "label": "pos",
        "source_row": "0",
        "n_annotations": "1",
        "meta": '{"lang": "en"}',
    }
    assert [(r["label"], r["meta"]) for r in rows[1:]] == [("neg", ""), ("neg", "")]


def test_parquet_by_example(settings: Settings, sentiment: dict[str, int], tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "films.parquet"
    n = export(settings, "films", out, "parquet")
    table = pq.read_table(out)
    assert n == table.num_rows == 3
    assert table.column_names == list(EXAMPLE_COLUMNS)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("text").type == pa.string()
    assert table.column("label").to_pylist() == ["pos", "neg", "neg"]
    assert table.column("meta").to_pylist() == ['{"lang": "en"}', None, None]
    assert table.column("n_annotations").to_pylist() == [1, 1, 2]
    assert [p.name for p in folder.iterdir()] == ["films.parquet"]  # no temporary left


def test_all_annotations_each_format(settings: Settings, sentiment: dict[str, int]) -> None:
    n, data = run_export(settings, "films", "jsonl", all_annotations=True)
    rows = jsonl_rows(data)
    assert n == 4
    assert [tuple(r) for r in rows] == [ANNOTATION_COLUMNS] * 4
    assert [(r["example_id"], r["annotator"], r["label"]) for r in rows] == [
        (sentiment["great"], "alice", "pos"),
        (sentiment["dull"], "alice", "neg"),
        (sentiment["mixed"], "alice", "pos"),
        (sentiment["mixed"], "bob", "neg"),
    ]
    assert rows[0]["seconds_spent"] == 4.5 and rows[1]["seconds_spent"] is None
    for r in rows:
        for key in ("created_at", "updated_at"):
            assert r[key].endswith("Z")
            parsed = datetime.fromisoformat(r[key])
            assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
            assert abs(parsed - datetime.now(timezone.utc)) < timedelta(minutes=5)

    n_csv, data_csv = run_export(settings, "films", "csv", all_annotations=True)
    csv_data = csv_rows(data_csv)
    assert n_csv == 4
    assert [(r["annotator"], r["label"], r["updated_at"]) for r in csv_data] == [
        (r["annotator"], r["label"], r["updated_at"]) for r in rows
    ]
    assert csv_data[1]["seconds_spent"] == ""

    n_pq, data_pq = run_export(settings, "films", "parquet", all_annotations=True)
    table = pq.read_table(io.BytesIO(data_pq))
    assert n_pq == table.num_rows == 4
    assert table.column_names == list(ANNOTATION_COLUMNS)
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert [
        t.isoformat().replace("+00:00", "Z") for t in table.column("updated_at").to_pylist()
    ] == [r["updated_at"] for r in rows]


def test_export_on_both_backends(any_settings: Settings) -> None:
    ids = add_project(
        any_settings, "p", ["a", "b"], ["one", "two", "three"], [{"k": [1, 2]}, None, {}]
    )
    annotate(any_settings, "p", ids[0], "x", "a")
    annotate(any_settings, "p", ids[0], "y", "b")
    annotate(any_settings, "p", ids[0], "z", "b")
    annotate(any_settings, "p", ids[1], "x", "a")
    rows = jsonl_rows(run_export(any_settings, "p", "jsonl")[1])
    assert [(r["text"], r["label"], r["n_annotations"], r["meta"]) for r in rows] == [
        ("one", "b", 3, {"k": [1, 2]}),
        ("two", "a", 1, None),
    ]
    since = datetime.now(timezone.utc) + timedelta(hours=1)
    n, _ = run_export(any_settings, "p", "csv", filters=ExportFilters(labelled_since=since))
    assert n == 0
    n, data = run_export(
        any_settings,
        "p",
        "parquet",
        filters=ExportFilters(annotators=["x"], include_unlabelled=True),
    )
    table = pq.read_table(io.BytesIO(data))
    assert n == 3
    assert table.column("label").to_pylist() == ["a", "a", None]
    assert table.column("meta").to_pylist() == ['{"k": [1, 2]}', None, "{}"]
    rows = jsonl_rows(run_export(any_settings, "p", "jsonl", all_annotations=True)[1])
    assert [(r["annotator"], r["label"]) for r in rows] == [
        ("x", "a"),
        ("y", "b"),
        ("z", "b"),
        ("x", "a"),
    ]
    n, data = run_export(any_settings, "p", "csv", filters=ExportFilters(labels=["a"]))
    assert n == 1 and [r["text"] for r in csv_rows(data)] == ["two"]
    n, data = run_export(
        any_settings, "p", "jsonl", filters=ExportFilters(labels=["b"]), all_annotations=True
    )
    assert [r["annotator"] for r in jsonl_rows(data)] == ["y", "z"]


def _open_transactions(settings: Settings) -> int:
    """Read transactions other connections hold open: on SQLite, whether the write-ahead log
    could not be checkpointed and restarted just now (a reader held it); on PostgreSQL, the
    other sessions of this database inside a transaction."""
    from db.engine import get_engine, sqlite_path

    path = sqlite_path(settings.database_url)
    if path is not None:
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            return probe.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]  # 1: busy
        finally:
            probe.close()
    with get_engine(settings).connect() as conn:
        return conn.execute(sql_text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")).scalar_one()


@pytest.mark.parametrize("snapshot", [True, False])
def test_an_export_reads_one_snapshot_or_each_batch_on_its_own(any_settings: Settings,
                                                               snapshot: bool) -> None:
    """With ``snapshot`` every batch comes from one read transaction, held between batches;
    without, no transaction is open between batches (a caller taking hours between them holds
    back neither SQLite's log nor PostgreSQL's vacuum) and a later batch sees labels given
    after the export began."""
    ids = add_project(any_settings, "p", ["a", "b"], [f"text {i}" for i in range(6)])
    open_between: list[int] = []

    def label_meanwhile(batches):
        for i, rows in enumerate(batches):
            if i == 0:
                annotate(any_settings, "p", ids[-1], "x", "b")  # the last batch's text
            open_between.append(_open_transactions(any_settings))
            yield [row + (i,) for row in rows]

    n, data = run_export(any_settings, "p", "jsonl", batch_rows=2, snapshot=snapshot,
                         filters=ExportFilters(include_unlabelled=True),
                         extend=Extension(("batch",), ("int",), label_meanwhile))
    rows = jsonl_rows(data)
    assert n == 6 and [r["batch"] for r in rows] == [0, 0, 1, 1, 2, 2]
    assert rows[-1]["label"] == (None if snapshot else "b")
    assert open_between == ([1, 1, 1] if snapshot else [0, 0, 0])


def test_a_name_looked_up_after_its_row_was_removed_does_not_stop_the_export(
        settings: Settings, sentiment: dict[str, int]) -> None:
    """Batches read in transactions of their own: a label removed between its batch and the
    lookup of its name is named by its id rather than ending a run of hours."""
    from functools import partial

    from db.exporting import _Names, _short_read
    from db.models import Label

    names = _Names(partial(_short_read, settings), Label.__table__.c.name)
    with write_unit(settings) as session:
        pos = session.execute(sql_text("SELECT id FROM labels WHERE name = 'pos'")).scalar()
    assert names[pos] == "pos" and names[10**6] == "(removed: id 1000000)"


def test_an_export_to_the_data_folder_keeps_each_projects_latest_files(
        settings: Settings, sentiment: dict[str, int]) -> None:
    import os

    paths = []
    for i in range(KEEP_EXPORTS + 2):
        path, n = export_to_folder(settings, "films", "CSV")
        os.utime(path, ns=(i * 10**9, i * 10**9))  # written one second apart
        paths.append(path)
        assert n == 3 and path.suffix == ".csv" and path.read_bytes().startswith(b"id,text")
    other, _ = export_to_folder(settings, "books", "jsonl")
    assert other.parent != paths[0].parent and other.is_file()  # a folder per project
    folder = paths[0].parent
    assert folder.parent == settings.data_dir / "exports"
    path, _ = export_to_folder(settings, "films", "jsonl")  # the newest, then the 4 latest
    assert sorted(folder.iterdir()) == sorted([path, *paths[-(KEEP_EXPORTS - 1):]])
    assert other.is_file()  # the other project's file stays
    with pytest.raises(LabelwiseError, match="Unknown export format"):
        export_to_folder(settings, "films", "xlsx")
    with pytest.raises(NotFound):
        export_to_folder(settings, "nope", "csv")
    assert len(list(folder.iterdir())) == KEEP_EXPORTS  # nothing written by either


# --- final label ---------------------------------------------------------------------------


def test_final_label_rule() -> None:
    assert final_label([7]) == 7
    assert final_label([1, 1, 2]) == 1
    assert final_label([2, 1, 1]) == 1
    assert final_label([1, 2]) == 2  # tie: the most recent wins
    assert final_label([2, 1]) == 1
    assert final_label([1, 2, 2, 1]) == 1
    assert final_label([1, 2, 3, 3, 2]) == 2


def test_majority_and_most_recent_tie_break(settings: Settings) -> None:
    majority, tie = add_project(settings, "p", ["a", "b"], ["majority", "tie"])
    annotate(settings, "p", majority, "u1", "a")
    annotate(settings, "p", majority, "u2", "b")
    annotate(settings, "p", majority, "u3", "a")
    annotate(settings, "p", tie, "u1", "a")
    annotate(settings, "p", tie, "u2", "b")

    def labels() -> list[str]:
        return [r["label"] for r in jsonl_rows(run_export(settings, "p", "jsonl")[1])]

    assert labels() == ["a", "b"]
    annotate(settings, "p", tie, "u1", "a")  # relabelled (same label): now the most recent
    assert labels() == ["a", "a"]
    annotate(settings, "p", majority, "u1", "b")  # now b has the majority
    assert labels() == ["b", "a"]


# --- filters -------------------------------------------------------------------------------


def test_label_filter(settings: Settings, sentiment: dict[str, int]) -> None:
    n, data = run_export(settings, "films", "jsonl", filters=ExportFilters(labels=["neg"]))
    assert n == 2
    assert [r["text"] for r in jsonl_rows(data)] == ["Dull and long", "Mixed feelings"]
    # By annotation: the annotation's own label.
    n, data = run_export(
        settings, "films", "jsonl", filters=ExportFilters(labels=["pos"]), all_annotations=True
    )
    assert [(r["text"], r["annotator"]) for r in jsonl_rows(data)] == [
        ("A great film", "alice"),
        ("Mixed feelings", "alice"),
    ]
    with pytest.raises(LabelwiseError, match="'meh'"):
        run_export(settings, "films", "jsonl", filters=ExportFilters(labels=["meh"]))


def test_annotator_filter(settings: Settings, sentiment: dict[str, int]) -> None:
    rows = jsonl_rows(
        run_export(settings, "films", "jsonl", filters=ExportFilters(annotators=["alice"]))[1]
    )
    # Only alice's vote counts: the tie is gone.
    assert [(r["text"], r["label"], r["n_annotations"]) for r in rows] == [
        ("A great film", "pos", 1),
        ("Dull and long", "neg", 1),
        ("Mixed feelings", "pos", 1),
    ]
    rows = jsonl_rows(
        run_export(settings, "films", "jsonl", filters=ExportFilters(annotators=["bob"]))[1]
    )
    assert [(r["text"], r["label"]) for r in rows] == [("Mixed feelings", "neg")]
    rows = jsonl_rows(  # a name matches whatever its case
        run_export(settings, "films", "jsonl", filters=ExportFilters(annotators=[" Bob"]))[1]
    )
    assert [(r["text"], r["label"]) for r in rows] == [("Mixed feelings", "neg")]
    rows = jsonl_rows(
        run_export(
            settings,
            "films",
            "jsonl",
            filters=ExportFilters(annotators=["bob"]),
            all_annotations=True,
        )[1]
    )
    assert [(r["text"], r["annotator"]) for r in rows] == [("Mixed feelings", "bob")]
    assert (
        run_export(settings, "films", "csv", filters=ExportFilters(annotators=["nobody"]))[0] == 0
    )


def test_labelled_since_filter(settings: Settings, sentiment: dict[str, int]) -> None:
    old = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for key in ("great", "dull", "mixed"):
        set_updated_at(settings, sentiment[key], old)
    annotate(settings, "films", sentiment["mixed"], "carol", "pos")  # now: 2 pos, 1 neg
    cutoff = datetime(2025, 1, 1, tzinfo=timezone.utc)

    rows = jsonl_rows(
        run_export(settings, "films", "jsonl", filters=ExportFilters(labelled_since=cutoff))[1]
    )
    # The example changed since; its final label is still voted over all its annotations.
    assert [(r["text"], r["label"], r["n_annotations"]) for r in rows] == [
        ("Mixed feelings", "pos", 3)
    ]
    rows = jsonl_rows(
        run_export(
            settings,
            "films",
            "jsonl",
            filters=ExportFilters(labelled_since=cutoff),
            all_annotations=True,
        )[1]
    )
    assert [(r["text"], r["annotator"]) for r in rows] == [("Mixed feelings", "carol")]
    # A naive datetime is taken as UTC.
    naive = datetime(2023, 12, 31, 23, 0)
    assert (
        run_export(settings, "films", "jsonl", filters=ExportFilters(labelled_since=naive))[0] == 3
    )
    assert run_export(settings, "films", "jsonl", filters=ExportFilters(labelled_since=old))[0] == 3
    after = old + timedelta(microseconds=1)
    assert (
        run_export(settings, "films", "jsonl", filters=ExportFilters(labelled_since=after))[0] == 1
    )


def test_include_unlabelled(settings: Settings, sentiment: dict[str, int]) -> None:
    filters = ExportFilters(include_unlabelled=True)
    rows = jsonl_rows(run_export(settings, "films", "jsonl", filters=filters)[1])
    assert [(r["text"], r["label"], r["n_annotations"]) for r in rows] == [
        ("A great film", "pos", 1),
        ("Dull and long", "neg", 1),
        ("Mixed feelings", "neg", 2),
        ("Never labelled", None, 0),
    ]
    assert csv_rows(run_export(settings, "films", "csv", filters=filters)[1])[-1]["label"] == ""
    table = pq.read_table(io.BytesIO(run_export(settings, "films", "parquet", filters=filters)[1]))
    assert table.column("label").to_pylist()[-1] is None
    # With a label filter, unlabelled examples are still added.
    rows = jsonl_rows(
        run_export(
            settings,
            "films",
            "jsonl",
            filters=ExportFilters(labels=["pos"], include_unlabelled=True),
        )[1]
    )
    assert [r["text"] for r in rows] == ["A great film", "Never labelled"]
    # Only alice counts: nothing is unlabelled that she labelled.
    rows = jsonl_rows(
        run_export(
            settings,
            "films",
            "jsonl",
            filters=ExportFilters(annotators=["bob"], include_unlabelled=True),
        )[1]
    )
    assert [(r["text"], r["label"]) for r in rows] == [
        ("A great film", None),
        ("Dull and long", None),
        ("Mixed feelings", "neg"),
        ("Never labelled", None),
    ]
    rows = jsonl_rows(
        run_export(settings, "films", "jsonl", filters=filters, all_annotations=True)[1]
    )
    assert len(rows) == 5
    assert rows[-1] == {
        "example_id": sentiment["unlabelled"],
        "text": "Never labelled",
        "label": None,
        "annotator": None,
        "created_at": None,
        "updated_at": None,
        "seconds_spent": None,
    }


# --- CSV safety ----------------------------------------------------------------------------


def test_csv_neutralises_formulas(settings: Settings) -> None:
    texts = [
        '=HYPERLINK("http://evil.example","click")',
        "-1+2",
        "@SUM(A1:A9)",
        "+33 1 23",
        "\tindent",
        "a = b",
    ]
    ids = add_project(settings, "p", ["=bad", "ok"], texts)
    for example_id in ids:
        annotate(settings, "p", example_id, "ann", "=bad" if example_id == ids[0] else "ok")
    rows = csv_rows(run_export(settings, "p", "csv")[1])
    assert [r["text"] for r in rows] == [
        '\'=HYPERLINK("http://evil.example","click")',
        "'-1+2",
        "'@SUM(A1:A9)",
        "'+33 1 23",
        "'\tindent",
        "a = b",
    ]
    assert rows[0]["label"] == "'=bad" and rows[1]["label"] == "ok"
    # Other formats keep the text as it is.
    assert [r["text"] for r in jsonl_rows(run_export(settings, "p", "jsonl")[1])] == texts
    assert neutralise_cell("\rx") == "'\rx"
    assert neutralise_cell(-1) == -1 and neutralise_cell("") == "" and neutralise_cell(None) is None


def test_csv_quotes_newlines_and_unicode(settings: Settings) -> None:
    texts = ['line one\nline "two"', "café, naïve 🎬"]
    ids = add_project(settings, "p", ["x"], texts)
    for example_id in ids:
        annotate(settings, "p", example_id, "ann", "x")
    rows = csv_rows(run_export(settings, "p", "csv")[1])
    assert [r["text"] for r in rows] == texts


# --- edge cases ----------------------------------------------------------------------------


def test_project_without_labels_exports_nothing(settings: Settings, tmp_path: Path) -> None:
    add_project(settings, "empty", ["a"], ["one", "two"])
    n, data = run_export(settings, "empty", "csv")
    assert n == 0 and data == b"id,text,label,source_row,n_annotations,meta\r\n"
    n, data = run_export(settings, "empty", "csv", all_annotations=True)
    assert n == 0 and data.decode().strip() == ",".join(ANNOTATION_COLUMNS)
    assert run_export(settings, "empty", "jsonl") == (0, b"")
    out = tmp_path / "empty.jsonl"
    assert export(settings, "empty", out, "jsonl") == 0
    assert out.read_bytes() == b""
    assert export(settings, "empty", tmp_path / "empty.parquet", "parquet") == 0
    table = pq.read_table(tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.column_names == list(EXAMPLE_COLUMNS)


def test_unknown_project_or_format(settings: Settings, tmp_path: Path) -> None:
    add_project(settings, "p", ["a"], ["one"])
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "out.csv"
    with pytest.raises(NotFound):
        export(settings, "missing", out, "csv")
    with pytest.raises(LabelwiseError, match="xlsx"):
        export(settings, "p", out, "xlsx")
    with pytest.raises(LabelwiseError):
        export(settings, "p", out, "csv", ExportFilters(labels=["nope"]))
    assert list(folder.iterdir()) == []  # nothing written, no temporary left
    assert export(settings, "p", folder / "out.CSV", ".CSV") == 0


def test_batches_do_not_change_the_output(settings: Settings) -> None:
    texts = [f"text number {i}" for i in range(23)]
    ids = add_project(settings, "p", ["a", "b"], texts)
    add_project(settings, "other", ["a"], [f"other {i}" for i in range(5)])
    for i, example_id in enumerate(ids):
        if i % 3:
            annotate(settings, "p", example_id, "ann", "ab"[i % 2])
    for fmt in ("jsonl", "csv", "parquet"):
        for all_annotations in (False, True):
            for filters in (None, ExportFilters(include_unlabelled=True)):
                outputs = set()
                for batch_rows in (1, 2, 5, 5_000):
                    buffer = io.BytesIO()
                    export(
                        settings, "p", buffer, fmt, filters, all_annotations, batch_rows=batch_rows
                    )
                    data = buffer.getvalue()
                    if fmt == "parquet":
                        data = json.dumps(
                            pq.read_table(io.BytesIO(data)).to_pylist(), default=str
                        ).encode()
                    outputs.add(data)
                assert len(outputs) == 1, (fmt, all_annotations, filters)
    rows = jsonl_rows(run_export(settings, "p", "jsonl", batch_rows=4)[1])
    assert [r["text"] for r in rows] == [t for i, t in enumerate(texts) if i % 3]


def test_meta_stored_over_several_lines_stays_on_one_jsonl_line(settings: Settings) -> None:
    (example_id,) = add_project(settings, "p", ["a"], ["one"])
    annotate(settings, "p", example_id, "ann", "a")
    with write_unit(settings) as session:
        session.execute(sql_text("UPDATE examples SET meta = :m"), {"m": '{\n  "a": "x\\ny"\n}'})
    rows = jsonl_rows(run_export(settings, "p", "jsonl")[1])
    assert rows[0]["meta"] == {"a": "x\ny"}


# --- round trip through the importer -------------------------------------------------------

ROUND_TRIP = [
    ("The plot was gripping from start to end", "pos"),
    ("I walked out after twenty minutes", "neg"),
    ("Lovely score, lovely cast", "pos"),
    ('Quotes "inside", commas, and\nnewlines', "neg"),
    ("Ünïcödé and emoji 🎬 are fine", "pos"),
]


def _pairs(
    settings: Settings, project: str, filters: ExportFilters | None = None
) -> set[tuple[str, Any]]:
    rows = jsonl_rows(run_export(settings, project, "jsonl", filters=filters)[1])
    return {(r["text"], r["label"]) for r in rows}


def test_round_trip_through_importer(settings: Settings, tmp_path: Path) -> None:
    importing = pytest.importorskip("db.importing", reason="db.importing is not written yet")
    source = tmp_path / "source.csv"
    with source.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(ROUND_TRIP)
        writer.writerow(["Not labelled yet", ""])
    importing.import_file(
        settings, source, "original", text_field="text", label_field="label", labels=["pos", "neg"]
    )
    expected = set(ROUND_TRIP)
    assert _pairs(settings, "original") == expected
    everything = ExportFilters(include_unlabelled=True)
    assert _pairs(settings, "original", everything) == expected | {("Not labelled yet", None)}

    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"export.{fmt}"
        assert export(settings, "original", out, fmt) == len(ROUND_TRIP)
        if fmt == "parquet":
            table = pq.read_table(out)
            assert (
                set(zip(table.column("text").to_pylist(), table.column("label").to_pylist()))
                == expected
            )
            continue
        copy = f"copy-{fmt}"
        importing.import_file(
            settings, out, copy, text_field="text", label_field="label", labels=["pos", "neg"]
        )
        assert _pairs(settings, copy) == expected

        # With the unlabelled examples: they come back unlabelled.
        out_all = tmp_path / f"export-all.{fmt}"
        assert export(settings, "original", out_all, fmt, everything) == len(ROUND_TRIP) + 1
        importing.import_file(
            settings,
            out_all,
            f"{copy}-all",
            text_field="text",
            label_field="label",
            labels=["pos", "neg"],
        )
        assert _pairs(settings, f"{copy}-all", everything) == _pairs(
            settings, "original", everything
        )


# --- the hand-written encoders match the standard library ---------------------------------

AWKWARD_TEXTS = [
    "plain ascii text",
    'with "quotes" and \\ backslashes',
    "comma, separated",
    "new\nline and\r\ncrlf and lone \r",
    "tab\tinside and \x01 control and \x7f del",
    "unicode café 🎬 and \u2028 line separator \u200b zero width \x85 nel",
    'ünïcödé with "quote"',
    "ünïcödé with \\ backslash",
    "ünïcödé with\nnewline",
    " leading and trailing spaces ",
    "'already quoted",
    "=1+1",
    "-",
]


def test_writers_match_json_and_csv_modules(settings: Settings) -> None:
    # (meta is written as stored, in the JSON serialiser's own escaping: tested above.)
    ids = add_project(settings, "p", ["a", "b,c", 'd"e'], AWKWARD_TEXTS)
    for i, example_id in enumerate(ids):
        annotate(settings, "p", example_id, "ann", ["a", "b,c", 'd"e'][i % 3], seconds_spent=i / 3)

    for all_annotations in (False, True):
        data = run_export(settings, "p", "jsonl", all_annotations=all_annotations)[1]
        lines = data.decode("utf-8").split("\n")
        assert lines[-1] == ""
        objects = [json.loads(line) for line in lines[:-1]]
        assert [json.dumps(o, ensure_ascii=False) for o in objects] == lines[:-1]
        assert [o["text"] for o in objects] == AWKWARD_TEXTS

        expected = io.StringIO(newline="")
        writer = csv.writer(expected)
        writer.writerow(objects[0].keys())
        for o in objects:
            writer.writerow([neutralise_cell(v) for v in o.values()])
        got = run_export(settings, "p", "csv", all_annotations=all_annotations)[1]
        assert got == expected.getvalue().encode("utf-8")


class _BrokenStream(io.BytesIO):
    """A stream that fails once more than ``limit`` bytes were written."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.limit:
            raise OSError(28, "No space left on device")
        return super().write(data)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_write_errors_raise_export_failed(settings: Settings, fmt: str) -> None:
    ids = add_project(settings, "p", ["a"], [f"text {i} " + "x" * 500 for i in range(50)])
    for example_id in ids:
        annotate(settings, "p", example_id, "ann", "a")
    with pytest.raises(ExportFailed, match="No space left"):
        export(settings, "p", _BrokenStream(2_000), fmt, batch_rows=10)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_failure_midway_leaves_no_file(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    ids = add_project(settings, "p", ["a"], [f"text {i}" for i in range(30)])
    for example_id in ids:
        annotate(settings, "p", example_id, "ann", "a")
    import db.exporting as exporting

    real = exporting._example_rows

    def failing(*args: Any, **kwargs: Any) -> Any:
        for i, rows in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise RuntimeError("database went away")
            yield rows

    monkeypatch.setattr(exporting, "_example_rows", failing)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(RuntimeError, match="went away"):
        export(settings, "p", folder / f"x.{fmt}", fmt, batch_rows=5)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_export_hands_its_bytes_to_the_disk_as_it_goes(
        settings: Settings, sentiment: dict[str, int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Every DROP_EVERY_BYTES the written data is synced and dropped from the page cache (here
    after every batch of one row); the file is the same as without; a file system without
    those calls is left alone, and a write error they report fails the export."""
    import errno
    import os

    import db.exporting as exporting

    def export_with(every: int, name: str) -> bytes:
        monkeypatch.setattr(exporting, "DROP_EVERY_BYTES", every)
        export(settings, "films", tmp_path / name, fmt, ExportFilters(include_unlabelled=True),
               batch_rows=1)
        return (tmp_path / name).read_bytes()

    calls: list[str] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("sync"))
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, offset, length, advice: calls.append(f"drop {advice}"))
    plain = export_with(0, "plain")
    assert calls == []
    assert export_with(1, "dropped") == plain
    assert calls == ["sync", f"drop {os.POSIX_FADV_DONTNEED}"] * 4  # 4 rows, 4 batches

    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append("refused")
        raise OSError(errno.EINVAL, "not here")

    calls.clear()
    monkeypatch.setattr(os, "posix_fadvise", refuse)
    assert export_with(1, "refused") == plain
    assert calls == ["sync", "refused"]  # tried once, then left alone

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(ExportFailed, match="Input/output error"):
        export_with(1, "broken")
    assert not (tmp_path / "broken").exists()
