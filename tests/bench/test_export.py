from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select

from bench.bench_export import build_database
from db.engine import dispose_all, get_engine
from db.models import Annotation, Example
from db.settings import Settings


def test_the_built_database_stores_values_as_a_core_insert_does(tmp_path):
    facts = build_database(tmp_path, 30, 200, chunk=7)
    settings = Settings(database_url=facts["database_url"], data_dir=tmp_path)
    engine = get_engine(settings)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        with engine.begin() as conn:
            project_id = conn.execute(select(Example.project_id).limit(1)).scalar_one()
            for i, meta in ((1, None), (10, {"source": "bench", "batch": 0})):
                conn.execute(insert(Example).values(
                    id=1000 + i, project_id=project_id, text=f"copy {i}", text_hash=f"h{i}",
                    source_row=i, meta=meta, created_at=base + timedelta(seconds=i)))
            stored = {row[0]: row[1:] for row in conn.exec_driver_sql(
                "SELECT id, meta, created_at FROM examples WHERE id IN (2, 11, 1001, 1010)")}
            assert stored[2] == stored[1001] and stored[11] == stored[1010]
            examples = conn.execute(select(Example).order_by(Example.id)).all()
            annotations = conn.execute(select(Annotation)).all()
    finally:
        dispose_all()
    assert [e.created_at for e in examples[:30]] == [
        base + timedelta(seconds=i) for i in range(30)]
    assert [e.meta for e in examples[:12]] == [{"source": "bench", "batch": 0}] + [None] * 9 + [
        {"source": "bench", "batch": 0}, None]
    assert len(annotations) == 33
    audits = sorted(a.updated_at - a.created_at for a in annotations)[-3:]
    assert audits == [timedelta(minutes=1)] * 3
