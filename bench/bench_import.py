"""Benchmark the importer: a CSV of news-length synthetic texts into a fresh SQLite database.

Usage::

    .venv/bin/python -m bench.bench_import --rows 1000000 --out bench/out/import.json
    .venv/bin/python -m bench.bench_import --rows 20000          # a quick run

The CSV (columns ``id``, ``text``, ``section``; texts of about ``--chars`` characters of random
words, all distinct) is written to a temporary folder first, then ``import_file`` is timed on a
freshly migrated SQLite database in the same folder, once the CSV is on disk (``os.sync``:
otherwise the kernel writes 2 GB of it back during the import). ``import_s`` ends when
``import_file`` returns, the rows committed (durable in the write-ahead log);
``checkpointed_s`` when the checkpoint it leaves to a background thread (copying the pages
into the database file) has finished too. Peak RSS is the process's
``ru_maxrss``, read before and after the import (generation streams, so it stays small).
CPU seconds (user + system) are reported too: wall time on a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sqlite3
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.jsonfile import write_json
from db.engine import dispose_all, wait_for_checkpoints
from db.importing import import_file
from db.migrate import upgrade
from db.settings import Settings

SECTIONS = ("business", "entertainment", "politics", "sport", "tech")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _corpus(rng: random.Random, n_chars: int) -> str:
    """A string of ``n_chars`` random words with some punctuation and quotes (for CSV quoting)."""
    words = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 11))) for _ in range(50_000)
    ]
    marks = ["", "", "", "", "", "", ",", ",", ".", '"']
    # Words average 7.8 characters with their mark and space: n_chars // 5 words is plenty.
    count = n_chars // 5
    drawn = zip(rng.choices(words, k=count), rng.choices(marks, k=count))
    text = " ".join(word + mark for word, mark in drawn)
    assert len(text) >= n_chars
    return text[:n_chars]


def csv_rows(rows: int, chars: int, seed: int = 0) -> Iterator[tuple[int, str, str]]:
    """``rows`` rows ``(id, text, section)``, each text distinct, of about ``chars`` characters."""
    rng = random.Random(seed)
    corpus = _corpus(rng, 8_000_000)
    last = len(corpus) - chars - 1
    for i in range(rows):
        start = rng.randint(0, last)
        # A serial number makes every text distinct whatever the slice.
        yield i, f"Report {i}: {corpus[start:start + chars]}".strip(), SECTIONS[i % len(SECTIONS)]


def write_csv(path: Path, rows: int, chars: int, seed: int = 0) -> int:
    """Write :func:`csv_rows` as a CSV file, every text quoted; returns the file's size.

    Formatted here rather than by ``csv.writer``: the same rows, as ``csv.reader`` reads them
    back, written 3.6x as fast (100,000 rows in 2.9-3.1 s against 10.7-11.2 s side by side on a
    2-core Xeon, counting the corpus drawn in bulk rather than word by word).
    """
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,text,section\r\n")
        lines = []
        for i, text, section in csv_rows(rows, chars, seed):
            escaped = text.replace('"', '""')
            lines.append(f'{i},"{escaped}",{section}\r\n')
            if len(lines) == 1000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    return path.stat().st_size


def run(rows: int, chars: int, batch_size: int, workdir: Path) -> dict[str, object]:
    """Generate the CSV, import it, and return the figures."""
    csv_path = workdir / "news.csv"
    t0 = time.perf_counter()
    size = write_csv(csv_path, rows, chars)
    os.sync()  # the CSV's own write-back must not compete with the import's fsyncs
    generated_s = time.perf_counter() - t0
    settings = Settings(database_url=f"sqlite:///{workdir / 'labelwise.db'}", data_dir=workdir)
    upgrade(settings)
    rss_before = _peak_rss_mb()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    report = import_file(settings, csv_path, "bench", batch_size=batch_size)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    wait_for_checkpoints()
    checkpointed, all_cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    rss_after = _peak_rss_mb()
    dispose_all()
    assert report.accepted == rows, report
    return {
        "rows": rows,
        "chars_per_text": chars,
        "csv_bytes": size,
        "batch_size": batch_size,
        "generate_s": round(generated_s, 2),
        "import_s": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "import_cpu_s": round(cpu, 2),
        "checkpointed_s": round(checkpointed, 2),
        "checkpointed_rows_per_s": round(rows / checkpointed),
        "checkpointed_cpu_s": round(all_cpu, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "peak_rss_mb_before_import": round(rss_before, 1),
        "peak_rss_mb": round(rss_after, 1),
        "db_bytes": (workdir / "labelwise.db").stat().st_size,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="texts (default 1,000,000)")
    parser.add_argument("--chars", type=int, default=2000, help="characters per text")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--workdir", type=Path, help="folder for the CSV and the database "
                        "(default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(args.rows, args.chars, args.batch_size, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="lw-bench-") as tmp:
            figures = run(args.rows, args.chars, args.batch_size, Path(tmp))
    print(
        f"{figures['rows']:,} rows ({figures['csv_bytes'] / 1e6:,.0f} MB) in "
        f"{figures['import_s']} s: {figures['rows_per_s']:,} rows/s, "
        f"{figures['mb_per_s']} MB/s, {figures['import_cpu_s']} CPU s; "
        f"peak RSS {figures['peak_rss_mb']} MB"
    )
    if args.out:
        write_json(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
