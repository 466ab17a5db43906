"""Untrusted texts and label names stay inert everywhere: pages, exports, error messages."""

from __future__ import annotations

import csv
import io
import json

from streamlit.testing.v1 import AppTest

from db.engine import read_unit, write_unit
from db.exporting import export
from db.importing import import_file
from db.models import Role
from db.projects import add_labels, get_project
from db.queue import QueueEntry, replace_queue
from db.users import add_user
from tests.app.test_pages import MAIN

HOSTILE_LABEL = "**bold** ![x](http://example.invalid/p.png) <b>tag</b>"
TEXTS = ["<script>alert('x')</script>", "[click](javascript:alert(1))", "=HYPERLINK(\"http://x\")",
         "@SUM(1+1)", "$x^2$ :red[red]"]


def _project(settings, tmp_path):
    source = tmp_path / "hostile.jsonl"
    source.write_text("\n".join(json.dumps({"text": t, "label": HOSTILE_LABEL if i == 0 else None})
                                for i, t in enumerate(TEXTS)))
    import_file(settings, source, "H", label_field="label", labels=[HOSTILE_LABEL, "plain"])
    add_user(settings, "alice", "alice-password", Role.ADMIN)
    with read_unit(settings) as session:
        return get_project(session, "H")


def test_pages_show_hostile_texts_and_labels_as_typed(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    project = _project(settings, tmp_path)
    with write_unit(settings) as session:
        replace_queue(session, project.id, [QueueEntry(i, "uncertain", 0.5, HOSTILE_LABEL, 0.6)
                                            for i in range(2, 6)])
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["annotator"] = "alice"
    at.session_state["session_version"] = 0  # as signed in
    at.run()
    assert not at.exception
    shown = at.get("text")[0].value if at.get("text") else None
    assert shown in TEXTS[1:]  # literally, through st.text
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    rendered += [b.label for b in at.button]
    for value in rendered:  # any Markdown-rendering element carries the label escaped
        assert "![x](" not in value and "**bold**" not in value
    assert any("\\!\\[x\\]" in value for value in rendered)
    for page in ("data", "team", "settings", "model", "export"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, page
        for m in list(at.markdown) + list(at.caption) + list(at.error) + list(at.success):
            assert HOSTILE_LABEL not in m.value, (page, m.value)  # only ever escaped


def test_error_messages_escape_hostile_names(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    _project(settings, tmp_path)
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["annotator"] = "alice"
    at.session_state["session_version"] = 0  # as signed in
    at.run()
    at.switch_page("views/settings.py").run()
    next(b for b in at.selectbox if b.label == "Rename").select("plain")  # a clash
    at.text_input[1].input(HOSTILE_LABEL)
    next(b for b in at.button if b.label == "Rename").click().run()
    assert at.error
    message = at.error[0].value
    assert "already has a label" in message and "![x](" not in message and "\\!\\[x\\]" in message


def test_a_message_listing_bad_rows_keeps_one_line_per_row_and_stays_inert():
    """Rendered as CommonMark (as Streamlit's frontend does), an escaped message of several
    lines keeps its line breaks and no Markdown of the file's content comes alive."""
    from markdown_it import MarkdownIt

    from app.ui import md_escape

    message = ("data.csv: 2 bad rows:\n  line 3: no text in 'text'\n"
               "  line 5: label **bold** [x](http://example.invalid)\nFix them and run again.")
    html = MarkdownIt("commonmark").render(md_escape(message))
    assert html.count("<br />") == 3, html
    assert "<strong>" not in html and "<a " not in html
    assert "line 5: label **bold** [x](http://example.invalid)" in html


def test_exports_neutralise_formulas_and_keep_texts_exact(settings, tmp_path):
    _project(settings, tmp_path)
    with write_unit(settings) as session:
        add_labels(session, get_project(session, "H").id, ["=cmd|' /C calc'!A0"])
    out = io.BytesIO()
    export(settings, "H", out, "csv", None)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert rows[0]["text"] == TEXTS[0] and rows[0]["label"] == HOSTILE_LABEL
    out = io.BytesIO()
    from db.exporting import ExportFilters

    export(settings, "H", out, "csv", ExportFilters(include_unlabelled=True))
    cells = [r["text"] for r in csv.DictReader(io.StringIO(out.getvalue().decode()))]
    assert "'=HYPERLINK(\"http://x\")" in cells and "'@SUM(1+1)" in cells
    out = io.BytesIO()
    export(settings, "H", out, "jsonl", ExportFilters(include_unlabelled=True))
    texts = [json.loads(line)["text"] for line in out.getvalue().splitlines()]
    assert texts == TEXTS  # JSON keeps every text exactly


def test_very_long_and_control_character_labels_are_refused_clearly(settings, tmp_path):
    import pytest

    from db.errors import ImportFailed, LabelwiseError
    from db.projects import create_project

    for bad, why in (("x" * 201, "too long"), ("bell\x07", "control characters"),
                     ("new\nline", "control characters"), ("   ", "empty")):
        with pytest.raises(LabelwiseError, match=why):
            with write_unit(settings) as session:
                create_project(session, f"p{len(bad)}", labels=[bad])
    source = tmp_path / "labels.csv"
    source.write_text('text,label\nfine,ok\nnasty,"esc\x1b[31mred"\n', encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        import_file(settings, source, "q", label_field="label")
    assert "line 3" in str(info.value) and "\x1b" not in str(info.value)
    with read_unit(settings) as session:
        from db.projects import find_project

        assert find_project(session, "q") is None
