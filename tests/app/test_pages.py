"""Every page under Streamlit's AppTest: it renders, its main action works, errors are st.error."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from app import ui
from db.engine import read_unit, write_unit
from db.importing import import_file
from db.models import Annotation
from db.projects import get_project, update_project
from db.queue import QueueEntry, claim_next, replace_queue
from db.models import Role, RunStatus
from db.runs import list_runs
from db.users import add_user, set_active

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
TEXTS = [
    ("<script>alert(1)</script>", ""),
    ("![tracker](http://example.invalid/x.png) **bold**", ""),
    ("The match ended in a draw", "sport"),
    ("Shares fell sharply", "business"),
    ("A plain unlabelled text", ""),
]


@pytest.fixture
def app(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    source = tmp_path / "seed.jsonl"
    import json

    source.write_text("\n".join(json.dumps({"text": t, "label": y or None}) for t, y in TEXTS))
    import_file(settings, source, "News", label_field="label", labels=["sport", "business"])
    add_user(settings, "alice", "alice-password", Role.ADMIN)
    with read_unit(settings) as session:
        project = get_project(session, "News")
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["annotator"] = "alice"
    at.session_state["session_version"] = 0  # as signed in
    return at, project


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _trainable(settings) -> None:
    """Let News train with the one labelled text per label it has (cold start needs 3)."""
    with write_unit(settings) as session:
        update_project(session, "News", settings={"cold_start_k": 1})


def _annotations(settings) -> int:
    with read_unit(settings) as session:
        return session.scalar(select(func.count()).select_from(Annotation))


@pytest.fixture
def fresh(settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    return AppTest.from_file(MAIN, default_timeout=60)


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    return _button(at, "Sign in").click().run()


def test_first_run_offers_an_admin_account_only_on_loopback(fresh, settings, monkeypatch):
    from streamlit import config

    before = config.get_option("server.address")
    request_address = lambda value: config.set_option("server.address", value)  # noqa: E731
    request_address("0.0.0.0")
    try:
        _first_run(fresh, request_address)
    finally:
        request_address(before)


def _first_run(fresh, request_address) -> None:
    at = fresh.run()
    assert not at.exception
    assert "python -m app user add" in at.warning[0].value  # no sign-up form on a public bind
    assert [b.label for b in at.button] == ["Sign in"]
    request_address("localhost")
    at.run()
    at.text_input[0].input("root")
    at.text_input[1].input("long-password")
    at.text_input[2].input("long-password")
    _button(at, "Create admin").click().run()
    assert not at.exception and at.session_state["annotator"] == "root"
    at2 = AppTest.from_file(MAIN, default_timeout=60).run()  # an admin exists: no first-run form
    assert "Create admin" not in [b.label for b in at2.button]


def test_sign_in_needs_the_password_and_an_active_account(fresh, settings):
    add_user(settings, "bob", "bob-password")
    at = fresh.run()
    _sign_in(at, "bob", "wrong-password")
    assert at.error and "Wrong name or password" in at.error[0].value
    assert "annotator" not in at.session_state
    _sign_in(at, "nobody", "bob-password")
    assert at.error and "Wrong name or password" in at.error[0].value
    _sign_in(at, "bob", "bob-password")
    assert not at.exception and at.session_state["annotator"] == "bob"
    assert "Sign out" in [b.label for b in at.button]
    set_active(settings, "bob", False)  # disabled: signed out on the next run
    at.run()
    assert "annotator" not in at.session_state and "Sign in" in [b.label for b in at.button]
    _sign_in(at, "bob", "bob-password")
    assert "disabled" in at.error[0].value


def test_sign_out_ends_the_accounts_other_sessions(app, settings):
    """Signing out ends every session of the account (another tab, another device, a copied
    cookie): the other one is at the sign-in form on its next run."""
    at, _ = app
    other = AppTest.from_file(MAIN, default_timeout=60)
    other.session_state["annotator"] = "alice"
    other.session_state["session_version"] = 0  # as signed in
    other.run()
    assert any(b.label == "Sign out" for b in other.button)
    at.run()
    _button(at, "Sign out").click().run()
    other.run()
    assert not other.exception
    assert any(b.label == "Sign in" for b in other.button)
    assert not any(b.label == "Sign out" for b in other.button)


def test_users_page_sets_a_password_and_says_when_none_was_typed(app, settings):
    from db.users import authenticate

    at, _ = app
    add_user(settings, "bob", "bob-password")
    _open(at, "users")
    _button(at, "Set password").click().run()
    assert [e.value for e in at.error] == ["Type the new password first."]
    next(t for t in at.text_input if t.label.startswith("New password")).input("new-password")
    _button(at, "Set password").click().run()
    assert not at.error
    assert authenticate(settings, "bob", "new-password").name == "bob"


def test_annotator_gets_only_the_annotate_page(app, settings):
    at, _ = app
    add_user(settings, "ann", "ann-password")
    at.session_state["annotator"] = "ann"
    at.session_state["session_version"] = 0  # as signed in
    at.run()
    assert not at.exception
    with pytest.raises(ValueError, match="Known pages: .*annotate.py'\\]"):
        at.switch_page("views/model.py").run()  # only Annotate is in an annotator's navigation


def test_annotate_serves_queue_labels_undoes_and_shows_text_literally(app, settings):
    at, project = app
    with write_unit(settings) as session:  # serve the two hostile texts first
        replace_queue(session, project.id, [QueueEntry(1, "uncertain", 0.9, "sport", 0.51),
                                            QueueEntry(2, "audit")])
    at.run()
    assert not at.exception
    assert at.text[0].value == "<script>alert(1)</script>"  # st.text: no HTML, no Markdown
    assert any("unsure" in c.value for c in at.caption)
    before = _annotations(settings)
    at.button(key="label-1-1").click().run()  # text 1 gets "business"
    assert _annotations(settings) == before + 1
    assert at.text[0].value.startswith("![tracker]")  # the next queued text, as typed
    assert not [m for m in at.markdown if "tracker" in m.value]  # never rendered as Markdown
    at.button(key="label-2-0").click().run()
    assert _annotations(settings) == before + 2
    at.button(key="undo").click().run()
    assert _annotations(settings) == before + 1
    assert at.text[0].value.startswith("![tracker]")  # the undone text is back
    other = claim_next(settings, project.id, "bob")
    assert other is None or other.example_id != 2  # and still alice's alone
    at.button(key="skip-2").click().run()
    assert not at.text[0].value.startswith("![tracker]")


def test_two_tabs_of_one_annotator_never_overwrite_each_others_answer(app, settings):
    """Both tabs show the text the account holds; the second tab's press for a text answered
    in the first since it was shown is dropped, with a message, and the first answer stands."""
    at, project = app
    with write_unit(settings) as session:
        replace_queue(session, project.id, [QueueEntry(1, "uncertain"), QueueEntry(2, "uncertain")])
    other = AppTest.from_file(MAIN, default_timeout=60)
    other.session_state["annotator"] = "alice"
    other.session_state["session_version"] = 0  # as signed in
    at.run()
    other.run()
    assert at.text[0].value == other.text[0].value == "<script>alert(1)</script>"
    at.button(key="label-1-0").click().run()  # sport, in the first tab
    other.button(key="label-1-1").click().run()  # business, in the second: too late
    assert not other.exception
    assert any("You answered text 1 elsewhere" in i.value.replace("\\", "") for i in other.info)
    with read_unit(settings) as session:
        labels = session.execute(select(Annotation.label_id).where(
            Annotation.example_id == 1)).scalars().all()
    assert labels == [project.label_ids[0]]
    assert other.text[0].value.startswith("![tracker]")  # the second tab moved on


def test_the_last_answer_can_be_undone_and_skipped_texts_come_back_at_the_end(app, settings):
    at, _ = app
    at.run()
    shown = []
    while (buttons := [b for b in at.button if b.key and b.key.startswith("skip-")]):
        shown.append(at.text[0].value)
        buttons[0].click().run()  # skip every text left (1, 2 and 5 are unlabelled)
    assert len(shown) == 3 and not at.success
    assert [i.value for i in at.info] == ["No text left but the 3 you skipped."]
    _button(at, "Show the skipped texts again").click().run()
    assert at.text[0].value in shown
    while (labels := [b for b in at.button if b.key and b.key.startswith("label-")]):
        labels[0].click().run()  # answer them all
    assert at.success and _annotations(settings) == 2 + 3
    at.button(key="undo").click().run()  # the end of the queue still has Undo
    assert _annotations(settings) == 2 + 2
    assert at.text[0].value in shown


def test_double_click_never_labels_the_next_text_unseen(app, settings):
    at, project = app
    with write_unit(settings) as session:
        replace_queue(session, project.id, [QueueEntry(1, "uncertain"), QueueEntry(2, "uncertain")])
    at.run()
    stale = at.button(key="label-1-0")
    stale.click().run()
    assert at.text[0].value.startswith("![tracker]")  # text 2 is shown now
    stale.click().run()  # the second click of a double click, on text 1's button
    assert not at.exception
    with read_unit(settings) as session:
        rows = session.execute(select(Annotation.example_id)
                               .where(Annotation.annotator_id != 1)).scalars().all()
    assert sorted(rows) == [1]  # one row, for text 1 only; text 2 untouched


def test_a_label_renamed_while_its_button_is_on_screen_keeps_its_meaning(app, settings):
    """The buttons carry the label's id: a press after a rename in another session records
    that label under its new name (not "Unknown label"), and the page then shows the new name."""
    from db.projects import rename_label

    at, project = app
    with write_unit(settings) as session:
        replace_queue(session, project.id, [QueueEntry(1, "uncertain"), QueueEntry(2, "uncertain")])
    at.run()
    assert at.button(key="label-1-0").label == "sport"
    with write_unit(settings) as session:
        rename_label(session, project.id, "sport", "football")
    at.button(key="label-1-0").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with read_unit(settings) as session:
        stored = session.execute(select(Annotation.example_id, Annotation.label_id)
                                 .where(Annotation.example_id == 1)).all()
    assert stored == [(1, project.label_ids[0])]
    assert at.button(key="label-2-0").label == "football"


def test_the_project_is_in_the_address_so_a_refresh_keeps_it(app, settings, tmp_path):
    at, _ = app
    source = tmp_path / "other.txt"
    source.write_text("one text\nanother text\n")
    import_file(settings, source, "Other")
    at.run()
    assert at.query_params["project"] == "News"  # the first project, written to the address
    at.selectbox(key=ui.PROJECT).set_value("Other").run()
    assert at.query_params["project"] == "Other"
    refreshed = AppTest.from_file(MAIN, default_timeout=60)  # a new session, same address
    refreshed.session_state["annotator"] = "alice"
    refreshed.session_state["session_version"] = 0  # as signed in
    refreshed.query_params["project"] = "Other"
    refreshed.run()
    assert not refreshed.exception
    assert refreshed.selectbox(key=ui.PROJECT).value == "Other"


def test_choosing_a_project_gives_the_keyboard_back(app, settings, tmp_path):
    """After a choice the box keeps the focus and the keys 1-9 would type into it: the next run
    blurs it (a script in a same-origin iframe), once."""
    at, _ = app
    source = tmp_path / "other.txt"
    source.write_text("one text\nanother text\n")
    import_file(settings, source, "Other")

    def blurs() -> int:
        return sum("activeElement?.blur()" in getattr(e.proto, "srcdoc", "")
                   for e in at.sidebar if getattr(e, "type", "") == "iframe")

    at.run()
    assert blurs() == 0
    at.selectbox(key=ui.PROJECT).set_value("Other").run()
    assert blurs() == 1
    at.run()
    assert blurs() == 0


def test_data_page_counts_labels_in_the_projects_order(app, settings):
    """The label-count bars follow the project's label order (the keys 1-9), not the alphabet."""
    import json

    import pyarrow as pa

    at, _ = app
    _open(at, "data")
    (chart,) = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    spec = json.loads(chart.proto.spec)
    assert spec["encoding"]["y"]["field"] == "label" and spec["encoding"]["y"]["sort"] is None
    (data,) = chart.proto.datasets
    table = pa.ipc.open_stream(data.data.data).read_all()
    assert table.column("label").to_pylist() == ["sport", "business"]
    assert table.column("annotations").to_pylist() == [1, 1]


def test_data_page_search_and_upload_errors(app, settings):
    at, _ = app
    _open(at, "data")
    at.text_input(key="browse_q").input("draw").run()
    assert not at.exception
    frames = [df.value for df in at.dataframe]
    assert any(len(f) == 1 and "draw" in f.iloc[0]["text"] for f in frames if "text" in f)


def test_data_page_change_a_label_decides_it_against_a_majority(app, settings):
    """The admin's correction is the text's gold label: two annotators' "sport" does not
    outvote it, in training and in exports."""
    from db.annotations import annotate
    from learner.rounds import final_labels

    at, project = app
    for who in ("ann", "bob"):
        annotate(settings, project.id, 3, who, "sport")
    _open(at, "data")
    next(n for n in at.number_input if n.label == "Text id").set_value(3)
    next(s for s in at.selectbox if s.label == "New label").set_value("business")
    _button(at, "Save label").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("now labelled" in s.value for s in at.success)
    with read_unit(settings) as session:
        assert final_labels(session, project.id)[3] == ("business", False)


def test_model_page_train_now_queues_one_run(app, settings):
    at, project = app
    _trainable(settings)
    _open(at, "model")
    at.button(key="train_now").click().run()
    assert not at.exception
    runs = list_runs(settings, project.id)
    assert len(runs) == 1 and runs[0].status == "queued"
    assert at.button(key="train_now").disabled
    assert "Run 1 is queued: waiting for the worker" in at.info[0].value


def test_model_page_train_now_says_which_labels_are_short_and_queues_nothing(app, settings):
    """A round would fail at once (each label needs 3 texts outside the audit slice; the seed
    has one each): the click says so under the button, instead of queueing a doomed run."""
    at, project = app
    _open(at, "model")
    at.button(key="train_now").click().run()
    assert not at.exception
    assert list_runs(settings, project.id) == []
    problem = " ".join(e.value for e in at.error)
    assert "Not started" in problem and "sport \\(1\\), business \\(1\\)" in problem, problem
    assert not at.button(key="train_now").disabled


def test_model_page_says_a_queued_round_waits_for_a_prediction_job(app, settings):
    from db.predictions import claim_next_prediction, report_prediction, request_predictions

    at, project = app
    _model_version(settings, project.id)
    job = request_predictions(settings, project.id, 1)
    claim_next_prediction(settings, "w")
    report_prediction(settings, job.id, 1, 4)
    _trainable(settings)
    _open(at, "model")
    at.button(key="train_now").click().run()
    assert ("Run 1 is queued: a worker is writing predictions first (job 1, 25% done"
            in at.info[0].value)


def test_export_page_prepares_a_download(app, settings, monkeypatch):
    at, project = app
    _open(at, "export")
    _button(at, "Prepare file").click().run()
    assert not at.exception
    project_id, path, fmt, n = at.session_state["export_file"]  # a file, not its bytes
    data = Path(path).read_bytes()
    assert project_id == project.id and fmt == "csv" and n == 2
    assert data.startswith(b"id,text,label") and Path(path).parent.parent == (
        settings.data_dir / "exports")
    (download,) = at.get("download_button")
    assert download.proto.label == f"Download CSV · 2 rows · {len(data)} bytes"
    monkeypatch.setenv("LABELWISE_MAX_DOWNLOAD_MB", "0")  # too large: named by its path
    at.run()
    assert not at.get("download_button") and [c.value for c in at.code] == [path]
    assert any("CSV · 2 rows, 0 MB: too large to download through the browser" in c.value
               for c in at.caption)
    Path(path).unlink()  # removed on the server since: prepare it again
    at.run()
    assert any("CSV · 2 rows: removed since" in c.value for c in at.caption)


def test_export_page_warns_when_no_text_matches(app, settings):
    at, _ = app
    _open(at, "export")
    assert not at.warning
    next(t for t in at.text_input if t.label.startswith("Only these annotators")).input("nobody")
    _button(at, "Prepare file").click().run()
    assert not at.exception
    assert at.session_state["export_file"][3] == 0
    assert [w.value for w in at.warning][0].startswith("No text matches: the file holds no rows.")


def test_a_label_removal_asked_in_one_project_is_not_confirmed_in_another(app, settings,
                                                                          tmp_path):
    """The confirmation of a removal that deletes annotations belongs to its project: switching
    projects drops it (it used to delete the other project's label of that name)."""
    import json

    at, project = app
    source = tmp_path / "other.jsonl"
    source.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in
                                [("a goal", "sport"), ("a deal", "business")]))
    import_file(settings, source, "Other", label_field="label", labels=["sport", "business"])
    _open(at, "settings")
    next(b for b in at.selectbox if b.label == "Remove").select("sport")
    _button(at, "Remove").click().run()
    assert any("1 annotation(s) use 'sport'" in w.value.replace("\\", "") for w in at.warning)
    at.selectbox(key=ui.PROJECT).set_value("Other").run()
    assert not at.exception
    assert not [w for w in at.warning if "annotation(s) use" in w.value.replace("\\", "")]
    assert not [b for b in at.button if b.label == "Remove it and its annotations"]
    with read_unit(settings) as session:
        assert get_project(session, "Other").labels == ("sport", "business")
        assert get_project(session, "News").labels == ("sport", "business")


def test_settings_page_adds_labels_and_rejects_bad_values(app, settings):
    at, _ = app
    _open(at, "settings")
    at.text_input[0].input("tech, politics")
    _button(at, "Add").click().run()
    assert not at.exception
    with read_unit(settings) as session:
        assert get_project(session, "News").labels == ("sport", "business", "tech", "politics")
    assert [s.value.replace("\\", "") for s in at.success] == ["Added: tech, politics."]
    at.text_input[0].input(" sport").run()
    _button(at, "Add").click().run()
    assert [s.value.replace("\\", "") for s in at.success] == [
        "Nothing added: the project has these labels already."]
    next(b for b in at.selectbox if b.label == "Rename").select("sport")  # a clash
    at.text_input[1].input("business")
    _button(at, "Rename").click().run()
    assert at.error and "already has a label" in at.error[0].value


def test_ui_process_never_imports_torch(settings, tmp_path):
    """Every page renders in a fresh process without loading torch or transformers."""
    import subprocess
    import sys

    script = tmp_path / "pages.py"
    script.write_text(
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({MAIN!r}, default_timeout=60)\n"
        "at.session_state['annotator'] = 'alice'\n"
        "at.session_state['session_version'] = 0\n"
        "at.run()\n"
        "for page in ('annotate', 'data', 'model', 'export', 'settings'):\n"
        "    at.switch_page(f'views/{page}.py'); at.run(); assert not at.exception, at.exception\n"
        "heavy = [m for m in ('torch', 'transformers', 'modAL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {"DATABASE_URL": settings.database_url, "LABELWISE_DATA_DIR": str(settings.data_dir)}
    import os

    add_user(settings, "alice", "alice-password", Role.ADMIN)
    subprocess.run([sys.executable, str(script)], check=True, env={**os.environ, **env},
                   cwd=Path(MAIN).parents[1])


def _a_round_lands(settings, project_id: int, metrics: dict | None = None) -> None:
    """Model version 1 and its queue: text 5, predicted "sport"."""
    from db.models import ModelVersion

    with write_unit(settings) as session:
        version = ModelVersion(project_id=project_id, version=1, base_model="m",
                               artefact_path="/nowhere", metrics=metrics or {})
        session.add(version)
        session.flush()
        replace_queue(session, project_id, [QueueEntry(5, "uncertain", 0.9, "sport", 0.6)],
                      version.id)


def test_model_page_draws_the_learning_curve_from_the_second_round(app, settings):
    """One point draws an empty line chart: the page says where the curve stands instead."""
    from db.models import ModelVersion

    at, project = app
    _a_round_lands(settings, project.id, {"accuracy": 0.5, "macro_f1": 0.4})
    _open(at, "model")
    assert any(c.value.startswith("Learning curve (audit slice): from the second round on; "
                                  "so far accuracy 50% at") for c in at.caption)
    assert not [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    with write_unit(settings) as session:
        session.add(ModelVersion(project_id=project.id, version=2, base_model="m", n_labels=9,
                                 artefact_path="/nowhere",
                                 metrics={"accuracy": 0.7, "macro_f1": 0.6}))
    at.run()
    assert any(s.value == "Learning curve (audit slice)" for s in at.subheader)
    assert [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]


def test_model_page_tells_how_fresh_the_queue_is(app, settings):
    at, project = app
    _open(at, "model")
    assert any("Queue: none yet" in c.value for c in at.caption)
    _a_round_lands(settings, project.id)
    at.run()
    caption = next(c.value for c in at.caption if c.value.startswith("Queue:"))
    assert "ranked by model v1" in caption and "0 labels since · 1 text left." in caption
    assert "after every 5 labels, also while a round trains" in caption


def test_model_page_says_when_the_worker_trains_by_itself(app, settings):
    from db.annotations import annotate
    from db.projects import update_project

    at, project = app

    from learner.worker import queue_automatic_rounds

    def says() -> str:
        return next(c.value for c in at.caption if c.value.startswith("No round is running."))

    def setting(**values) -> None:
        with write_unit(settings) as session:
            update_project(session, "News", settings=values)
        _open(at, "model")

    setting(cold_start_k=1)
    assert says().endswith("the worker trains the first model on its next pass.")
    setting(cold_start_k=3)
    assert says().replace("\\", "") == (
        "No round is running. The worker trains the first model by itself once every label "
        "has 3 labelled texts outside the audit slice; still short: sport (1), business (1).")
    _a_round_lands(settings, project.id)
    annotate(settings, project.id, 1, "alice", "sport")
    at.run()
    assert "every 50 new labels: 49 to go (1 since the last round)." in says()
    setting(retrain_every=0)
    assert says().startswith("No round is running. Automatic rounds are off")
    assert "every" not in says().split(";")[1]  # not "every 0 new labels"
    setting(retrain_every=1)  # due, but not every label has its 3 texts: the worker waits
    assert says().replace("\\", "").endswith(
        "trains by itself once every label has 3 labelled texts outside the audit slice; "
        "still short: sport (2), business (1).")
    assert queue_automatic_rounds(settings) == []  # as the page says
    setting(cold_start_k=1)
    assert "1 since the last round, so it starts one on its next pass." in says()
    assert len(queue_automatic_rounds(settings)) == 1  # and so it does


def test_model_page_tells_how_the_pool_was_scored(app, settings):
    from app.ui import md_escape

    from db.models import RunStatus
    from db.runs import claim_next_run, finish_run, request_training

    at, project = app
    metrics = {"n_train": 20, "scoring": {
        "device": "cpu", "precision": "ov-int8",
        "checks": {"int8": {"agreement": 0.996, "speedup": 1.8},
                   "ov-int8": {"agreement": 1.0, "speedup": 2.63}},
        "failures": {"bf16": "RuntimeError: [no](http://x) *bf16*"}}}
    _a_round_lands(settings, project.id, metrics)
    run = request_training(settings, project.id)
    claim_next_run(settings, "test")
    with write_unit(settings) as session:
        finish_run(session, run.id, RunStatus.DONE, metrics=metrics)
    _open(at, "model")
    assert not at.exception
    assert at.dataframe[-1].value["scored in"].tolist() == ["ov-int8"]
    captions = [c.value for c in at.caption if c.value.startswith("Pool scored")]
    assert captions == [md_escape(
        "Pool scored on cpu in ov-int8 after a check on a sample (ov-int8 100.0% same class as "
        "fp32 at 2.63x its speed; also tried: int8 99.6% same class as fp32 at 1.80x its speed); "
        "not tried: bf16 (RuntimeError: [no](http://x) *bf16*).")]


def test_model_page_says_what_the_model_trained_in(app, settings):
    at, project = app
    _a_round_lands(settings, project.id, {"training_precision": "bf16"})
    _open(at, "model")
    assert not at.exception
    trained = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Trained in")]
    assert trained == ["Trained in bf16 mixed precision (autocast; weights kept in fp32)."]


def test_model_page_says_a_cpu_timed_bf16_training_faster(app, settings):
    at, project = app
    _a_round_lands(settings, project.id, {"training_precision": "bf16",
                                          "training_bf16_speedup": 1.44})
    _open(at, "model")
    trained = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Trained in")]
    assert trained == ["Trained in bf16 mixed precision (autocast; weights kept in fp32): a "
                       "training step ran 1.44x as fast in bf16 as in fp32 on this CPU (bf16 "
                       "needs 1.2x)."]


def test_model_page_says_when_no_faster_precision_passed(app, settings):
    at, project = app
    _a_round_lands(settings, project.id, {"scoring": {
        "device": "cpu", "precision": "fp32", "checks": {"bf16": {"agreement": 1.0, "speedup": 0.57}},
        "failures": {}}})
    _open(at, "model")
    caption = next(c.value for c in at.caption if c.value.startswith("Pool scored"))
    assert caption.replace("\\", "") == (
        "Pool scored on cpu in fp32: no other precision passed the check on a sample "
        "(bf16 100.0% same class as fp32 at 0.57x its speed).")


def test_model_page_says_whether_a_worker_is_there_on_what_and_what_it_cannot_train(
        app, settings):
    from db.workers import register_worker, report_worker

    at, _ = app
    _open(at, "model")
    assert any("No training worker is running" in w.value for w in at.warning)

    register_worker(settings, "host:7")
    at.run()
    assert not any("No training worker" in w.value for w in at.warning)
    (caption,) = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Worker")]
    assert caption.startswith("Worker host:7: warming up (loading torch and the model) for ")

    report_worker(settings, "host:7", device="cuda", device_name="NVIDIA H200", precision="bf16",
                  warmup_s=8.2, problem="[x](http://example.invalid): cannot be loaded")
    at.run()
    (caption,) = [c.value.replace("\\", "") for c in at.caption if c.value.startswith("Worker")]
    assert caption == ("Worker host:7: ready on cuda (NVIDIA H200), training in bf16 mixed "
                       "precision (autocast; weights kept in fp32); warmed up in 8 s.")
    (warning,) = [w.value for w in at.warning]
    assert "\\[x\\]" in warning  # escaped: no link
    assert warning.replace("\\", "") == "Worker host:7: [x](http://example.invalid): cannot be loaded"


def test_model_page_cancel_and_history(app, settings):
    at, project = app
    _trainable(settings)
    _open(at, "model")
    at.button(key="train_now").click().run()
    run = list_runs(settings, project.id)[0]
    at.button(key=f"cancel-{run.id}").click().run()
    assert not at.exception
    assert list_runs(settings, project.id)[0].status == "cancelled"
    assert not at.button(key="train_now").disabled
    assert any(c.value.startswith(f"No round is running. Run {run.id} cancelled: the worker "
                                  "starts no round by itself until") for c in at.caption)


def test_model_page_tells_the_time_a_round_has_left_once_a_round_timed_its_stages(
        app, settings):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from db.models import TrainingRun
    from db.runs import claim_next_run, finish_run, heartbeat, request_training

    at, project = app
    _open(at, "model")
    first = request_training(settings, project.id)
    claim_next_run(settings, "test")
    with write_unit(settings) as session:
        finish_run(session, first.id, RunStatus.DONE,
                   timings={"train_s": 60.0, "evaluate_s": 5.0, "score_s": 200.0})
    run = request_training(settings, project.id)
    claim_next_run(settings, "test")
    heartbeat(settings, run.id, "score", 0.4)
    with write_unit(settings) as session:  # started two minutes ago
        session.execute(update(TrainingRun).where(TrainingRun.id == run.id).values(
            started_at=datetime.now(timezone.utc) - timedelta(seconds=120)))
    at.run()
    assert not at.exception
    [bar] = at.get("progress")
    assert bar.value == 40
    # 120 s for 40%: 180 s for the other 60%
    assert bar.text.startswith(f"Run {run.id}: score · 40% · 2 min · about 3 min left")
    rounds = at.dataframe[-1].value  # the finished round's stages in the history
    done = rounds[rounds["run"] == first.id].iloc[0]
    assert (done["seconds"], done["train s"], done["score s"]) == (265.0, 60.0, 200.0)

    with write_unit(settings) as session:  # no finished round before: no guess
        session.execute(update(TrainingRun).where(TrainingRun.id == first.id).values(
            status=RunStatus.FAILED.value))
    at.run()
    [bar] = at.get("progress")
    assert bar.text == f"Run {run.id}: score · 40% · 2 min"


def test_team_page_shows_agreement_and_records_gold(app, settings):
    at, project = app
    from db.annotations import annotate

    annotate(settings, project.id, 3, "bob", "business")  # text 3 was imported as "sport"
    _open(at, "team")
    assert "alpha" in at.metric[0].label
    gold = at.selectbox(key="gold-3")
    gold.select("business").run()
    assert not at.exception
    with read_unit(settings) as session:
        from db.models import Example

        assert session.get(Example, 3).gold_by == "alice"
    assert [x.value for x in at.success] == ["Gold label saved for text 3\\."]
    at.selectbox(key="gold-3").select("(no gold)").run()
    assert [x.value for x in at.success] == ["Gold label cleared for text 3\\."]
    with read_unit(settings) as session:
        assert session.get(Example, 3).gold_label_id is None


def test_text_on_screen_stays_put_across_reruns_until_a_new_round(app, settings):
    at, project = app
    at.run()  # no queue: a random unlabelled text, leased to alice
    first = at.text[0].value
    for _ in range(3):
        at.run()
        assert at.text[0].value == first
    _a_round_lands(settings, project.id)  # its queue is served next
    at.run()
    assert at.text[0].value == "A plain unlabelled text" and not at.exception
    assert any("Model v1 predicts" in c.value for c in at.caption)


def test_settings_refuses_a_model_that_cannot_be_loaded_offline(app, settings):
    at, _ = app
    _open(at, "settings")
    box = next(t for t in at.text_input if t.label.startswith("Model"))
    box.input("no-such-org/no-such-model")
    _button(at, "Save").click().run()
    assert not at.exception
    assert at.error and "local Hugging Face cache" in at.error[0].value
    with read_unit(settings) as session:
        assert get_project(session, "News").config.model_path == "builtin:minilm-l6"


def _model_version(settings, project_id: int, version: int = 1,
                   classes: tuple[str, ...] = ("sport", "business")) -> None:
    """A model version row, and the part of its files that says what it predicts."""
    import json

    from sqlalchemy import insert

    from db.models import ModelVersion
    from learner.model import ARTEFACT_FILE, ARTEFACT_FORMAT

    artefact = settings.data_dir / f"m{version}"
    artefact.mkdir(parents=True)
    (artefact / ARTEFACT_FILE).write_text(json.dumps(
        {"format": ARTEFACT_FORMAT, "classes": list(classes), "config": {}}))
    with write_unit(settings) as session:
        session.execute(insert(ModelVersion).values(
            project_id=project_id, version=version, base_model="m",
            artefact_path=str(artefact), n_labels=2, metrics={}))


def test_export_page_asks_the_worker_for_predictions_and_follows_the_jobs(app, settings,
                                                                          monkeypatch):
    from app.ui import md_escape
    from db.predictions import (
        claim_next_prediction,
        fail_prediction,
        fail_stale_predictions,
        finish_prediction,
        list_predictions,
        report_prediction,
    )

    at, project = app
    _open(at, "export")
    assert any("No model yet" in c.value for c in at.caption)
    _model_version(settings, project.id)
    _open(at, "export")
    assert not any("label set" in w.value for w in at.warning)
    at.radio(key="predict_format").set_value("jsonl")
    _button(at, "Ask the worker for predictions").click().run()
    assert not at.exception and "job 1 asked for" in at.success[0].value
    (job,) = list_predictions(settings, project.id)
    assert (job.model_version, job.unlabelled_only, job.fmt, job.requested_by) == (
        1, True, "jsonl", "alice")
    assert any("Job 1: model v1 on unlabelled texts, JSONL · queued" in c.value
               for c in at.caption)
    assert any("No worker is running" in w.value for w in at.warning)

    claim_next_prediction(settings, "w")
    report_prediction(settings, job.id, 2, 3)
    at.run()
    (bar,) = at.get("progress")
    assert "2 of 3 texts" in bar.proto.text and bar.proto.value == 66
    assert fail_stale_predictions(settings, 0) == [(1, 2)]  # its worker died: job 2 takes over
    at.run()
    assert any(r"Job 2 (job 1 again: its worker died): model v1 on unlabelled texts, JSONL · "
               "queued" in c.value for c in at.caption)
    assert md_escape("Job 1: model v1 on unlabelled texts, JSONL · failed: The worker stopped "
                     "answering (no heartbeat for 0 s); queued again as job 2.") in [
        c.value for c in at.caption]
    at.button(key="cancel-prediction-2").click().run()
    assert list_predictions(settings, project.id)[0].status == "cancelled"

    at.radio(key="predict_texts").set_value(at.radio(key="predict_texts").options[1])
    _button(at, "Ask the worker for predictions").click().run()  # every text, JSONL: job 3
    claim_next_prediction(settings, "w")
    path = settings.data_dir / "p.jsonl"
    path.write_text("{}\n")
    finish_prediction(settings, 3, 5, str(path))
    at.radio(key="predict_format").set_value("csv")
    _button(at, "Ask the worker for predictions").click().run()  # every text, CSV: job 4
    claim_next_prediction(settings, "w")
    fail_prediction(settings, 4, "InvalidArtefact: **gone** <b>")
    at.run()
    assert not at.exception
    assert not at.get("download_button")  # built on the server when asked: "Prepare"
    _button(at, "Prepare Job 3: model v1 on every text, JSONL · 5 rows").click().run()
    (download,) = at.get("download_button")
    assert download.proto.label == ("Download Job 3: model v1 on every text, JSONL · 5 rows · "
                                    "3 bytes")
    failed = next(c.value for c in at.caption if "Job 4" in c.value)
    assert failed.endswith(r"failed\: InvalidArtefact\: \*\*gone\*\* \<b\>")  # escaped
    path.write_bytes(b"x" * 2**20 + b"\n")  # over a 1 MB limit: named, not offered
    monkeypatch.setenv("LABELWISE_MAX_DOWNLOAD_MB", "1")
    at.run()
    assert not at.get("download_button")
    assert any("Job 3: model v1 on every text, JSONL · 5 rows, 1 MB: too large to download "
               "through the browser" in c.value for c in at.caption)
    assert [c.value for c in at.code] == [str(path)]


def test_export_page_warns_when_the_latest_model_predates_the_label_set(app, settings):
    at, project = app
    _model_version(settings, project.id, 1)
    _model_version(settings, project.id, 2, classes=("sport", "politics"))
    _open(at, "export")
    (warning,) = [w.value for w in at.warning if "label set" in w.value]
    assert warning.startswith(r"Model v2 was trained on another label set\: it predicts politics")
    assert r"it never predicts business \(added since\)" in warning
    assert at.selectbox(key="predict_version").options == ["v2 (2 labels)", "v1 (2 labels)"]


def test_settings_page_sets_the_texts_scored_per_round_and_tells_what_a_round_would_take(
        app, settings):
    from db.runs import claim_next_run, finish_run, request_training

    at, project = app
    _open(at, "settings")
    assert not any("A round now scores" in c.value for c in at.caption)  # no timed round yet
    run = request_training(settings, project.id)
    claim_next_run(settings, "test")
    with write_unit(settings) as session:  # 1,000 texts scored in 20 s: 50 texts/s
        finish_run(session, run.id, RunStatus.DONE, metrics={"n_pool": 1000},
                   timings={"snapshot_s": 1.0, "train_s": 50.0, "evaluate_s": 4.0,
                            "score_s": 20.0, "write_s": 5.0})
    _open(at, "settings")
    (caption,) = [c.value for c in at.caption if "A round now scores" in c.value]
    # 3 unlabelled texts (under the cap of 20,000): 60 s of other stages + 3 / 50 s of scoring
    assert caption == ("A round now scores 3 texts (3 unlabelled, at most 20,000 per round): "
                       "about 60 s here, by the last round, which scored 1,000 at 50 texts/s "
                       "and took 80 s in all.")
    box = next(n for n in at.number_input if n.label.startswith("Texts scored per round"))
    box.set_value(2)
    _button(at, "Save").click().run()
    assert not at.exception
    with read_unit(settings) as session:
        assert get_project(session, "News").config.pool_cap == 2
    (caption,) = [c.value for c in at.caption if "A round now scores" in c.value]
    assert caption.startswith("A round now scores 2 texts (3 unlabelled, at most 2 per round)")


def test_model_page_offers_the_latest_model_as_a_zip(app, settings):
    at, project = app
    _model_version(settings, project.id, 1)
    _model_version(settings, project.id, 2)
    from app.downloads import _size
    from learner.model_export import zip_bytes

    _open(at, "model")
    assert not at.get("download_button")  # zipped when asked: "Prepare"
    _button(at, "Prepare model v2 (zip)").click().run()
    (download,) = at.get("download_button")
    size = _size(len(zip_bytes(settings.data_dir / "m2", "News-model-v2")))
    assert download.proto.label == f"Download model v2 (zip) · {size}"
    (pick,) = [box for box in at.selectbox if box.label == "Model to take away"]  # or older
    assert pick.options == ["v2 (2 labels, audit accuracy –)", "v1 (2 labels, audit accuracy –)"]
    pick.set_value(1).run()
    assert not at.get("download_button")
    _button(at, "Prepare model v1 (zip)").click().run()
    (download,) = at.get("download_button")
    assert download.proto.label.startswith("Download model v1 (zip) · ")
    import shutil

    shutil.rmtree(settings.data_dir / "m1")  # its files gone from the server
    at.run()
    assert "Model v1's files are no longer on the server." in [c.value for c in at.caption]
    _model_version(settings, project.id, 3)  # a new version: offered first again
    at.run()
    assert _button(at, "Prepare model v3 (zip)")


def test_a_project_imported_on_the_data_page_is_selected_on_the_next_run(app, settings, tmp_path):
    """The Data page cannot set the sidebar's project widget once it is drawn (Streamlit
    raises, and every successful upload crashed the page): it leaves the name pending."""
    at, _ = app
    source = tmp_path / "other.txt"
    source.write_text("one text\nanother text\n")
    import_file(settings, source, "Other")
    _open(at, "data")
    assert at.selectbox(key=ui.PROJECT).value == "News"
    at.session_state[ui.PENDING_PROJECT] = "Other"  # as a successful upload leaves it
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key=ui.PROJECT).value == "Other"
    assert ui.PENDING_PROJECT not in at.session_state
