"""The command line: ``python -m app COMMAND``.

Exit codes: 0 success, 1 a problem with the input or the data (the message says what),
2 a usage error (argparse). Heavy imports happen inside each command, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from db.errors import ImportFailed, LabelwiseError
from db.settings import Settings, get_settings

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
    print(f"Rejected:                 {len(report.rejected)}")
    for row in report.rejected[:50]:
        print(f"  line {row.line}: {row.reason}")
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
    from db.demo import DEMO_PROJECT, load_demo
    from db.engine import read_unit
    from db.projects import find_project, list_projects

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


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    _ready(settings)
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
           "--server.port", str(args.port), "--server.address", args.host,
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.enableXsrfProtection", "true"]
    print(f"Labelwise on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
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

    p = add("import", cmd_import, "import texts from CSV, TSV, JSONL, JSON or TXT",
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

    p = add("projects", cmd_projects, "list projects")
    p.add_argument("--json", action="store_true")

    p = add("stats", cmd_stats, "counts for one project")
    p.add_argument("--project", required=True)
    p.add_argument("--json", action="store_true")

    p = add("demo", cmd_demo, "load the demo project (BBC News, 2,225 articles)")
    p.add_argument("--if-empty", action="store_true", help="only if the database has no project")

    p = add("serve", cmd_serve, "start the web app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="localhost", help="address to bind (default: localhost)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, get_settings()))
    except LabelwiseError as exc:
        _err(str(exc))
        return 1
