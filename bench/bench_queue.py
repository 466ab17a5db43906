"""Benchmark the serving path: "claim next item" and "submit answer" as the pool grows.

Usage::

    .venv/bin/python -m bench.bench_queue --sizes 10000,100000,1000000 --out bench/out/queue.json
    .venv/bin/python -m bench.bench_queue --sizes 10000,100000,1000000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:55433/postgres \
        --out bench/out/queue-postgresql.json

For each size a fresh SQLite database gets that many news-length texts (the driver's
``executemany``, 20,000 texts a transaction) and a ranked queue of 500, then one annotator
claims and answers ``--answers`` texts: server-side latency of each call (the same functions the
Annotate page calls), p50/p95/p99 in ms. The last answers run past the queue, so the random
fallback is measured too.

With ``--database-url`` (an account on a PostgreSQL server that may create databases) each
size runs instead in a throwaway database ``bench_q_<size>_<random>`` on that server, dropped
afterwards. The texts go in with ``COPY``, then ``VACUUM (ANALYZE)`` (what autovacuum would do
soon after a big import anyway, done up front so that it does not run during the timing);
both count in ``build_s``. Each result row names its ``backend`` (and the PostgreSQL
``server_version``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bench.bench_export import stored_as
from bench.jsonfile import write_json
from db.annotations import annotate
from db.engine import dispose_all, get_engine, read_unit, throwaway_database, write_unit
from db.migrate import upgrade
from db.models import Example, utcnow
from db.projects import create_project
from db.queue import QueueEntry, claim_next, replace_queue
from db.settings import Settings

TEXT = "Shares in the company rose sharply after the announcement of record profits. " * 25


def _copy_examples(settings: Settings, project_id: int, size: int) -> None:
    """PostgreSQL: the texts in one ``COPY`` through the driver connection, then VACUUM ANALYZE."""
    engine = get_engine(settings)
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        now = utcnow()
        with driver.cursor() as cursor, cursor.copy(
            "COPY examples (project_id, text, text_hash, created_at) FROM STDIN"
        ) as copy:
            for i in range(size):
                copy.write_row((project_id, f"{i} {TEXT}", f"{i:032x}", now))
        driver.commit()
    finally:
        raw.close()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM (ANALYZE) examples")


def _insert_examples(settings: Settings, project_id: int, size: int, chunk: int = 20_000) -> None:
    """SQLite: the texts through the driver's ``executemany``, 20,000 a transaction.

    ``created_at`` goes through the column's own bind processor, so it is stored exactly as an
    ORM insert would store it, without the ORM's per-row work (the ORM's bulk insert took 33 s
    of a 1M-text build on a 2-core AMD EPYC).
    """
    engine = get_engine(settings)
    now = stored_as(engine, Example.__table__.c.created_at)(utcnow())
    sql = "INSERT INTO examples (project_id, text, text_hash, created_at) VALUES (?, ?, ?, ?)"
    with engine.connect() as conn:
        for start in range(0, size, chunk):
            with conn.begin():
                conn.exec_driver_sql(sql, [(project_id, f"{i} {TEXT}", f"{i:032x}", now)
                                           for i in range(start, min(size, start + chunk))])


def build(settings: Settings, size: int, queue: int) -> tuple[Settings, int]:
    upgrade(settings)
    with write_unit(settings) as session:
        project = create_project(session, "bench", labels=["a", "b", "c"])
    if get_engine(settings).dialect.name == "postgresql":
        _copy_examples(settings, project.id, size)
    else:
        _insert_examples(settings, project.id, size)
    with read_unit(settings) as session:
        ids = list(session.scalars(select(Example.id).order_by(Example.id).limit(queue * 3)))
    with write_unit(settings) as session:
        replace_queue(session, project.id, [QueueEntry(i, "uncertain") for i in ids[::3]])
    return settings, project.id


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(pick(0.95) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2)}


@contextmanager
def fresh_settings(size: int, database_url: str | None) -> Iterator[Settings]:
    """Settings for an empty database: a SQLite file, or a throwaway PostgreSQL database."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if database_url is None:
            yield Settings(database_url=f"sqlite:///{folder / 'q.db'}", data_dir=folder)
            return
        with throwaway_database(database_url, f"bench_q_{size}") as url:
            yield Settings(database_url=url, data_dir=folder)


def run(size: int, answers: int, queue: int, database_url: str | None = None) -> dict[str, object]:
    with fresh_settings(size, database_url) as fresh:
        t0 = time.perf_counter()
        settings, project_id = build(fresh, size, queue)
        built = time.perf_counter() - t0
        backend: dict[str, object] = {"backend": "sqlite"}
        if database_url is not None:
            with get_engine(settings).connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
            backend = {"backend": "postgresql", "server_version": version}
        claims, submits = [], []
        for i in range(answers):
            t = time.perf_counter()
            item = claim_next(settings, project_id, "bench")
            claims.append(time.perf_counter() - t)
            t = time.perf_counter()
            annotate(settings, project_id, item.example_id, "bench", "abc"[i % 3])
            submits.append(time.perf_counter() - t)
        dispose_all()
    return {"size": size, "answers": answers, "queue": queue, "build_s": round(built, 1),
            "claim": percentiles(claims[10:]), "submit": percentiles(submits[10:]), **backend}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--answers", type=int, default=700, help="past the queue of 500")
    parser.add_argument("--queue", type=int, default=500)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (an account that may create databases), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:55433/postgres; SQLite files without it")
    args = parser.parse_args(argv)
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url must be a PostgreSQL URL (SQLite is the default)")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = run(size, args.answers, args.queue, args.database_url)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
