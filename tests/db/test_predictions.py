"""Prediction jobs' rows: asked, joined, claimed, heartbeating, finished, cancelled, stale; old
files forgotten; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, update

from db.engine import write_unit
from db.errors import LabelwiseError, NotFound
from db.models import ModelVersion, PredictionJob, Role, RunStatus, utcnow
from db.predictions import (
    KEEP_FILES,
    cancel_prediction,
    claim_next_prediction,
    fail_prediction,
    fail_stale_predictions,
    finish_prediction,
    list_predictions,
    prediction_path,
    report_prediction,
    request_predictions,
    running_predictions,
)
from db.projects import create_project
from db.users import Forbidden, add_user


@pytest.fixture
def project_id(any_settings) -> int:
    """A project with model versions 1 and 2."""
    with write_unit(any_settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(insert(ModelVersion), [
            {"project_id": project.id, "version": v, "base_model": "m", "artefact_path": f"/m{v}",
             "n_labels": 10 * v, "metrics": {}} for v in (1, 2)])
    return project.id


def test_a_job_is_queued_joined_claimed_reported_and_finished(any_settings, project_id):
    job = request_predictions(any_settings, project_id, 2, unlabelled_only=True, fmt="JSONL")
    assert (job.status, job.model_version, job.unlabelled_only, job.fmt) == (
        "queued", 2, True, "jsonl")
    assert request_predictions(any_settings, project_id, 2, unlabelled_only=True,
                               fmt="jsonl").id == job.id  # the same request joins it
    other = request_predictions(any_settings, project_id, 2, fmt="jsonl")  # every text
    assert other.id != job.id

    claimed = claim_next_prediction(any_settings, "w:1")
    assert claimed.id == job.id and claimed.status == "running" and claimed.started_at
    assert claim_next_prediction(any_settings, "w:2").id == other.id  # any worker, any job
    assert claim_next_prediction(any_settings, "w:3") is None
    assert [j.id for j in running_predictions(any_settings)] == [job.id, other.id]
    # a running job is joined too, not asked for twice
    assert request_predictions(any_settings, project_id, 2, unlabelled_only=True,
                               fmt="jsonl").id == job.id

    assert report_prediction(any_settings, job.id, 1024, 4096)
    (latest, *_) = [j for j in list_predictions(any_settings, project_id) if j.id == job.id]
    assert (latest.n_done, latest.n_total, latest.progress) == (1024, 4096, 0.25)
    path = prediction_path(any_settings, latest)
    assert path.name == f"predictions-{job.id}-v2.jsonl"
    assert path.parent == any_settings.data_dir / "predictions" / f"project-{project_id}"

    assert finish_prediction(any_settings, job.id, 4000, str(path)) == (True, [])
    done = [j for j in list_predictions(any_settings, project_id) if j.id == job.id][0]
    assert (done.status, done.n_rows, done.file_path, done.progress) == (
        "done", 4000, str(path), 1.0)
    assert not report_prediction(any_settings, job.id, 4096, 4096)  # no longer running
    assert finish_prediction(any_settings, job.id, 1, "x") == (False, [])


def test_a_request_names_a_real_project_version_and_format(any_settings, project_id):
    with pytest.raises(NotFound, match="no model version 3"):
        request_predictions(any_settings, project_id, 3)
    with pytest.raises(NotFound):
        request_predictions(any_settings, project_id + 1, 1)
    with pytest.raises(LabelwiseError, match="Unknown format 'xlsx'"):
        request_predictions(any_settings, project_id, 1, fmt="xlsx")
    add_user(any_settings, "ann", "secret-pass")
    with pytest.raises(Forbidden):
        request_predictions(any_settings, project_id, 1, actor="ann")
    add_user(any_settings, "boss", "secret-pass", Role.ADMIN)
    assert request_predictions(any_settings, project_id, 1, actor="boss").requested_by == "boss"


def test_a_cancelled_job_stops_at_its_next_report_and_is_not_recorded_done(any_settings,
                                                                           project_id):
    queued = request_predictions(any_settings, project_id, 1)
    assert cancel_prediction(any_settings, queued.id)
    assert claim_next_prediction(any_settings, "w") is None  # a cancelled job is never run
    running = request_predictions(any_settings, project_id, 1)
    claim_next_prediction(any_settings, "w")
    assert cancel_prediction(any_settings, running.id)
    assert not report_prediction(any_settings, running.id, 10, 20)
    assert finish_prediction(any_settings, running.id, 20, "/f") == (False, [])
    assert not cancel_prediction(any_settings, running.id)
    statuses = {j.id: j.status for j in list_predictions(any_settings, project_id)}
    assert statuses == {queued.id: "cancelled", running.id: "cancelled"}


def _silence(settings, job_id: int) -> None:
    with write_unit(settings) as session:
        session.execute(update(PredictionJob).where(PredictionJob.id == job_id)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=120)))


def test_a_silent_job_is_failed_and_queued_again_once_first_in_line(any_settings, project_id):
    silent = request_predictions(any_settings, project_id, 2, unlabelled_only=True, fmt="jsonl")
    claim_next_prediction(any_settings, "w:dead")
    later = request_predictions(any_settings, project_id, 1)  # asked while it ran
    _silence(any_settings, silent.id)
    [(failed, retry)] = fail_stale_predictions(any_settings, 60)
    assert failed == silent.id and retry not in (None, silent.id, later.id)
    jobs = {j.id: j for j in list_predictions(any_settings, project_id)}
    assert jobs[silent.id].status == "failed"
    assert jobs[silent.id].error == ("The worker stopped answering (no heartbeat for 60 s); "
                                     f"queued again as job {retry}.")
    again = jobs[retry]
    assert (again.status, again.retry_of, again.model_version, again.unlabelled_only,
            again.fmt, again.n_done) == ("queued", silent.id, 2, True, "jsonl", 0)
    # the request joins the job queued in its place; that job goes before the later one
    assert request_predictions(any_settings, project_id, 2, unlabelled_only=True,
                               fmt="jsonl").id == retry
    assert claim_next_prediction(any_settings, "w:2").id == retry
    assert fail_stale_predictions(any_settings, 60) == []  # heartbeating

    _silence(any_settings, retry)  # it dies again: not a third time
    assert fail_stale_predictions(any_settings, 60) == [(retry, None)]
    error = {j.id: j for j in list_predictions(any_settings, project_id)}[retry].error
    assert f"it had already taken over job {silent.id}, so it is not queued a third" in error
    assert [j.id for j in list_predictions(any_settings, project_id)
            if j.status == "queued"] == [later.id]


def test_a_silent_job_asked_for_again_meanwhile_is_not_queued_twice(any_settings, project_id):
    silent = request_predictions(any_settings, project_id, 1)
    claim_next_prediction(any_settings, "w:dead")
    _silence(any_settings, silent.id)
    with write_unit(any_settings) as session:  # asked again while it was silent
        session.execute(update(PredictionJob).where(PredictionJob.id == silent.id)
                        .values(status=RunStatus.FAILED.value))
    same = request_predictions(any_settings, project_id, 1)
    with write_unit(any_settings) as session:
        session.execute(update(PredictionJob).where(PredictionJob.id == silent.id)
                        .values(status=RunStatus.RUNNING.value))
    assert fail_stale_predictions(any_settings, 60) == [(silent.id, None)]
    jobs = {j.id: j for j in list_predictions(any_settings, project_id)}
    assert jobs[silent.id].error.endswith(f"; job {same.id} asks for the same.")
    assert [j.id for j in jobs.values() if j.status == "queued"] == [same.id]


def test_a_failure_keeps_its_reason(any_settings, project_id):
    failing = request_predictions(any_settings, project_id, 1)
    claim_next_prediction(any_settings, "w")
    assert fail_prediction(any_settings, failing.id, "InvalidArtefact: gone")
    jobs = {j.id: j for j in list_predictions(any_settings, project_id)}
    assert (jobs[failing.id].status, jobs[failing.id].error) == ("failed", "InvalidArtefact: gone")


def test_each_project_keeps_the_files_of_its_latest_jobs(any_settings, project_id):
    paths = []
    for i in range(KEEP_FILES + 2):
        job = request_predictions(any_settings, project_id, 1, fmt=["csv", "jsonl"][i % 2],
                                  unlabelled_only=i % 4 < 2)
        claim_next_prediction(any_settings, "w")
        paths.append(f"/f{i}")
        recorded, old = finish_prediction(any_settings, job.id, 1, paths[-1])
        assert recorded
        assert old == ([] if i < KEEP_FILES else [paths[i - KEEP_FILES]])
    kept = [j.file_path for j in list_predictions(any_settings, project_id)]
    assert kept == paths[::-1][:KEEP_FILES] + [None, None]
    assert all(j.status == RunStatus.DONE.value for j in list_predictions(any_settings, project_id))
