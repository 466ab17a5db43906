"""The label write path: upserts, validation, recent labels, concurrent submits."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select

from db.annotations import PREVIEW_CHARS, annotate, recent_annotations
from db.engine import read_unit, write_unit
from db.errors import LabelwiseError, NotFound
from db.models import Annotation, Annotator, Example, Project, utcnow
from db.projects import create_project
from db.settings import Settings
from db.texts import text_hash


def make_project(
    settings: Settings, name: str, labels: Sequence[str], texts: Sequence[str]
) -> list[int]:
    """A project with ``labels`` and one example per text; returns the example ids in order."""
    with write_unit(settings) as session:
        info = create_project(session, name, labels)
        examples = [
            Example(project_id=info.id, text=t, text_hash=text_hash(t), source_row=i)
            for i, t in enumerate(texts)
        ]
        session.add_all(examples)
        session.flush()
        return [e.id for e in examples]


def count_annotations(settings: Settings) -> int:
    with read_unit(settings) as session:
        return int(session.scalar(select(func.count()).select_from(Annotation)) or 0)


def test_upsert_keeps_one_row_and_created_at(any_settings: Settings) -> None:
    (ex,) = make_project(any_settings, "sentiment", ["pos", "neg"], ["good film"])
    first = annotate(
        any_settings, "sentiment", ex, "ann", "pos", seconds_spent=2.5, queue_reason="random"
    )
    second = annotate(any_settings, "sentiment", ex, "ann", "neg")

    assert count_annotations(any_settings) == 1
    assert second.label == "neg"
    assert second.created_at == first.created_at
    assert second.updated_at >= second.created_at
    assert second.updated_at >= first.updated_at
    assert second.created_at.tzinfo is not None
    # Not given the second time: kept.
    assert second.seconds_spent == 2.5
    assert second.queue_reason == "random"
    with read_unit(any_settings) as session:
        row = session.scalars(select(Annotation)).one()
        assert row.seconds_spent == 2.5
    third = annotate(any_settings, "sentiment", ex, "ann", " pos ", seconds_spent=1.0)
    assert (third.label, third.seconds_spent) == ("pos", 1.0)
    assert count_annotations(any_settings) == 1


def test_project_given_by_id_and_annotators_are_separate(settings: Settings) -> None:
    (ex,) = make_project(settings, "p", ["a", "b"], ["x"])
    with read_unit(settings) as session:
        project_id = session.scalar(select(Example.project_id).where(Example.id == ex))
    assert project_id is not None
    annotate(settings, project_id, ex, "alice", "a")
    annotate(settings, "p", ex, "bob", "b")
    assert count_annotations(settings) == 2
    with read_unit(settings) as session:
        assert sorted(session.scalars(select(Annotator.name))) == ["alice", "bob"]


def test_unknown_label_raises_and_writes_nothing(settings: Settings) -> None:
    (ex,) = make_project(settings, "p", ["spam", "ham"], ["x"])
    with pytest.raises(LabelwiseError) as caught:
        annotate(settings, "p", ex, "newcomer", "eggs")
    message = str(caught.value)
    assert "'eggs'" in message and "'spam'" in message and "'ham'" in message
    assert not isinstance(caught.value, NotFound)
    assert count_annotations(settings) == 0
    with read_unit(settings) as session:  # the annotator was not created either
        assert session.scalar(select(func.count()).select_from(Annotator)) == 0


def test_an_answer_by_label_id_keeps_its_meaning_through_a_rename(any_settings: Settings) -> None:
    """A button drawn before a rename carries the label's id: the answer lands on that label
    under its new name; a label another project owns, or one removed, is refused."""
    from db.projects import get_project, remove_label, rename_label

    ex, other = make_project(any_settings, "p", ["tech", "sport"], ["chips", "goal"])
    make_project(any_settings, "q", ["elsewhere"], ["x"])
    with write_unit(any_settings) as session:
        project = get_project(session, "p")
        foreign = get_project(session, "q").label_ids[0]
        rename_label(session, project.id, "tech", "technology")
    assert project.labels == ("tech", "sport")
    answer = annotate(any_settings, "p", ex, "ann", project.label_ids[0])
    assert answer.label == "technology"
    with read_unit(any_settings) as session:
        assert get_project(session, "p").labels == ("technology", "sport")
    with pytest.raises(LabelwiseError, match="removed from the project meanwhile"):
        annotate(any_settings, "p", other, "ann", foreign)
    with write_unit(any_settings) as session:
        remove_label(session, project.id, "sport")
    with pytest.raises(LabelwiseError, match="labels now: 'technology'"):
        annotate(any_settings, "p", other, "ann", project.label_ids[1])
    assert count_annotations(any_settings) == 1


def test_an_answer_for_a_text_answered_since_it_was_shown_is_refused(any_settings: Settings) -> None:
    from db.annotations import AlreadyAnswered

    ex, other = make_project(any_settings, "p", ["a", "b"], ["one", "two"])
    shown = utcnow()
    annotate(any_settings, "p", ex, "ann", "a")  # in another tab, after it was shown here
    with pytest.raises(AlreadyAnswered):
        annotate(any_settings, "p", ex, "ann", "b", answered_after=shown)
    assert [a.label for a in recent_annotations(any_settings, "p", "ann")] == ["a"]
    assert annotate(any_settings, "p", ex, "bob", "b", answered_after=shown).label == "b"
    assert annotate(any_settings, "p", other, "ann", "b", answered_after=shown).label == "b"
    assert annotate(any_settings, "p", ex, "ann", "b", answered_after=utcnow()).label == "b"


def test_example_of_another_project_raises_and_writes_nothing(settings: Settings) -> None:
    (ex_a,) = make_project(settings, "a", ["x"], ["text a"])
    make_project(settings, "b", ["x"], ["text b"])
    with pytest.raises(NotFound):
        annotate(settings, "b", ex_a, "ann", "x")
    with pytest.raises(NotFound):
        annotate(settings, "a", ex_a + 1000, "ann", "x")
    with pytest.raises(NotFound):
        annotate(settings, "nope", ex_a, "ann", "x")
    with pytest.raises(NotFound):
        annotate(settings, 999, ex_a, "ann", "x")
    assert count_annotations(settings) == 0


def test_bad_annotator_or_time_raise(settings: Settings) -> None:
    (ex,) = make_project(settings, "p", ["x"], ["t"])
    with pytest.raises(LabelwiseError):
        annotate(settings, "p", ex, "  ", "x")
    with pytest.raises(LabelwiseError):
        annotate(settings, "p", ex, "ann", "x", seconds_spent=-1)
    assert count_annotations(settings) == 0


def test_recent_annotations_most_recent_first_with_preview(settings: Settings) -> None:
    long_text = "word " * 200
    ids = make_project(settings, "p", ["x", "y"], ["first  text\nhere", long_text, "third"])
    make_project(settings, "other", ["x"], ["elsewhere"])
    annotate(settings, "p", ids[0], "ann", "x")
    annotate(settings, "p", ids[1], "ann", "y", seconds_spent=3)
    annotate(settings, "p", ids[2], "ann", "x")
    annotate(settings, "p", ids[0], "ann", "y")  # relabelled: now the most recent
    annotate(settings, "p", ids[2], "someone else", "y")

    recent = recent_annotations(settings, "p", "ann")
    assert [(a.example_id, a.label) for a in recent] == [
        (ids[0], "y"),
        (ids[2], "x"),
        (ids[1], "y"),
    ]
    assert recent[0].text_preview == "first text here"
    preview = recent[2].text_preview
    assert preview is not None and len(preview) <= PREVIEW_CHARS and preview.endswith("…")
    assert recent[2].seconds_spent == 3
    assert [a.example_id for a in recent_annotations(settings, "p", "ann", limit=1)] == [ids[0]]
    assert recent_annotations(settings, "p", "nobody") == []
    assert recent_annotations(settings, "other", "ann") == []
    with pytest.raises(NotFound):
        recent_annotations(settings, "missing", "ann")


def test_concurrent_double_submits_make_one_row(any_settings: Settings) -> None:
    """4 threads submit for the same example as the same, new, annotator."""
    settings = any_settings
    (ex,) = make_project(settings, "p", ["a", "b"], ["contested"])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                annotate(settings, "p", ex, "same person", "a" if i % 2 else "b")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count_annotations(settings) == 1
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(Annotator)) == 1


def test_a_projects_label_counts_leave_other_projects_out(any_settings: Settings) -> None:
    from datetime import timedelta

    from db.annotations import labels_since
    from db.projects import project_stats

    ours = make_project(any_settings, "ours", ["pos", "neg"], ["a", "b", "c"])
    theirs = make_project(any_settings, "theirs", ["pos", "neg"], ["d", "e"])
    annotate(any_settings, "ours", ours[0], "ann", "pos")
    annotate(any_settings, "ours", ours[0], "bob", "neg")
    annotate(any_settings, "ours", ours[1], "ann", "neg")
    for example_id in theirs:
        annotate(any_settings, "theirs", example_id, "ann", "pos")
    with read_unit(any_settings) as session:
        stats = project_stats(session, "ours")
        project_id = session.scalar(select(Project.id).where(Project.name == "ours"))
        assert (stats.examples, stats.labelled, stats.annotations) == (3, 2, 3)
        assert stats.label_counts == {"pos": 1, "neg": 2}
        assert labels_since(session, project_id, None) == 3
        assert labels_since(session, project_id, utcnow() - timedelta(hours=1)) == 3
        assert labels_since(session, project_id, utcnow() + timedelta(seconds=1)) == 0


def test_a_projects_labels_are_counted_from_the_annotations_not_from_its_texts(
        settings: Settings) -> None:
    """The plans walk the annotations and look each text up by its key: the cost grows with
    the labels, not with the pool (the join walked every text of the project)."""
    from sqlalchemy import event

    from db.annotations import labels_since
    from db.projects import project_stats

    make_project(settings, "ours", ["pos", "neg"], ["a"])
    counts = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "annotations" in statement and "count(" in statement:
            counts.append((statement, parameters))

    with read_unit(settings) as session:
        event.listen(session.get_bind(), "before_cursor_execute", seen)
        try:
            labels_since(session, 1, None)
            project_stats(session, "ours")
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", seen)
        assert len(counts) == 4  # labels_since; labelled, annotations and per label
        for statement, parameters in counts[:3]:  # the per-label count starts from the labels
            plan = " | ".join(row[-1] for row in session.connection().exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "SCAN annotations" in plan, plan
            assert "SEARCH examples USING INTEGER PRIMARY KEY" in plan, plan
