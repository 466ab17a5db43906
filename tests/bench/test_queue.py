"""The serving benchmark's set-up and run, on a small SQLite pool."""

from __future__ import annotations

from sqlalchemy import func, insert, select

from bench import bench_queue
from db.engine import dispose_all, get_engine, write_unit
from db.models import Example, QueueItem


def test_the_pool_is_stored_as_an_orm_insert_stores_it():
    with bench_queue.fresh_settings(45, None) as fresh:
        settings, project_id = bench_queue.build(fresh, 45, queue=5)
        try:
            with write_unit(settings) as session:
                session.execute(insert(Example), [
                    {"project_id": project_id, "text": "orm", "text_hash": "orm"}])
            with get_engine(settings).connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT text, text_hash, typeof(created_at), length(created_at), project_id "
                    "FROM examples ORDER BY id").all()
                queued = conn.execute(select(QueueItem.example_id).order_by(QueueItem.rank))
                queued = list(queued.scalars())
                created = conn.execute(select(func.min(Example.created_at))).scalar_one()
        finally:
            dispose_all()
    pool, orm = rows[:-1], rows[-1]
    assert len(pool) == 45
    assert [r[0] for r in pool] == [f"{i} {bench_queue.TEXT}" for i in range(45)]
    assert [r[1] for r in pool] == [f"{i:032x}" for i in range(45)]
    # created_at in the same stored form as the ORM's (text of the same length on SQLite)
    assert {r[2:] for r in pool} == {orm[2:]}
    assert created.year >= 2026
    assert queued == [1, 4, 7, 10, 13]


def test_a_run_claims_and_answers_past_the_queue():
    result = bench_queue.run(60, answers=25, queue=5)
    assert result["size"] == 60 and result["queue"] == 5 and result["backend"] == "sqlite"
    for call in ("claim", "submit"):
        figures = result[call]
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
