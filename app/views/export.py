"""Export: the same code as ``python -m app export``, as a download."""

from __future__ import annotations

import io
from datetime import datetime, time, timezone

import streamlit as st

from app import ui
from db.exporting import ExportFilters, export

project = ui.require_project()
settings = ui.settings()
ui.require_admin()
MIME = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/octet-stream"}

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
    buffer = io.BytesIO()
    n = ui.attempt(export, settings, project.name, buffer, fmt, filters,
                   shape == "one per annotation", actor=ui.annotator())
    if n is not None:
        st.session_state["export_file"] = (buffer.getvalue(), fmt, n)

ready = st.session_state.get("export_file")
if ready:
    data, fmt, n = ready
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    safe = "".join(ch if ch.isalnum() else "-" for ch in project.name).strip("-") or "project"
    st.caption(f"{n:,} rows, {len(data):,} bytes")
    st.download_button(f"Download {fmt.upper()}", data, file_name=f"{safe}-{stamp}.{fmt}",
                       mime=MIME[fmt], type="primary", key="download")
