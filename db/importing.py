"""Import texts (and optionally labels) from CSV, TSV, JSONL, JSON or TXT into a project.

The whole import is one write transaction: either every accepted row is written, or nothing is
(not even a project the import would have created). The file is streamed: bytes are decoded
chunk by chunk, split into records and hashed in a read-ahead thread, and inserted in batches
(on SQLite one statement per batch, which runs without the GIL while the thread parses on), so
memory holds a few batches (plus one decoded chunk), whatever the size of the file.

Duplicates are found without an in-memory set: each batch's hashes are looked up in the
project (``text_hash IN (...)``); a hit with an id above the largest example id before the
import was inserted by this import (a duplicate within the file), any other hit was already in
the project.

Formats:
    * ``csv`` / ``tsv``: a header row names the columns; quoting as Python's ``csv`` writes it
      (fields may span lines). ``source_row`` is the physical line where the record starts
      (the header is line 1).
    * ``jsonl``: one JSON object per line; ``source_row`` is the line number. Blank lines are
      skipped.
    * ``json``: one list of objects, parsed item by item (never the whole file at once; memory
      is the largest item plus a chunk). ``source_row`` is the item's position (1-based).
    * ``txt``: one text per line, no labels; blank lines are skipped.

The text column is ``text_field``; ``label_field`` (optional) gives a label that becomes an
annotation by the ``import`` annotator; ``reference_label_field`` (optional) is stored aside in
``Example.reference_label``; every other column is kept in ``Example.meta``.

`read_labelled` reads a labelled file into memory (for simulations) with the same parsers.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from sqlalchemy import JSON, bindparam, func, insert, select
from sqlalchemy.orm import Session

from db.engine import bulk_write_unit
from db.errors import ImportFailed, LabelwiseError
from db.models import Annotation, Example, Project, Role
from db.projects import (
    IMPORT_ANNOTATOR,
    add_labels as add_project_labels,
    clean_label,
    create_project,
    find_project,
    get_or_create_annotator,
    label_ids,
)
from db.settings import Settings, get_settings
from db.users import require_admin
from db.readahead import read_ahead
from db.texts import utf8_and_hash

FORMATS = ("csv", "tsv", "jsonl", "json", "txt", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
    ".parquet": "parquet",
}

MAX_REPORTED_REJECTIONS = 50
"""How many rejected rows a report lists (``ImportReport.rejected_total`` counts them all)."""
_MESSAGE_REJECTIONS = 10
MAX_FIELD_CHARS = 64 * 1024 * 1024
"""Largest CSV/TSV field accepted (Python's csv module default is 131,072 characters)."""
_CHUNK_BYTES = 1 << 20
_SQLITE_CACHE_KIB = 128 * 1024
"""SQLite page cache while importing (default 2 MiB): the ``text_hash`` index of about a
million rows stays in memory, instead of being re-read and re-spilled through a growing WAL."""

_EX = Example.__table__
_ANN = Annotation.__table__
# SQL NULL (not JSON ``null``) for rows without metadata.
_INSERT_EXAMPLES = insert(_EX).values(meta=bindparam("meta_json", type_=JSON(none_as_null=True)))
_INSERT_ANNOTATIONS = insert(_ANN)
# SQLite: the duplicate lookup takes the batch's hashes as one JSON parameter.
_SQLITE_EXISTING = (
    "SELECT id, text_hash FROM examples WHERE project_id = ? "
    "AND text_hash IN (SELECT value FROM json_each(?))"
)
# One statement per batch, so that SQLite inserts the whole batch in a single step without
# the GIL while the read-ahead thread parses the next rows (with executemany, every row would
# wait for the GIL between steps). The texts travel as one BLOB of their UTF-8 bytes, cut with
# byte offsets; the small fields as a JSON array, which ``json_each`` reads in order, so ids
# follow the file.
_SQLITE_INSERT_BATCH = (
    "INSERT INTO examples (project_id, text, text_hash, source_row, meta, reference_label, "
    "created_at) SELECT ?1, CAST(substr(?2, json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]')) AS TEXT), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), "
    "?3 FROM json_each(?4)"
)


# --------------------------------------------------------------------------------------------
# Public results


@dataclass
class RejectedRow:
    """A record that was not imported: its line in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did (or, attached to `ImportFailed`, what it found before giving up).

    Attributes:
        accepted: new examples written.
        duplicates_in_file: records whose text (normalised) appeared earlier in the file.
        duplicates_existing: records whose text was already in the project before the import.
        labelled: annotations written (accepted records that carried a label).
        rejected: the first `MAX_REPORTED_REJECTIONS` bad records, in file order.
        labels_added: labels appended to the project's label set, in order of first use.
        project_created: the import created the project.
        rows_read: records read (blank lines and the header excluded), bad ones included.
        rejected_total: how many records were rejected (``rejected`` may list fewer).
    """

    accepted: int = 0
    duplicates_in_file: int = 0
    duplicates_existing: int = 0
    labelled: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    labels_added: list[str] = field(default_factory=list)
    project_created: bool = False
    rows_read: int = 0
    rejected_total: int = 0

    def reject(self, row: RejectedRow) -> None:
        """Count a bad record, listing it if the list is not full."""
        self.rejected_total += 1
        if len(self.rejected) < MAX_REPORTED_REJECTIONS:
            self.rejected.append(row)

    def rejected_lines(self, limit: int = MAX_REPORTED_REJECTIONS) -> list[str]:
        """``line N: reason`` for the listed rejections, then ``... and K more`` if any."""
        lines = [str(row) for row in self.rejected[:limit]]
        more = self.rejected_total - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        return lines


# --------------------------------------------------------------------------------------------
# Public entry points


def detect_format(filename: str, fmt: str | None = None) -> str:
    """The format to read: ``fmt`` if given, else from the file name's extension.

    Raises:
        ImportFailed: unknown format or extension.
    """
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ImportFailed(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
        return fmt
    suffix = Path(filename).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ImportFailed(
            f"Cannot tell the format of {filename!r} from its extension; give the format "
            f"(one of {', '.join(FORMATS)})."
        )
    return _EXTENSIONS[suffix]


def import_file(
    settings: Settings | None,
    path: Path,
    project: str,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
    skip_bad_rows: bool = False,
    add_labels: bool = False,
    labels: Sequence[str] | None = None,
    reference_label_field: str | None = None,
    annotator: str = IMPORT_ANNOTATOR,
    batch_size: int = 2000,
    max_rows: int | None = None,
) -> ImportReport:
    """Import a file into ``project`` (created if it does not exist), in one transaction.

    Args:
        settings: database settings (None: from the environment).
        path: the file to read.
        project: project name; created by the import if missing.
        text_field: column (key) holding the text.
        label_field: column holding a label; labelled rows become annotations by ``annotator``.
        fmt: ``csv``, ``tsv``, ``jsonl``, ``json`` or ``txt``; default from the extension.
        encoding: the file's text encoding (a UTF-8 byte-order mark is always dropped).
        skip_bad_rows: import the good rows and report the bad ones, instead of importing
            nothing when any row is bad.
        add_labels: append labels found in the file to the project's label set instead of
            failing on them.
        labels: label set of a project the import creates. If None, a new project takes the
            labels found in the file. Ignored for an existing project.
        reference_label_field: column stored in ``Example.reference_label`` (kept aside for
            simulations; not an annotation).
        annotator: who the imported labels are by (created with the system role if missing).
        batch_size: records per INSERT batch.
        max_rows: refuse (and write nothing) past this many records.

    Returns:
        The report of what was written.

    Raises:
        ImportFailed: nothing was written; the message says why (with line numbers) and
            ``exc.report`` holds the details.
    """
    with _open_binary(path) as stream:
        return import_stream(
            settings,
            stream,
            Path(path).name,
            project,
            text_field=text_field,
            label_field=label_field,
            fmt=fmt,
            encoding=encoding,
            skip_bad_rows=skip_bad_rows,
            add_labels=add_labels,
            labels=labels,
            reference_label_field=reference_label_field,
            annotator=annotator,
            batch_size=batch_size,
            max_rows=max_rows,
        )


def import_stream(
    settings: Settings | None,
    stream: BinaryIO,
    filename: str,
    project: str,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
    skip_bad_rows: bool = False,
    add_labels: bool = False,
    labels: Sequence[str] | None = None,
    reference_label_field: str | None = None,
    annotator: str = IMPORT_ANNOTATOR,
    batch_size: int = 2000,
    max_rows: int | None = None,
    actor: str | None = None,
) -> ImportReport:
    """Import from a binary file-like object (e.g. a Streamlit upload); see `import_file`.

    ``filename`` names the source in messages and gives the format when ``fmt`` is None. The
    stream is read from its current position with ``read(n)`` only, and is not closed.
    ``actor`` (the web app's signed-in user), when given, must be an active admin.
    """
    if actor is not None:
        require_admin(settings or get_settings(), actor)
    report = ImportReport()
    try:
        options = _options(
            fmt, filename, text_field, label_field, reference_label_field, encoding,
            skip_bad_rows, add_labels, labels, annotator, batch_size, max_rows,
        )
        # a new project's model is the default backbone (LABELWISE_MODEL) as it is now
        backbone = {"model_path": (settings or get_settings()).model_path}
        with bulk_write_unit(settings, cache_kib=_SQLITE_CACHE_KIB) as session:
            _run(session, project, _Source(stream, filename, options.encoding), options, report,
                 backbone)
    except ImportFailed as exc:
        exc.report = report
        raise
    return report


def read_labelled(
    path: Path,
    text_field: str = "text",
    label_field: str = "label",
    *,
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> tuple[list[str], list[str]]:
    """Read a labelled file into memory for a simulation; the database is not touched.

    Same formats, columns and checks as `import_file`. Every row needs a label; a text seen
    before (after normalisation) is skipped, as an import would.

    Returns:
        ``(texts, labels)``, in file order.

    Raises:
        ImportFailed: the file cannot be read, or has bad or unlabelled rows (all listed).
    """
    report = ImportReport()
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    try:
        options = _options(
            fmt, Path(path).name, text_field, label_field, None, encoding,
            False, True, None, IMPORT_ANNOTATOR, 1,
        )
        with _open_binary(path) as stream:
            source = _Source(stream, Path(path).name, options.encoding)
            with closing(_rows(source, options, report)) as rows:  # stops the read-ahead
                for row in rows:
                    if row.label is None:
                        report.reject(RejectedRow(row.line, f"no label in {label_field!r}"))
                    elif row.text_hash in seen:
                        report.duplicates_in_file += 1
                    else:
                        seen.add(row.text_hash)
                        texts.append(row.text)
                        labels.append(row.label)
        if report.rows_read == 0:
            raise ImportFailed(f"{source.name}: {_why_no_rows(source, options)}.")
        if report.rejected_total:
            problems = _rejections_message(report, "Fix them and run again.")
            raise ImportFailed(f"{source.name}: {problems}")
    except ImportFailed as exc:
        exc.report = report
        raise
    return texts, labels


@contextmanager
def _open_binary(path: Path) -> Iterator[BinaryIO]:
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        message = f"Cannot read {str(path)!r}: {exc.strerror or exc}."
        raise ImportFailed(message, ImportReport()) from None
    with stream:
        yield stream


# --------------------------------------------------------------------------------------------
# Options and checks


@dataclass(frozen=True)
class _Options:
    fmt: str
    text_field: str
    label_field: str | None
    reference_field: str | None
    encoding: str
    skip_bad_rows: bool
    add_labels: bool
    labels: tuple[str, ...] | None
    annotator: str
    batch_size: int
    max_rows: int | None = None


def _options(
    fmt: str | None,
    filename: str,
    text_field: str,
    label_field: str | None,
    reference_label_field: str | None,
    encoding: str,
    skip_bad_rows: bool,
    add_labels: bool,
    labels: Sequence[str] | None,
    annotator: str,
    batch_size: int,
    max_rows: int | None = None,
) -> _Options:
    options = _Options(
        fmt=detect_format(filename, fmt),
        text_field=text_field,
        label_field=label_field,
        reference_field=reference_label_field,
        encoding=_check_encoding(encoding),
        skip_bad_rows=skip_bad_rows,
        add_labels=add_labels,
        labels=None if labels is None else tuple(labels),
        annotator=annotator,
        batch_size=max(1, int(batch_size)),
        max_rows=max_rows,
    )
    _check_fields(options)
    return options


def _check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ImportFailed(
            f"Unknown encoding {encoding!r} (try utf-8, latin-1, cp1252 or utf-16)."
        ) from None


def _check_fields(options: _Options) -> None:
    names = [options.text_field, options.label_field, options.reference_field]
    given = [name for name in names if name is not None]
    if len(set(given)) != len(given):
        raise ImportFailed("The text, label and reference label columns must be different.")
    if options.fmt == "txt" and (options.label_field or options.reference_field):
        raise ImportFailed("A TXT file holds one text per line: it has no label column.")


# --------------------------------------------------------------------------------------------
# Reading: bytes -> text chunks -> lines


class _Source:
    """A binary stream decoded chunk by chunk, with a clear error on undecodable bytes.

    Tracks the byte offset and line count so that errors can name where they are.
    """

    def __init__(self, stream: BinaryIO, name: str, encoding: str) -> None:
        self.stream = stream
        self.name = name
        self.encoding = encoding
        self.bytes_read = 0
        self._lines_done = 0

    def chunks(self) -> Iterator[str]:
        """The decoded text, in chunks; a leading byte-order mark is dropped."""
        decoder = codecs.getincrementaldecoder(self.encoding)("strict")
        first = True
        while True:
            data = self.stream.read(_CHUNK_BYTES)
            if isinstance(data, str):
                raise TypeError("import_stream needs a binary stream (open the file with 'rb').")
            final = not data
            held = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc, self.bytes_read - held) from None
            self.bytes_read += len(data)
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            if "\x00" in text:
                raise self._nul_error(text)
            if text:
                self._lines_done += text.count("\n")
                yield text
            if final:
                return

    def _decode_error(self, exc: UnicodeDecodeError, base: int) -> ImportFailed:
        offset = base + exc.start
        line = self._lines_done + exc.object[: exc.start].count(b"\n") + 1
        bad = exc.object[exc.start : exc.end].hex(" ")
        return ImportFailed(
            f"{self.name}: cannot decode byte {offset} (line {line}) as {self.encoding}: "
            f"bytes {bad} ({exc.reason}). If the file is not UTF-8, give its encoding "
            "(the form's 'Encoding'; CLI: --encoding latin-1), e.g. latin-1, cp1252 or utf-16."
        )

    def _nul_error(self, text: str) -> ImportFailed:
        line = self._lines_done + text.count("\n", 0, text.index("\x00")) + 1
        return ImportFailed(
            f"{self.name}: line {line} contains a NUL byte; this does not look like a "
            f"{self.encoding} text file (if it is UTF-16, give the encoding utf-16: the form's "
            "'Encoding'; CLI: --encoding utf-16)."
        )


def _lines(chunks: Iterable[str], universal: bool) -> Iterator[str]:
    """Split text chunks into lines, keeping line endings.

    With ``universal``, lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (as ``open(newline="")``
    reads them, which the csv module needs); otherwise at ``\\n`` only.
    """
    pending: list[str] = []
    for chunk in chunks:
        held_cr = universal and bool(pending) and pending[-1].endswith("\r")
        if "\n" not in chunk and not (universal and "\r" in chunk) and not held_cr:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk)
            chunk = "".join(pending)
            pending = []
        if not universal or "\r" not in chunk or chunk.count("\r") == chunk.count("\r\n"):
            # Every line ends at a "\n" (any "\r" comes just before one): a plain split,
            # several times faster than going through a StringIO.
            lines = chunk.split("\n")
            rest = lines.pop()
            yield from [line + "\n" for line in lines]
            if rest:
                pending.append(rest)
            continue
        lines = io.StringIO(chunk, newline="").readlines()
        if not lines[-1].endswith("\n"):  # unfinished, or a "\r" that a "\n" may follow
            pending.append(lines.pop())
        yield from lines
    if pending:
        yield "".join(pending)


# --------------------------------------------------------------------------------------------
# Parsing: each parser yields (line, source_row, record dict) or a RejectedRow


_Record = tuple[int, int, dict[str, Any]]


def _records(source: _Source, options: _Options) -> Iterator[_Record | RejectedRow]:
    if options.fmt in ("csv", "tsv"):
        delimiter = "," if options.fmt == "csv" else "\t"
        return _csv_records(source, options, delimiter)
    if options.fmt == "jsonl":
        return _jsonl_records(source)
    if options.fmt == "json":
        return _json_records(source)
    if options.fmt == "parquet":
        return _parquet_records(source, options)
    return _txt_records(source, options.text_field)


def _allow_large_fields() -> None:
    # Process-wide, and only ever raised: safe with several imports at once.
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)


def _csv_records(
    source: _Source, options: _Options, delimiter: str
) -> Iterator[_Record | RejectedRow]:
    _allow_large_fields()
    reader = csv.reader(_lines(source.chunks(), universal=True), delimiter=delimiter, strict=True)
    header, header_line = _csv_header(reader, source)
    _check_columns(header, f" in the header (line {header_line})", source.name, options)
    width = len(header)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RejectedRow(start, f"malformed {options.fmt.upper()} record: {exc}")
        else:
            if len(row) == width:
                yield start, start, dict(zip(header, row))
            elif row:  # a blank line reads as []: skipped
                yield RejectedRow(start, _ragged(len(row), width, header_line))
        start = reader.line_num + 1


def _csv_header(reader: Any, source: _Source) -> tuple[list[str], int]:
    try:
        for row in reader:
            if row:
                header = [name.strip() for name in row]
                break
        else:
            raise ImportFailed(f"{source.name}: the file is empty; there are no rows to import.")
    except csv.Error as exc:
        line = reader.line_num
        raise ImportFailed(f"{source.name}: cannot read the header (line {line}): {exc}.") from None
    line = reader.line_num
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ImportFailed(
                f"{source.name}: the header (line {line}) names the column {name!r} twice."
            )
        seen.add(name)
    return header, line


def _check_columns(header: list[str], where: str, name: str, options: _Options) -> None:
    """Raise unless ``header`` holds the columns ``options`` name; ``where`` says where the
    header was read (" in the header (line 1)")."""
    wanted = [
        ("text", options.text_field),
        ("label", options.label_field),
        ("reference label", options.reference_field),
    ]
    for role, column in wanted:
        if column is not None and column not in header:
            found = ", ".join(repr(c) for c in header)
            raise ImportFailed(
                f"{name}: no {role} column {column!r}{where}. "
                f"Columns found: {found}."
            )


def _ragged(found: int, width: int, header_line: int) -> str:
    hint = " (an unquoted delimiter inside a value?)" if found > width else ""
    return f"{found} fields, but the header (line {header_line}) has {width}{hint}"


class _NotJson(ValueError):
    """NaN or Infinity, which Python's JSON reader takes and JSON (and PostgreSQL) does not."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not valid JSON (write null, or the value as a string)")


_STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant)


def _jsonl_records(source: _Source) -> Iterator[_Record | RejectedRow]:
    for number, line in enumerate(_lines(source.chunks(), universal=False), start=1):
        if not line.strip():
            continue
        try:
            value = _STRICT_JSON.decode(line)
        except json.JSONDecodeError as exc:
            yield RejectedRow(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except _NotJson as exc:
            yield RejectedRow(number, f"invalid JSON: {exc}")
            continue
        if isinstance(value, dict):
            yield number, number, value
        else:
            yield RejectedRow(number, f"expected a JSON object, found {_kind(value)}")


def _json_records(source: _Source) -> Iterator[_Record | RejectedRow]:
    reader = _JsonListReader(source)
    for line, index, value in reader.items():
        if isinstance(value, dict):
            yield line, index, value
        else:
            yield RejectedRow(line, f"item {index}: expected an object, found {_kind(value)}")


PARQUET_BATCH_ROWS = 10_000
"""Rows of a Parquet file read at a time (one row group may hold more)."""


def _parquet_records(source: _Source, options: _Options) -> Iterator[_Record | RejectedRow]:
    """The rows of a Parquet file (an export's, say) as records, numbered from 1: a row's
    number stands for its line in messages. Values that JSON cannot hold (times, bytes) become
    text in the metadata; the file needs a seekable stream, as Parquet keeps its index at the
    end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ImportFailed(f"{source.name}: not a readable Parquet file ({exc}).") from None
    _check_columns(parquet.schema_arrow.names, "", source.name, options)
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        source.bytes_read += batch.nbytes  # not empty: "no rows" says so rightly
        for values in batch.to_pylist():
            number += 1
            yield number, number, {name: _plain(value) for name, value in values.items()}


def _plain(value: Any) -> Any:
    """A Parquet value as JSON holds it: times in ISO 8601, bytes and others as text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _txt_records(source: _Source, text_field: str) -> Iterator[_Record | RejectedRow]:
    for number, line in enumerate(_lines(source.chunks(), universal=True), start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield number, number, {text_field: text}


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_STARTS = {"{": "an object", '"': "a string", "t": "true/false", "f": "true/false",
                "n": "null"}


class _JsonListReader:
    """Reads a top-level JSON list one item at a time (``json.JSONDecoder.raw_decode``).

    The buffer holds the current item and the rest of the chunk; an item cut by the end of the
    buffer is retried with more text (the buffer doubles, so a huge item costs linear time).
    """

    def __init__(self, source: _Source) -> None:
        self.name = source.name
        self._chunks = source.chunks()
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._line = 1  # line number at self._pos
        self._counted = 0  # position up to which newlines are in self._line

    def items(self) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(line, index, value)`` for every item of the list (index from 1)."""
        self._open()
        index = 0
        if self._peek() == "]":
            self._pos += 1
            self._expect_end()
            return
        while True:
            index += 1
            line = self._line_at(self._pos)
            yield line, index, self._value(index)
            char = self._peek()
            self._pos += 1
            if char == "]":
                self._expect_end()
                return
            if char != ",":
                self._fail(f"expected ',' or ']' after item {index}", self._pos - 1)
            if self._peek() == "]":
                self._fail(f"a ',' after the last item ({index}) is not allowed in JSON", self._pos)

    def _open(self) -> None:
        char = self._peek()
        if char == "":
            raise ImportFailed(f"{self.name}: the file is empty; there are no rows to import.")
        if char != "[":
            kind = _JSON_STARTS.get(char, "a number" if char in "-0123456789" else None)
            found = f"the file holds {kind}" if kind else f"found {char!r}"
            hint = " (for one object per line, use the .jsonl format)" if char == "{" else ""
            raise ImportFailed(
                f"{self.name}: a JSON file must be a list of objects ([{{...}}, ...]), but "
                f"{found} at line {self._line_at(self._pos)}{hint}."
            )
        self._pos += 1

    def _value(self, index: int) -> Any:
        while True:
            try:
                value, end = _STRICT_JSON.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof or not self._maybe_cut(exc):
                    self._fail(f"invalid JSON in item {index}: {exc.msg}", exc.pos)
                self._more()
                continue
            except _NotJson as exc:
                self._fail(f"invalid JSON in item {index}: {exc}", self._pos)
            if end == len(self._buf) and not self._eof:  # a number may go on in the next chunk
                self._more()
                continue
            self._pos = end
            return value

    def _maybe_cut(self, exc: json.JSONDecodeError) -> bool:
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(self._buf) - 8

    def _peek(self) -> str:
        """The next non-space character ('' at the end), with the position moved to it."""
        while True:
            self._pos = _JSON_SPACE.match(self._buf, self._pos).end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._eof:
                return ""
            self._more()

    def _more(self) -> None:
        """Drop what was read, then at least double the unread text (or reach the end)."""
        self._line_at(self._pos)
        self._buf = self._buf[self._pos :]
        self._pos = self._counted = 0
        target = max(2 * len(self._buf), 1)
        parts = [self._buf]
        size = len(self._buf)
        while size < target:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._eof = True
                break
            parts.append(chunk)
            size += len(chunk)
        self._buf = "".join(parts)

    def _line_at(self, pos: int) -> int:
        self._line += self._buf.count("\n", self._counted, pos)
        self._counted = pos
        return self._line

    def _expect_end(self) -> None:
        if self._peek() != "":
            self._fail("unexpected text after the end of the list", self._pos)

    def _fail(self, problem: str, pos: int) -> None:
        line = self._line_at(pos) if pos >= self._counted else self._line
        raise ImportFailed(f"{self.name}: line {line}: {problem}.")


# --------------------------------------------------------------------------------------------
# Records -> rows


class _Row(NamedTuple):
    line: int
    source_row: int
    text: str
    utf8: bytes
    text_hash: str
    label: str | None
    reference: str | None
    meta: dict[str, Any] | None


class _BadValue(Exception):
    pass


def _to_row(record: _Record, options: _Options) -> _Row | RejectedRow:
    """Pick the text, label, reference label and metadata out of one record."""
    line, source_row, values = record
    try:
        text = _text(values.pop(options.text_field, None), options.text_field)
        label = _label(values.pop(options.label_field, None)) if options.label_field else None
        reference = (
            _label(values.pop(options.reference_field, None)) if options.reference_field else None
        )
        utf8, digest = utf8_and_hash(text)
    except (_BadValue, LabelwiseError) as exc:
        return RejectedRow(line, str(exc))
    except UnicodeEncodeError as exc:  # JSON can carry "\ud800"; UTF-8 cannot
        return RejectedRow(line, f"the text holds an unpaired surrogate "
                           f"(U+{ord(exc.object[exc.start]):04X}), which is not valid Unicode")
    return _Row(line, source_row, text, utf8, digest, label, reference, values or None)


def _text(value: Any, column: str) -> str:
    if value is None:
        raise _BadValue(f"no {column!r} field")
    if not isinstance(value, str):
        raise _BadValue(f"{column!r} is {_kind(value)}, expected a string")
    if not value or value.isspace():
        raise _BadValue("empty text")
    if "\x00" in value:
        raise _BadValue("the text contains a NUL character")
    return value


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _BadValue(f"a label must be a string, found {_kind(value)}")
    if not value.strip():
        return None
    return clean_label(value)


# --------------------------------------------------------------------------------------------
# Writing


class _Target:
    """The project being imported into, its labels, and the batch writer."""

    def __init__(
        self, session: Session, project: str, options: _Options, report: ImportReport,
        new_project_settings: dict[str, Any],
    ) -> None:
        self.session = session
        self.options = options
        self.report = report
        info = find_project(session, project.strip())
        if info is None:
            info = create_project(session, project, options.labels or (),
                                  settings=new_project_settings)
            report.project_created = True
        self.project_id = info.id
        # Serialise imports into one project on PostgreSQL (SQLite: BEGIN IMMEDIATE did).
        session.execute(select(Project.id).where(Project.id == info.id).with_for_update())
        self.max_id_before = session.scalar(select(func.max(_EX.c.id))) or 0
        self.can_add = options.add_labels or (report.project_created and options.labels is None)
        self.label_ids = label_ids(session, info.id)
        self.unknown: dict[str, int] = {}  # label -> first line
        self.annotator_id: int | None = None
        self.now = datetime.now(timezone.utc)
        self.now_sqlite = self.now.replace(tzinfo=None).isoformat(" ", "microseconds")

    def check_label(self, row: _Row) -> bool:
        """Whether the row's label (if any) is in the label set, adding it if allowed."""
        if row.label is None or row.label in self.label_ids:
            return True
        if self.can_add:
            added = add_project_labels(self.session, self.project_id, [row.label])
            self.report.labels_added += added
            self.label_ids = label_ids(self.session, self.project_id)
            return True
        self.unknown.setdefault(row.label, row.line)
        return False

    def write(self, batch: list[_Row]) -> None:
        """Insert the batch's new texts (and their annotations), counting duplicates."""
        fresh = self._new_rows(batch)
        if not fresh:
            return
        conn = self.session.connection()
        if conn.dialect.name == "sqlite":
            # The hot path: straight to the driver, values already in SQLAlchemy's storage
            # format (a test reads them back through the ORM), inside the same transaction.
            conn.connection.driver_connection.execute(_SQLITE_INSERT_BATCH, (
                self.project_id, b"".join(row.utf8 for row in fresh), self.now_sqlite,
                _sqlite_fields(fresh)))
        else:
            conn.execute(_INSERT_EXAMPLES, [self._example(row) for row in fresh])
        self.report.accepted += len(fresh)
        labelled = [row for row in fresh if row.label is not None]
        if labelled:
            ids = self._ids([row.text_hash for row in labelled])
            annotator_id = self._annotator()
            conn.execute(
                _INSERT_ANNOTATIONS,
                [
                    {
                        "example_id": ids[row.text_hash],
                        "annotator_id": annotator_id,
                        "label_id": self.label_ids[row.label],
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                    for row in labelled
                ],
            )
            self.report.labelled += len(labelled)

    def _new_rows(self, batch: list[_Row]) -> list[_Row]:
        first: dict[str, _Row] = {}
        for row in batch:
            if row.text_hash in first:
                self.report.duplicates_in_file += 1
            else:
                first[row.text_hash] = row
        for example_id, digest in self._existing(list(first)):
            del first[digest]
            if example_id > self.max_id_before:
                self.report.duplicates_in_file += 1
            else:
                self.report.duplicates_existing += 1
        return list(first.values())

    def _existing(self, hashes: list[str]) -> list[tuple[int, str]]:
        conn = self.session.connection()
        if conn.dialect.name == "sqlite":  # one parameter instead of one per hash
            return conn.connection.driver_connection.execute(
                _SQLITE_EXISTING, (self.project_id, json.dumps(hashes))).fetchall()
        stmt = select(_EX.c.id, _EX.c.text_hash).where(
            _EX.c.project_id == self.project_id, _EX.c.text_hash.in_(hashes)
        )
        return [(row[0], row[1]) for row in self.session.execute(stmt)]

    def _ids(self, hashes: list[str]) -> dict[str, int]:
        return {digest: example_id for example_id, digest in self._existing(hashes)}

    def _example(self, row: _Row) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "text": row.text,
            "text_hash": row.text_hash,
            "source_row": row.source_row,
            "meta_json": row.meta,
            "reference_label": row.reference,
            "created_at": self.now,
        }

    def _annotator(self) -> int:
        if self.annotator_id is None:
            self.annotator_id = get_or_create_annotator(
                self.session, self.options.annotator, Role.SYSTEM
            )
        return self.annotator_id


def _sqlite_fields(rows: list[_Row]) -> str:
    """The batch's small fields as one JSON array for ``_SQLITE_INSERT_BATCH``.

    Metadata objects are nested as they are (``json_extract`` gives their JSON text back), so
    the batch is serialised in one call instead of one per row. They hold no NaN or infinity:
    the JSON readers reject those.
    """
    fields, start = [], 1
    for row in rows:
        fields.append((start, len(row.utf8), row.text_hash, row.source_row, row.meta,
                       row.reference))
        start += len(row.utf8)
    return json.dumps(fields, allow_nan=False)


def _rows(source: _Source, options: _Options, report: ImportReport) -> Iterator[_Row]:
    """The good rows of the source; bad ones go to the report (all are counted as read).

    Parsing and hashing run in a thread ahead of the caller, so they overlap with the
    database writes (SQLite releases the GIL while it works).
    """
    with closing(read_ahead(_parsed(source, options))) as parsed:
        for row in parsed:
            report.rows_read += 1
            if isinstance(row, RejectedRow):
                report.reject(row)
            else:
                yield row


def _parsed(source: _Source, options: _Options) -> Iterator[_Row | RejectedRow]:
    for item in _records(source, options):
        yield item if isinstance(item, RejectedRow) else _to_row(item, options)


def _run(
    session: Session, project: str, source: _Source, options: _Options, report: ImportReport,
    new_project_settings: dict[str, Any],
) -> None:
    """Read every record, write the good ones in batches, then raise if the import failed;
    a project created on the way gets ``new_project_settings``."""
    try:
        target = _Target(session, project, options, report, new_project_settings)
    except LabelwiseError as exc:
        raise ImportFailed(str(exc), report) from None
    # Closed on the way out, so the read-ahead thread stops before the caller closes the file.
    with closing(_rows(source, options, report)) as rows:
        _write_all(rows, target, source, options, report)
    _raise_if_failed(report, target, source, options)


def _write_all(
    rows: Iterator[_Row], target: _Target, source: _Source, options: _Options,
    report: ImportReport,
) -> None:
    batch: list[_Row] = []
    for row in rows:
        if options.max_rows is not None and report.rows_read > options.max_rows:
            raise ImportFailed(
                f"{source.name}: more than {options.max_rows:,} rows (the limit for one import); "
                "nothing was imported.", report)
        if not target.check_label(row) or _failing(report, target, options):
            continue  # keep reading, to report every problem; write nothing more
        batch.append(row)
        if len(batch) >= options.batch_size:
            target.write(batch)
            batch = []
    if batch and not _failing(report, target, options):
        target.write(batch)


def _failing(report: ImportReport, target: _Target, options: _Options) -> bool:
    return bool(target.unknown) or (report.rejected_total > 0 and not options.skip_bad_rows)


def _raise_if_failed(
    report: ImportReport, target: _Target, source: _Source, options: _Options
) -> None:
    if report.rows_read == 0:
        raise ImportFailed(f"{source.name}: {_why_no_rows(source, options)}.", report)
    problems: list[str] = []
    if target.unknown:
        problems.append(_unknown_labels_message(target.unknown))
    all_bad = report.rejected_total == report.rows_read
    if report.rejected_total and not options.skip_bad_rows:
        advice = ("Fix them, or skip bad rows to import the others (the form's 'Skip bad rows'; "
                  "CLI: --skip-bad-rows).")
        problems.append(_rejections_message(report, advice))
    elif report.rejected_total and all_bad:
        problems.append(_rejections_message(report, "None of the rows could be imported."))
    if problems:
        raise ImportFailed(f"{source.name}: " + "\n".join(problems), report)


def _why_no_rows(source: _Source, options: _Options) -> str:
    if source.bytes_read == 0:
        return "the file is empty; there are no rows to import"
    if options.fmt in ("csv", "tsv"):
        return "the file has a header but no rows; there are no rows to import"
    return "there are no rows to import (only blank lines)"


def _rejections_message(report: ImportReport, advice: str) -> str:
    rows = "row" if report.rejected_total == 1 else "rows"
    listed = "\n".join(f"  {line}" for line in report.rejected_lines(_MESSAGE_REJECTIONS))
    return f"{report.rejected_total} bad {rows}:\n{listed}\n{advice}"


def _unknown_labels_message(unknown: dict[str, int]) -> str:
    listed = ", ".join(f"{name!r} (first on line {line})" for name, line in sorted(unknown.items()))
    return (
        f"Labels not in the project's label set: {listed}. Add them to the label set, or "
        "let the import add them (the form's 'Add labels found in the file'; CLI: --add-labels)."
    )
