"""Data: upload a file (same importer and report as the CLI), browse and search, fix labels."""

from __future__ import annotations

import streamlit as st

from app import ui
from db.browse import search_examples
from db.engine import read_unit
from db.errors import ImportFailed, LabelwiseError
from db.importing import ImportReport, import_stream
from db.projects import project_stats
from db.review import decide_label

PAGE_SIZE = 25
settings = ui.settings()
ui.require_admin()
project = ui.current_project()

st.title("Data", anchor=False)
ui.show_flash()
# The project and report of an import just made: shown once, on the run that selects the project
# (the sidebar's choice can change only before it is drawn).
IMPORTED = "data_imported"


def show_report(report: ImportReport) -> None:
    st.write(
        f"Accepted **{report.accepted:,}** of {report.rows_read:,} rows · "
        f"{report.labelled:,} with labels · duplicates: {report.duplicates_in_file:,} in the file, "
        f"{report.duplicates_existing:,} already in the project · "
        f"rejected: {report.rejected_total:,}"
    )
    if report.rejected:
        st.dataframe([{"line": r.line, "problem": r.reason} for r in report.rejected[:200]],
                     hide_index=True)
    if report.labels_added:
        st.text("Labels added: " + ", ".join(report.labels_added))


if IMPORTED in st.session_state:
    imported, imported_report = st.session_state.pop(IMPORTED)
    st.success("Imported into " + ui.md_escape(repr(imported)) + ".")
    show_report(imported_report)

with st.expander("Import a file", expanded=project is None):
    with st.form("upload", clear_on_submit=False):
        upload = st.file_uploader("CSV, TSV, JSONL, JSON, TXT or Parquet",
                                  type=["csv", "tsv", "jsonl", "json", "txt", "parquet"])
        target = st.text_input("Project", value=project.name if project else "",
                               help="A new name creates a project.")
        c1, c2 = st.columns(2)
        text_field = c1.text_input("Text column", value="text")
        label_field = c2.text_input("Label column (optional)", value="")
        encoding = c1.text_input("Encoding", value="utf-8")
        skip = c2.checkbox("Skip bad rows (import the rest)")
        add = c2.checkbox("Add labels found in the file")
        if st.form_submit_button("Import", type="primary"):
            if upload is None or not target.strip():
                st.error("Choose a file and a project name.")
            elif upload.size > settings.max_upload_mb * 1024 * 1024:
                st.error(f"The file is larger than {settings.max_upload_mb} MB, the upload limit; "
                         "import it with `python -m app import` instead.")
            else:
                try:
                    report = import_stream(
                        settings, upload, upload.name, target.strip(),
                        text_field=text_field.strip() or "text",
                        label_field=label_field.strip() or None, encoding=encoding.strip(),
                        skip_bad_rows=skip, add_labels=add, max_rows=settings.max_import_rows,
                        actor=ui.annotator(),
                    )
                except ImportFailed as exc:
                    st.error("Nothing was imported. " + ui.md_escape(str(exc)))
                else:  # a run that shows the imported project, its counts and the report
                    st.session_state[ui.PENDING_PROJECT] = target.strip()
                    st.session_state[IMPORTED] = (target.strip(), report)
                    st.rerun()

if project is None:
    st.stop()

with read_unit(settings) as session:
    stats = project_stats(session, project.name)
st.subheader("Label counts", anchor=False)
st.caption(f"{stats.labelled:,} of {stats.examples:,} texts labelled; {stats.annotations:,} annotations.")
if stats.label_counts:
    ordered = [*project.labels, *(n for n in stats.label_counts if n not in project.labels)]
    st.bar_chart({"label": ordered, "annotations": [stats.label_counts.get(n, 0) for n in ordered]},
                 x="label", y="annotations", sort=False, horizontal=True,  # the project's order
                 height=40 + 30 * len(ordered))

st.subheader("Browse", anchor=False)
f1, f2, f3, f4 = st.columns([3, 2, 2, 2])
contains = f1.text_input("Text contains", key="browse_q")
label = f2.selectbox("Label", ["(any)", *project.labels], key="browse_label")
who = f3.text_input("Annotator", key="browse_who")
state = f4.selectbox("Status", ["all", "labelled", "unlabelled"], key="browse_state")
page_no = st.number_input("Page", min_value=1, value=1, step=1, key="browse_page")
found = ui.attempt(
    search_examples, settings, project.id,
    contains=contains or None,
    label=None if label == "(any)" else label,
    annotator=who.strip() or None,
    labelled={"all": None, "labelled": True, "unlabelled": False}[state],
    limit=PAGE_SIZE, offset=(int(page_no) - 1) * PAGE_SIZE,
)
if found is not None:
    st.caption(f"{found.total:,} matching texts")
    st.dataframe(
        [{"id": r.id, "text": r.text[:300], "labels": ", ".join(f"{lab} ({w})" for w, lab in r.labels)}
         for r in found.rows],
        hide_index=True, width="stretch",
        column_config={"text": st.column_config.TextColumn(width="large")},
    )
    with st.form("change_label"):
        st.write("Change a label")
        st.caption("Your label becomes the text's gold label: training and exports take it "
                   "over the annotators' answers (as a decision on the Team page does).")
        c1, c2 = st.columns(2)
        example_id = c1.number_input("Text id", min_value=1, step=1)
        new_label = c2.selectbox("New label", list(project.labels))
        if st.form_submit_button("Save label"):
            try:
                decide_label(settings, project.id, int(example_id), new_label, ui.annotator())
            except LabelwiseError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                st.success(ui.md_escape(f"Text {int(example_id)} is now labelled {new_label!r} "
                                        "(gold label)."))
