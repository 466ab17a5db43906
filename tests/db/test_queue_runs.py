"""The queue (what is served next) and training runs (their life in the database)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select, update

from db.annotations import annotate
from db.engine import get_engine, read_unit, write_unit
from db.models import Example, QueueItem, RunStatus, TrainingRun, utcnow
from db.projects import create_project, get_or_create_annotator, label_ids
from db.queue import (
    QueueEntry,
    claim_next,
    interleave_audit,
    queue_remaining,
    queue_status,
    release,
    replace_queue,
    split_audit,
    undo_answer,
)
from db.runs import (
    active_run,
    cancel_run,
    claim_next_run,
    fail_stale_runs,
    get_run,
    heartbeat,
    request_training,
)
from db.texts import text_hash


def _project(settings, n: int = 10) -> tuple[int, list[int]]:
    with write_unit(settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(
            insert(Example),
            [{"project_id": project.id, "text": f"text {i}", "text_hash": text_hash(f"text {i}")}
             for i in range(n)],
        )
    with read_unit(settings) as session:
        ids = sorted(session.scalars(Example.__table__.select().with_only_columns(Example.id)))
    return project.id, ids


def _label(settings, project_id: int, example_id: int, label: str = "a") -> None:
    from db.models import Annotation

    with write_unit(settings) as session:
        annotator = get_or_create_annotator(session, "ann")
        session.add(Annotation(example_id=example_id, annotator_id=annotator,
                               label_id=label_ids(session, project_id)[label]))


def test_interleave_audit_spreads_audit_items():
    ranked = [QueueEntry(i, "uncertain") for i in range(18)]
    audit = [QueueEntry(100 + i, "audit") for i in range(2)]
    out = interleave_audit(ranked, audit, 0.1)
    assert [e.example_id for e in out if e.reason == "audit"] == [100, 101]
    assert [i for i, e in enumerate(out) if e.reason == "audit"] == [9, 19]
    assert len(out) == 20
    assert interleave_audit(ranked, [], 0.1) == ranked
    # more audit items than slots: they follow at the end, none is lost
    assert len(interleave_audit(ranked[:2], audit, 0.5)) == 4


def test_claims_follow_rank_skip_labelled_and_excluded(any_settings):
    project_id, ids = _project(any_settings)
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [
            QueueEntry(ids[3], "uncertain", 0.9, "a", 0.55),
            QueueEntry(ids[1], "audit"),
            QueueEntry(ids[7], "uncertain", 0.5, "b", 0.7),
        ])
    item = claim_next(any_settings, project_id, "ann")
    assert (item.example_id, item.reason, item.predicted_label) == (ids[3], "uncertain", "a")
    assert item.text == "text 3"
    assert claim_next(any_settings, project_id, "ann").example_id == ids[3]  # my lease returns
    assert claim_next(any_settings, project_id, "bob").example_id == ids[1]  # leased: not twice
    _label(any_settings, project_id, ids[3])
    assert claim_next(any_settings, project_id, "ann", exclude=[ids[1]]).example_id == ids[7]
    release(any_settings, ids[1], "bob")  # bob skips it: free for others at once
    assert claim_next(any_settings, project_id, "cy").example_id == ids[1]
    with read_unit(any_settings) as session:
        assert queue_remaining(session, project_id) == 2


def test_several_excluded_texts_are_passed_over_own_lease_included(any_settings):
    project_id, ids = _project(any_settings, n=4)
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [QueueEntry(i, "uncertain") for i in ids])
    assert claim_next(any_settings, project_id, "ann").example_id == ids[0]
    # the own lease on ids[0] is excluded too, then the queue's next two
    assert claim_next(any_settings, project_id, "ann",
                      exclude=[ids[0], ids[1], ids[2]]).example_id == ids[3]
    newest_excluded = claim_next(any_settings, project_id, "ann", exclude=[ids[3], ids[1]])
    assert newest_excluded.example_id == ids[0]  # the older own lease
    # ids[0] and ids[3] are held by ann
    assert claim_next(any_settings, project_id, "bob", exclude=[ids[1], ids[2]]) is None


def test_overlap_serves_a_text_to_as_many_annotators_as_needed(settings):
    project_id, ids = _project(settings, n=2)
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[0], "uncertain", needed=2)])
    assert claim_next(settings, project_id, "ann").example_id == ids[0]
    assert claim_next(settings, project_id, "bob").example_id == ids[0]  # second of two
    assert claim_next(settings, project_id, "cy").example_id == ids[1]  # random fallback
    assert claim_next(settings, project_id, "dee") is None  # everything held or done


def test_undo_takes_the_answer_back_and_the_text_with_it(any_settings):
    """An undone text goes from answered to leased in one unit: with an overlap of one, nobody
    else is served it while it is back on the undoer's screen, and their own claim returns it."""
    project_id, ids = _project(any_settings, n=2)
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[0], "uncertain"),
                                            QueueEntry(ids[1], "uncertain")])
    first = claim_next(any_settings, project_id, "ann")
    annotate(any_settings, project_id, first.example_id, "ann", "b")
    annotate(any_settings, project_id, ids[1], "other", "a")
    item = undo_answer(any_settings, project_id, first.example_id, "ann")
    assert (item.example_id, item.text) == (first.example_id, first.text)
    assert claim_next(any_settings, project_id, "bob") is None  # ids[1] has its one label
    assert claim_next(any_settings, project_id, "ann").example_id == first.example_id
    with read_unit(any_settings) as session:
        from db.models import Annotation

        answers = session.execute(select(Annotation.example_id)).scalars().all()
    assert answers == [ids[1]]  # the other annotator's answer is untouched
    assert undo_answer(any_settings, project_id, 10**9, "ann") is None


def test_disabling_an_account_gives_its_texts_back_at_once(settings):
    from db.users import add_user, set_active

    project_id, ids = _project(settings, n=1)
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[0], "uncertain")])
    add_user(settings, "ann", "ann-password")
    assert claim_next(settings, project_id, "ann").example_id == ids[0]
    assert claim_next(settings, project_id, "bob") is None  # ann holds the only text
    set_active(settings, "ann", False)
    assert claim_next(settings, project_id, "bob").example_id == ids[0]


def test_a_new_overlap_applies_to_the_queue_at_once(any_settings):
    """Raised on the Settings page while a queue is served: the next claims already give each
    text to the new number of annotators (an agreement item keeps one more than the overlap)."""
    from db.projects import update_project

    project_id, ids = _project(any_settings, n=3)
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[0], "uncertain"),
                                            QueueEntry(ids[1], "uncertain", needed=2),
                                            QueueEntry(ids[2], "uncertain")])
        update_project(session, "p", settings={"overlap": 3})

    def needed():
        with read_unit(any_settings) as session:
            return session.execute(select(QueueItem.needed).order_by(QueueItem.rank)).scalars().all()

    assert needed() == [3, 3, 3]
    first = claim_next(any_settings, project_id, "ann")
    assert claim_next(any_settings, project_id, "bob").example_id == first.example_id
    assert claim_next(any_settings, project_id, "cat").example_id == first.example_id
    with write_unit(any_settings) as session:
        update_project(session, "p", settings={"overlap": 1})
    assert needed() == [1, 1, 1]
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[0], "uncertain"),
                                            QueueEntry(ids[1], "uncertain", needed=2)])
        update_project(session, "p", settings={"overlap": 2, "audit_share": 0.1})
        update_project(session, "p", settings={"audit_share": 0.2})  # overlap unchanged
    assert needed() == [2, 2]


def test_expired_lease_frees_the_text(settings):
    project_id, ids = _project(settings, n=1)
    assert claim_next(settings, project_id, "ann", lease_s=-1).example_id == ids[0]
    assert claim_next(settings, project_id, "bob").example_id == ids[0]


def test_empty_queue_serves_a_random_unlabelled_text(settings):
    project_id, ids = _project(settings, n=3)
    _label(settings, project_id, ids[0])
    _label(settings, project_id, ids[2])
    for _ in range(3):
        item = claim_next(settings, project_id, "ann")
        assert (item.example_id, item.reason) == (ids[1], "random")
    _label(settings, project_id, ids[1])
    assert claim_next(settings, project_id, "ann") is None


def test_replace_queue_swaps_everything(settings):
    project_id, ids = _project(settings)
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(i, "cold_start") for i in ids[:5]])
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(ids[9], "uncertain")])
    with read_unit(settings) as session:
        assert queue_remaining(session, project_id) == 1


def test_requests_coalesce(any_settings):
    project_id, _ = _project(any_settings)
    first = request_training(any_settings, project_id)
    assert request_training(any_settings, project_id).id == first.id
    claimed = claim_next_run(any_settings, "w1")
    assert claimed.id == first.id and claimed.status == "running"
    follow_up = request_training(any_settings, project_id)  # one queued behind the running one
    assert follow_up.id != first.id and follow_up.status == "queued"
    assert request_training(any_settings, project_id).id == follow_up.id
    # one run at a time per project: the follow-up waits for the running one
    assert claim_next_run(any_settings, "w2") is None
    assert active_run(any_settings, project_id).id == first.id


def test_claims_are_atomic_across_threads(settings):
    project_id, _ = _project(settings)
    request_training(settings, project_id)
    got = []
    barrier = threading.Barrier(6)

    def claim(i: int) -> None:
        barrier.wait()
        run = claim_next_run(settings, f"w{i}")
        if run is not None:
            got.append(run.id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1


def test_stale_runs_fail_and_heartbeats_notice_cancel(settings):
    project_id, _ = _project(settings)
    run = request_training(settings, project_id)
    claim_next_run(settings, "w")
    assert heartbeat(settings, run.id, "train", 0.5)
    assert get_run(settings, run.id).stage == "train"
    assert fail_stale_runs(settings, 60) == []
    with write_unit(settings) as session:
        session.execute(update(TrainingRun).values(heartbeat_at=utcnow() - timedelta(seconds=120)))
    assert fail_stale_runs(settings, 60) == [run.id]
    failed = get_run(settings, run.id)
    assert failed.status == RunStatus.FAILED.value and "heartbeat" in failed.error
    assert not heartbeat(settings, run.id)
    takeover = active_run(settings, project_id)  # another worker will take the round over
    assert (takeover.status, takeover.trigger) == ("queued", "takeover")

    second = request_training(settings, project_id)
    claim_next_run(settings, "w")
    assert cancel_run(settings, second.id)
    assert not heartbeat(settings, second.id)
    assert get_run(settings, second.id).status == "cancelled"


def test_the_last_finished_rounds_timings_and_the_time_a_running_one_has_left(any_settings):
    from dataclasses import replace

    from db.runs import finish_run, last_round_timings, seconds_left

    project_id, _ = _project(any_settings)
    assert last_round_timings(any_settings, project_id) is None
    for status, timings in ((RunStatus.DONE, {"train_s": 1.0}), (RunStatus.DONE, {"train_s": 2.0}),
                            (RunStatus.FAILED, None)):
        run = request_training(any_settings, project_id)
        claim_next_run(any_settings, "w")
        with write_unit(any_settings) as session:
            finish_run(session, run.id, status, timings=timings, error="x" if timings is None
                       else None)
    assert last_round_timings(any_settings, project_id) == {"train_s": 2.0}  # a failure: skipped

    run = request_training(any_settings, project_id)
    claimed = claim_next_run(any_settings, "w")
    later = claimed.started_at + timedelta(seconds=120)
    assert seconds_left(any_settings, replace(claimed, progress=0.4), later) == pytest.approx(180.0)
    assert seconds_left(any_settings, replace(claimed, progress=1.0), later) == 0.0
    assert seconds_left(any_settings, replace(claimed, progress=0.04), later) is None  # mostly noise yet
    assert seconds_left(any_settings, replace(claimed, progress=0.4, status="queued"), later) is None


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_interleave_keeps_every_entry(share):
    ranked = [QueueEntry(i, "uncertain") for i in range(7)]
    audit = [QueueEntry(100 + i, "audit") for i in range(3)]
    out = interleave_audit(ranked, audit if share else [], share)
    assert sorted(e.example_id for e in out) == sorted(
        e.example_id for e in ranked + (audit if share else []))


class _Statements:
    """Counts the statements and transactions an engine runs inside the block."""

    def __init__(self, settings) -> None:
        self.engine = get_engine(settings)
        self.statements: list[str] = []
        self.transactions = 0

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        self.statements.append(statement)

    def _begin(self, _conn) -> None:
        self.transactions += 1

    def __enter__(self) -> "_Statements":
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "begin", self._begin)


def test_claim_and_answer_are_one_short_unit_each(any_settings):
    """Serving latency is round trips: a claim (lease included) and an answer each take one
    transaction of a handful of statements, on both backends."""
    project_id, ids = _project(any_settings)
    with write_unit(any_settings) as session:
        replace_queue(session, project_id, [QueueEntry(i, "uncertain") for i in ids[:5]])
    first = claim_next(any_settings, project_id, "ann")  # creates the annotator
    annotate(any_settings, project_id, first.example_id, "ann", "a")
    with _Statements(any_settings) as claim:
        item = claim_next(any_settings, project_id, "ann")
    with _Statements(any_settings) as answer:
        annotate(any_settings, project_id, item.example_id, "ann", "b")
    assert item.example_id == ids[1] and item.reason == "uncertain"
    # SQLite: BEGIN IMMEDIATE, annotator, next text, lease upsert, the text.
    # PostgreSQL: the advisory lock instead of BEGIN IMMEDIATE.
    assert claim.transactions == 1 and len(claim.statements) <= 5, claim.statements
    # SQLite: BEGIN IMMEDIATE, the ids in one lookup, the upsert, the lease's end.
    assert answer.transactions == 1 and len(answer.statements) <= 4, answer.statements


def test_queue_status_tells_what_ranked_the_queue_when_and_labels_since(any_settings):
    from db.models import ModelVersion

    settings = any_settings
    project_id, ids = _project(settings)
    assert queue_status(settings, project_id) is None
    before = utcnow()
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(i, "cold_start") for i in ids[:4]])
    cold = queue_status(settings, project_id)
    assert cold.model_version is None and cold.remaining == 4 and cold.labels_since == 0
    assert before <= cold.ranked_at <= utcnow()
    with write_unit(settings) as session:
        version = ModelVersion(project_id=project_id, version=3, base_model="m", artefact_path="x")
        session.add(version)
        session.flush()
        replace_queue(session, project_id, [QueueEntry(i, "uncertain") for i in ids[:5]],
                      version.id)
    _label(settings, project_id, ids[0])
    _label(settings, project_id, ids[9])  # outside the queue: still a label since
    ranked = queue_status(settings, project_id)
    assert (ranked.model_version, ranked.remaining, ranked.labels_since) == (3, 4, 2)
    assert ranked.ranked_at >= cold.ranked_at


def test_a_new_queue_keeps_the_texts_still_short_of_their_annotators(any_settings):
    """A ranking holds only texts nobody has labelled: a text of an overlap of two that one
    annotator has labelled stays queued, first, until its second annotator has labelled it."""
    settings = any_settings
    project_id, ids = _project(settings)
    with write_unit(settings) as session:
        replace_queue(session, project_id, [QueueEntry(i, "uncertain", needed=2) for i in ids[:4]])
    for _ in range(3):  # ann labels the first three
        item = claim_next(settings, project_id, "ann")
        annotate(settings, project_id, item.example_id, "ann", "a")
    assert claim_next(settings, project_id, "bob").example_id == ids[0]
    annotate(settings, project_id, ids[0], "bob", "b")  # ids[0] is done: two labels
    with write_unit(settings) as session:  # a round's ranking of the unlabelled texts
        replace_queue(session, project_id, [QueueEntry(i, "uncertain", needed=2) for i in ids[3:6]])
    with read_unit(settings) as session:
        queued = session.execute(select(QueueItem.example_id, QueueItem.needed)
                                 .order_by(QueueItem.rank)).all()
    assert [tuple(row) for row in queued] == [(ids[1], 2), (ids[2], 2), (ids[3], 2), (ids[4], 2),
                                             (ids[5], 2)]
    served = [claim_next(settings, project_id, "bob", exclude=[ids[1]]).example_id]
    assert served == [ids[2]]  # the second label of a started text comes before new texts
    with write_unit(settings) as session:
        replace_queue(session, project_id, [])
    with read_unit(settings) as session:  # still short: they stay
        assert session.scalars(select(QueueItem.example_id).order_by(QueueItem.rank)).all() == [
            ids[1], ids[2]]
    for i in ids[1:3]:
        annotate(settings, project_id, i, "bob", "a")
    with write_unit(settings) as session:
        replace_queue(session, project_id, [])
    with read_unit(settings) as session:  # every text has its labels: nothing stays
        assert session.scalars(select(QueueItem.example_id)).all() == []


@pytest.mark.parametrize("pool, ranked, audit_outside", [
    (1000, 500, 50), (225, 225, 0), (230, 225, 5), (1, 1, 0)])
def test_the_audit_slice_is_a_tenth_of_the_queue_whatever_the_pool(
        pool: int, ranked: int, audit_outside: int) -> None:
    """Audit texts come from outside the ranking; where the pool holds too few of those (a
    pool no larger than the queue), the rest come out of the ranking itself."""
    import numpy as np

    chosen = list(np.random.default_rng(1).permutation(pool)[:ranked])
    kept, audit = split_audit(pool, chosen, 0.1, np.random.default_rng(0))
    wanted = min(-(-ranked // 10), ranked - 1 + audit_outside)
    assert len(audit) == len(set(audit)) == wanted
    assert sum(i not in chosen for i in audit) == audit_outside
    assert kept == [i for i in chosen if i not in audit]  # the ranking's order, less the audit
    assert kept  # never empty
    assert split_audit(pool, chosen, 0.0, np.random.default_rng(0)) == (chosen, [])
