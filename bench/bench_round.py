"""Benchmark one training round: 200 labels and a 20,000-text pool, as the worker runs it.

Usage::

    .venv/bin/python -m bench.bench_round --out bench/out/round.json
    .venv/bin/python -m bench.bench_round --quick          # 50 labels, 1,000-text pool

A fresh SQLite database gets the BBC News demo texts (repeated with a counter appended until
there are enough, so each is distinct): ``--labels`` of them imported with their label, the
others unlabelled. Then one round runs through the real path (``request_training``,
``claim_next_run``, ``run_round``: snapshot, fine-tune the default model, evaluate on the audit
slice, score and embed the whole pool, write version, queue and embeddings) and its timings are
read back from the run's row. ``write_s`` is the database write unit; saving the model files
is the rest of ``total_s``.

Where torch sees a GPU, two rounds run one after the other in the same process, as in the
long-running worker: the figures are the second's. On a CPU one round (``first``) runs unless
``--rounds 2`` asks for both: it keeps ``make bench`` within 30 minutes on a 2-core machine.

Before the rounds, the process warms up as the worker does when it starts
(``learner.warmup``: imports, the device, one training step of the model), timed apart as
``warmup_s``, so the first round is the one an annotator waits for. ``--no-warm-up`` leaves
that start-up inside the first round, as in a fresh process that trains at once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.jsonfile import emit
from db.demo import iter_corpus
from db.engine import dispose_all, write_unit
from db.importing import import_file
from db.migrate import upgrade
from db.projects import update_project
from db.runs import claim_next_run, get_run, request_training
from db.settings import Settings


def write_pool(path: Path, n_labels: int, pool: int) -> None:
    rows = list(iter_corpus())  # grouped by label: shuffle
    random.Random(0).shuffle(rows)
    with path.open("w", encoding="utf-8") as f:
        for i, row in zip(range(n_labels + pool), itertools.cycle(rows)):
            record = {"text": f"{row['text']} [{i}]"}
            if i < n_labels:
                record["label"] = row["label"]
            f.write(json.dumps(record) + "\n")


def run(n_labels: int, pool: int, model: str, n_rounds: int | None = None,
        warm_up: bool = True) -> dict[str, object]:
    started = time.perf_counter()
    from learner.device import resolve_device

    device = resolve_device(None)
    n_rounds = n_rounds or (2 if device.startswith("cuda") else 1)
    warmed = {}
    if warm_up:
        from learner.warmup import warm_up as warm

        found = warm([model])
        if found.problem:
            raise RuntimeError(f"The warm-up failed: {found.problem}")
        warmed = {"warmup_s": round(time.perf_counter() - started, 2)}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(database_url=f"sqlite:///{folder / 'round.db'}", data_dir=folder)
        upgrade(settings)
        write_pool(folder / "pool.jsonl", n_labels, pool)
        report = import_file(settings, folder / "pool.jsonl", "bench", label_field="label", add_labels=True)
        with write_unit(settings) as session:
            project_id = update_project(session, "bench", settings={"model_path": model}).id
        first, *later = [_one_round(settings, project_id) for _ in range(n_rounds)]
        dispose_all()
    return {
        "device": device, "labels": n_labels, "pool": pool,
        "imported": report.accepted, "labelled": report.labelled, **warmed,
        **(later[-1] if later else {}), "first": first,
    }


def _one_round(settings: Settings, project_id: int) -> dict[str, object]:
    from learner.rounds import run_round

    requested = request_training(settings, project_id)
    claim_next_run(settings, "bench")
    t = time.perf_counter()
    version = run_round(settings, requested.id, project_id)
    total = time.perf_counter() - t
    done = get_run(settings, requested.id)
    metrics = done.metrics or {}
    return {"version": version, "timings": dict(done.timings or {}), "total_s": round(total, 2),
            "scoring": metrics.get("scoring"), "trained_in": metrics.get("training_precision"),
            "training_bf16_speedup": metrics.get("training_bf16_speedup")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 labels and a 1,000-text pool")
    parser.add_argument("--labels", type=int)
    parser.add_argument("--pool", type=int)
    parser.add_argument("--model", default=Settings.from_env().model_path,
                        help="model spec (default: LABELWISE_MODEL or the builtin MiniLM)")
    parser.add_argument("--rounds", type=int, choices=(1, 2),
                        help="rounds in one process (default: 2 on a GPU, 1 on a CPU)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="no warm-up first: the first round pays the process's start-up")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n_labels = args.labels or (50 if args.quick else 200)
    pool = args.pool or (1_000 if args.quick else 20_000)
    result = run(n_labels, pool, args.model, args.rounds, args.warm_up)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
