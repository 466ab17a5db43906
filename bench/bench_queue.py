"""Benchmark the serving path: "claim next item" and "submit answer" as the pool grows.

Usage::

    .venv/bin/python -m bench.bench_queue --sizes 10000,100000,1000000 --out bench/out/queue.json

For each size a fresh SQLite database gets that many news-length texts (bulk insert) and a
ranked queue of 500, then one annotator claims and answers ``--answers`` texts: server-side
latency of each call (the same functions the Annotate page calls), p50/p95/p99 in ms. The last
answers run past the queue, so the random fallback is measured too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select

from db.annotations import annotate
from db.engine import dispose_all, read_unit, write_unit
from db.migrate import upgrade
from db.models import Example
from db.projects import create_project
from db.queue import QueueEntry, claim_next, replace_queue
from db.settings import Settings

TEXT = "Shares in the company rose sharply after the announcement of record profits. " * 25


def build(folder: Path, size: int, queue: int) -> tuple[Settings, int]:
    settings = Settings(database_url=f"sqlite:///{folder / 'q.db'}", data_dir=folder)
    upgrade(settings)
    with write_unit(settings) as session:
        project = create_project(session, "bench", labels=["a", "b", "c"])
        for start in range(0, size, 20_000):
            session.execute(insert(Example), [
                {"project_id": project.id, "text": f"{i} {TEXT}", "text_hash": f"{i:032x}"}
                for i in range(start, min(size, start + 20_000))])
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


def run(size: int, answers: int, queue: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        settings, project_id = build(Path(tmp), size, queue)
        built = time.perf_counter() - t0
        claims, submits = [], []
        for i in range(answers):
            t = time.perf_counter()
            item = claim_next(settings, project_id, "bench")
            claims.append(time.perf_counter() - t)
            t = time.perf_counter()
            annotate(settings, project_id, item.example_id, "bench", "abc"[i % 3])
            submits.append(time.perf_counter() - t)
        dispose_all()
    return {"size": size, "answers": answers, "build_s": round(built, 1),
            "claim": percentiles(claims[10:]), "submit": percentiles(submits[10:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--answers", type=int, default=700, help="past the queue of 500")
    parser.add_argument("--queue", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = run(size, args.answers, args.queue)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
