"""The command line: ``python -m app COMMAND``.

Exit codes: 0 success, 1 a problem with the input or the data (the message says what),
2 a usage error (argparse). Heavy imports happen inside each command, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from db.errors import ImportFailed, LabelwiseError
from db.settings import Settings, get_settings

if TYPE_CHECKING:
    from db.workers import WorkerInfo

ROOT = Path(__file__).resolve().parent.parent


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _ready(settings: Settings) -> None:
    """Apply pending migrations (a SQLite file is backed up first)."""
    from db.migrate import upgrade

    backup = upgrade(settings)
    if backup is not None:
        print(f"Migrated the database (backup: {backup}).", file=sys.stderr)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import current_revision, downgrade, upgrade

    if args.downgrade:
        downgrade(settings, args.downgrade)
        print(f"Downgraded to {current_revision(settings.database_url)}.")
        return 0
    backup = upgrade(settings, args.revision)
    print(f"Database at revision {current_revision(settings.database_url)}.")
    if backup is not None:
        print(f"Backup taken first: {backup}")
    return 0


def _print_report(report: object) -> None:
    from db.importing import ImportReport

    assert isinstance(report, ImportReport)
    if report.project_created:
        print("Created the project.")
    print(f"Rows read:                {report.rows_read}")
    print(f"Accepted:                 {report.accepted}")
    print(f"Labelled (as annotations): {report.labelled}")
    print(f"Duplicates in the file:   {report.duplicates_in_file}")
    print(f"Already in the project:   {report.duplicates_existing}")
    print(f"Rejected:                 {report.rejected_total}")
    for line in report.rejected_lines():
        print(f"  {line}")
    if report.labels_added:
        print(f"Labels added: {', '.join(report.labels_added)}")


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from db.importing import import_file

    _ready(settings)
    labels = [s for s in args.labels.split(",") if s.strip()] if args.labels else None
    try:
        report = import_file(
            settings,
            Path(args.file),
            args.project,
            text_field=args.text_field,
            label_field=args.label_field,
            fmt=args.format,
            encoding=args.encoding,
            skip_bad_rows=args.skip_bad_rows,
            add_labels=args.add_labels,
            labels=labels,
        )
    except ImportFailed as exc:
        _err(str(exc))
        print("Nothing was imported.", file=sys.stderr)
        return 1
    _print_report(report)
    from db.engine import wait_for_checkpoints

    wait_for_checkpoints()  # the rows are committed; copy them into the database file too
    return 0


def _parse_since(value: str) -> datetime:
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or date-time: {value!r} (e.g. 2026-01-31 or 2026-01-31T12:00)"
        ) from None
    return since if since.tzinfo else since.replace(tzinfo=timezone.utc)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from db.exporting import ExportFilters, export

    _ready(settings)
    fmt = args.format or Path(args.out).suffix.lstrip(".").lower()
    filters = ExportFilters(
        labels=args.label or None,
        annotators=args.annotator or None,
        labelled_since=args.since,
        include_unlabelled=args.include_unlabelled,
    )
    if args.out == "-":
        n = export(settings, args.project, sys.stdout.buffer, fmt, filters, args.all_annotations)
    else:
        n = export(settings, args.project, Path(args.out), fmt, filters, args.all_annotations)
        print(f"Wrote {n} rows to {args.out}.", file=sys.stderr)
    if n == 0:
        print("warning: no text matches: check the filters (--label, --annotator, --since), "
              "or add --include-unlabelled.", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from learner.predicting import predict_to_file

    _ready(settings)
    fmt = args.format or Path(args.out).suffix.lstrip(".").lower()
    started, last = time.monotonic(), [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 2.0 and done < total:
            return
        last[0] = now
        line = f"scored {done:,} of {total:,} texts"
        if 0 < done < total:
            minutes = (now - started) / done * (total - done) / 60
            line += f", about {max(1, round(minutes))} min left"
        print(line, file=sys.stderr, flush=True)

    out = sys.stdout.buffer if args.out == "-" else Path(args.out)
    report = predict_to_file(settings, args.project, out, fmt, version=args.version,
                             unlabelled_only=args.unlabelled, device=args.device,
                             progress=show)
    scoring = report.scoring
    print(f"Wrote {report.rows:,} rows to {args.out} with model version {report.version} "
          f"({scoring.get('device', '?')}, {scoring.get('precision', '?')}) in "
          f"{report.seconds:.1f} s.", file=sys.stderr)
    if report.warning:
        print(f"warning: {report.warning}", file=sys.stderr)
    return 0


def cmd_export_model(args: argparse.Namespace, settings: Settings) -> int:
    from learner.model_export import export_model

    _ready(settings)
    version, out = export_model(settings, args.project, Path(args.out), args.version)
    print(f"Wrote model version {version.version} (trained on {version.n_labels:,} labels) to "
          f"{out}.", file=sys.stderr)
    return 0


def cmd_projects(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import read_unit
    from db.projects import list_projects, project_stats

    _ready(settings)
    with read_unit(settings) as session:
        rows = [(p, project_stats(session, p.name)) for p in list_projects(session)]
    if args.json:
        print(json.dumps([{"name": p.name, "labels": list(p.labels), "examples": s.examples,
                           "labelled": s.labelled} for p, s in rows], indent=2))
        return 0
    if not rows:
        print("No projects yet. Import a file: python -m app import FILE --project NAME")
        return 0
    for project, stats in rows:
        print(f"{project.name}\t{stats.labelled}/{stats.examples} labelled\t"
              f"labels: {', '.join(project.labels) or '(none)'}")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import read_unit
    from db.projects import project_stats

    _ready(settings)
    with read_unit(settings) as session:
        stats = project_stats(session, args.project)
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
        return 0
    print(f"Project:     {stats.project}")
    print(f"Examples:    {stats.examples}")
    print(f"Labelled:    {stats.labelled}")
    print(f"Annotations: {stats.annotations}")
    for label, count in stats.label_counts.items():
        print(f"  {label}: {count}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from db.demo import DEMO_PROJECT, load_demo, write_corpus_jsonl
    from db.engine import read_unit
    from db.projects import find_project, list_projects

    if args.write:
        n = write_corpus_jsonl(Path(args.write))
        print(f"Wrote {n} labelled articles to {args.write} (fields: text, label, file).")
        return 0
    _ready(settings)
    with read_unit(settings) as session:
        if args.if_empty and list_projects(session):
            print("The database already has projects; demo not loaded.")
            return 0
        if find_project(session, DEMO_PROJECT) is not None:
            print(f"The demo project {DEMO_PROJECT!r} is already there.")
            return 0
    report = load_demo(settings)
    print(f"Loaded the demo project {DEMO_PROJECT!r}: {report.accepted} texts "
          f"({report.duplicates_in_file} duplicates skipped).")
    return 0


def streamlit_command(host: str, port: int, settings: Settings) -> list[str]:
    """How ``serve`` runs the web app (the browser test and ``bench_keyboard`` start it so)."""
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.enableXsrfProtection", "true", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal", "--server.maxUploadSize", str(settings.max_upload_mb)]


def stop_on_signals() -> threading.Event:
    """Make SIGINT and SIGTERM set the returned event, then raise KeyboardInterrupt.

    The exception stops what runs now (a round mid-way); the event is for a loop to check as
    well, because the exception can be lost: raised while a ``__del__`` or a weakref callback
    runs, Python prints it and goes on. A worker was seen polling 22 minutes after its SIGTERM
    (a CI run), its main thread back in the loop's wait.
    """
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start the web app and (unless --no-worker) the training worker; Ctrl-C stops both."""
    _ready(settings)
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir)}
    procs = []
    if not args.no_worker:
        procs.append(subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT))
    procs.append(subprocess.Popen(streamlit_command(args.host, args.port, settings), env=env,
                                  cwd=ROOT))
    print(f"Labelwise on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    interrupted = False
    stop = stop_on_signals()  # SIGTERM (kill, systemd, docker stop) stops both, as Ctrl-C does
    try:
        while not stop.is_set() and all(p.poll() is None for p in procs):
            try:
                procs[-1].wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        interrupted = stop.is_set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    if interrupted:
        return 0
    dead = [p for p in procs if p.returncode]
    if dead:
        _err(f"{' '.join(map(str, dead[0].args[1:4]))} stopped with exit code {dead[0].returncode}")
    return 1 if dead else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from learner.worker import WorkerOptions, run_worker, warming_up

    _ready(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = WorkerOptions(poll_s=args.poll, heartbeat_s=args.heartbeat, stale_after_s=args.stale_after)
    stop = stop_on_signals()  # SIGTERM stops it as Ctrl-C does
    try:
        run_worker(settings, options, once=args.once, stop=stop)
    except KeyboardInterrupt:
        pass
    if warming_up():  # stopped mid-warm-up: skip the teardown that torch aborts or hangs
        from db.engine import get_engine

        get_engine(settings).dispose()  # the worker's row is gone already (run_worker)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


NO_WORKER = ("No training worker is running: start one with `python -m app worker` "
             "(`make run` starts one with the app).")


def _worker_line(worker: WorkerInfo) -> str:
    if worker.ready_at is None:
        state = "warming up"
    elif worker.device:
        state = f"ready on {worker.device} ({worker.device_name}), training in {worker.precision}"
    else:
        state = "ready"
    return f"{worker.id}\t{state}" + (f"\tproblem: {worker.problem}" if worker.problem else "")


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    """List the running training workers; exit code 1 when there is none."""
    from db.workers import live_workers

    _ready(settings)
    workers = live_workers(settings)
    if args.json:
        print(json.dumps([dataclasses.asdict(w) for w in workers], indent=2,
                         default=datetime.isoformat))
    elif not workers:
        _err(NO_WORKER)
    else:
        print("\n".join(map(_worker_line, workers)))
    return 0 if workers else 1


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import read_unit
    from db.projects import get_project
    from db.runs import get_run, request_training, seconds_left
    from db.workers import live_workers
    from learner.rounds import why_not_trainable

    _ready(settings)
    with read_unit(settings) as session:
        project = get_project(session, args.project)
        why = why_not_trainable(session, project.id, project.config.cold_start_k)
    if why is not None:  # a round would fail at once: say why instead of queueing it
        raise LabelwiseError(f"Not started: {why}")
    run = request_training(settings, project.id, trigger="manual", requested_by="cli")
    print(f"Training run {run.id} is {run.status}; the worker (python -m app worker) runs it.")
    if not live_workers(settings):
        print(f"warning: {NO_WORKER}", file=sys.stderr)
    if not args.wait:
        return 0
    import time
    from datetime import datetime, timezone

    last = None
    while run.status in ("queued", "running"):
        time.sleep(1.0)
        run = get_run(settings, run.id)
        left = seconds_left(settings, run, datetime.now(timezone.utc))
        line = f"{run.status} {run.stage or ''} {run.progress:.0%}" + (
            f", about {max(1, round(left / 60))} min left" if left else "")
        if line != last:
            print(line, file=sys.stderr)
            last = line
    if run.status != "done":
        _err(f"run {run.id} {run.status}: {run.error or ''}")
        return 1
    print(f"Model version {run.model_version} ready: {json.dumps(run.metrics and {k: run.metrics.get(k) for k in ('accuracy', 'macro_f1', 'n_eval', 'n_train')})}")
    return 0


def _show_round(point: dict) -> None:
    print(f"repeat {point['repeat']} {point['strategy']:>16} n={point['n_labels']:4d} "
          f"acc={point['accuracy']:.3f} f1={point['macro_f1']:.3f} "
          f"({point['seconds']:.1f} s)", file=sys.stderr, flush=True)


def _show_curve(progress: dict) -> None:
    finished, total, minutes = progress["finished"], progress["total"], progress["seconds"] / 60
    left = (f"about {minutes / finished * (total - finished):.0f} min left" if finished < total
            else "all done")
    print(f"curve {finished} of {total} saved (repeat {progress['repeat']}, "
          f"{progress['strategy']}) after {minutes:.1f} min; {left}", file=sys.stderr, flush=True)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from db.importing import read_labelled
    from learner.model import TrainConfig, TransformerClassifier
    from learner.simulate import SimulationConfig, simulate

    texts, labels = read_labelled(Path(args.data), args.text_field, args.label_field,
                                  encoding=args.encoding)
    try:
        config = SimulationConfig(
            strategies=args.strategy or ["margin"], seed_size=args.seed_size, batch=args.batch,
            budget=args.budget, repeats=args.repeats, test_frac=args.test_frac,
            pool_cap=args.pool_cap, fast_loop=args.fast_loop == "on", fast_every=args.fast_every,
            seed_method=args.seed_method,
        )
    except ValueError as exc:
        raise LabelwiseError(str(exc)) from None
    if args.workers < 1:
        raise LabelwiseError("--workers must be at least 1")
    if any(not 0 <= r < args.repeats for r in args.only_repeat or ()):
        raise LabelwiseError(f"--only-repeat takes 0 to {args.repeats - 1} (--repeats "
                             f"{args.repeats} numbers the repeats from 0)")
    train = TrainConfig(max_length=args.max_length, seed=0, epochs=args.epochs)
    backbone = args.model or settings.model_path
    factory = functools.partial(TransformerClassifier, backbone, train)
    try:
        results = simulate(texts, labels, config, factory, Path(args.out),
                           title=f"{Path(args.data).name}: {len(set(labels))} labels",
                           on_round=_show_round, workers=args.workers, resume=args.resume,
                           model={"backbone": backbone, "train": dataclasses.asdict(train)},
                           only_repeats=args.only_repeat, on_curve=_show_curve)
    except KeyboardInterrupt:
        _err(f"stopped: the finished curves are in {Path(args.out) / 'curves'}; the same command "
             "with --resume runs only the rest")
        return 130
    if results["resumed"]:
        print(f"Kept {len(results['resumed'])} curves finished earlier in {args.out}: "
              f"{', '.join(results['resumed'])}")
    if results["missing"]:
        parts = sorted(set(args.only_repeat))
        print(f"Saved the curves of repeat{'s' if len(parts) > 1 else ''} "
              f"{', '.join(map(str, parts))} in {Path(args.out) / 'curves'}; {len(results['missing'])} curves are still to "
              f"run ({', '.join(results['missing'])}). When their files are in that folder "
              "(run here, or copied from another machine's), the same command with --resume "
              "and without --only-repeat writes the results.")
        return 0
    for name, s in results["summary"].items():
        print(f"{name:>16}: AUC(acc) {s['auc_accuracy']:.3f}, final acc "
              f"{s['accuracy_mean'][-1]:.3f} ± {s['accuracy_std'][-1]:.3f}, "
              f"reaches random's final accuracy at {s.get('labels_to_reach_random_final')} labels")
    print(f"Wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'curve.png'}")
    return 0


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    import sqlite3

    from db.engine import sqlite_path
    from db.migrate import backup_sqlite

    db_file = sqlite_path(settings.database_url)
    if db_file is None:
        raise LabelwiseError("backup copies SQLite files; for PostgreSQL use pg_dump.")
    if not db_file.exists():
        raise LabelwiseError(f"No database at {db_file}.")
    copy = backup_sqlite(db_file, Path(args.out) if args.out else settings.backups_dir, "manual")
    check = sqlite3.connect(copy)
    try:
        verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    if verdict != "ok":
        raise LabelwiseError(f"The copy {copy} failed its integrity check: {verdict}")
    print(f"Backed up to {copy} (integrity check: ok).")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():  # getpass would echo, or fail on a closed input
        raise LabelwiseError("No terminal to type the password in: pipe it to --password-stdin.")
    import getpass

    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
    except EOFError:
        raise LabelwiseError("No password given (the input ended).") from None
    if again != first:
        raise LabelwiseError("The passwords differ.")
    return first


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from db.models import Role
    from db.users import add_user, list_users, set_active, set_password

    _ready(settings)
    if args.action == "list":
        for user in list_users(settings):
            print(f"{user.name}\t{user.role}\t{'active' if user.is_active else 'disabled'}")
        return 0
    if not args.name:
        raise LabelwiseError(f"'user {args.action}' needs a NAME.")
    if args.action == "add":
        role = Role.ADMIN if args.admin else Role.ANNOTATOR
        add_user(settings, args.name, _read_password(args), role)
        print(f"Added {role.value} {args.name!r}.")
    elif args.action == "passwd":
        set_password(settings, args.name, _read_password(args))
        print(f"Password of {args.name!r} changed.")
    else:
        set_active(settings, args.name, args.action == "enable")
        print(f"{args.name!r} {args.action}d.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Labelwise: label texts with a model in the loop.",
        epilog="Settings come from the environment: DATABASE_URL, LABELWISE_DATA_DIR, "
        "LABELWISE_MODEL (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace, Settings], int], help: str,
            description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "apply database migrations (backs SQLite up first)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead")

    p = add("import", cmd_import, "import texts from CSV, TSV, JSONL, JSON, TXT or Parquet",
            "Import a file into a project (created if missing). Nothing is written if any row "
            "is bad, unless --skip-bad-rows.")
    p.add_argument("file", help="the file to import")
    p.add_argument("--project", required=True, help="project name")
    p.add_argument("--text-field", default="text", help="column holding the text (default: text)")
    p.add_argument("--label-field", help="column holding a label: rows become annotations")
    p.add_argument("--format", choices=["csv", "tsv", "jsonl", "json", "txt"],
                   help="file format (default: from the extension)")
    p.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")
    p.add_argument("--labels", help="comma-separated label set for a new project")
    p.add_argument("--skip-bad-rows", action="store_true", help="import good rows, report bad ones")
    p.add_argument("--add-labels", action="store_true",
                   help="add labels found in the file to the project's label set")

    p = add("export", cmd_export, "export labelled data as JSONL, CSV or Parquet")
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True, help="output file, or - for standard output")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"],
                   help="default: from the file extension")
    p.add_argument("--label", action="append", help="only examples with this final label (repeat)")
    p.add_argument("--annotator", action="append", help="only this annotator's labels (repeat)")
    p.add_argument("--since", type=_parse_since, help="only labels given since this date")
    p.add_argument("--all-annotations", action="store_true",
                   help="one row per annotation, with annotator and timestamps")
    p.add_argument("--include-unlabelled", action="store_true", help="add unlabelled texts")

    p = add("predict", cmd_predict, "write the model's predictions for a project's texts",
            "Score a project's texts with its latest model version (or --version) and write "
            "each with its human label (if any), the predicted label, its confidence and every "
            "label's probability, as JSONL, CSV or Parquet.")
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True, help="output file, or - for standard output")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"],
                   help="default: from the file extension")
    p.add_argument("--version", type=int, help="model version (default: the latest)")
    p.add_argument("--unlabelled", action="store_true",
                   help="only the texts nobody labelled (faster: the others are not scored)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA where there is a GPU)")

    p = add("export-model", cmd_export_model, "copy a trained model out, as a folder or a zip",
            "Copy a project's model version (the latest, or --version) to a new folder, or a "
            "zip where --out ends in .zip: a Hugging Face checkpoint with the label names "
            "(transformers' pipeline('text-classification', model=FOLDER) loads it) and "
            "labelwise.json.")
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True, help="a new (or empty) folder, or FILE.zip")
    p.add_argument("--version", type=int, help="model version (default: the latest)")

    p = add("projects", cmd_projects, "list projects")
    p.add_argument("--json", action="store_true")

    p = add("stats", cmd_stats, "counts for one project")
    p.add_argument("--project", required=True)
    p.add_argument("--json", action="store_true")

    p = add("demo", cmd_demo, "load the demo project (BBC News, 2,225 articles)")
    p.add_argument("--if-empty", action="store_true", help="only if the database has no project")
    p.add_argument("--write", metavar="FILE",
                   help="instead, write the labelled corpus as JSONL (for simulate)")

    p = add("worker", cmd_worker, "run the training worker (rounds, queues) until Ctrl-C")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between passes when idle")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    p.add_argument("--stale-after", type=float, default=60.0,
                   help="a running run silent this long is marked failed")

    p = add("workers", cmd_workers, "list the running training workers (exit code 1: none)")
    p.add_argument("--json", action="store_true")

    p = add("train", cmd_train, "ask the worker for a training round now")
    p.add_argument("--project", required=True)
    p.add_argument("--wait", action="store_true", help="wait for the round and print its result")

    p = add("simulate", cmd_simulate, "simulate active learning on a labelled file",
            "Label a file's texts with an oracle that answers from its labels, per strategy "
            "(random always included), and write DIR/results.json and DIR/curve.png.")
    p.add_argument("--data", required=True, help="labelled CSV, TSV, JSONL or JSON file")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--strategy", action="append",
                   choices=["margin", "least_confidence", "entropy", "diverse", "random"])
    p.add_argument("--seed-size", type=int, default=20)
    p.add_argument("--seed-method", choices=["cold_start", "uniform"], default="cold_start",
                   help="the first texts labelled: the head of the product's cold-start queue "
                        "(k-means medoids) or a uniform sample")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--test-frac", type=float, default=0.2)
    p.add_argument("--pool-cap", type=int, help="score at most this many pool texts per round")
    p.add_argument("--model", help="backbone (default: LABELWISE_MODEL or builtin:minilm-l6)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int,
                   help="training epochs per round (default: the product's, 6 to 10 by label count)")
    p.add_argument("--fast-loop", choices=["on", "off"], default="off",
                   help="between rounds, re-rank on the round's embeddings every few answers")
    p.add_argument("--fast-every", type=int, default=5, help="answers between fast re-ranks")
    p.add_argument("--workers", type=int, default=1,
                   help="curves run in this many processes at once (CPU cores or GPU share)")
    p.add_argument("--out", required=True,
                   help="output folder (each curve is saved in DIR/curves/ as it finishes)")
    p.add_argument("--resume", action="store_true",
                   help="keep the curves an earlier run with the same settings, data and model "
                        "finished in --out, and run only the rest (use it with the same code)")
    p.add_argument("--only-repeat", type=int, action="append", metavar="R",
                   help="run only repeat R (0 to --repeats minus 1; repeatable), to measure a "
                        "simulation in parts: merge the parts' curves/ files with --resume")

    p = add("user", cmd_user, "manage accounts: add, list, disable, enable, passwd",
            "Accounts for the web app. Passwords are read from the terminal, or from one line of "
            "standard input with --password-stdin.")
    p.add_argument("action", choices=["add", "list", "disable", "enable", "passwd"])
    p.add_argument("name", nargs="?")
    p.add_argument("--admin", action="store_true", help="with add: an admin, not an annotator")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    p = add("backup", cmd_backup, "copy the SQLite database while it is in use",
            "An online copy (SQLite backup API) that annotators can keep writing through; the "
            "copy is checked with PRAGMA integrity_check.")
    p.add_argument("--out", help="folder for the copy (default: DATA_DIR/backups)")

    p = add("serve", cmd_serve, "start the web app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="localhost", help="address to bind (default: localhost)")
    p.add_argument("--no-worker", action="store_true", help="do not start the training worker")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from sqlalchemy.exc import SQLAlchemyError

    from learner.errors import LearnerError

    try:
        return int(args.func(args, get_settings()))
    except (LabelwiseError, LearnerError) as exc:
        _err(str(exc))
        return 1
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        _err(f"database problem ({get_settings().database_url.split('@')[-1]}): {cause}")
        return 1
    except OSError as exc:
        _err(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
