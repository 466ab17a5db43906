"""Model: train now, watch the running round, and see the model improve round by round."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from app import ui
from app.downloads import prepared_download
from db.engine import read_unit
from db.errors import LabelwiseError
from db.predictions import running_predictions
from db.queue import queue_status
from db.runs import (
    active_run,
    cancel_run,
    latest_version,
    list_runs,
    list_versions,
    request_training,
    seconds_left,
)
from db.workers import live_workers
from learner.model import TRAIN_BF16_SPEEDUP_MIN
from learner.model_export import folder_name, zip_bytes
from learner.rounds import why_not_trainable
from learner.worker import automatic_round

project = ui.require_project()
settings = ui.settings()
ui.require_admin()

st.title("Model", anchor=False)
ui.show_flash()


# Why the last click of Train now queued nothing: shown under the button until the next one.
# (A comment, not a string: Streamlit's magic draws a bare string in a page on the page.)
TRAIN_PROBLEM = "train_problem"
# The project and newest model version the page was drawn with: when a round adds a version,
# the live fragment redraws the whole page (heading, metrics, curve, rounds), not itself alone.
SHOWN_VERSION = "model_page_version"


def _newest() -> tuple[int, int | None]:
    latest = latest_version(settings, project.id)
    return project.id, None if latest is None else latest.version


def _train() -> None:
    """Queue a round, unless it would fail at once for want of labels: then say which."""
    st.session_state.pop(TRAIN_PROBLEM, None)
    with read_unit(settings) as session:
        why = why_not_trainable(session, project.id, project.config.cold_start_k)
    if why is not None:
        st.session_state[TRAIN_PROBLEM] = f"Not started: {why}"
        return
    try:
        request_training(settings, project.id, "manual", actor=ui.annotator())
    except LabelwiseError as exc:
        st.session_state[TRAIN_PROBLEM] = str(exc)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ago(seconds: float) -> str:
    return f"{ui.duration(seconds)} ago"


def _queue_caption() -> None:
    """How fresh the queue is: what ranked it, when, and how many labels came in since."""
    status = queue_status(settings, project.id)
    if status is None:
        st.caption("Queue: none yet (annotators get random unlabelled texts).")
        return
    by = (f"model v{status.model_version}" if status.model_version is not None
          else "a cold-start sample (no model yet)")
    every = project.config.fast_loop_every
    loop = (f" The worker re-ranks it after every {every} labels, also while a round trains."
            if every and status.model_version is not None else "")
    age = (datetime.now(timezone.utc) - status.ranked_at).total_seconds()
    st.caption(f"Queue: ranked by {by} {_ago(age)} · {_count(status.labels_since, 'label')} "
               f"since · {_count(status.remaining, 'text')} left.{loop}")


def _workers_caption(now: datetime) -> None:
    """Whether a worker is there to run rounds, on what device, and any model it cannot train."""
    workers = live_workers(settings, now)
    if not workers:
        st.warning("No training worker is running, so rounds, queue re-ranks and cold-start "
                   "queues wait for one. `make run` starts one with the app; on its own: "
                   "`python -m app worker`.")
    for worker in workers:
        if worker.problem:
            st.warning(ui.md_escape(f"Worker {worker.id}: {worker.problem}"))
        if worker.ready_at is None:
            since = ui.duration((now - worker.started_at).total_seconds())
            st.caption(ui.md_escape(f"Worker {worker.id}: warming up (loading torch and the "
                                    f"model) for {since}; it starts rounds once it is done."))
        elif worker.device:
            trains = _PRECISION_NAMES.get(worker.precision or "", worker.precision)
            st.caption(ui.md_escape(
                f"Worker {worker.id}: ready on {worker.device} ({worker.device_name}), "
                f"training in {trains}; warmed up in {ui.duration(worker.warmup_s or 0)}."))


def _next_automatic_round() -> str:
    """When the worker will start a round by itself (by `automatic_round`, as it decides)."""
    config = project.config
    if config.retrain_every <= 0:
        return "Automatic rounds are off (Settings: retrain every N new labels); Train now starts one."
    with read_unit(settings) as session:
        state = automatic_round(session, project.id, config)
    held = state.held_by
    if held is not None:
        return (f"Run {held.id} {held.status}: the worker starts no round by itself until "
                f"{config.retrain_every} labels come in after it ({state.since_held} so far); "
                "Train now starts one.")
    if state.one_label:  # checked only once a round is due
        return "The worker trains by itself once the project has two labels (Settings)."
    if state.missing:
        short = ", ".join(f"{label} ({n})" for label, n in state.missing.items())
        what = "trains by itself" if state.has_model else "trains the first model by itself"
        return ui.md_escape(
            f"The worker {what} once every label has {config.cold_start_k} labelled texts "
            f"outside the audit slice; still short: {short}.")
    if not state.has_model:
        return (f"Every label has {config.cold_start_k} labelled texts outside the audit "
                "slice: the worker trains the first model on its next pass." if state.ready else
                f"The worker trains the first model by itself once every label has "
                f"{config.cold_start_k} labelled texts outside the audit slice.")
    since, left = state.new_labels, config.retrain_every - state.new_labels
    return (f"The worker trains by itself every {config.retrain_every} new labels: "
            + (f"{left} to go ({since} since the last round)." if left > 0
               else f"{since} since the last round, so it starts one on its next pass."))


@st.fragment(run_every="2s")
def live() -> None:
    """Polls the worker's progress and the queue's freshness from the database; never blocks
    the page."""
    if _newest() != st.session_state.get(SHOWN_VERSION):
        st.rerun()  # the whole page: a round has made a new version since it was drawn
    now = datetime.now(timezone.utc)
    _queue_caption()
    _workers_caption(now)
    run = active_run(settings, project.id)
    reason = None if run is None else f"A round is {run.status} (run {run.id})."
    st.button("Train now", type="primary", disabled=run is not None, on_click=_train,
              help=reason or "Queue a training round for the worker.", key="train_now")
    problem = st.session_state.get(TRAIN_PROBLEM)
    if problem and run is None:
        st.error(ui.md_escape(problem))
    if run is None:
        st.caption(f"No round is running. {_next_automatic_round()}")
        return
    if run.status == "queued":
        busy = running_predictions(settings)
        st.info(f"Run {run.id} is queued: waiting for the worker (`python -m app worker`)."
                if not busy else f"Run {run.id} is queued: a worker is writing predictions "
                f"first (job {busy[0].id}, {busy[0].progress:.0%} done; Export page). A second "
                "worker (`python -m app worker`) would train it meanwhile.")
        st.button("Cancel", key=f"cancel-{run.id}", on_click=cancel_run,
                  args=(settings, run.id, ui.annotator()))
        return
    st.button("Cancel this round", key=f"cancel-{run.id}", on_click=cancel_run,
              args=(settings, run.id, ui.annotator()))
    elapsed = (now - (run.started_at or run.created_at)).total_seconds()
    left = seconds_left(settings, run, now)
    st.progress(run.progress, text=f"Run {run.id}: {run.stage or 'starting'} · "
                f"{run.progress:.0%} · {ui.duration(elapsed)}"
                + (f" · about {ui.duration(left)} left" if left is not None else ""))


_PRECISION_NAMES = {"bf16": "bf16 mixed precision (autocast; weights kept in fp32)"}


def _scoring_caption(scoring: dict) -> str:
    """How a round scored its pool: the precision, the check against fp32 behind it, and any
    faster precision that could not be built for this model (with the reason)."""
    precision = scoring.get("precision", "fp32")
    checks, failures = scoring.get("checks") or {}, scoring.get("failures") or {}

    def check(name: str) -> str:
        c = checks[name]
        return f"{name} {c['agreement']:.1%} same class as fp32 at {c['speedup']:.2f}x its speed"

    text = f"Pool scored on {scoring.get('device', 'cpu')} in {precision}"
    if precision in checks:
        others = [check(name) for name in checks if name != precision]
        text += f" after a check on a sample ({check(precision)}"
        text += f"; also tried: {', '.join(others)})" if others else ")"
    elif checks:
        text += (": no other precision passed the check on a sample "
                 f"({', '.join(check(name) for name in checks)})")
    if failures:
        text += "; not tried: " + ", ".join(f"{name} ({why})" for name, why in failures.items())
    return ui.md_escape(text + ".")


versions = list_versions(settings, project.id)
st.session_state[SHOWN_VERSION] = (project.id, versions[-1].version if versions else None)
live()

runs = list_runs(settings, project.id, limit=30)
if not versions:
    st.info("No model yet. The first round starts once every label has "
            f"{project.config.cold_start_k} labelled texts (or press Train now).")
else:
    latest = versions[-1]
    m = latest.metrics
    st.subheader(f"Version {latest.version}", anchor=False)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Audit accuracy", f"{m['accuracy']:.1%}" if "accuracy" in m else "–")
    c2.metric("Audit macro-F1", f"{m['macro_f1']:.3f}" if "macro_f1" in m else "–")
    c3.metric("Audit texts", m.get("n_eval", 0))
    c4.metric("Trained on", m.get("n_train", latest.n_labels))
    stability = m.get("stability")
    if stability:
        st.caption(
            "Stopping hint: since the previous round "
            f"{stability['prediction_change']:.0%} of the predictions shown changed and "
            f"{stability['top_overlap']:.0%} of the top of the queue stayed. Small changes "
            "round after round mean more labels add little."
        )
    if "training_precision" in m:
        trained = m["training_precision"]
        timed = m.get("training_bf16_speedup")
        why = ("" if timed is None else f": a training step ran {timed:.2f}x as fast in bf16 as "
               f"in fp32 on this CPU (bf16 needs {TRAIN_BF16_SPEEDUP_MIN:g}x)")
        st.caption(ui.md_escape(f"Trained in {_PRECISION_NAMES.get(trained, trained)}{why}."))
    if "scoring" in m:
        st.caption(_scoring_caption(m["scoring"]))
    by_number = {v.version: v for v in versions}
    number = latest.version if len(versions) == 1 else st.selectbox(
        "Model to take away", list(reversed(by_number)),  # a new version: back to it
        format_func=lambda n: (f"v{n} ({by_number[n].n_labels:,} labels, audit accuracy "
                               + (f"{by_number[n].metrics['accuracy']:.1%})"
                                  if "accuracy" in by_number[n].metrics else "–)")))
    source, inside = Path(by_number[number].artefact_path), folder_name(project.name, number)
    if source.is_dir():
        prepared_download(
            f"model v{number} (zip)", lambda: zip_bytes(source, inside),
            (str(source), inside), file_name=f"{inside}.zip", mime="application/zip",
            key="download_model", help="A Hugging Face checkpoint with the label names: "
                 "`pipeline('text-classification', model=FOLDER)` loads it, no Labelwise "
                 "needed. From a shell: `python -m app export-model`.")
    else:
        st.caption(f"Model v{number}'s files are no longer on the server.")
    curve = [
        {"labels": v.n_labels, "accuracy": v.metrics.get("accuracy"),
         "macro-F1": v.metrics.get("macro_f1")}
        for v in versions if "accuracy" in v.metrics
    ]
    if len(curve) == 1:  # a line needs two points: one would draw an empty chart
        st.caption(f"Learning curve (audit slice): from the second round on; so far accuracy "
                   f"{curve[0]['accuracy']:.0%} at {curve[0]['labels']:,} labels.")
    elif curve:
        st.subheader("Learning curve (audit slice)", anchor=False)
        st.line_chart(curve, x="labels", y=["accuracy", "macro-F1"])
    if "per_class_f1" in m:
        left, right = st.columns(2)
        left.subheader("Per-class F1", anchor=False)
        left.bar_chart({"F1": m["per_class_f1"]}, horizontal=True)
        right.subheader("Confusion matrix", anchor=False)
        labels = m.get("labels", list(m["per_class_f1"]))
        right.caption("Rows: the audit label; columns: the model's prediction.")
        right.dataframe(
            [{"label": truth, **dict(zip(labels, row))}
             for truth, row in zip(labels, m["confusion_matrix"])],
            hide_index=True,
        )

if runs:
    st.subheader("Rounds", anchor=False)
    st.dataframe(
        [{"run": r.id, "status": r.status, "trigger": r.trigger, "version": r.model_version,
          "labels": r.n_labels, "accuracy": (r.metrics or {}).get("accuracy"),
          "scored in": ((r.metrics or {}).get("scoring") or {}).get("precision"),
          "seconds": sum((r.timings or {}).values()) or None,
          **{f"{stage} s": (r.timings or {}).get(f"{stage}_s") for stage in ("train", "score")},
          "created": r.created_at.strftime("%Y-%m-%d %H:%M"), "error": r.error}
         for r in runs],
        hide_index=True, width="stretch",
    )
