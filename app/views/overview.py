"""Projects: what each holds, and how far labelling has come."""

from __future__ import annotations

import streamlit as st

from db.engine import read_unit
from db.errors import LabelwiseError
from db.projects import list_projects, project_stats

st.title("Labelwise")
try:
    with read_unit() as session:
        rows = [(p, project_stats(session, p.name)) for p in list_projects(session)]
except LabelwiseError as exc:
    st.error(str(exc))
    st.stop()

if not rows:
    st.info("No projects yet. Import one with `python -m app import FILE --project NAME`.")
for project, stats in rows:
    with st.container(border=True):
        st.subheader(project.name, anchor=False)
        done = stats.labelled / stats.examples if stats.examples else 0.0
        st.progress(done, text=f"{stats.labelled:,} of {stats.examples:,} texts labelled")
        st.dataframe(
            {"label": list(stats.label_counts), "annotations": list(stats.label_counts.values())},
            hide_index=True,
        )
