"""The command line: help, exit codes, clear errors, and the data commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main
from db.runs import list_runs
from db.workers import register_worker, report_worker

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["migrate", "import", "export", "projects", "stats", "demo", "worker", "workers", "train",
            "simulate", "user", "backup", "serve"]


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    return settings


def test_help_lists_every_command_and_each_has_help():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([command, "--help"])
        assert info.value.code == 0


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["import"])
    assert info.value.code == 2
    assert "--project" in capsys.readouterr().err


def test_import_export_projects_stats(env, tmp_path, capsys):
    data = tmp_path / "news.csv"
    data.write_text("text,label,source\nRates rise again,business,a\nCup final tonight,sport,b\n"
                    "Rates rise again,business,c\nNew phone out,,d\n", encoding="utf-8")
    assert main(["import", str(data), "--project", "News", "--label-field", "label"]) == 0
    out = capsys.readouterr().out
    assert "Created the project." in out and "Accepted:                 3" in out
    assert "Duplicates in the file:   1" in out

    assert main(["projects"]) == 0
    assert "News\t2/3 labelled" in capsys.readouterr().out
    assert main(["stats", "--project", "News", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["label_counts"] == {"business": 1, "sport": 1}

    out_file = tmp_path / "out.jsonl"
    assert main(["export", "--project", "News", "--out", str(out_file)]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted((r["text"], r["label"]) for r in rows) == [
        ("Cup final tonight", "sport"), ("Rates rise again", "business")]
    assert "warning" not in capsys.readouterr().err
    assert main(["export", "--project", "News", "--out", str(out_file),
                 "--annotator", "Nobody"]) == 0  # an empty file, said so
    assert "warning: no text matches" in capsys.readouterr().err


def test_bad_input_exits_1_names_the_line_and_writes_nothing(env, tmp_path, capsys):
    data = tmp_path / "bad.csv"
    data.write_text("text,label\nfine,a\nbroken,a,extra\n", encoding="utf-8")
    assert main(["import", str(data), "--project", "P", "--label-field", "label"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3" in err and "Nothing was imported." in err
    assert main(["projects"]) == 0
    assert "No projects yet" in capsys.readouterr().out


def test_unknown_project_exits_1(env, capsys):
    assert main(["stats", "--project", "nope"]) == 1
    assert "No project named 'nope'" in capsys.readouterr().err


def _trainable_project(tmp_path) -> None:
    """Project T with 3 labelled texts per label: what a round needs (cold start's 3)."""
    data = tmp_path / "t.csv"
    data.write_text("text,label\none,a\ntwo,a\nthree,a\nfour,b\nfive,b\nsix,b\n")
    assert main(["import", str(data), "--project", "T", "--labels", "a,b",
                 "--label-field", "label"]) == 0


def test_train_refuses_a_round_that_would_fail_for_want_of_labels(env, tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text("text,label\none,a\ntwo,a\nthree,a\nfour,b\nfive,\n")
    assert main(["import", str(data), "--project", "T", "--labels", "a,b",
                 "--label-field", "label"]) == 0
    capsys.readouterr()
    assert main(["train", "--project", "T"]) == 1
    out, err = capsys.readouterr()
    assert "Not started: every label needs at least 3 labelled texts" in err
    assert "Still short, with the texts each has: b (1)." in err
    assert list_runs(env, 1) == []


def test_train_queues_a_run(env, tmp_path, capsys):
    _trainable_project(tmp_path)
    assert main(["train", "--project", "T"]) == 0
    out, err = capsys.readouterr()
    assert "is queued" in out
    assert err == ("warning: No training worker is running: start one with `python -m app "
                   "worker` (`make run` starts one with the app).\n")
    register_worker(env, "host:1")
    assert main(["train", "--project", "T"]) == 0  # coalesces into the same run
    out, err = capsys.readouterr()
    assert "Training run 1 is queued" in out and err == ""


def test_workers_lists_the_running_workers_and_fails_when_there_is_none(env, capsys):
    assert main(["workers"]) == 1
    assert "No training worker is running" in capsys.readouterr().err
    assert main(["workers", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == []

    register_worker(env, "host:1")
    register_worker(env, "host:2")
    report_worker(env, "host:2", device="cpu", device_name="Some CPU, 2 logical cores",
                  precision="fp32", warmup_s=5.0, problem="m: cannot be loaded")
    assert main(["workers"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "host:1\twarming up",
        "host:2\tready on cpu (Some CPU, 2 logical cores), training in fp32\tproblem: m: cannot be loaded"]
    assert main(["workers", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(w["id"], w["device"], w["ready_at"] is None) for w in listed] == [
        ("host:1", None, True), ("host:2", "cpu", False)]


def test_train_wait_follows_the_run_and_tells_the_time_left_after_a_timed_round(
        env, tmp_path, capsys, monkeypatch):
    import dataclasses
    import time
    from datetime import datetime, timedelta, timezone

    import db.runs
    from db.engine import write_unit
    from db.models import RunStatus
    from db.runs import claim_next_run, finish_run

    _trainable_project(tmp_path)
    assert main(["train", "--project", "T"]) == 0
    claim_next_run(env, "w")
    with write_unit(env) as session:  # a round that timed its stages
        finish_run(session, 1, RunStatus.DONE, timings={"train_s": 60.0, "score_s": 200.0})
    started = datetime.now(timezone.utc) - timedelta(seconds=120)
    real_get_run = db.runs.get_run
    script = iter([dict(status="running", stage="score", progress=0.4, started_at=started),
                   dict(status="done", stage="done", progress=1.0, started_at=started)])

    def scripted(settings, run_id):  # the worker's side, as the run's row would show it
        return dataclasses.replace(real_get_run(settings, run_id), **next(script))

    monkeypatch.setattr(db.runs, "get_run", scripted)
    register_worker(env, "host:1")
    monkeypatch.setattr(time, "sleep", lambda s: None)
    capsys.readouterr()
    assert main(["train", "--project", "T", "--wait"]) == 0
    err = capsys.readouterr().err.splitlines()
    # 120 s for 40%: 180 s for the rest
    assert err == ["running score 40%, about 3 min left", "done done 100%"]


def test_demo_loads_bbc_news_unlabelled_with_true_labels_aside(env, capsys):
    assert main(["demo", "--if-empty"]) == 0
    assert "Loaded the demo project 'BBC News'" in capsys.readouterr().out
    from sqlalchemy import func, select

    from db.engine import read_unit
    from db.models import Annotation, Example

    with read_unit(env) as session:
        labels = dict(session.execute(select(Example.reference_label, func.count())
                                      .group_by(Example.reference_label)).all())
        assert session.scalar(select(func.count()).select_from(Annotation)) == 0
    assert set(labels) == {"business", "entertainment", "politics", "sport", "tech"}
    assert 2100 <= sum(labels.values()) <= 2225  # duplicates in the corpus are dropped
    assert main(["demo", "--if-empty"]) == 0
    assert "already has projects" in capsys.readouterr().out


def test_unreachable_database_is_a_clear_error(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{blocker}/sub/x.db")  # a file as a folder
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(tmp_path))
    assert main(["projects"]) == 1
    assert "Not a directory" in capsys.readouterr().err
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert main(["projects"]) == 1
    assert "database problem (127.0.0.1:9/none)" in capsys.readouterr().err


def test_user_add_list_disable(env, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["user", "add", "root", "--admin", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "eve", "--password-stdin"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["user", "disable", "root"]) == 0
    capsys.readouterr()
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out.strip() == "root\tadmin\tdisabled"
    from db.users import AuthFailed, authenticate

    with pytest.raises(AuthFailed, match="disabled"):
        authenticate(env, "root", "a-long-password")
    from db.engine import read_unit
    from db.models import Annotator
    from sqlalchemy import select

    with read_unit(env) as session:
        stored = session.scalar(select(Annotator.password_hash))
    assert stored.startswith("$argon2id$") and "a-long-password" not in stored


def test_a_password_without_a_terminal_is_a_clear_error(env, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: a pipe, /dev/null
    assert main(["user", "add", "root", "--admin"]) == 1
    assert "pipe it to --password-stdin" in capsys.readouterr().err


def test_backup_while_annotators_write(env, tmp_path, capsys):
    import sqlite3
    import threading

    from db.annotations import annotate

    data = tmp_path / "t.txt"
    data.write_text("\n".join(f"text {i}" for i in range(400)), encoding="utf-8")
    assert main(["import", str(data), "--project", "B", "--labels", "a,b"]) == 0
    stop = threading.Event()

    def write(who: str, ids: range) -> None:
        for example_id in ids:
            if stop.is_set():
                return
            annotate(env, "B", example_id, who, "a")

    writers = [threading.Thread(target=write, args=(f"w{i}", range(1 + i * 100, 101 + i * 100)))
               for i in range(4)]
    for w in writers:
        w.start()
    try:
        assert main(["backup", "--out", str(tmp_path / "copies")]) == 0
    finally:
        stop.set()
        for w in writers:
            w.join()
    out = capsys.readouterr().out
    assert "integrity check: ok" in out
    copy = next((tmp_path / "copies").glob("*.db"))
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM examples").fetchone() == (400,)
    db.close()


def test_backup_refuses_postgresql(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://x@127.0.0.1:9/none")
    assert main(["backup"]) == 1
    assert "pg_dump" in capsys.readouterr().err


def test_serve_stopped_with_sigterm_stops_the_app_it_started(settings, tmp_path):
    """`kill`, systemd and docker stop send SIGTERM: the web app must go with `serve`, not
    keep the port."""
    import os
    import signal
    import socket
    import time

    from bench.bench_keyboard import free_port, wait_http

    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir)}
    root = Path(__file__).resolve().parents[2]
    serve = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-worker", "--port",
                              str(port)], cwd=root, env=env, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # its group: to clean up whatever is left
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break  # nothing listens any more: the app stopped too
            time.sleep(0.2)
        else:
            raise AssertionError(f"the app still serves on port {port} after serve stopped")
    finally:
        try:
            os.killpg(serve.pid, signal.SIGKILL)  # serve and any child still there
        except ProcessLookupError:
            pass


def test_a_stop_signal_is_seen_even_when_its_exception_is_lost():
    """Raised while a `__del__` runs, the KeyboardInterrupt of a SIGTERM is printed and lost
    (a worker was seen polling 22 minutes after its SIGTERM): the loops also check the event."""
    script = (
        "import os, signal, time\n"
        "from app.cli import stop_on_signals\n"
        "stop = stop_on_signals()\n"
        "class X:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        for _ in range(1000): pass\n"
        "X()\n"
        "time.sleep(0.2)\n"
        "print('stop set' if stop.is_set() else 'stop lost')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert "KeyboardInterrupt: SIGTERM" in done.stderr  # lost: Python only printed it
    assert done.stdout.strip() == "stop set"
