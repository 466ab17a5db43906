"""Export: the same code as ``python -m app export``, as a download; and a model version's
predictions for the project's texts, which the worker writes (as ``python -m app predict``
would) while this page polls."""

from __future__ import annotations

from datetime import datetime, time, timezone
from pathlib import Path

import streamlit as st

from app import ui
from app.downloads import file_download, prepared_download
from db.exporting import KEEP_EXPORTS, ExportFilters, export_to_folder
from db.jobs import ACTIVE
from db.predictions import (
    KEEP_FILES,
    PredictionJobInfo,
    cancel_prediction,
    list_predictions,
    request_predictions,
)
from db.runs import list_versions
from db.texts import file_stem
from db.workers import live_workers
from learner.errors import LearnerError
from learner.model import saved_classes
from learner.predicting import label_drift

project = ui.require_project()
settings = ui.settings()
ui.require_admin()
MIME = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/octet-stream"}
safe = file_stem(project.name)

st.title("Export", anchor=False)
with st.form("export"):
    c1, c2 = st.columns(2)
    fmt = c1.radio("Format", ["csv", "jsonl", "parquet"], horizontal=True)
    shape = c2.radio("Rows", ["one per text (final label)", "one per annotation"], horizontal=True)
    labels = st.multiselect("Only these labels (empty: all)", list(project.labels))
    annotators = st.text_input("Only these annotators (comma-separated, empty: all)")
    since = st.date_input("Labelled since (empty: any time)", value=None)
    unlabelled = st.checkbox("Include unlabelled texts")
    prepared = st.form_submit_button("Prepare file", type="primary")

if prepared:
    filters = ExportFilters(
        labels=labels or None,
        annotators=[a.strip() for a in annotators.split(",") if a.strip()] or None,
        labelled_since=datetime.combine(since, time.min, tzinfo=timezone.utc) if since else None,
        include_unlabelled=unlabelled,
    )
    with st.spinner("Writing the file…"):
        written = ui.attempt(export_to_folder, settings, project.name, fmt, filters,
                             shape == "one per annotation", actor=ui.annotator())
    if written is not None:  # a file on the server: the session keeps its name, not its bytes
        st.session_state["export_file"] = (project.id, str(written[0]), fmt, written[1])


def too_large(what: str, path: Path, size: int, command: str) -> bool:
    """Name a file too large for the browser by its path on the server; True if it is."""
    if size <= settings.max_download_mb * 2**20:  # Streamlit holds a download whole
        return False
    st.caption(f"{what}, {size / 2**20:,.0f} MB: too large to download through the browser "
               "(`LABELWISE_MAX_DOWNLOAD_MB`); the file is on the server, here (or write one "
               f"where you want with `python -m app {command}`):")
    st.code(str(path), language=None)
    return True


ready = st.session_state.get("export_file")
if ready and ready[0] == project.id:
    _, path, fmt, n = ready
    path, what = Path(path), f"{fmt.upper()} · {n:,} rows"
    if n == 0:
        st.warning("No text matches: the file holds no rows. Loosen the filters (labels, "
                   "annotators, date), include unlabelled texts, or label some texts first.")
    try:
        stat = path.stat()
    except FileNotFoundError:
        st.caption(f"{what}: removed since (each project keeps its {KEEP_EXPORTS} latest "
                   "exports); prepare it again.")
    else:
        if not too_large(what, path, stat.st_size, "export"):
            stamp = datetime.fromtimestamp(stat.st_mtime, timezone.utc).strftime("%Y%m%d-%H%M")
            file_download(what, path.read_bytes, (str(path), stat.st_mtime_ns, stat.st_size),
                          key="download", file_name=f"{safe}-{stamp}.{fmt}", mime=MIME[fmt])


st.divider()
st.subheader("Predictions", anchor=False)
versions = list_versions(settings, project.id)


def _what(job: PredictionJobInfo) -> str:
    texts = "unlabelled texts" if job.unlabelled_only else "every text"
    again = "" if job.retry_of is None else f" (job {job.retry_of} again: its worker died)"
    return f"Job {job.id}{again}: model v{job.model_version} on {texts}, {job.fmt.upper()}"


UNLABELLED, EVERY = "unlabelled texts only", "every text (with its human label, if any)"
if not versions:
    st.caption("No model yet: once a round has trained one, ask here for its predictions on "
               "the project's texts.")
else:
    st.caption("The worker scores the texts with the model and writes each with its predicted "
               "label, the confidence and every label's probability (and the export's own "
               "columns). It takes as long as scoring a round's pool: minutes per 10,000 texts "
               f"on a CPU. The {KEEP_FILES} latest files are kept. From a shell: "
               "`python -m app predict`.")
    latest = versions[-1]
    try:
        drift = label_drift(latest.version, saved_classes(latest.artefact_path), project.labels)
    except LearnerError as exc:
        drift = f"Model v{latest.version} cannot be read: {exc}"
    if drift:
        st.warning(ui.md_escape(drift))
    with st.form("predict"):
        c1, c2, c3 = st.columns(3)
        trained_on = {v.version: v.n_labels for v in versions}
        version = c1.selectbox("Model version", list(reversed(trained_on)),
                               format_func=lambda v: f"v{v} ({trained_on[v]:,} labels)",
                               key="predict_version")
        which = c2.radio("Texts", [UNLABELLED, EVERY], key="predict_texts")
        pfmt = c3.radio("Format", ["csv", "jsonl", "parquet"], horizontal=True,
                        key="predict_format")
        asked = st.form_submit_button("Ask the worker for predictions")
    if asked:
        job = ui.attempt(request_predictions, settings, project.id, version,
                         unlabelled_only=which == UNLABELLED, fmt=pfmt, actor=ui.annotator())
        if job is not None:
            st.success(f"Prediction job {job.id} asked for: the worker writes it when no round "
                       "is waiting, and it shows below.")


def _latest_jobs() -> list[PredictionJobInfo]:
    return list_predictions(settings, project.id, limit=KEEP_FILES + 3)


def poll_every(jobs: list[PredictionJobInfo]) -> str | None:
    """Poll while a job is queued or running; not at all when none is (a request reruns the
    page, which starts polling again)."""
    return "2s" if any(job.status in ACTIVE for job in jobs) else None


def prediction_jobs(polling: bool) -> None:
    """The latest jobs, from the database: progress, Cancel, and the finished files."""
    user = ui.current_user()
    if user is None or not user.is_admin:
        st.rerun()  # the full run signs out or stops the page
    jobs = _latest_jobs()
    if polling and poll_every(jobs) is None:
        st.rerun()  # the last one ended: a full run draws it and stops polling
    if any(job.status == "queued" for job in jobs) and not live_workers(settings):
        st.warning("No worker is running, so the prediction jobs wait for one "
                   "(`python -m app worker`).")
    for job in jobs:
        what = _what(job)
        if job.status in ("queued", "running"):
            left, right = st.columns([5, 1])
            if job.status == "queued":
                left.caption(f"{what} · queued (after any round waiting)")
            else:
                done = f"{job.n_done:,} of {job.n_total:,} texts" if job.n_total else "starting"
                left.progress(job.progress, text=f"{what} · {done}")
            right.button("Cancel", key=f"cancel-prediction-{job.id}", on_click=cancel_prediction,
                         args=(settings, job.id, ui.annotator()))
        elif job.status == "done" and job.file_path and Path(job.file_path).is_file():
            path = Path(job.file_path)
            stat = path.stat()
            if too_large(f"{what} · {job.n_rows:,} rows", path, stat.st_size, "predict"):
                continue
            prepared_download(
                f"{what} · {job.n_rows:,} rows", path.read_bytes,
                (str(path), stat.st_mtime_ns, stat.st_size),
                file_name=f"{safe}-predictions-v{job.model_version}-{job.id}.{job.fmt}",
                mime=MIME[job.fmt], key=f"download-prediction-{job.id}")
        elif job.status == "done":
            st.caption(f"{what} · done; its file was removed (only the {KEEP_FILES} latest are "
                       "kept)")
        elif job.status == "failed":
            st.caption(ui.md_escape(f"{what} · failed: {job.error or 'no reason given'}"))
        else:
            st.caption(f"{what} · {job.status}")


if versions:
    every = poll_every(_latest_jobs())
    st.fragment(run_every=every)(prediction_jobs)(every is not None)
