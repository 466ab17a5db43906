"""Export a project's labels to JSONL, CSV or Parquet, streaming over the database.

Examples are read in batches of `BATCH_ROWS` by id (keyset pagination: ``id > last ORDER BY
id LIMIT n``), each batch's annotations with one more query, and each batch is written out
before the one after next is read, so memory stays flat whatever the size of the project
(about 70 MiB for JSONL and CSV, 250 MiB for Parquet, with 2,000-character texts). By default
the whole export reads one snapshot of the database (one read transaction; REPEATABLE READ on
PostgreSQL), so labels given meanwhile are either all in or all out. A caller that takes long
between batches (predictions: minutes per batch on a CPU) reads each batch in a short
transaction of its own instead (``snapshot=False``): a read transaction held for hours keeps
SQLite's write-ahead log from restarting, so it grows with every write meanwhile, and keeps
PostgreSQL's vacuum from removing the rows those writes replace.

Two shapes of row:

* by example (the default), one row per labelled example: ``id, text, label, source_row,
  n_annotations, meta``;
* by annotation (``all_annotations=True``), one row per annotation: ``example_id, text,
  label, annotator, created_at, updated_at, seconds_spent``.

``text`` and ``label`` are named so that the importer reads an export back with
``text_field="text", label_field="label"``.
"""

from __future__ import annotations

import errno
import gc
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import (
    AbstractContextManager,
    ExitStack,
    contextmanager,
    nullcontext,
    suppress,
)
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, Text, cast, exists, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from db.annotations import final_label
from db.engine import read_unit
from db.errors import ExportFailed, LabelwiseError
from db.models import Annotation, Annotator, Example, Label
from db.projects import get_project, label_ids
from db.settings import Settings
from db.texts import file_stem
from db.users import require_admin

FORMATS = ("jsonl", "csv", "parquet")
BATCH_ROWS = 5_000
"""Examples read (and, for Parquet, rows per row group at most) per batch."""

EXAMPLE_COLUMNS = ("id", "text", "label", "source_row", "n_annotations", "meta")
ANNOTATION_COLUMNS = (
    "example_id",
    "text",
    "label",
    "annotator",
    "created_at",
    "updated_at",
    "seconds_spent",
)

# What a spreadsheet may take for the start of a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_E = Example.__table__
_A = Annotation.__table__

# Column kinds, for the writers: how each value is written in each format.
# A "name" is a string from a small set (labels, annotators): encoded once, then looked up.
_INT, _STR, _NAME, _FLOAT, _JSON, _TIME = "int", "str", "name", "float", "json", "time"
COLUMN_KINDS = (_INT, _STR, _NAME, _FLOAT, _JSON, _TIME)
_EXAMPLE_KINDS = (_INT, _STR, _NAME, _INT, _INT, _JSON)
_ANNOTATION_KINDS = (_INT, _STR, _NAME, _NAME, _TIME, _TIME, _FLOAT)


@dataclass
class ExportFilters:
    """Which rows an export writes.

    Attributes:
        labels: keep only rows whose label is one of these (by example: the final label; by
            annotation: the annotation's label). Names not in the project's set are an error.
        annotators: count only these annotators' annotations (the others are ignored, as if
            they did not exist: they neither vote nor make an example labelled). Names match
            whatever their case, as account names cannot differ only in case.
        labelled_since: keep only what was labelled at or after this time (naive means UTC).
            By example: examples with at least one counted annotation updated since then,
            their final label still voted over all their counted annotations. By
            annotation: annotations updated since then.
        include_unlabelled: also write examples without any counted annotation, with an
            empty label (null in JSONL and Parquet, an empty cell in CSV) and, by
            annotation, empty annotation fields. They are written whatever the other
            filters say.
    """

    labels: Sequence[str] | None = None
    annotators: Sequence[str] | None = None
    labelled_since: datetime | None = None
    include_unlabelled: bool = False


@dataclass(frozen=True)
class Extension:
    """Columns a caller adds after an export's own (a model's predictions, say).

    Attributes:
        names: the added columns' names.
        kinds: how each is written, one of `COLUMN_KINDS`: ``int``, ``str``, ``name`` (a
            string from a small set), ``float``, ``json`` (JSON text: an object in JSONL, text
            in CSV and Parquet) or ``time``.
        rows: given the export's batches of rows (an iterator of lists of tuples, in id
            order), yields the batches to write: each row with the added values after its
            own, in the same order; rows may be left out. With the export's ``snapshot``
            (the default) it runs inside the export's read transaction, so everything it
            sees is one snapshot.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    rows: Callable[[Iterator[list[tuple[Any, ...]]]], Iterator[list[tuple[Any, ...]]]]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.kinds):
            raise LabelwiseError("An export extension needs one kind per added column.")
        unknown = sorted(set(self.kinds) - set(COLUMN_KINDS))
        if unknown:
            raise LabelwiseError(f"Unknown column kind(s) {', '.join(unknown)} "
                                 f"(kinds: {', '.join(COLUMN_KINDS)}).")


def neutralise_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet will run: text starting like a formula gets a ``'``."""
    if value.__class__ is str and value and value[0] in FORMULA_STARTS:
        return "'" + value
    return value


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the microsecond (naive means UTC)."""
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = (
            value.replace(tzinfo=timezone.utc)
            if value.tzinfo is None
            else value.astimezone(timezone.utc)
        )
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"


# --------------------------------------------------------------------------------------------
# Writers: each takes batches of row tuples (columns as in EXAMPLE_COLUMNS or ANNOTATION_COLUMNS)

_WRITE_ROWS = 200
"""Rows encoded and written at a time by the text writers. Small pieces (a few hundred KB)
are several times cheaper than a whole batch at once: buffers of many megabytes are mapped
fresh from the system and faulted in page by page every time."""


_JSON_SPECIAL = bytes(range(0x20)) + b'"\\'


def _json_str(value: str | None) -> str:
    """``json.dumps(value, ensure_ascii=False)``, without the escaping scan for plain text.

    The C encoder looks at every character; most texts need no escape at all, which two
    much faster whole-string checks can tell.
    """
    if value is None:
        return "null"
    if value.isascii():
        raw = value.encode("ascii")
        if len(raw.translate(None, _JSON_SPECIAL)) == len(raw):
            return '"' + value + '"'
    elif '"' not in value and "\\" not in value and value.isprintable():
        return '"' + value + '"'  # printable excludes the control characters
    return encode_basestring(value)


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _json_float(value: float | None) -> str:
    return "null" if value is None or not math.isfinite(value) else repr(float(value))


def _json_raw(value: str | None) -> str:
    """Stored JSON text, embedded as it is (made one line if it was stored pretty-printed)."""
    if value is None:
        return "null"
    if "\n" in value or "\r" in value:
        return json.dumps(json.loads(value), ensure_ascii=False)
    return value


def _json_time(value: datetime | None) -> str:
    return "null" if value is None else '"' + _iso(value) + '"'  # type: ignore[operator]


_JSON_ENCODERS: dict[str, Callable[[Any], str]] = {
    _INT: _json_int,
    _STR: _json_str,
    _FLOAT: _json_float,
    _JSON: _json_raw,
    _TIME: _json_time,
}


def _encoder(encoders: dict[str, Callable[[Any], str]], kind: str) -> Callable[[Any], str]:
    if kind != _NAME:
        return encoders[kind]
    encode = encoders[_STR]
    cache: dict[Any, str] = {}

    def encode_name(value: Any) -> str:
        found = cache.get(value)
        if found is None:
            found = cache[value] = encode(value)
        return found

    return encode_name


class _JsonlWriter:
    """One JSON object per line, UTF-8; ``meta`` is embedded as the JSON object it is."""

    def __init__(self, out: BinaryIO, names: Sequence[str], kinds: Sequence[str]) -> None:
        self.out = out
        # One %-template per line: each value is copied once into it.
        fields = ", ".join(
            json.dumps(name, ensure_ascii=False).replace("%", "%%") + ": %s" for name in names
        )
        self.template = "{" + fields + "}\n"
        self.encoders = [_encoder(_JSON_ENCODERS, kind) for kind in kinds]

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        template, encoders, write = self.template, self.encoders, self.out.write
        for start in range(0, len(rows), _WRITE_ROWS):
            chunk = rows[start : start + _WRITE_ROWS]
            lines = [template % tuple([enc(v) for enc, v in zip(encoders, row)]) for row in chunk]
            write("".join(lines).encode("utf-8"))

    def close(self) -> None:
        self.out.flush()

    def abort(self) -> None:
        pass


def _csv_str(value: str | None) -> str:
    """A text cell: neutralised if it looks like a formula, quoted as `csv.writer` would."""
    if value is None:
        return ""
    if value and value[0] in FORMULA_STARTS:
        value = "'" + value
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    if "," in value or "\n" in value or "\r" in value:
        return '"' + value + '"'
    return value


def _csv_number(value: float | int | None) -> str:
    return "" if value is None else str(value)


def _csv_time(value: datetime | None) -> str:
    return "" if value is None else _iso(value)  # type: ignore[return-value]


_CSV_ENCODERS: dict[str, Callable[[Any], str]] = {
    _INT: _csv_number,
    _STR: _csv_str,
    _FLOAT: _csv_number,
    _JSON: _csv_str,
    _TIME: _csv_time,
}


class _CsvWriter:
    """CSV as `csv.writer` writes it (excel dialect: ``,``, minimal ``"`` quoting, CRLF), UTF-8
    without BOM, with a header; text cells that look like formulas are neutralised.

    The cells are quoted here rather than by `csv.writer`, which copies long texts character
    by character (about 20 times slower on 2,000-character texts); the tests check that the
    bytes are the same.
    """

    def __init__(self, out: BinaryIO, names: Sequence[str], kinds: Sequence[str]) -> None:
        self.out = out
        self.encoders = [_encoder(_CSV_ENCODERS, kind) for kind in kinds]
        self.out.write((",".join(_csv_str(name) for name in names) + "\r\n").encode("utf-8"))

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        encoders, write = self.encoders, self.out.write
        for start in range(0, len(rows), _WRITE_ROWS):
            chunk = rows[start : start + _WRITE_ROWS]
            lines = [",".join([enc(v) for enc, v in zip(encoders, row)]) for row in chunk]
            lines.append("")
            write("\r\n".join(lines).encode("utf-8"))

    def close(self) -> None:
        self.out.flush()

    def abort(self) -> None:
        pass


class _ParquetWriter:
    """Parquet, one row group per batch; ``meta`` as JSON text, times as UTC timestamps.

    A batch is encoded and compressed (pyarrow, without the GIL) on a helper thread while
    the next batch is read from the database; at most one batch waits, so memory stays flat.
    """

    def __init__(self, out: BinaryIO, names: Sequence[str], kinds: Sequence[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        types = {
            _INT: pa.int64(),
            _STR: pa.string(),
            _NAME: pa.string(),
            _FLOAT: pa.float64(),
            _JSON: pa.string(),
            _TIME: pa.timestamp("us", tz="UTC"),
        }
        self.schema = pa.schema([pa.field(n, types[k]) for n, k in zip(names, kinds)])
        # Dictionary encoding pays for labels and annotator names, not for unique texts.
        dictionary = [n for n, k in zip(names, kinds) if k == _NAME]
        # Min/max statistics of long texts cost time and help no reader.
        statistics = [n for n, k in zip(names, kinds) if k not in (_STR, _JSON)]
        self.writer = pq.ParquetWriter(
            out,
            self.schema,
            compression="snappy",
            use_dictionary=dictionary,
            write_statistics=statistics,
        )
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write_table(self, table: Any) -> None:
        try:
            self.writer.write_table(table)
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            self._error = exc

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        pa = self.pa
        arrays = [
            pa.array(column, type=field.type) for column, field in zip(zip(*rows), self.schema)
        ]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._wait()
        self._thread = threading.Thread(
            target=self._write_table, args=(table,), name="labelwise-parquet", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._wait()
        self.writer.close()

    def abort(self) -> None:
        """Stop after an error elsewhere: finish the pending batch and close, errors dropped.

        (Closed now, while the output is still open, rather than by pyarrow at garbage
        collection.)
        """
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._error = None
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass


_WRITERS: dict[str, Callable[[BinaryIO, Sequence[str], Sequence[str]], Any]] = {
    "jsonl": _JsonlWriter,
    "csv": _CsvWriter,
    "parquet": _ParquetWriter,
}


# --------------------------------------------------------------------------------------------
# Reading


class _NoIndex(ColumnElement[Any]):
    """A column SQLite must not pick an index for (``+column``); the column itself elsewhere.

    SQLite plans without statistics: given ``project_id = ? AND id > ? ORDER BY id`` it would
    take the ``(project_id, text_hash)`` index and sort the whole project for every batch,
    and inside ``EXISTS`` it may probe the annotations by label or annotator instead of by
    example. Keeping those columns off the indexes leaves it the id-ordered scans.
    """

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(_NoIndex)
def _no_index_default(element: _NoIndex, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(_NoIndex, "sqlite")
def _no_index_sqlite(element: _NoIndex, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


@dataclass(frozen=True)
class _Plan:
    project_id: int
    label_names: dict[int, str]
    label_filter: frozenset[int] | None
    annotator_ids: tuple[int, ...] | None
    since: datetime | None
    include_unlabelled: bool
    all_annotations: bool


def _plan(session: Session, project: str, filters: ExportFilters, all_annotations: bool) -> _Plan:
    info = get_project(session, project)
    ids = label_ids(session, info.id)
    label_filter = None
    if filters.labels is not None:
        wanted = [name.strip() for name in filters.labels]
        unknown = [name for name in wanted if name not in ids]
        if unknown:
            valid = ", ".join(repr(n) for n in info.labels) or "none defined"
            raise LabelwiseError(
                f"Unknown label(s) {', '.join(map(repr, unknown))} in the export filter "
                f"(valid labels: {valid})."
            )
        label_filter = frozenset(ids[name] for name in wanted)
    annotator_ids = None
    if filters.annotators is not None:
        names = [name.strip().lower() for name in filters.annotators]
        annotator_ids = tuple(session.scalars(
            select(Annotator.id).where(func.lower(Annotator.name).in_(names))).all())
    return _Plan(
        project_id=info.id,
        label_names={label_id: name for name, label_id in ids.items()},
        label_filter=label_filter,
        annotator_ids=annotator_ids,
        since=filters.labelled_since,
        include_unlabelled=filters.include_unlabelled,
        all_annotations=all_annotations,
    )


def _annotation_conditions(plan: _Plan, *, with_since_and_label: bool) -> list[Any]:
    conditions: list[Any] = []
    if plan.annotator_ids is not None:
        conditions.append(_NoIndex(_A.c.annotator_id).in_(plan.annotator_ids))
    if with_since_and_label:
        if plan.since is not None:
            conditions.append(_NoIndex(_A.c.updated_at) >= plan.since)
        if plan.label_filter is not None:
            wanted = sorted(plan.label_filter)
            by_label = _NoIndex(_A.c.label_id).in_(wanted)
            # by example, the final label may be a gold label no annotation gave
            conditions.append(by_label if plan.all_annotations
                              else or_(by_label, _NoIndex(_E.c.gold_label_id).in_(wanted)))
    return conditions


Reads = Callable[[], AbstractContextManager[Connection]]
"""Opens a connection to read one batch through: the export's one read transaction, or a short
one of the batch's own."""


@contextmanager
def _short_read(settings: Settings) -> Iterator[Connection]:
    with read_unit(settings) as session:
        yield session.connection()


def _example_batches(
    reads: Reads, plan: _Plan, batch_rows: int
) -> Iterator[tuple[Sequence[Any], Sequence[Any]]]:
    """The project's examples ``(id, text, source_row, meta JSON text, gold label id)`` in id
    order, batched, each batch with its annotations (`_annotations_of`), both read through
    one connection of ``reads``.

    Without ``include_unlabelled``, only examples with at least one annotation that could
    make them pass the filters are read (a cheap index probe each).
    """
    stmt = select(
        _E.c.id, _E.c.text, _E.c.source_row, cast(_E.c.meta, Text), _E.c.gold_label_id
    ).where(
        _NoIndex(_E.c.project_id) == plan.project_id
    )
    if not plan.include_unlabelled:
        stmt = stmt.where(
            exists()
            .where(
                _A.c.example_id == _E.c.id, *_annotation_conditions(plan, with_since_and_label=True)
            )
            .correlate(_E)
        )
    last = -1
    while True:
        with reads() as conn:
            query = stmt.where(_E.c.id > last).order_by(_E.c.id).limit(batch_rows)
            rows = conn.execute(query).all()
            if not rows:
                return
            annotations = _annotations_of(conn, plan, rows[0][0], rows[-1][0])
        yield rows, annotations
        if len(rows) < batch_rows:
            return
        last = rows[-1][0]


def _annotations_of(conn: Connection, plan: _Plan, first_id: int, last_id: int) -> Sequence[Any]:
    """Counted annotations of examples ``first_id..last_id``, by example then oldest update.

    Rows: ``example_id, label_id``, then ``recent`` (updated since ``plan.since``) if the plan
    has a date, then ``annotator_id, created_at, updated_at, seconds_spent`` by annotation.
    """
    columns: list[Any] = [_A.c.example_id, _A.c.label_id]
    if plan.since is not None:
        columns.append((_A.c.updated_at >= plan.since).label("recent"))
    if plan.all_annotations:
        columns += [_A.c.annotator_id, _A.c.created_at, _A.c.updated_at, _A.c.seconds_spent]
    stmt = (
        select(*columns)
        .where(
            _A.c.example_id >= first_id,
            _A.c.example_id <= last_id,
            *_annotation_conditions(plan, with_since_and_label=False),
        )
        .order_by(_A.c.example_id, _A.c.updated_at, _A.c.id)
    )
    return conn.execute(stmt).all()


class _Names(dict[int, str]):
    """Names by id, looked up in ``column``'s table when first missing."""

    def __init__(self, reads: Reads, column: Any, known: dict[int, str] | None = None) -> None:
        super().__init__(known or {})
        self.reads = reads
        self.column = column

    def __missing__(self, key: int) -> str:
        id_column = self.column.table.c.id
        with self.reads() as conn:
            name = conn.execute(select(self.column).where(id_column == key)).scalar_one_or_none()
        if name is None:  # removed after its batch was read (batches in transactions of their own)
            name = f"(removed: id {key})"
        self[key] = name
        return name


def _example_rows(
    reads: Reads, plan: _Plan, batch_rows: int
) -> Iterator[list[tuple[Any, ...]]]:
    names = _Names(reads, Label.__table__.c.name, plan.label_names)
    since = plan.since is not None
    label_filter = plan.label_filter
    include_unlabelled = plan.include_unlabelled
    for examples, annotations in _example_batches(reads, plan, batch_rows):
        labels_of: dict[int, list[int]] = {}
        recent: set[int] = set()
        for ann in annotations:
            found = labels_of.get(ann[0])
            if found is None:
                labels_of[ann[0]] = [ann[1]]
            else:
                found.append(ann[1])
            if since and ann[2]:
                recent.add(ann[0])
        out: list[tuple[Any, ...]] = []
        for example_id, text, source_row, meta, gold in examples:
            if meta == "null":
                meta = None
            labels = labels_of.get(example_id)
            if labels is None:
                if include_unlabelled:
                    out.append((example_id, text, None, source_row, 0, meta))
                continue
            if since and example_id not in recent:
                continue
            # a reviewer's gold label overrides the vote
            label_id = gold if gold is not None else final_label(labels)
            if label_filter is not None and label_id not in label_filter:
                continue
            out.append((example_id, text, names[label_id], source_row, len(labels), meta))
        yield out


def _annotation_rows(
    reads: Reads, plan: _Plan, batch_rows: int
) -> Iterator[list[tuple[Any, ...]]]:
    names = _Names(reads, Label.__table__.c.name, plan.label_names)
    annotators = _Names(reads, Annotator.__table__.c.name)
    label_filter = plan.label_filter
    since = plan.since is not None
    for examples, annotations in _example_batches(reads, plan, batch_rows):
        by_example: dict[int, list[Any]] = {}
        for ann in annotations:
            by_example.setdefault(ann[0], []).append(ann)
        out: list[tuple[Any, ...]] = []
        for example_id, text, _source_row, _meta, _gold in examples:
            anns = by_example.get(example_id)
            if anns is None:
                if plan.include_unlabelled:
                    out.append((example_id, text, None, None, None, None, None))
                continue
            for ann in anns:
                if since and not ann.recent:
                    continue
                if label_filter is not None and ann.label_id not in label_filter:
                    continue
                out.append(
                    (
                        example_id,
                        text,
                        names[ann.label_id],
                        annotators[ann.annotator_id],
                        ann.created_at,
                        ann.updated_at,
                        ann.seconds_spent,
                    )
                )
        yield out


@contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector's full passes off the objects that existed before.

    Each batch allocates tens of thousands of short-lived containers, which trigger full
    collections; with the program's whole heap in the oldest generation those cost about a
    sixth of an export's time. `gc.freeze` moves that heap aside (nothing is collected or
    lost because of it) and `gc.unfreeze` puts it back. Left alone if something else froze
    objects first.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# --------------------------------------------------------------------------------------------


def export(
    settings: Settings,
    project: str,
    out: Path | str | BinaryIO,
    fmt: str,
    filters: ExportFilters | None = None,
    all_annotations: bool = False,
    *,
    batch_rows: int = BATCH_ROWS,
    actor: str | None = None,
    extend: Extension | None = None,
    snapshot: bool = True,
) -> int:
    """Write a project's labels to ``out``; returns the number of rows written.

    By example (the default) each labelled example gives one row ``id, text, label,
    source_row, n_annotations, meta``. Its ``label`` is the final label: the majority vote
    over its counted annotations (every annotation, or only those of
    ``filters.annotators``), a tie going to the tied label whose annotation was updated most
    recently (then the one written last); ``n_annotations`` is how many were counted. With
    ``all_annotations`` each annotation gives one row ``example_id, text, label, annotator,
    created_at, updated_at, seconds_spent`` instead, ordered by example then update time.
    Rows come in example id order.

    Formats: ``jsonl`` (UTF-8, one object per line, ``meta`` as an object, times as ISO 8601
    UTC strings ``...Z``), ``csv`` (UTF-8 without BOM, a header row, ``meta`` as JSON text,
    times as ISO 8601; every text cell starting with ``= + - @``, a tab or a carriage return
    gets a leading ``'`` so that spreadsheets do not run it as a formula) and ``parquet``
    (one row group per batch, ``meta`` as JSON text, times as UTC timestamps). An export
    without rows is a header-only CSV, an empty JSONL file or a Parquet file with the schema
    and no rows.

    Args:
        settings: which database.
        project: the project's name.
        out: a path (written to a temporary file beside it, then renamed, so a failed export
            leaves no partial file) or a binary stream (written to, left open).
        fmt: ``jsonl``, ``csv`` or ``parquet``.
        filters: which rows; all labelled examples (or all annotations) when None.
        all_annotations: one row per annotation instead of one per example.
        batch_rows: examples read per batch.
        actor: who asks (the web app passes the signed-in user, who must be an active admin).
        extend: columns to add after the export's own, and the rows to write (see
            `Extension`); a column named like one of the export's is an error.
        snapshot: read every batch in one read transaction, so labels given meanwhile are
            all in or all out; False reads each batch in a short transaction of its own, for
            a caller that takes long between batches (each row is then as it was when its
            batch was read).

    Raises:
        NotFound: no such project.
        LabelwiseError: unknown format, or a label filter naming a label not in the project.
        ExportFailed: the output could not be written.
    """
    if actor is not None:
        require_admin(settings, actor)
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise LabelwiseError(f"Unknown export format {fmt!r} (formats: {', '.join(FORMATS)}).")
    filters = filters or ExportFilters()
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    if all_annotations:
        names, kinds, produce = ANNOTATION_COLUMNS, _ANNOTATION_KINDS, _annotation_rows
    else:
        names, kinds, produce = EXAMPLE_COLUMNS, _EXAMPLE_KINDS, _example_rows
    if extend is not None:
        clash = sorted(set(names) & set(extend.names))
        if clash:
            raise LabelwiseError(f"Added column(s) {', '.join(clash)} clash with the export's own.")
        names, kinds = names + extend.names, kinds + extend.kinds

    with ExitStack() as held:
        reads: Reads
        if snapshot:
            session = held.enter_context(read_unit(settings))
            if session.get_bind().dialect.name == "postgresql":
                # One snapshot for every batch (SQLite's read transaction is one already).
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            plan = _plan(session, project, filters, all_annotations)
            reads = partial(nullcontext, session.connection())
        else:
            with read_unit(settings) as session:
                plan = _plan(session, project, filters, all_annotations)
            reads = partial(_short_read, settings)

        def write_to(stream: BinaryIO, written_out: Callable[[], None] = lambda: None) -> int:
            writer = _WRITERS[fmt](stream, names, kinds)
            written = 0
            try:
                with _old_objects_frozen():
                    batches = produce(reads, plan, batch_rows)
                    for rows in batches if extend is None else extend.rows(batches):
                        writer.write(rows)
                        written += len(rows)
                        written_out()
            except BaseException:
                writer.abort()
                raise
            writer.close()
            return written

        if not isinstance(out, (str, Path)):
            try:
                return write_to(out)
            except OSError as exc:
                raise ExportFailed(f"Could not write the export: {exc}") from exc

        path = Path(out)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as stream:
                # Parquet writes on a thread of its own, and its file is a third of the size
                written = write_to(stream, _PageDropper(stream) if fmt != "parquet" else
                                   (lambda: None))
            os.replace(tmp, path)
        except OSError as exc:
            raise ExportFailed(f"Could not write {path}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return written


DROP_EVERY_BYTES = 64 << 20
"""A file export's written bytes are handed to the disk and dropped from the page cache this
often (see `_PageDropper`); 0 keeps them cached."""


class _PageDropper:
    """Called after each batch written to a file: every ``DROP_EVERY_BYTES``, writes the file's
    data to disk (``fdatasync``) and drops it from the page cache (``posix_fadvise``).

    A 2 GB export would otherwise fill 2 GB of page cache with data nobody reads again; on a
    virtual machine whose host takes back the memory its guest frees, each such page is fresh
    memory, and the kernel's time for it dominated: on `cpu-amd-2core`, writing 2 GB in 1 MB
    blocks took 11.2 s (10.7 s of it the kernel's) as is and 1.3 to 1.6 s with this every
    64 MB. Where the system has no such calls, or the file system refuses them, it does
    nothing; a write error that ``fdatasync`` reports is raised.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.done = stream, 0
        self.on = DROP_EVERY_BYTES > 0 and hasattr(os, "posix_fadvise")

    def __call__(self) -> None:
        if not self.on or self.stream.tell() - self.done < DROP_EVERY_BYTES:
            return
        self.stream.flush()
        fd = self.stream.fileno()
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.ESPIPE):
                raise
            self.on = False  # not for this file system
        self.done = self.stream.tell()


KEEP_EXPORTS = 3
"""Files `export_to_folder` keeps per project; older ones are deleted as a newer one is written.
Few: an export is written again in seconds, and 1,000,000 news texts take 2 GB."""


def export_to_folder(
    settings: Settings,
    project: str,
    fmt: str,
    filters: ExportFilters | None = None,
    all_annotations: bool = False,
    *,
    actor: str | None = None,
) -> tuple[Path, int]:
    """`export` into a new file in the data folder (``exports/project-<id>/``), for the web
    app to offer as a download without holding the export in memory; the project's files
    there beyond the `KEEP_EXPORTS` newest are deleted.

    Returns:
        The file, and the number of rows written.

    Raises:
        As `export`.
    """
    with read_unit(settings) as session:
        info = get_project(session, project)
    folder = settings.data_dir / "exports" / f"project-{info.id}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    extension = fmt.lower().lstrip(".")
    path = folder / f"{file_stem(project)}-{stamp}-{uuid.uuid4().hex[:6]}.{extension}"
    n = export(settings, project, path, fmt, filters, all_annotations, actor=actor)
    for old in _newest_first(folder)[KEEP_EXPORTS:]:
        old.unlink(missing_ok=True)
    return path, n


def _newest_first(folder: Path) -> list[Path]:
    """The finished files in ``folder`` (not another export's temporary one), newest first."""
    found = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        with suppress(FileNotFoundError):  # deleted meanwhile by another export
            found.append((path.stat().st_mtime_ns, path.name, path))
    return [path for *_, path in sorted(found, reverse=True)]
