"""Export throughput on SQLite: JSONL, CSV and Parquet from a project of N labelled examples.

Usage::

    .venv/bin/python -m bench.bench_export --rows 1000000 --out bench/out/export.json

Builds a migrated SQLite database in a temporary folder (or ``--workdir``) with ``--rows``
examples of about ``--text-chars`` characters, each labelled once and every tenth twice,
inserted with the driver's ``executemany``; then times `db.exporting.export` to each format.
The build and each export run in a fresh Python process started by this lean one, so that each
export's peak RSS (``ru_maxrss``, which on Linux starts from the RSS of the process that
started it) is that of the export alone. Prints rows/s (wall clock, and per CPU second, which
other load on the machine disturbs less) and peak RSS per format, and writes them as JSON to
``--out``. The target is 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.jsonfile import write_json

TARGET_ROWS_PER_S = 50_000
FORMATS = ("jsonl", "csv", "parquet")
PROJECT = "bench"
LABELS = ("positive", "negative", "neutral", "mixed")
ANNOTATORS = ("ann1", "ann2", "ann3", "ann4", "ann5")
WORDS = (
    "the film was a quiet triumph of craft and patience with a score that lingered long after "
    "credits rolled although some scenes dragged and the middle act lost its nerve I would still "
    "recommend it to anyone who enjoys slow character studies performances were uneven but the "
    "lead carried every frame cinematography lighting editing dialogue sound design pacing plot "
    "twist ending sequel studio budget critics audience festival premiere review rating stars"
).split()


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _text_pool(size: int, chars: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        words: list[str] = []
        length = 0
        while length < chars + 50:
            word = rng.choice(WORDS)
            words.append(word)
            length += len(word) + 1
        pool.append(" ".join(words))
    return pool


def stored_as(engine: Any, column: Any) -> Callable[[Any], Any]:
    """The column's own bind processor on ``engine``: a value as SQLAlchemy would hand it to the
    driver (the value itself where the type needs no processing), for driver-level inserts."""
    process = column.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    return process or (lambda value: value)


def build_database(
    workdir: Path, rows: int, text_chars: int, chunk: int = 20_000
) -> dict[str, Any]:
    """A migrated SQLite database under ``workdir`` with the bench project; returns facts."""
    from db.engine import dispose_all, get_engine, write_unit
    from db.migrate import upgrade
    from db.models import Example
    from db.projects import create_project, get_or_create_annotator, label_ids
    from db.settings import Settings

    settings = Settings(database_url=f"sqlite:///{workdir / 'bench.db'}", data_dir=workdir)
    started = time.perf_counter()
    upgrade(settings)
    with write_unit(settings) as session:
        project = create_project(session, PROJECT, LABELS)
        labels = list(label_ids(session, project.id).values())
        annotators = [get_or_create_annotator(session, name) for name in ANNOTATORS]

    pool = _text_pool(1024, text_chars)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    engine = get_engine(settings)
    # The columns' own bind processors store values exactly as a Core insert would, without
    # its per-row work (a Core insert built 100,000 rows in 1.5x the time on a 2-core Xeon).
    stamp, as_json = (stored_as(engine, column)
                      for column in (Example.__table__.c.created_at, Example.__table__.c.meta))
    example_sql = ("INSERT INTO examples (id, project_id, text, text_hash, source_row, meta, "
                   "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
    annotation_sql = ("INSERT INTO annotations (example_id, annotator_id, label_id, created_at, "
                      "updated_at, seconds_spent, queue_reason) VALUES (?, ?, ?, ?, ?, ?, ?)")
    with engine.connect() as conn:
        first_id = 1 + (
            conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM examples").scalar() or 0
        )
        conn.rollback()
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            example_rows = []
            annotation_rows = []
            for i in range(start, stop):
                prefix = f"Review {i}: "
                text = prefix + pool[i % len(pool)][: text_chars - len(prefix)].rstrip()
                when = base + timedelta(seconds=i)
                stored_when = stamp(when)
                example_rows.append((
                    first_id + i, project.id, text,
                    # The texts are already normalised: the hash of the text is text_hash.
                    hashlib.blake2b(text.encode(), digest_size=16).hexdigest(), i,
                    as_json({"source": "bench", "batch": i // 1000} if i % 10 == 0 else None),
                    stored_when,
                ))
                annotation_rows.append((
                    first_id + i, annotators[i % len(annotators)], labels[i % len(labels)],
                    stored_when, stored_when, 3.5, None,
                ))
                if i % 10 == 0:
                    annotation_rows.append((
                        first_id + i, annotators[(i + 1) % len(annotators)],
                        labels[(i + 1) % len(labels)], stored_when,
                        stamp(when + timedelta(minutes=1)), None, "audit",
                    ))
            with conn.begin():
                conn.exec_driver_sql(example_sql, example_rows)
                conn.exec_driver_sql(annotation_sql, annotation_rows)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    dispose_all()
    return {
        "database_url": settings.database_url,
        "build_seconds": round(time.perf_counter() - started, 2),
        "db_bytes": (workdir / "bench.db").stat().st_size,
    }


def _warm(path: Path) -> None:
    """Read the database file once so that every format starts from the page cache."""
    with path.open("rb") as fh:
        while fh.read(16 << 20):
            pass


def run_one(database_url: str, fmt: str, out: Path) -> dict[str, Any]:
    """Export the bench project once, in this process; returns timings."""
    from db.engine import dispose_all
    from db.exporting import export
    from db.settings import Settings

    settings = Settings(database_url=database_url, data_dir=out.parent)
    rss_before = _peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    n = export(settings, PROJECT, out, fmt)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    dispose_all()
    size = out.stat().st_size
    return {
        "rows": n,
        "seconds": round(seconds, 3),
        "rows_per_s": round(n / seconds) if seconds else None,
        "cpu_seconds": round(cpu_seconds, 3),
        "rows_per_cpu_s": round(n / cpu_seconds) if cpu_seconds else None,
        "mb_per_s": round(size / seconds / 1e6, 1) if seconds else None,
        "bytes": size,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_export_mb": round(rss_before, 1),
    }


def _child(*args: str) -> dict[str, Any]:
    """Run this module with ``args`` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_export", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--text-chars", type=int, default=2_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--out", type=Path, default=Path("bench/out/export.json"))
    parser.add_argument("--workdir", type=Path, help="keep the database and exports here")
    parser.add_argument("--reuse", action="store_true", help="reuse the database in --workdir")
    # Internal: the build, or one export, in a child process.
    parser.add_argument("--build-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.build_child:
        folder, n_rows, chars = args.build_child
        print(json.dumps(build_database(Path(folder), int(n_rows), int(chars))))
        return 0
    if args.child:
        url, fmt, out = args.child
        print(json.dumps(run_one(url, fmt, Path(out))))
        return 0

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labelwise-bench-export-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        db_file = workdir / "bench.db"
        if args.reuse and db_file.exists():
            con = sqlite3.connect(db_file)
            rows = con.execute("SELECT count(*) FROM examples").fetchone()[0]
            con.close()
            built: dict[str, Any] = {
                "database_url": f"sqlite:///{db_file}",
                "build_seconds": None,
                "db_bytes": db_file.stat().st_size,
            }
            print(f"Reusing {db_file} ({rows:,} examples).", flush=True)
        else:
            rows = args.rows
            print(
                f"Building a database of {rows:,} examples of ~{args.text_chars} characters…",
                flush=True,
            )
            built = _child("--build-child", str(workdir), str(rows), str(args.text_chars))
            print(
                f"  built in {built['build_seconds']} s, {built['db_bytes'] / 1e9:.2f} GB",
                flush=True,
            )

        results: dict[str, Any] = {}
        for fmt in formats:
            _warm(db_file)
            out = workdir / f"export.{fmt}"
            result = _child("--child", built["database_url"], fmt, str(out))
            results[fmt] = result
            verdict = "ok" if (result["rows_per_s"] or 0) >= TARGET_ROWS_PER_S else "BELOW TARGET"
            print(
                f"{fmt:8s} {result['rows']:>10,} rows in {result['seconds']:7.2f} s = "
                f"{result['rows_per_s']:>9,} rows/s ({result['rows_per_cpu_s']:,} per CPU s; "
                f"{result['mb_per_s']} MB/s, {result['bytes'] / 1e9:.2f} GB), "
                f"peak RSS {result['peak_rss_mb']} MiB  [{verdict}]",
                flush=True,
            )
            if not args.workdir:
                out.unlink(missing_ok=True)

        report = {
            "benchmark": "export",
            "rows": rows,
            "text_chars": args.text_chars,
            "target_rows_per_s": TARGET_ROWS_PER_S,
            "meets_target": all(
                (r["rows_per_s"] or 0) >= TARGET_ROWS_PER_S for r in results.values()
            ),
            **{k: v for k, v in built.items() if k != "database_url"},
            "results": results,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(args.out, report)
        print(f"Wrote {args.out}.")
        return 0 if report["meets_target"] else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
