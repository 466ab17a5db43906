"""Rounds and the worker against a real database and a tiny real BERT."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from db.annotations import annotate
from db.engine import read_unit, write_unit
from db.models import Annotation, Example, ModelVersion, QueueItem, RunStatus
from db.projects import ProjectConfig, create_project, update_project
from db.queue import claim_next, labels_since_queue, queue_remaining
from db.runs import claim_next_run, fail_stale_runs, get_run, list_runs, request_training
from db.texts import text_hash
from learner.device import resolve_precision
from learner.rounds import NotEnoughLabels, RoundCancelled, run_round
from learner.worker import WorkerOptions, build_cold_start_queue, work_once
from tests.tiny_bert import synthetic_texts

ROOT = Path(__file__).resolve().parents[2]


def make_project(settings, model_dir: Path, n_per_class: int = 30, **config) -> tuple[int, list]:
    """A fruit/vehicle project on the tiny model; returns its id and (id, text, truth) rows."""
    texts, labels = synthetic_texts(n_per_class, seed=3)
    with write_unit(settings) as session:
        project = create_project(session, "toy", labels=["fruit", "vehicle"])
        update_project(session, "toy", settings={"model_path": str(model_dir), "max_length": 32,
                                                 "queue_size": 20, "cold_start_k": 3, **config})
        seen = set()
        rows = []
        for text, label in zip(texts, labels):
            if text_hash(text) not in seen:
                seen.add(text_hash(text))
                rows.append({"project_id": project.id, "text": text, "text_hash": text_hash(text),
                             "reference_label": label})
        session.execute(insert(Example), rows)
    with read_unit(settings) as session:
        found = session.execute(
            select(Example.id, Example.text, Example.reference_label).order_by(Example.id)).all()
    return project.id, found


def label(settings, project_id, rows, n: int, reason: str | None = None, who: str = "alice"):
    for example_id, _, truth in rows[:n]:
        annotate(settings, project_id, example_id, who, truth, queue_reason=reason)


def test_round_trains_evaluates_on_audit_and_replaces_queue(settings, tiny_model_dir):
    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows[:16], 16)
    label(settings, project_id, rows[16:22], 6, reason="audit")  # held out, never trained on
    run = request_training(settings, project_id)
    claim_next_run(settings, "test")
    stages = []
    version = run_round(settings, run.id, project_id, progress=lambda s, f: stages.append((s, f)))
    assert version == 1
    done = get_run(settings, run.id)
    assert done.status == "done" and done.model_version == 1 and done.progress == 1.0
    assert done.metrics["n_eval"] == 6 and done.metrics["n_train"] == 16
    assert done.metrics["n_pool"] == len(rows) - 22  # every unlabelled text, under the cap
    assert 0.0 <= done.metrics["accuracy"] <= 1.0
    assert set(done.metrics["per_class_f1"]) == {"fruit", "vehicle"}
    # a pool this small is scored in fp32, undecided: a check needs a larger call
    assert done.metrics["scoring"] == {"device": "cpu", "precision": "fp32", "checks": {},
                                       "failures": {}}
    # what fit trained in: bf16 autocast on a CPU with AMX, else fp32
    assert done.metrics["training_precision"] == resolve_precision("auto", "cpu")
    assert "training_bf16_speedup" not in done.metrics  # too small a model to time a step
    assert set(done.timings) >= {"train_s", "evaluate_s", "score_s", "write_s", "snapshot_s"}
    assert [s for s, _ in stages][:2] == ["snapshot", "train"] and stages[-1][0] == "write"
    with read_unit(settings) as session:
        queue = session.execute(select(QueueItem.example_id, QueueItem.reason,
                                       QueueItem.predicted_label)).all()
        artefact = session.scalar(select(ModelVersion.artefact_path))
    labelled = {r[0] for r in rows[:22]}
    assert queue and not ({q.example_id for q in queue} & labelled)
    assert {q.reason for q in queue} == {"uncertain", "audit"}
    assert all(q.predicted_label in ("fruit", "vehicle") for q in queue)
    assert (Path(artefact) / "model.safetensors").exists()
    served = claim_next(settings, project_id, "bob")
    assert served.model_version == 1 and served.reason in ("uncertain", "audit")

    from learner.model import TransformerClassifier

    reloaded = TransformerClassifier.load(artefact)
    assert list(reloaded.classes_) == ["fruit", "vehicle"]


def test_scoring_the_pool_moves_the_progress_and_a_cancel_stops_it_within_a_batch(
        settings, tiny_model_dir):
    from db.runs import finish_run

    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows[:16], 16)
    earlier = request_training(settings, project_id)
    claim_next_run(settings, "test")
    with write_unit(settings) as session:  # the last round: a quarter training, the rest scoring
        finish_run(session, earlier.id, RunStatus.DONE,
                   timings={"snapshot_s": 0.0, "train_s": 10.0, "evaluate_s": 0.0,
                            "score_s": 30.0, "write_s": 0.0})
    run = request_training(settings, project_id)
    claim_next_run(settings, "test")
    stages: list[tuple[str, float]] = []

    def cancel_while_scoring(stage: str, fraction: float) -> None:
        stages.append((stage, fraction))
        if stage == "score" and fraction > 0.3:
            raise RoundCancelled("The run was cancelled.")

    with pytest.raises(RoundCancelled):
        run_round(settings, run.id, project_id, progress=cancel_while_scoring)
    training = [f for s, f in stages if s == "train"]
    assert training[0] == 0.0 and training[-1] == 0.25 and training == sorted(training)
    scoring = [f for s, f in stages if s == "score"]
    # 44 pool texts in batches of 16, over the last round's share of scoring: 0.25 as it
    # starts, then after each batch, until the cancel after the first: the other two batches
    # and the write never ran
    assert scoring == [0.25, 0.25 + 0.75 * 16 / 44]
    assert stages[-1] == ("score", scoring[-1])
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0
        assert session.scalar(select(func.count()).select_from(QueueItem)) == 0


def test_a_cancel_from_the_page_stops_the_worker_while_it_scores_the_pool(
        settings, tiny_model_dir, monkeypatch):
    import learner.worker as worker
    from db.runs import cancel_run
    from learner.rounds import run_round as real_round

    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows[:16], 16)
    request_training(settings, project_id)
    run = claim_next_run(settings, "test")
    seen: list[str] = []

    def round_cancelled_while_scoring(settings, run_id, project_id, progress):
        def watched(stage: str, fraction: float) -> None:
            seen.append(stage)
            if stage == "score" and fraction > 0.75:  # the first batch is scored
                cancel_run(settings, run_id)  # as the Model page's Cancel button does
                for _ in range(200):  # the heartbeat (every 0.05 s here) notices it
                    progress(stage, fraction)  # raises RoundCancelled once it has
                    time.sleep(0.05)
            progress(stage, fraction)
        return real_round(settings, run_id, project_id, progress=watched)

    monkeypatch.setattr(worker, "run_round", round_cancelled_while_scoring)
    worker.execute(settings, run, WorkerOptions(heartbeat_s=0.05))
    assert seen[-1] == "score" and "write" not in seen
    assert get_run(settings, run.id).status == "cancelled"
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0


def test_round_refuses_to_train_before_cold_start_ends(settings, tiny_model_dir):
    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows, 3)
    run = request_training(settings, project_id)
    claim_next_run(settings, "test")
    with pytest.raises(NotEnoughLabels, match="at least 3"):
        run_round(settings, run.id, project_id)


def test_worker_cold_start_then_automatic_round(settings, tiny_model_dir):
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=5)
    options = WorkerOptions(poll_s=0.01, heartbeat_s=0.2)
    assert work_once(settings, options, "w") is False  # no labels: builds a cold-start queue
    with read_unit(settings) as session:
        reasons = set(session.scalars(select(QueueItem.reason)))
        assert queue_remaining(session, project_id) == 22  # 20 + 10% audit
    assert reasons == {"cold_start", "audit"}
    label(settings, project_id, rows, 12)
    assert work_once(settings, options, "w") is True  # cold start over: trains by itself
    runs = list_runs(settings, project_id)
    assert [(r.status, r.trigger) for r in runs] == [("done", "auto")]
    assert work_once(settings, options, "w") is False  # nothing new: no second round
    label(settings, project_id, rows[12:], 5)
    assert work_once(settings, options, "w") is True
    assert [r.status for r in list_runs(settings, project_id)] == ["done", "done"]


def test_the_automatic_round_rule_says_what_it_waits_for(settings, tiny_model_dir):
    from db.projects import ProjectConfig, remove_label
    from learner.worker import automatic_round

    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=5)

    def state(**config):
        with read_unit(settings) as session:
            return automatic_round(session, project_id, ProjectConfig(
                **{"retrain_every": 5, "cold_start_k": 3, **config}))

    first = state()
    assert (first.has_model, first.new_labels, first.due, first.ready) == (False, 0, False, False)
    label(settings, project_id, rows, 4)  # rows alternate fruit, vehicle: 2 of each
    assert state().due and state().missing == {"fruit": 2, "vehicle": 2}
    assert state(cold_start_k=2).ready
    with write_unit(settings) as session:  # a project left with one label cannot train
        remove_label(session, project_id, "vehicle", force=True)
    one = state(cold_start_k=1)
    assert one.due and one.one_label and not one.ready


@pytest.mark.parametrize("stop", ["cancel", "fail"])
def test_an_automatic_round_stopped_waits_for_new_labels_before_the_next(settings,
                                                                         tiny_model_dir, stop):
    """A lead cancels the first automatic round (or it fails): the worker does not queue it
    again at its next pass, but once ``retrain_every`` labels came in after it."""
    from db.runs import cancel_run, fail_run
    from learner.worker import automatic_round, queue_automatic_rounds

    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=5)
    label(settings, project_id, rows, 12)
    (first,) = queue_automatic_rounds(settings)  # cold start over
    if stop == "cancel":
        assert cancel_run(settings, first)
    else:
        claim_next_run(settings, "w")
        assert fail_run(settings, first, "out of memory")
    assert queue_automatic_rounds(settings) == []  # not again within seconds
    label(settings, project_id, rows[12:], 4)
    assert queue_automatic_rounds(settings) == []
    with read_unit(settings) as session:
        state = automatic_round(session, project_id, ProjectConfig(retrain_every=5))
    assert (state.held_by.id, state.since_held, state.due) == (first, 4, False)
    label(settings, project_id, rows[16:], 1)
    (second,) = queue_automatic_rounds(settings)
    assert second != first


def test_failed_round_is_recorded_with_its_reason(settings, tiny_model_dir):
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0)
    with write_unit(settings) as session:
        update_project(session, "toy", settings={"model_path": str(tiny_model_dir / "missing")})
    label(settings, project_id, rows, 12)
    run = request_training(settings, project_id)
    work_once(settings, WorkerOptions(poll_s=0.01), "w")
    failed = get_run(settings, run.id)
    assert failed.status == "failed" and "missing" in failed.error


@pytest.mark.slow
def test_killed_worker_leaves_labels_queue_and_model_intact(settings, tiny_model_dir):
    """kill -9 the worker mid-round: the previous model and queue serve on, labels untouched."""
    # The fast loop off: it would re-rank the queue (in whole write units) while the round trains.
    project_id, rows = make_project(settings, tiny_model_dir, n_per_class=400, retrain_every=0,
                                    fast_loop_every=0)
    label(settings, project_id, rows, 20)
    first = request_training(settings, project_id)
    work_once(settings, WorkerOptions(poll_s=0.01), "w")
    assert get_run(settings, first.id).status == "done"
    with read_unit(settings) as session:
        queue_before = session.execute(
            select(QueueItem.example_id, QueueItem.rank, QueueItem.model_version_id)
            .order_by(QueueItem.rank)).all()
        versions_before = session.execute(select(ModelVersion.id, ModelVersion.artefact_path)).all()
    # Many labels make the next round's training last long enough to be caught mid-way.
    with write_unit(settings) as session:
        annotator = session.scalar(select(Annotation.annotator_id).limit(1))
        label_ids = dict(session.execute(
            select(Example.reference_label, func.min(Annotation.label_id))
            .join(Annotation, Annotation.example_id == Example.id)
            .group_by(Example.reference_label)).all())
        session.execute(insert(Annotation), [
            {"example_id": r[0], "annotator_id": annotator, "label_id": label_ids[r[2]]}
            for r in rows[20:700]])
    with read_unit(settings) as session:
        n_annotations = session.scalar(select(func.count()).select_from(Annotation))
    second = request_training(settings, project_id)
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "app", "worker", "--heartbeat", "0.1", "--poll", "0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run = get_run(settings, second.id)
            if run.status == "running" and run.stage == "train":
                break
            assert worker.poll() is None, worker.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the worker never reached the training stage")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert get_run(settings, second.id).status == "running"  # nobody has noticed yet
    assert fail_stale_runs(settings, max_silence_s=0) == [second.id]
    failed = get_run(settings, second.id)
    assert failed.status == "failed" and "heartbeat" in failed.error
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(Annotation)) == n_annotations
        assert session.execute(
            select(QueueItem.example_id, QueueItem.rank, QueueItem.model_version_id)
            .order_by(QueueItem.rank)).all() == queue_before
        assert session.execute(select(ModelVersion.id, ModelVersion.artefact_path)).all() == versions_before
    assert claim_next(settings, project_id, "bob").model_version == 1
    partial = [p for p in (settings.models_dir / f"project-{project_id}").iterdir()
               if p.name != Path(versions_before[0][1]).name]
    # at most an unfinished ".partial" folder, never a second finished artefact
    assert all(p.name.endswith(".partial") for p in partial)


def test_cold_start_queue_is_diverse_and_has_audit_share(settings, tiny_model_dir):
    project_id, _ = make_project(settings, tiny_model_dir)
    from db.projects import ProjectConfig

    n = build_cold_start_queue(settings, project_id, ProjectConfig(queue_size=20, audit_share=0.1))
    with read_unit(settings) as session:
        reasons = list(session.scalars(select(QueueItem.reason).order_by(QueueItem.rank)))
    assert n == len(reasons) == 22 and reasons.count("audit") == 2


def test_round_keeps_embeddings_and_the_fast_loop_reranks_between_rounds(settings,
                                                                         tiny_model_dir):
    from db.models import Embedding
    from db.projects import ProjectConfig
    from learner.fastloop import fast_rerank

    # one annotator per text: an answered text leaves the queue at the next re-rank
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0, fast_loop_every=3,
                                    agreement_share=0.0)
    label(settings, project_id, rows, 12)
    request_training(settings, project_id)
    assert work_once(settings, WorkerOptions(poll_s=0.01), "w") is True
    with read_unit(settings) as session:
        stored = session.scalar(select(func.count()).select_from(Embedding))
        n_examples = session.scalar(select(func.count()).select_from(Example))
        first_queue = session.execute(select(QueueItem.example_id).order_by(QueueItem.rank)).scalars().all()
        assert labels_since_queue(session, project_id) == 0
    assert stored == n_examples  # the scored pool and the 12 training texts
    truth = {i: y for i, _, y in rows}
    for example_id in first_queue[:3]:
        annotate(settings, project_id, example_id, "bob", truth[example_id])
    assert work_once(settings, WorkerOptions(poll_s=0.01), "w") is False  # no round, a re-rank
    with read_unit(settings) as session:
        queue = session.execute(select(QueueItem.example_id, QueueItem.model_version_id,
                                       QueueItem.reason)).all()
        assert labels_since_queue(session, project_id) == 0
    assert {q.model_version_id for q in queue} == {1} and {q.reason for q in queue} <= {
        "uncertain", "audit"}
    assert not {q.example_id for q in queue} & set(first_queue[:3])  # answered texts left it
    timings = fast_rerank(settings, project_id, ProjectConfig.from_dict({"queue_size": 20}))
    assert timings is not None and timings["queued"] > 0


def test_rank_on_embeddings_asks_about_the_boundary():
    import numpy as np

    from learner.fastloop import rank_on_embeddings

    rng = np.random.default_rng(0)
    train = np.array([[1, 0.0], [1, 0.1], [0, 1], [0.1, 1]])
    pool = np.array([[1, 0.02], [0.7, 0.72], [0.05, 1], [0.72, 0.7]])
    order, proba, classes = rank_on_embeddings(train, ["x", "x", "y", "y"], pool, "margin", 2, rng)
    assert sorted(order.tolist()) == [1, 3]  # the two texts between the classes
    assert list(classes) == ["x", "y"] and proba.shape == (4, 2)


def test_a_rerank_that_a_round_overtakes_is_dropped(settings, tiny_model_dir, monkeypatch):
    from db.projects import ProjectConfig
    from learner import fastloop

    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0)
    label(settings, project_id, rows, 12)
    request_training(settings, project_id)
    assert work_once(settings, WorkerOptions(poll_s=0.01), "w") is True
    real = fastloop.rank_on_embeddings

    def round_commits_meanwhile(*args, **kwargs):
        with write_unit(settings) as session:
            session.add(ModelVersion(project_id=project_id, version=2, base_model="m",
                                     artefact_path="elsewhere"))
        return real(*args, **kwargs)

    def queue():
        with read_unit(settings) as session:
            return session.execute(select(QueueItem.example_id, QueueItem.model_version_id)
                                   .order_by(QueueItem.rank)).all()

    before = queue()
    monkeypatch.setattr(fastloop, "rank_on_embeddings", round_commits_meanwhile)
    assert fastloop.fast_rerank(settings, project_id, ProjectConfig.from_dict({})) is None
    assert queue() == before


def test_the_fast_loop_keeps_reranking_while_a_round_trains_and_right_after(
        settings, tiny_model_dir, monkeypatch):
    import threading

    from learner import rounds

    # one annotator per text: an answered text leaves the queue at its next re-rank (one of
    # two annotators would keep it queued until the second one answers)
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0, fast_loop_every=3,
                                    agreement_share=0.0)
    label(settings, project_id, rows, 12)
    request_training(settings, project_id)
    options = WorkerOptions(poll_s=0.01, fast_loop_s=0.05)
    assert work_once(settings, options, "w") is True  # version 1, its embeddings and queue
    with read_unit(settings) as session:
        first_queue = session.scalars(select(QueueItem.example_id).order_by(QueueItem.rank)).all()
    real_training, proceed = rounds.train_and_rank, threading.Event()

    def training_held_until_told(*args, **kwargs):  # after the round's snapshot
        assert proceed.wait(60), "the test never let the round go on"
        return real_training(*args, **kwargs)

    monkeypatch.setattr(rounds, "train_and_rank", training_held_until_told)
    run = request_training(settings, project_id)
    training = threading.Thread(target=work_once, args=(settings, options, "w"))
    training.start()
    try:
        deadline = time.monotonic() + 30
        while get_run(settings, run.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        truth = {i: y for i, _, y in rows}
        for example_id in first_queue[:3]:  # given while the round runs
            annotate(settings, project_id, example_id, "bob", truth[example_id])
        answered, deadline = set(first_queue[:3]), time.monotonic() + 30
        while time.monotonic() < deadline:  # the fast loop's thread re-ranks meanwhile
            with read_unit(settings) as session:
                queued = set(session.scalars(select(QueueItem.example_id)).all())
            if not queued & answered:
                break
            time.sleep(0.05)
        assert not queued & answered, "the queue was not re-ranked while the round trained"
        assert get_run(settings, run.id).status == "running"
    finally:
        proceed.set()
        training.join(120)
    done = get_run(settings, run.id)
    assert done.status == "done"
    with read_unit(settings) as session:
        versions = set(session.scalars(select(QueueItem.model_version_id)).all())
        newest = session.scalar(select(func.max(ModelVersion.id)))
        written = session.scalar(select(func.min(QueueItem.created_at)))
        assert labels_since_queue(session, project_id) == 0
    assert versions == {newest} and newest == 2  # on the new version's embeddings
    assert written > done.finished_at  # re-ranked after the round, for the 3 late labels


def test_stage_shares_follow_the_last_rounds_time_or_the_defaults():
    from learner.rounds import STAGE_SHARES, StagedProgress, stage_shares

    assert stage_shares(None) == STAGE_SHARES and stage_shares({}) == STAGE_SHARES
    assert stage_shares({"train_s": 0.0, "score_s": 5.0}) == STAGE_SHARES  # nothing to go on
    shares = stage_shares({"snapshot_s": 1.0, "train_s": 30.0, "evaluate_s": 4.0,
                           "score_s": 60.0, "write_s": 5.0, "other_s": 99.0})
    assert shares == {"snapshot": 0.01, "train": 0.3, "evaluate": 0.04, "score": 0.6,
                      "write": 0.05}
    seen: list[tuple[str, float]] = []
    staged = StagedProgress(lambda stage, f: seen.append((stage, round(f, 6))), shares)
    for stage, fraction in (("snapshot", 0.0), ("train", 0.5), ("train", 1.0), ("evaluate", 0.0),
                            ("score", 0.5), ("write", 0.0), ("write", 1.0)):
        staged(stage, fraction)
    assert seen == [("snapshot", 0.0), ("train", 0.16), ("train", 0.31), ("evaluate", 0.31),
                    ("score", 0.65), ("write", 0.95), ("write", 1.0)]


def test_labels_given_while_a_round_trains_count_as_new_for_the_next(settings, tiny_model_dir):
    """The round snapshots the labels first: labels given while it trains are not in its
    model, so they count towards the next automatic round and in "since the last round"."""
    from db.runs import labels_since_last_version

    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows, 12)
    run = request_training(settings, project_id)
    claim_next_run(settings, "w")
    during = iter(rows[12:15])

    def progress(stage: str, fraction: float) -> None:
        if stage == "train" and fraction > 0:
            for example_id, _, truth in itertools.islice(during, 1):  # one per call, three in all
                annotate(settings, project_id, example_id, "bob", truth)

    run_round(settings, run.id, project_id, progress=progress)
    with read_unit(settings) as session:
        assert session.scalar(select(ModelVersion.n_labels)) == 12
        assert labels_since_last_version(session, project_id) == 3
