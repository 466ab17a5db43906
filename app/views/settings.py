"""Settings: label set, guidelines, and the active-learning knobs of the project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app import ui
from db.engine import read_unit, write_unit
from db.errors import LabelwiseError
from learner.errors import LearnerError
from db.projects import (
    STRATEGY_NAMES,
    LabelInUse,
    add_labels,
    project_stats,
    remove_label,
    rename_label,
    reorder_labels,
    update_project,
)
from db.runs import estimate_round

project = ui.require_project()
settings = ui.settings()
ui.require_admin()
config = project.config

st.title("Settings", anchor=False)
ui.show_flash()


def change(action, *args,  # type: ignore[no-untyped-def]
           done: str | Callable[[Any], str] = "Saved.") -> bool:
    """Run ``action`` in a write unit; flash ``done`` (or ``done`` of its result) if it worked."""
    try:
        ui.require_admin()  # again at the moment of acting, not only when the page opened
        with write_unit(settings) as session:
            result = action(session, *args)
    except LabelInUse as exc:
        st.session_state["confirm_remove"] = (args[0], args[1], exc.count)  # project id first
        return False
    except LabelwiseError as exc:
        st.error(ui.md_escape(str(exc)))
        return False
    ui.flash(done if isinstance(done, str) else done(result))
    return True


st.subheader("Labels", anchor=False)
st.caption("Order sets the buttons and the keys 1-9 on the Annotate page.")
st.dataframe([{"key": i + 1, "label": name} for i, name in enumerate(project.labels)],
             hide_index=True)
with st.form("labels_add"):
    new = st.text_input("Add labels (comma-separated)")
    if st.form_submit_button("Add") and new.strip():
        if change(add_labels, project.id, [n for n in new.split(",") if n.strip()],
                  done=lambda added: f"Added: {', '.join(added)}." if added
                  else "Nothing added: the project has these labels already."):
            st.rerun()
if project.labels:
    with st.form("labels_rename"):
        c1, c2 = st.columns(2)
        old = c1.selectbox("Rename", list(project.labels))
        to = c2.text_input("to")
        if st.form_submit_button("Rename") and change(rename_label, project.id, old, to,
                                                       done="Renamed; its annotations follow."):
            st.rerun()
    with st.form("labels_order"):
        order = st.multiselect("New order (pick every label, in order)", list(project.labels))
        if st.form_submit_button("Reorder") and change(reorder_labels, project.id, order,
                                                        done="Order saved."):
            st.rerun()
    with st.form("labels_remove"):
        victim = st.selectbox("Remove", list(project.labels))
        if st.form_submit_button("Remove") and change(remove_label, project.id, victim,
                                                       done="Label removed."):
            st.rerun()
    pending = st.session_state.get("confirm_remove")
    if pending and pending[0] != project.id:  # asked in another project: never carried over
        st.session_state.pop("confirm_remove")
        pending = None
    if pending:
        _, name, count = pending
        st.warning(ui.md_escape(
            f"{count} annotation(s) use {name!r}. Removing it deletes them and those texts go "
            "back to the unlabelled pool. This cannot be undone."))
        yes, no = st.columns(2)
        if yes.button("Remove it and its annotations", type="primary"):
            st.session_state.pop("confirm_remove")
            if change(remove_label, project.id, name, True, done=f"Removed, with {count} annotation(s)."):
                st.rerun()
        if no.button("Keep it"):
            st.session_state.pop("confirm_remove")
            st.rerun()

st.subheader("Guidelines and learning", anchor=False)
with read_unit(settings) as session:
    stats = project_stats(session, project.name)
unlabelled = stats.examples - stats.labelled
estimate = estimate_round(settings, project.id, min(config.pool_cap, unlabelled))
if estimate is not None:
    st.caption(
        f"A round now scores {estimate.pool:,} texts ({unlabelled:,} unlabelled, at most "
        f"{config.pool_cap:,} per round): about {ui.duration(estimate.seconds)} here, by the "
        f"last round, which scored {estimate.last_pool:,} at {estimate.texts_per_s:,.0f} "
        f"texts/s and took {ui.duration(estimate.last_seconds)} in all.")
with st.form("project_settings"):
    guidelines = st.text_area("Guidelines (shown to annotators)", value=project.guidelines, height=150)
    c1, c2 = st.columns(2)
    strategy = c1.selectbox("Query strategy", STRATEGY_NAMES, index=STRATEGY_NAMES.index(config.strategy))
    batch = c2.number_input("Batch size", min_value=1, value=config.batch_size)
    every = c1.number_input("Retrain automatically every N new labels (0: never)", min_value=0,
                            value=config.retrain_every)
    audit = c2.slider("Audit share", 0.0, 0.5, float(config.audit_share), 0.01)
    model_path = c1.text_input("Model (builtin:minilm-l6, a local folder, or a cached hub id)",
                               value=config.model_path)
    max_length = c2.number_input("Max length (tokens)", min_value=16, max_value=512, value=config.max_length)
    cold_k = c1.number_input("Cold start: labels needed per class", min_value=1, value=config.cold_start_k)
    warm = c2.checkbox("Warm-start each round from the last version", value=config.warm_start)
    fast_every = c2.number_input("Re-rank the queue every N labels, also while a round trains (0: off)",
                                 min_value=0, value=config.fast_loop_every)
    overlap = c1.number_input("Annotators per text (overlap)", min_value=1, max_value=20,
                              value=config.overlap)
    agreement = c2.slider("Share labelled twice (agreement)", 0.0, 1.0,
                          float(config.agreement_share), 0.01)
    pool_cap = c1.number_input(
        "Texts scored per round (a uniform sample of the unlabelled ones)", min_value=1,
        value=config.pool_cap, step=1000,
        help="Scoring is a round's longest stage on a CPU: a smaller sample makes rounds "
             "shorter, at the price of looking at fewer texts each round (the fast loop "
             "re-ranks those the last round scored).")
    if st.form_submit_button("Save", type="primary"):
        values = {"strategy": strategy, "batch_size": int(batch), "retrain_every": int(every),
                  "audit_share": float(audit), "model_path": model_path.strip(),
                  "max_length": int(max_length), "cold_start_k": int(cold_k), "warm_start": warm,
                  "overlap": int(overlap), "agreement_share": float(agreement),
                  "fast_loop_every": int(fast_every), "pool_cap": int(pool_cap)}
        try:
            ui.require_admin()
            if values["model_path"] != config.model_path:
                from learner.model import resolve_model_path  # no torch: checks files only

                resolve_model_path(values["model_path"])
            with write_unit(settings) as session:
                update_project(session, project.name, guidelines=guidelines, settings=values)
        except (LabelwiseError, LearnerError) as exc:
            st.error(ui.md_escape(str(exc)))
        else:
            ui.flash("Settings saved.")
            st.rerun()
