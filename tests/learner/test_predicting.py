"""A model version's predictions for a project's texts, against a real database and a tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from db.engine import write_unit
from db.errors import LabelwiseError, NotFound
from db.exporting import Extension, ExportFilters, export
from db.projects import add_labels, rename_label
from db.runs import claim_next_run, request_training
from learner.predicting import PREDICTION_COLUMNS, predict_to_file
from learner.rounds import run_round
from tests.learner.test_rounds_worker import make_project


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _model_proba(settings, project_id: int, texts: list[str]) -> tuple[list[str], np.ndarray]:
    from db.runs import latest_version
    from learner.model import TransformerClassifier

    artefact = latest_version(settings, project_id).artefact_path
    model = TransformerClassifier.load(artefact, device="cpu")
    return [str(c) for c in model.classes_], model.predict_proba(texts)


@pytest.mark.parametrize("chunk_size, batch_rows", [(7, 5), (5, 7), (1000, 3), (4, 4)])
def test_every_text_gets_its_own_prediction_whatever_the_chunk_and_batch_sizes(
        settings, trained, tmp_path, chunk_size, batch_rows):
    project_id, rows = trained
    out = tmp_path / "predictions.jsonl"
    seen = []
    report = predict_to_file(settings, "toy", out, "jsonl", chunk_size=chunk_size,
                             batch_rows=batch_rows, device="cpu",
                             progress=lambda done, total: seen.append((done, total)))
    written = _jsonl(out)
    assert report.rows == len(written) == len(rows)
    assert report.version == 1 and report.classes == ("fruit", "vehicle")
    assert report.warning is None
    assert report.scoring["device"] == "cpu"
    assert [r["id"] for r in written] == [r[0] for r in rows]  # every text, in id order
    assert list(written[0]) == ["id", "text", "label", "source_row", "n_annotations", "meta",
                                *PREDICTION_COLUMNS]
    labelled = {example_id: truth for example_id, _, truth in rows[:16]}
    classes, proba = _model_proba(settings, project_id, [r[1] for r in rows])
    for row, p in zip(written, proba):
        assert row["text"] == next(t for i, t, _ in rows if i == row["id"])
        assert row["label"] == labelled.get(row["id"])  # the human label, or null
        assert row["model_version"] == 1
        # the row's own probabilities: a shift between rows and chunks would mismatch here
        assert row["probabilities"] == pytest.approx(dict(zip(classes, p.tolist())), abs=1e-5)
        assert row["predicted"] == classes[int(np.argmax(p))]
        assert row["confidence"] == max(row["probabilities"].values())
    n = len(rows)  # the progress counts texts scored, batch by batch (16 on a CPU)
    assert seen[0] == (0, n) and seen[-1] == (n, n) and {t for _, t in seen} == {n}
    steps = np.diff([done for done, _ in seen])
    assert all(0 < step <= 16 for step in steps) and len(steps) >= n / 16


def test_unlabelled_only_scores_and_writes_only_the_texts_nobody_labelled(settings, trained,
                                                                           tmp_path):
    _, rows = trained
    out = tmp_path / "p.jsonl"
    seen = []
    report = predict_to_file(settings, "toy", out, "jsonl", unlabelled_only=True, chunk_size=8,
                             batch_rows=6, progress=lambda done, total: seen.append(total))
    written = _jsonl(out)
    assert report.rows == len(written) == len(rows) - 16
    assert [r["id"] for r in written] == [r[0] for r in rows[16:]]
    assert all(r["label"] is None and r["predicted"] in ("fruit", "vehicle") for r in written)
    assert set(seen) == {len(rows) - 16}


def test_csv_and_parquet_carry_the_same_predictions(settings, trained, tmp_path):
    import pyarrow.parquet as pq

    predict_to_file(settings, "toy", tmp_path / "p.jsonl", "jsonl")
    predict_to_file(settings, "toy", tmp_path / "p.csv", "csv")
    predict_to_file(settings, "toy", tmp_path / "p.parquet", "parquet")
    expected = _jsonl(tmp_path / "p.jsonl")
    import csv

    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        from_csv = list(csv.DictReader(f))
    from_parquet = pq.read_table(tmp_path / "p.parquet").to_pylist()
    for want, got_csv, got_pq in zip(expected, from_csv, from_parquet, strict=True):
        assert got_csv["predicted"] == got_pq["predicted"] == want["predicted"]
        assert float(got_csv["confidence"]) == got_pq["confidence"] == want["confidence"]
        assert json.loads(got_csv["probabilities"]) == json.loads(got_pq["probabilities"]) \
            == want["probabilities"]
        assert int(got_csv["model_version"]) == got_pq["model_version"] == 1


def test_a_run_holds_no_read_transaction_while_it_scores(settings, trained, tmp_path):
    """Hours on a CPU: a read transaction held meanwhile would keep SQLite's log growing."""
    from tests.db.test_export import _open_transactions

    held = []  # one chunk of every text: read whole before the first batch is scored
    predict_to_file(settings, "toy", tmp_path / "p.jsonl", "jsonl", chunk_size=1000,
                    batch_rows=3, progress=lambda done, total: done and held.append(
                        _open_transactions(settings)))
    assert held and set(held) == {0}


def test_a_run_that_fails_midway_leaves_no_file(settings, trained, tmp_path):
    out = tmp_path / "out" / "p.jsonl"
    out.parent.mkdir()

    def stop_after_the_first_batch(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_file(settings, "toy", out, "jsonl", chunk_size=5,
                        progress=stop_after_the_first_batch)
    assert list(out.parent.iterdir()) == []


def test_no_model_or_an_unknown_version_is_a_clear_error(settings, tiny_model_dir, tmp_path):
    make_project(settings, tiny_model_dir)
    with pytest.raises(NotFound, match="no model yet"):
        predict_to_file(settings, "toy", tmp_path / "p.jsonl", "jsonl")
    assert not (tmp_path / "p.jsonl").exists()


def test_an_older_version_on_request(settings, trained, tmp_path):
    project_id, _ = trained
    request_training(settings, project_id)
    run = claim_next_run(settings, "test")
    assert run_round(settings, run.id, project_id) == 2
    assert predict_to_file(settings, "toy", tmp_path / "a.jsonl", "jsonl").version == 2
    report = predict_to_file(settings, "toy", tmp_path / "b.jsonl", "jsonl", version=1)
    assert report.version == 1
    assert {r["model_version"] for r in _jsonl(tmp_path / "b.jsonl")} == {1}
    with pytest.raises(NotFound, match="no model version 3 .it has 1, 2"):
        predict_to_file(settings, "toy", tmp_path / "c.jsonl", "jsonl", version=3)


def test_the_cli_writes_predictions_and_warns_about_labels_changed_since_training(
        settings, trained, tmp_path, monkeypatch, capsys):
    project_id, rows = trained
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    out = tmp_path / "p.csv"
    assert main(["predict", "--project", "toy", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"Wrote {len(rows)} rows to {out} with model version 1 (cpu, fp32)" in err
    assert "scored" in err and "warning" not in err
    assert out.read_text(encoding="utf-8").splitlines()[0] == (
        "id,text,label,source_row,n_annotations,meta,predicted,confidence,probabilities,"
        "model_version")

    with write_unit(settings) as session:
        rename_label(session, project_id, "fruit", "food")
        add_labels(session, project_id, ["colour"])
    assert main(["predict", "--project", "toy", "--out", str(out), "--unlabelled"]) == 0
    err = capsys.readouterr().err
    assert f"Wrote {len(rows) - 16} rows" in err
    assert ("warning: Model v1 was trained on another label set: it predicts fruit, which the "
            "project no longer has (renamed or removed since); it never predicts food, colour "
            "(added since). Train a new round") in err

    assert main(["predict", "--project", "toy", "--out", "-", "--format", "jsonl",
                 "--unlabelled"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in streamed] == [r[0] for r in rows[16:]]

    assert main(["predict", "--project", "toy", "--out", str(out), "--version", "7"]) == 1
    assert "no model version 7" in capsys.readouterr().err
    assert main(["predict", "--project", "nope", "--out", str(out)]) == 1
    assert main(["predict", "--project", "toy", "--out", str(tmp_path / "p.xlsx")]) == 1
    assert "Unknown export format 'xlsx'" in capsys.readouterr().err


def test_an_extension_must_name_a_kind_per_column_and_not_clash(settings, tiny_model_dir,
                                                                tmp_path):
    make_project(settings, tiny_model_dir)
    with pytest.raises(LabelwiseError, match="one kind per added column"):
        Extension(("a", "b"), ("int",), lambda batches: batches)
    with pytest.raises(LabelwiseError, match="Unknown column kind"):
        Extension(("a",), ("decimal",), lambda batches: batches)
    clash = Extension(("label",), ("str",), lambda batches: batches)
    with pytest.raises(LabelwiseError, match="clash"):
        export(settings, "toy", tmp_path / "x.jsonl", "jsonl", extend=clash)
    lengths = Extension(("n_chars",), ("int",),
                        lambda batches: ([row + (len(row[1]),) for row in rows]
                                         for rows in batches))
    export(settings, "toy", tmp_path / "x.jsonl", "jsonl", ExportFilters(include_unlabelled=True),
           extend=lengths)
    assert all(r["n_chars"] == len(r["text"]) for r in _jsonl(tmp_path / "x.jsonl"))


# ---------------------------------------------------------------- the worker's prediction jobs


def _job(settings, project_id, job_id):
    from db.predictions import list_predictions

    return next(j for j in list_predictions(settings, project_id) if j.id == job_id)


def test_the_worker_writes_a_job_after_any_round_and_its_file_is_what_predict_writes(
        settings, trained, tmp_path):
    from db.predictions import request_predictions
    from db.runs import active_run
    from learner.worker import WorkerOptions, work_once

    project_id, rows = trained
    job = request_predictions(settings, project_id, 1, unlabelled_only=True, fmt="jsonl")
    request_training(settings, project_id)
    assert work_once(settings, WorkerOptions(), "w")  # the round first: it was asked for
    assert active_run(settings, project_id) is None and _job(settings, project_id, job.id).status == "queued"
    assert work_once(settings, WorkerOptions(), "w")
    done = _job(settings, project_id, job.id)
    assert done.status == "done" and done.n_rows == done.n_total == done.n_done == len(rows) - 16
    predict_to_file(settings, "toy", tmp_path / "same.jsonl", "jsonl", version=1,
                    unlabelled_only=True)
    assert Path(done.file_path).read_bytes() == (tmp_path / "same.jsonl").read_bytes()
    assert {r["model_version"] for r in _jsonl(Path(done.file_path))} == {1}  # not the new v2
    assert not work_once(settings, WorkerOptions(), "w")  # nothing left to do


def test_a_second_worker_trains_a_round_while_the_first_writes_predictions(settings, trained):
    """One worker takes a round only after the job it is writing; a second one takes it now
    (the Model page says so while a round waits)."""
    from db.predictions import claim_next_prediction, request_predictions
    from db.runs import list_runs
    from learner.worker import WorkerOptions, work_once

    project_id, _ = trained
    request_predictions(settings, project_id, 1)
    assert claim_next_prediction(settings, "first") is not None  # writing it, for hours maybe
    request_training(settings, project_id)
    assert work_once(settings, WorkerOptions(), "second")
    assert [run.status for run in list_runs(settings, project_id)] == ["done", "done"]


def test_a_job_cancelled_while_it_runs_stops_and_leaves_no_file(settings, trained, monkeypatch):
    from db.predictions import cancel_prediction, prediction_path, request_predictions
    from learner import worker
    from learner.worker import WorkerOptions, work_once

    project_id, _ = trained
    job = request_predictions(settings, project_id, 1)
    update = worker._Beat.update
    calls = []

    def cancelled_after_the_first_batch(beat, done, total):
        calls.append(done)
        if done:
            cancel_prediction(settings, job.id)
            assert beat.cancelled.wait(30)  # the heartbeat notices
        update(beat, done, total)

    monkeypatch.setattr(worker._Beat, "update", cancelled_after_the_first_batch)
    assert work_once(settings, WorkerOptions(heartbeat_s=0.02), "w")
    assert calls == [0, 16]  # stopped at the first batch's report
    assert _job(settings, project_id, job.id).status == "cancelled"
    folder = prediction_path(settings, _job(settings, project_id, job.id)).parent
    assert list(folder.iterdir()) == []


def test_a_job_whose_model_files_are_gone_fails_with_the_reason(settings, trained):
    import shutil

    from db.predictions import request_predictions
    from db.runs import latest_version
    from learner.worker import WorkerOptions, work_once

    project_id, _ = trained
    shutil.rmtree(latest_version(settings, project_id).artefact_path)
    job = request_predictions(settings, project_id, 1)
    assert work_once(settings, WorkerOptions(), "w")
    failed = _job(settings, project_id, job.id)
    assert failed.status == "failed" and failed.error.startswith("InvalidArtefact")
    assert failed.file_path is None


def test_a_job_whose_worker_died_is_written_by_another_worker(settings, trained):
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import PredictionJob, utcnow
    from db.predictions import (
        claim_next_prediction,
        prediction_path,
        report_prediction,
        request_predictions,
    )
    from learner.worker import WorkerOptions, work_once

    project_id, rows = trained
    job = request_predictions(settings, project_id, 1, unlabelled_only=True)
    claim_next_prediction(settings, "w:dead")
    with write_unit(settings) as session:
        session.execute(update(PredictionJob).where(PredictionJob.id == job.id)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=120)))
    assert work_once(settings, WorkerOptions(stale_after_s=60), "w:live")
    dead = _job(settings, project_id, job.id)
    assert dead.status == "failed" and dead.error.endswith("queued again as job 2.")
    again = _job(settings, project_id, 2)
    assert (again.status, again.retry_of, again.n_rows) == ("done", job.id, len(rows) - 16)
    assert Path(again.file_path) == prediction_path(settings, again) != prediction_path(settings, dead)
    assert not report_prediction(settings, job.id, 1, 2)  # the dead worker, if it wakes, stops
