"""The training worker: a separate process (``python -m app worker``) that the UI never waits on.

Each pass: fail runs whose worker died (stale heartbeat), queue automatic rounds (every N new
labels), re-rank queues with the fast loop where enough labels came in, give projects with an
empty queue a cold-start queue, then claim and run one round while a thread heartbeats its stage
and progress into the database and another keeps the fast loop going. With no round queued, it
takes the oldest prediction job instead (``db.predictions``: a model version's predictions on a
project's texts, written to a file the Export page offers), heartbeating it the same way; a
round asked for meanwhile waits for it.

The worker also keeps a row of its own (``db.workers``) fresh, so the web app can tell whether
one is running, and warms up when it starts (``learner.warmup``): rounds are claimed once that
is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np
from sqlalchemy import select

from db.annotations import labels_since
from db.engine import read_unit, write_unit
from db.models import Example, ModelVersion, Project, QueueReason
from db.predictions import (
    PredictionJobInfo,
    claim_next_prediction,
    fail_prediction,
    fail_stale_predictions,
    finish_prediction,
    prediction_path,
    report_prediction,
)
from db.projects import ProjectConfig
from db.queue import (
    QueueEntry,
    assign_overlap,
    interleave_audit,
    labels_since_queue,
    queue_remaining,
    replace_queue,
    split_audit,
    unlabelled_ids,
)
from db.runs import (
    RunInfo,
    StoppedRun,
    active_run,
    claim_next_run,
    fail_run,
    fail_stale_runs,
    heartbeat,
    labels_since_last_version,
    last_stopped_run,
    request_training,
)
from db.settings import Settings
from db.workers import register_worker, report_worker, unregister_worker
from learner.rounds import RoundCancelled, labels_short, run_round

log = logging.getLogger("labelwise.worker")


@dataclass(frozen=True)
class WorkerOptions:
    poll_s: float = 2.0
    heartbeat_s: float = 5.0
    stale_after_s: float = 60.0
    fast_loop_s: float = 2.0
    """While a round trains: how often to look for queues due a fast-loop re-rank."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Ticker:
    """Calls ``tick`` from a daemon thread every ``every_s`` seconds while in its ``with`` block.

    A tick that raises is logged and tried again on the next one: the round goes on.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 30)  # a tick in flight ends within seconds

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - retried on the next tick
                log.exception("%s failed", type(self).__name__)

    def tick(self) -> None:
        raise NotImplementedError


class _Beat(_Ticker):
    """Heartbeats a running round or prediction job with its progress so far, and notices
    when it was cancelled: the next ``update`` then raises ``stop``.

    Args:
        report: writes the heartbeat with the progress (``update``'s arguments); False when
            the round or job was cancelled meanwhile.
        stop: the exception that ends the work once cancelled.
        progress: the progress to report until the first ``update``.
    """

    def __init__(self, every_s: float, report: Callable[..., bool], stop: Exception,
                 *progress: Any) -> None:
        super().__init__(every_s)
        self.report, self.stop, self.progress = report, stop, progress
        self.cancelled = threading.Event()

    def tick(self) -> None:
        if not self.report(*self.progress):
            self.cancelled.set()

    def update(self, *progress: Any) -> None:
        if self.cancelled.is_set():
            raise self.stop
        self.progress = progress


class _Presence(_Ticker):
    """The worker's row: written every heartbeat, with what the warm-up found once it ran.

    The warm-up runs in a thread of its own (``start_warm_up``) so that the loop's queue work
    goes on meanwhile; rounds are claimed only once it is done (``warm``): a round would pay
    the same start-up anyway, and the two would share the CPU and torch's global seed.
    """

    def __init__(self, settings: Settings, me: str, every_s: float) -> None:
        super().__init__(every_s)
        self.settings, self.me = settings, me
        self.ready: dict[str, Any] = {}
        self.warm = threading.Event()

    def tick(self) -> None:
        if not self._stop.is_set():  # the row is deleted once the worker stops
            report_worker(self.settings, self.me, **self.ready)

    def start_warm_up(self) -> None:
        threading.Thread(target=self._warm_up, name=WARM_UP_THREAD, daemon=True).start()

    def _warm_up(self) -> None:
        from learner.warmup import warm_up

        try:
            report = warm_up(_model_specs(self.settings))
            self.ready = {"device": report.device, "device_name": report.device_name,
                          "precision": report.precision, "warmup_s": report.seconds,
                          "problem": report.problem}
            log.info("warmed up in %.1f s: rounds run on %s (%s), training in %s",
                     report.seconds, report.device, report.device_name, report.precision)
            if report.problem:
                log.warning("a model could not be trained: %s", report.problem)
        except Exception as exc:  # noqa: BLE001 - said on the row; rounds report their own
            log.exception("warm-up failed")
            self.ready = {"problem": f"The warm-up failed: {type(exc).__name__}: {exc}"}
        finally:
            self.warm.set()
        with contextlib.suppress(Exception):  # the next heartbeat writes it otherwise
            self.tick()


def _model_specs(settings: Settings) -> list[str]:
    """The models the projects train (the default for new projects where there is none)."""
    return [config.model_path for _, config in _project_configs(settings)] or [settings.model_path]


class _FastLoops(_Ticker):
    """Re-ranks due queues while a round trains (the worker's loop waits on the round).

    On a CPU a round takes minutes, in which annotators give dozens of labels: the fast loop
    keeps their queues on the newest labels meanwhile, on the last version's embeddings.
    """

    def __init__(self, settings: Settings, every_s: float) -> None:
        super().__init__(every_s)
        self.settings = settings

    def tick(self) -> None:
        refresh_fast_loops(self.settings)


def execute(settings: Settings, run: RunInfo, options: WorkerOptions) -> None:
    """Run a claimed round to the end, recording a failure with its reason."""
    try:
        with _Beat(options.heartbeat_s, partial(heartbeat, settings, run.id),
                   RoundCancelled("The run was cancelled."), "starting", 0.0) as beat, \
                _FastLoops(settings, options.fast_loop_s):
            version = run_round(settings, run.id, run.project_id, progress=beat.update)
        log.info("run %s done: model version %s", run.id, version)
    except RoundCancelled as exc:
        log.info("run %s stopped: %s", run.id, exc)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the run
        log.error("run %s failed: %s", run.id, traceback.format_exc())
        fail_run(settings, run.id, f"{type(exc).__name__}: {exc}")
    else:
        _rerank_after_round(settings, run)


def execute_prediction(settings: Settings, job: PredictionJobInfo, options: WorkerOptions) -> None:
    """Write a claimed prediction job's file, recording a failure with its reason; a file
    that is not recorded as done (cancelled meanwhile) is deleted."""
    from learner.predicting import PredictionCancelled, predict_to_file

    path = prediction_path(settings, job)
    try:
        with read_unit(settings) as session:
            project = session.get(Project, job.project_id)
            name = project.name if project is not None else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        with _Beat(options.heartbeat_s, partial(report_prediction, settings, job.id),
                   PredictionCancelled("The prediction job was cancelled."), 0, 0) as beat, \
                _FastLoops(settings, options.fast_loop_s):
            report = predict_to_file(settings, name, path, job.fmt, version=job.model_version,
                                     unlabelled_only=job.unlabelled_only, progress=beat.update)
        recorded, old_files = finish_prediction(settings, job.id, report.rows, str(path))
        if not recorded:
            path.unlink(missing_ok=True)
        for old in old_files:
            Path(old).unlink(missing_ok=True)
        log.info("prediction job %s done: %s rows in %.1f s", job.id, report.rows, report.seconds)
    except PredictionCancelled as exc:
        log.info("prediction job %s stopped: %s", job.id, exc)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        log.error("prediction job %s failed: %s", job.id, traceback.format_exc())
        fail_prediction(settings, job.id, f"{type(exc).__name__}: {exc}")


def _rerank_after_round(settings: Settings, run: RunInfo) -> None:
    """Re-rank the new queue at once if labels came in while the round trained.

    The round ranked the pool on the labels of its snapshot; those given since (dozens, over a
    CPU round's minutes) would otherwise wait for ``fast_loop_every`` more. The fast loop
    takes them in on the new version's embeddings.
    """
    from learner.fastloop import fast_rerank

    try:
        with read_unit(settings) as session:
            config = ProjectConfig.from_dict(session.get(Project, run.project_id).settings)
            late = labels_since(session, run.project_id, run.started_at)
        if config.fast_loop_every > 0 and late:
            fast_rerank(settings, run.project_id, config)
    except Exception:  # noqa: BLE001 - the round is done; the next pass re-ranks anyway
        log.exception("re-rank after run %s failed", run.id)


Configs = list[tuple[int, ProjectConfig]]


def _project_configs(settings: Settings) -> Configs:
    with read_unit(settings) as session:
        return [(p.id, ProjectConfig.from_dict(p.settings)) for p in session.scalars(select(Project))]


@dataclass(frozen=True)
class AutomaticRound:
    """Whether the worker starts a round by itself now, and what it waits for otherwise.

    Attributes:
        has_model: the project has a model version.
        new_labels: labels given or changed since its latest version (since the start).
        due: enough new labels: ``retrain_every`` once there is a model, any before.
        missing: labels with fewer than ``cold_start_k`` labelled texts outside the audit
            slice, with their counts (checked only when ``due``; a round needs none missing).
        one_label: the project has fewer than two labels (checked only when ``due``).
        held_by: the last round, while it holds the next automatic one back: it ended
            without a model (cancelled or failed), and fewer than ``retrain_every`` labels
            came in after it (else the worker would queue it again within seconds).
        since_held: labels given or changed since ``held_by`` ended.
    """

    has_model: bool
    new_labels: int
    due: bool
    missing: dict[str, int]
    one_label: bool = False
    held_by: StoppedRun | None = None
    since_held: int = 0

    @property
    def ready(self) -> bool:
        return self.due and not self.missing and not self.one_label


def automatic_round(session, project_id: int, config: ProjectConfig) -> AutomaticRound:  # type: ignore[no-untyped-def]
    """The rule `queue_automatic_rounds` follows for a project (``retrain_every`` > 0)."""
    new = labels_since_last_version(session, project_id)
    has_model = session.scalar(
        select(ModelVersion.id).where(ModelVersion.project_id == project_id).limit(1)
    ) is not None
    due = new >= config.retrain_every if has_model else new > 0
    held = last_stopped_run(session, project_id)
    since_held = 0 if held is None else labels_since(session, project_id, held.finished_at)
    if since_held >= config.retrain_every:
        held = None  # enough labels since: it holds nothing back any more
    if held is not None:
        due = False
    if not due:  # the cheap counts first: reading every label is only needed when a round is due
        return AutomaticRound(has_model, new, due, {}, held_by=held, since_held=since_held)
    n_labels, missing = labels_short(session, project_id, config.cold_start_k)
    return AutomaticRound(has_model, new, due, missing, one_label=n_labels < 2, held_by=held,
                          since_held=since_held)


def queue_automatic_rounds(settings: Settings, configs: Configs | None = None) -> list[int]:
    """Queue a round where cold start just ended, or after ``retrain_every`` new labels."""
    queued = []
    for project_id, config in configs or _project_configs(settings):
        if config.retrain_every <= 0 or active_run(settings, project_id) is not None:
            continue
        with read_unit(settings) as session:
            ready = automatic_round(session, project_id, config).ready
        if ready:
            queued.append(request_training(settings, project_id, trigger="auto").id)
    return queued


def build_cold_start_queue(settings: Settings, project_id: int, config: ProjectConfig) -> int:
    """Fill an empty queue with a diverse, representative sample (plus audit items); returns
    its size."""
    from learner.coldstart import diverse_sample

    with read_unit(settings) as session:
        pool = unlabelled_ids(session, project_id)
        # deterministic for a project state, and a fresh draw once labels were added
        rng = np.random.default_rng([config.seed, project_id, len(pool)])
        if len(pool) > 20_000:
            pool = sorted(rng.choice(pool, size=20_000, replace=False).tolist())
        texts = dict(session.execute(select(Example.id, Example.text).where(Example.id.in_(pool))).all()) if pool else {}
    if not pool:
        return 0
    picked, audit = split_audit(
        len(pool), diverse_sample([texts[i] for i in pool], min(config.queue_size, len(pool)), rng),
        config.audit_share, rng)
    entries = assign_overlap(interleave_audit(
        [QueueEntry(pool[i], QueueReason.COLD_START.value) for i in picked],
        [QueueEntry(pool[i], QueueReason.AUDIT.value) for i in audit],
        config.audit_share,
    ), config.overlap, config.agreement_share, rng)
    with write_unit(settings) as session:
        if queue_remaining(session, project_id) == 0:  # nobody filled it meanwhile
            replace_queue(session, project_id, entries)
    return len(entries)


def fill_empty_queues(settings: Settings, configs: Configs | None = None) -> None:
    """Give each project whose queue ran dry, with no round coming, a cold-start queue."""
    for project_id, config in configs or _project_configs(settings):
        with read_unit(settings) as session:
            empty = queue_remaining(session, project_id) == 0
        if empty and active_run(settings, project_id) is None:
            build_cold_start_queue(settings, project_id, config)


def refresh_fast_loops(settings: Settings, configs: Configs | None = None) -> list[int]:
    """Re-rank queues on embeddings where enough labels came in since they were written.

    Also while a project's round trains (from `_FastLoops`): the round's commit replaces the
    queue anyway, and a re-rank that finishes after it is dropped.
    """
    from learner.fastloop import fast_rerank

    done = []
    for project_id, config in configs or _project_configs(settings):
        if config.fast_loop_every <= 0:
            continue
        with read_unit(settings) as session:
            due = labels_since_queue(session, project_id) >= config.fast_loop_every
        if due and fast_rerank(settings, project_id, config) is not None:
            done.append(project_id)
    return done


def work_once(settings: Settings, options: WorkerOptions, me: str,
              warm: threading.Event | None = None) -> bool:
    """One pass of the loop; True if a round or a prediction job ran (never before ``warm`` is
    set, if given)."""
    for run_id in fail_stale_runs(settings, options.stale_after_s):
        log.warning("run %s marked failed: its worker stopped heartbeating", run_id)
    for job_id, retry_id in fail_stale_predictions(settings, options.stale_after_s):
        log.warning("prediction job %s marked failed: its worker stopped heartbeating%s", job_id,
                    "" if retry_id is None else f"; queued again as job {retry_id}")
    configs = _project_configs(settings)  # read once per pass
    queue_automatic_rounds(settings, configs)
    refresh_fast_loops(settings, configs)
    fill_empty_queues(settings, configs)
    if warm is not None and not warm.is_set():
        return False
    run = claim_next_run(settings, me)
    if run is not None:
        log.info("claimed run %s (project %s)", run.id, run.project_id)
        execute(settings, run, options)
        return True
    job = claim_next_prediction(settings, me)
    if job is not None:
        log.info("claimed prediction job %s (project %s)", job.id, job.project_id)
        execute_prediction(settings, job, options)
        return True
    return False


WARM_UP_THREAD = "labelwise-warm-up"


def warming_up() -> bool:
    """Whether a worker's warm-up thread is still running in this process.

    Stopped then, the interpreter's teardown meets torch mid-operation in that daemon thread:
    seen to abort ("terminate called without an active exception", SIGTERM 8 or 12 s after
    the start on a 2-core host) or to hang; the caller exits without the teardown instead.
    """
    return any(t.name == WARM_UP_THREAD and t.is_alive() for t in threading.enumerate())


def run_worker(settings: Settings, options: WorkerOptions | None = None, once: bool = False,
               stop: threading.Event | None = None) -> None:
    """Loop until stopped (Ctrl-C, ``stop`` set), or after one pass with ``once`` (which
    does not warm up: its round, if any, pays the start-up itself)."""
    options = options or WorkerOptions()
    stop = stop or threading.Event()
    me = worker_id()
    log.info("worker %s started", me)
    try:
        register_worker(settings, me)
    except Exception:  # noqa: BLE001 - the heartbeat writes the row later
        log.exception("could not register worker %s; retrying with its heartbeat", me)
    try:
        with _Presence(settings, me, options.heartbeat_s) as presence:
            if not once:
                presence.start_warm_up()
            while not stop.is_set():
                try:
                    busy = work_once(settings, options, me, None if once else presence.warm)
                except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                    log.exception("worker pass failed; retrying")
                    busy = False
                if once:
                    return
                if not busy:
                    stop.wait(options.poll_s)
    finally:
        with contextlib.suppress(Exception):  # a stale row is forgotten anyway
            unregister_worker(settings, me)


