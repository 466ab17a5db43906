"""Annotate: one text at a time from the active-learning queue, keyboard first.

Keys: 1-9 give the label in that position, S skips, U undoes the last answer. Each answer is
committed in one short transaction by a button callback bound to the text it was shown for; the
buttons' keys carry that text's id and an answer counts only for the text on screen, so a double
click or a late key press can never label the next text unseen. Streamlit binds the keys
(hotkeys-js) in an effect that runs just after the buttons are drawn: a key pressed before that
(a few hundred ms at most, seen on a busy 2-core machine after signing in and after an undo)
does nothing.

The text, its buttons and the last answers are one fragment: an answer reruns that alone (with
its own sign-in check), not the sidebar and the navigation around it. Side by side in headless
Chromium on a 2-core machine (``bench.bench_keyboard --quick --answers 40``, 3 runs each, the
medians of their percentiles): key press to the next text on screen p50 106 against 121 ms for
a rerun of the whole page, p95 168 against 233 ms. Two earlier such runs, with a first version
of the benchmark, read p50 105 against 130 and 107 against 120 ms: the gain is real, its size
noisy.
"""

from __future__ import annotations

import time

import streamlit as st

from app import ui
from db.annotations import AlreadyAnswered, annotate, recent_annotations
from db.engine import read_unit
from db.errors import LabelwiseError
from db.models import utcnow
from db.projects import project_stats
from db.queue import QueuedItem, claim_next, queue_version, release, undo_answer
from db.runs import active_run, labels_since_last_version, latest_version

REASONS = {
    "uncertain": "the model is unsure about it",
    "audit": "a random audit item (measures the model without bias)",
    "cold_start": "a diverse sample while the model has too few labels",
    "random": "drawn at random",
}
CURRENT, SHOWN_AT, SKIPPED, HISTORY = "ann_current", "ann_shown_at", "ann_skipped", "ann_history"
SHOWN_WHEN = "ann_shown_when"

project = ui.require_project()
settings = ui.settings()
me = ui.annotator()


def _queue_version() -> int:
    with read_unit(settings) as session:
        return queue_version(session, project.id) or 0


def _serve(item: QueuedItem | None, pinned: bool = False) -> None:
    """Show ``item`` next; a pinned one (brought back by undo) stays when the queue changes."""
    st.session_state[CURRENT] = item
    st.session_state[SHOWN_AT] = time.monotonic()
    st.session_state[SHOWN_WHEN] = utcnow()  # an answer given elsewhere after this one wins
    st.session_state["ann_pinned"] = pinned
    st.session_state["ann_queue_version"] = _queue_version()


def _current() -> QueuedItem | None:
    if st.session_state.get("ann_project") != project.id:
        st.session_state["ann_project"] = project.id
        st.session_state[SKIPPED] = []
        st.session_state[HISTORY] = []
        st.session_state[CURRENT] = None
    current = st.session_state.get(CURRENT)
    if current is not None and not st.session_state.get("ann_pinned"):
        if _queue_version() > st.session_state.get("ann_queue_version", 0):
            release(settings, current.example_id, me)  # a round finished: serve its queue
            current = None
    if current is None:
        _serve(claim_next(settings, project.id, me, exclude=st.session_state[SKIPPED]))
    return st.session_state[CURRENT]


def _submit(example_id: int, label: int, reason: str) -> None:
    """Answer the text on screen with the label (by id, so a rename meanwhile keeps its meaning)."""
    current = st.session_state.get(CURRENT)
    if current is None or current.example_id != example_id:
        return  # a stale click (double click, late key press) for a text no longer on screen
    seconds = time.monotonic() - st.session_state.get(SHOWN_AT, time.monotonic())
    try:
        annotate(settings, project.id, example_id, me, label, seconds_spent=round(seconds, 2),
                 queue_reason=reason, answered_after=st.session_state.get(SHOWN_WHEN))
    except AlreadyAnswered as exc:
        ui.flash(f"{exc} Here is the next text.", "info")
        st.session_state[CURRENT] = None
        return
    except LabelwiseError as exc:
        ui.flash(str(exc), "error")
        return
    history = st.session_state.setdefault(HISTORY, [])
    history.append(example_id)
    del history[:-50]
    st.session_state[CURRENT] = None  # the next run serves the next text


def _skip(example_id: int) -> None:
    release(settings, example_id, me)
    skipped = st.session_state.setdefault(SKIPPED, [])
    skipped.append(example_id)
    del skipped[:-500]
    st.session_state[CURRENT] = None


def _unskip() -> None:
    st.session_state[SKIPPED] = []
    st.session_state[CURRENT] = None


def _undo() -> None:
    history = st.session_state.get(HISTORY) or []
    if not history:
        ui.flash("Nothing to undo.", "info")
        return
    example_id = history.pop()
    _serve(undo_answer(settings, project.id, example_id, me), pinned=True)
    ui.flash("Undone: that text is back.", "info")


def _relabel(example_id: int, key: str) -> None:
    ui.release_focus_next_run()  # the keys 1-9 answer the next text at once
    try:
        annotate(settings, project.id, example_id, me, st.session_state[key])
    except LabelwiseError as exc:
        ui.flash(str(exc), "error")


@st.cache_data(ttl=4, show_spinner=False)
def _progress(project_id: int, name: str, url: str) -> tuple:  # type: ignore[type-arg]
    """Counts for the progress line, at most a few seconds old: a key press never waits on them."""
    with read_unit(settings) as session:
        stats = project_stats(session, name)
        since = labels_since_last_version(session, project_id)
    return stats, since, latest_version(settings, project_id), active_run(settings, project_id)


def progress_line() -> None:
    """Redrawn with every answer. Not a polling fragment: an auto-rerun in flight could swallow
    a key press on this page, the one where speed matters."""
    stats, since, version, run = _progress(project.id, project.name, settings.database_url)
    parts = [f"{stats.labelled:,} / {stats.examples:,} labelled",
             f"{since} since the last round"]
    if version is None:
        parts.append("no model yet")
    else:
        acc = version.metrics.get("accuracy")
        parts.append(f"model v{version.version}"
                     + (f", audit accuracy {acc:.0%} (n={version.metrics.get('n_eval')})"
                        if acc is not None else ", no audit labels yet"))
    if run is not None:
        parts.append(f"training {run.status} ({run.progress:.0%})")
    st.caption(" · ".join(parts))


st.title(ui.md_escape(project.name), anchor=False)
if project.guidelines:
    with st.expander("Guidelines"):
        st.text(project.guidelines)
if len(project.labels) < 2:
    st.warning("This project needs at least two labels: add them on the Settings page.")
    st.stop()


@st.fragment
def labelling() -> None:
    """The text, its buttons and the last answers: an answer reruns only this, not the page
    around it (the sidebar, the navigation). The sign-in check runs here too: an account
    disabled meanwhile is signed out by the full run it asks for."""
    if ui.current_user() is None:
        st.rerun()
    fresh = ui.current_project()  # a rename on the Settings page shows at the next answer
    if fresh is None or fresh.labels != project.labels:
        st.rerun()  # a full run: the checks above the fragment see the new label set
    ui.show_flash()
    progress_line()
    item = _current()
    if item is None:
        skipped = st.session_state.get(SKIPPED) or []
        if skipped:
            st.info(f"No text left but the {len(skipped):,} you skipped.")
            st.button("Show the skipped texts again", key="unskip", on_click=_unskip)
        else:
            st.success("Everything is labelled. Export the data, or import more texts.")
        if st.session_state.get(HISTORY):  # the last answer can still be taken back
            st.button("Undo", key="undo", shortcut="U", on_click=_undo)
    else:
        why = REASONS.get(item.reason, item.reason)
        info = f"Why this text: {why}."
        if item.predicted_label is not None and item.confidence is not None:
            info += (f" Model v{item.model_version} predicts {item.predicted_label!r} "
                     f"({item.confidence:.0%}).")
        st.caption(ui.md_escape(info))
        with st.container(height=360, border=True, key="item-text"):
            st.text(item.text)
        cols = st.columns(min(len(project.labels), 5))
        for i, (label, label_id) in enumerate(zip(project.labels, project.label_ids)):
            key = str(i + 1) if i < 9 else None
            cols[i % len(cols)].button(
                ui.md_escape(label), key=f"label-{item.example_id}-{i}", shortcut=key,
                width="stretch", on_click=_submit, args=(item.example_id, label_id, item.reason),
                type="primary" if label == item.predicted_label else "secondary",
            )
        left, right, _ = st.columns([1, 1, 4])
        left.button("Skip", key=f"skip-{item.example_id}", shortcut="S", on_click=_skip,
                    args=(item.example_id,))
        right.button("Undo", key="undo", shortcut="U", on_click=_undo)

    ui.release_focus_if_asked()
    st.subheader("Your last answers", anchor=False)
    recent = recent_annotations(settings, project.id, me, limit=10)
    if not recent:
        st.caption("Nothing yet.")
    for answer in recent:
        text_col, label_col = st.columns([4, 1])
        text_col.text(answer.text_preview or "")
        key = f"relabel-{answer.example_id}"
        options = list(project.labels)
        label_col.selectbox(
            "label", options, index=options.index(answer.label) if answer.label in options else 0,
            key=key, label_visibility="collapsed", on_change=_relabel,
            args=(answer.example_id, key),
        )


labelling()
