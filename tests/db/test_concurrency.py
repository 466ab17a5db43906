"""Eight annotator processes label 2,000 texts at once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from db.engine import read_unit, write_unit
from db.models import Annotation, Annotator, Example, QueueItem
from db.projects import create_project
from db.queue import QueueEntry, assign_overlap, replace_queue
from db.settings import Settings
from db.texts import text_hash

pytestmark = pytest.mark.slow
N_TEXTS, N_PROCS = 2000, 8


def annotator_process(url: str, data_dir: str, project_id: int, name: str, out) -> None:
    """Claim and answer until nothing is left; a refused write is retried, as a person would."""
    from db.annotations import annotate
    from db.errors import StorageError
    from db.queue import claim_next

    settings = Settings(database_url=url, data_dir=Path(data_dir), sqlite_busy_timeout_ms=30_000)

    def retried(action, *args):  # type: ignore[no-untyped-def]
        for attempt in range(5):
            try:
                return action(*args)
            except StorageError:
                if attempt == 4:
                    raise

    done = []
    try:
        while (item := retried(claim_next, settings, project_id, name)) is not None:
            retried(annotate, settings, project_id, item.example_id, name, "a")
            done.append(item.example_id)
    except BaseException as exc:  # report, so the test fails with the reason, not a timeout
        out.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    out.put((name, done))


def test_many_annotators_never_collide(any_settings):
    with write_unit(any_settings) as session:
        project = create_project(session, "crowd", labels=["a", "b"])
        session.execute(insert(Example), [
            {"project_id": project.id, "text": f"t{i}", "text_hash": text_hash(f"t{i}")}
            for i in range(N_TEXTS)])
    with read_unit(any_settings) as session:
        ids = list(session.scalars(select(Example.id).order_by(Example.id)))
    entries = assign_overlap([QueueEntry(i, "cold_start") for i in ids], 1, 0.1,
                             np.random.default_rng(0))
    with write_unit(any_settings) as session:
        replace_queue(session, project.id, entries)
    needed = {e.example_id: e.needed for e in entries}
    assert 100 < sum(n == 2 for n in needed.values()) < 300

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=annotator_process,
                         args=(any_settings.database_url, str(any_settings.data_dir), project.id,
                               f"ann{i}", out)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    reported = dict(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    failures = {name: done for name, done in reported.items() if isinstance(done, str)}
    assert not failures
    assert all(p.exitcode == 0 for p in procs)

    with read_unit(any_settings) as session:
        rows = session.execute(select(Annotation.example_id, Annotator.name)
                               .join(Annotator, Annotator.id == Annotation.annotator_id)).all()
        assert session.scalar(select(QueueItem.id).limit(1)) is not None
    per_item = Counter(example_id for example_id, _ in rows)
    assert per_item == Counter(needed)  # every text labelled exactly as often as needed
    for name, done in reported.items():  # what each process submitted is there, once
        assert len(done) == len(set(done))
        assert sorted(e for e, who in rows if who == name) == sorted(done)
    assert sum(len(d) for d in reported.values()) == len(rows)
    assert sum(bool(d) for d in reported.values()) == N_PROCS  # the work was shared
