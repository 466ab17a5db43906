"""Run the benchmarks and rewrite docs/benchmarks.md: ``make bench`` (or ``make bench-quick``).

Steps, in order: import, export, queue (SQLite), queue-postgresql, keyboard, scoring, predict,
round, fastloop, sim, sim-fastloop. Each runs in a child process, so that peak memory is its own, and
writes its figures to ``OUT_DIR/raw/<step>.json``; this script wraps them as
``OUT_DIR/<step>.json``::

    {"meta": {"step", "command", "date", "commit", "machine", "machine_tag", "quick",
              "exit_code", "seconds", "cpu_steal_share", ...},
     "result": <what the benchmark wrote>}          # or "skipped": "<why not measured>"

plus ``"files": {"curve": "sim/curve.png"}`` (paths relative to OUT_DIR) where a step leaves
more than figures. A run of every step (as ``make bench`` runs them: on a CPU, not with
``--with-sim``) also writes ``OUT_DIR/run.json``, its wall time end to end and each step's. A
full run (not ``--quick``) then copies the wrapped files into ``docs/results/<machine-tag>/`` (a
skip never replaces a measured result there), and ``bench.report`` rewrites
``docs/benchmarks.md`` from those folders.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import meta, report
from bench.jsonfile import write_json

ROOT = meta.ROOT
INITDB_GLOB = "/usr/lib/postgresql/*/bin/initdb"
# The tokenizer's parallelism is left as the product has it (on, as in `make run`'s worker).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class Context:
    """What every step needs to know about this run."""

    out_dir: Path
    quick: bool
    with_sim: bool
    cuda: bool
    sim_repeats: int | None = None
    asked: frozenset[str] = frozenset()
    """The steps named with ``--only``: those that run only when asked for."""
    commit: str | None = None
    """The commit the run measures, read once as it starts: each step publishes its results
    into docs/results as it ends, which leaves the tree dirty for the steps after it."""

    def rows(self) -> str:
        return "100000" if self.quick else "1000000"

    def queue_args(self) -> list[str]:
        """bench_queue's pool sizes; a quick run also claims past a shorter queue, sooner."""
        if self.quick:
            return ["--sizes", "10000,100000", "--answers", "150", "--queue", "100"]
        return ["--sizes", "10000,100000,1000000"]


@dataclass
class Outcome:
    """One step's result, or why there is none; ``meta`` adds step-specific facts."""

    command: str | None = None
    result: Any = None
    skipped: str | None = None
    exit_code: int | None = None
    files: dict[str, Path] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result is None and bool(self.exit_code)


def _shown(argv: list[str]) -> str:
    """The command as one would type it in the repository root (passwords hidden)."""
    prefix = f"{ROOT}{os.sep}"
    line = shlex.join(a[len(prefix):] if a.startswith(prefix) else a for a in argv)
    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", line)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _call(argv: list[str]) -> int:
    print(f"$ {_shown(argv)}", flush=True)
    env = {**OFFLINE_ENV, **os.environ}
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode


def _finish(command: str, code: int, raw: Path, files: dict[str, Path] | None = None) -> Outcome:
    """The figures ``raw`` holds, or a failure if the benchmark wrote none."""
    if not raw.exists():
        return Outcome(command, skipped=f"failed: exit code {code} and no figures written",
                       exit_code=code or 1)
    kept = {key: path for key, path in (files or {}).items() if path.exists()}
    return Outcome(command, json.loads(raw.read_text(encoding="utf-8")), exit_code=code,
                   files=kept)


def _bench(ctx: Context, name: str, module: str, *args: str) -> Outcome:
    """Run ``python -m module ARGS --out OUT_DIR/raw/<name>.json``."""
    raw = ctx.out_dir / "raw" / f"{name}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    argv = _python(module, *args, "--out", str(raw))
    return _finish(_shown(argv), _call(argv), raw)


def _major(initdb: Path) -> int:
    version = initdb.parent.parent.name
    return int(version) if version.isdigit() else 0


def find_initdb() -> Path | None:
    """The newest PostgreSQL server's ``initdb`` under INITDB_GLOB, if any."""
    found = [Path(p) for p in glob.glob(INITDB_GLOB)]
    return max(found, key=_major) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def throwaway_postgres(initdb: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster in a temporary folder on a free loopback port; yields its URL.

    Default durability settings (fsync on). As root the server runs as ``postgres`` (initdb
    refuses root). The cluster is stopped and its folder removed on the way out, error or not.
    """
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = str(initdb.parent / "pg_ctl")
    data = Path(tempfile.mkdtemp(prefix="labelwise-bench-pg-"))
    port = _free_port()
    try:
        if as_user:
            shutil.chown(data, "postgres")
        subprocess.run([*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, text=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(data / "server.log"),
                        "-o", f"-h 127.0.0.1 -p {port} -k {data}", "start"],
                       check=True, capture_output=True, text=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)


def step_import(ctx: Context) -> Outcome:
    return _bench(ctx, "import", "bench.bench_import", "--rows", ctx.rows())


def step_export(ctx: Context) -> Outcome:
    return _bench(ctx, "export", "bench.bench_export", "--rows", ctx.rows())


def step_queue(ctx: Context) -> Outcome:
    return _bench(ctx, "queue", "bench.bench_queue", *ctx.queue_args())


def step_queue_postgresql(ctx: Context) -> Outcome:
    """bench_queue on BENCH_POSTGRES_URL, else on a throwaway local cluster, else skipped."""
    sizes = ctx.queue_args()
    url = os.environ.get("BENCH_POSTGRES_URL")
    if url:
        outcome = _bench(ctx, "queue-postgresql", "bench.bench_queue", *sizes,
                         "--database-url", url)
        outcome.meta["postgres"] = "the server at BENCH_POSTGRES_URL"
        return outcome
    initdb = find_initdb()
    if initdb is None:
        return Outcome(skipped="no PostgreSQL: BENCH_POSTGRES_URL is not set and no server "
                               f"binaries match {INITDB_GLOB}")
    try:
        with throwaway_postgres(initdb) as url:
            outcome = _bench(ctx, "queue-postgresql", "bench.bench_queue", *sizes,
                             "--database-url", url)
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit code {exc.returncode}"]
        return Outcome(skipped=f"failed: could not start a throwaway PostgreSQL: {why[0]}",
                       exit_code=exc.returncode or 1)
    outcome.meta["postgres"] = f"a throwaway cluster from {initdb.parent}, default settings"
    return outcome


def _quick_aware(ctx: Context, name: str, module: str) -> Outcome:
    return _bench(ctx, name, module, *(["--quick"] if ctx.quick else []))


def step_keyboard(ctx: Context) -> Outcome:
    return _quick_aware(ctx, "keyboard", "bench.bench_keyboard")


def step_scoring(ctx: Context) -> Outcome:
    return _quick_aware(ctx, "scoring", "bench.bench_scoring")


def step_predict(ctx: Context) -> Outcome:
    return _quick_aware(ctx, "predict", "bench.bench_predict")


def step_round(ctx: Context) -> Outcome:
    return _quick_aware(ctx, "round", "bench.bench_round")


def step_fastloop(ctx: Context) -> Outcome:
    return _quick_aware(ctx, "fastloop", "bench.bench_fastloop")


def step_stream(ctx: Context) -> Outcome:
    """1,000,000 texts through the scoring path with a tiny network (see bench.bench_stream):
    about 10 minutes on 2 cores, over what `make bench` has room for, so on a CPU it runs when
    asked for (``--only stream``), and at 20,000 texts in a quick run."""
    if ctx.cuda:
        return Outcome(skipped="on a GPU the scoring step streams 1,000,000 texts with the "
                               "default model itself")
    if not (ctx.quick or "stream" in ctx.asked):
        return Outcome(skipped="1,000,000 texts take about 10 minutes on 2 cores, more than "
                               "`make bench` has room for: it runs with --only stream")
    return _quick_aware(ctx, "stream", "bench.bench_stream")


SIM_STRATEGIES = ["margin", "entropy", "least_confidence", "diverse"]


def _simulation(ctx: Context, name: str, fast_loop: bool) -> Outcome:
    """The label-efficiency simulation on the demo corpus (an hour or more on a CPU: opt-in).

    The product's own training settings (6 to 10 epochs by label count, no early stopping) and
    cold start (the seed texts are the head of its queue);
    every curve (one per strategy and repeat) in its own process, as many at once as the
    machine has room for.
    On a GPU: a seed of 20 texts, then batches of 10 up to 300 labels, 3 repeats, the whole
    pool scored each round. On a CPU (``--with-sim``), where a round takes a minute or more:
    a seed of 50, then batches of 50 (the product's ``retrain_every``) up to 300, one repeat,
    a uniform sample of 1,000 pool texts scored per round; 30 rounds, which still measure
    every strategy at 50, 100 and 300 labels, the points the targets name.
    ``--sim-repeats`` sets the number of repeats (3 on a 2-core CPU: about 3 hours each).

    A simulation stopped part-way (each curve is saved as it finishes) resumes where it stopped
    when run again at the same commit with a clean work tree and the same protocol, the number
    of repeats aside (both in ``OUT_DIR/<name>/commit``); otherwise it starts afresh, so that
    every curve is from the code and the protocol the page names.
    """
    if not (ctx.with_sim or ctx.cuda):
        return Outcome(skipped="the simulation takes an hour or more on a CPU; it runs with "
                               "--with-sim, or by default where torch sees a CUDA GPU")
    data, sim_dir = ctx.out_dir / "bbc.jsonl", ctx.out_dir / name
    strategies = ["margin"] if ctx.quick else SIM_STRATEGIES
    if ctx.quick:
        protocol = {"--seed-size": 20, "--batch": 10, "--budget": 60, "--repeats": 1}
    elif ctx.cuda:
        protocol = {"--seed-size": 20, "--batch": 10, "--budget": 300, "--repeats": 3}
    else:
        protocol = {"--seed-size": 50, "--batch": 50, "--budget": 300, "--repeats": 1,
                    "--pool-cap": 1000}
    if ctx.sim_repeats:
        protocol["--repeats"] = ctx.sim_repeats
    cores = os.cpu_count() or 1
    workers = ((len(strategies) + 1) * protocol["--repeats"] if ctx.cuda
               else max(1, cores // 2))
    demo = _python("app", "demo", "--write", str(data))
    simulate = _python(
        "app", "simulate", "--data", str(data),
        *[arg for strategy in strategies for arg in ("--strategy", strategy)],
        *[str(part) for option in protocol.items() for part in option],
        "--seed-method", "cold_start", "--test-frac", "0.2", "--max-length", "128",
        "--fast-loop", "on" if fast_loop else "off", "--workers", str(min(workers, 16)),
        "--out", str(sim_dir))
    commit, stamp = ctx.commit, sim_dir / "commit"
    # what the saved curves depend on: the code and the protocol (more repeats add curves)
    stamped = f"{commit}\n{sorted((k, v) for k, v in protocol.items() if k != '--repeats')}\n"
    if (commit and not commit.endswith("+dirty") and stamp.is_file()
            and stamp.read_text(encoding="utf-8") == stamped):
        simulate.append("--resume")
    command = f"{_shown(demo)}\n{_shown(simulate)}"
    code = _call(demo)
    if code:
        return Outcome(command, skipped=f"failed: writing the demo corpus exited with {code}",
                       exit_code=code)
    (sim_dir / "results.json").unlink(missing_ok=True)
    sim_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamped, encoding="utf-8")
    return _finish(command, _call(simulate), sim_dir / "results.json",
                   {"curve": sim_dir / "curve.png"})


def step_sim(ctx: Context) -> Outcome:
    return _simulation(ctx, "sim", fast_loop=False)


def step_sim_fastloop(ctx: Context) -> Outcome:
    return _simulation(ctx, "sim-fastloop", fast_loop=True)


STEPS: dict[str, Callable[[Context], Outcome]] = {
    "import": step_import,
    "export": step_export,
    "queue": step_queue,
    "queue-postgresql": step_queue_postgresql,
    "keyboard": step_keyboard,
    "scoring": step_scoring,
    "predict": step_predict,
    "round": step_round,
    "fastloop": step_fastloop,
    "stream": step_stream,
    "sim": step_sim,
    "sim-fastloop": step_sim_fastloop,
}


def select_steps(only: str | None) -> list[str]:
    """The steps to run, in STEPS order; ``only`` is a comma-separated subset.

    Raises:
        ValueError: a name that is not a step.
    """
    if not only:
        return list(STEPS)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    unknown = sorted(wanted - STEPS.keys())
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    return [name for name in STEPS if name in wanted]


def wrap(outcome: Outcome, run_meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The wrapped result file's content: ``meta`` and ``result`` (or ``skipped``)."""
    doc: dict[str, Any] = {"meta": {**run_meta, "command": outcome.command,
                                    "exit_code": outcome.exit_code, **outcome.meta}}
    if outcome.result is not None:
        doc["result"] = outcome.result
    else:
        doc["skipped"] = outcome.skipped
    if outcome.files:
        doc["files"] = {key: path.relative_to(out_dir).as_posix()
                        for key, path in outcome.files.items()}
    return doc


def previous_sim(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What the page needs to set a simulation beside the run it replaces, else ``None``.

    Label efficiency does not depend on how busy the machine was, so two runs of the same
    protocol (the same ``config``: strategies, batches, repeats, split) at different commits
    compare fairly; this keeps the earlier run's commit, date, seed method and mean accuracy
    per strategy and label count. Runs that differ only in how the seed texts were chosen
    compare too (that is the change to show); runs from before ``seed_method`` seeded
    uniformly.
    """
    old_result, new_result = old.get("result") or {}, new.get("result") or {}
    if "summary" not in old_result:
        return None
    old_config, new_config = (dict(r.get("config") or {}) for r in (old_result, new_result))
    seed_method = old_config.pop("seed_method", "uniform")
    new_config.pop("seed_method", None)
    if old_config != new_config:
        return None
    return {"commit": old["meta"].get("commit"), "date": old["meta"].get("date"),
            "seed_method": seed_method,
            "accuracy": {name: {str(n): a for n, a in zip(s["n_labels"], s["accuracy_mean"],
                                                           strict=True)}
                         for name, s in old_result["summary"].items()}}


def publish(out_dir: Path, names: list[str], dest: Path) -> None:
    """Copy the wrapped results (and their files) of ``names`` into ``dest``.

    A skipped or failed step does not replace a measured result already there. A simulation
    that replaces one run with the same protocol keeps that run's accuracy curves (see
    :func:`previous_sim`). Attached files become ``<step>.<key><suffix>`` (``sim.curve.png``)
    beside the json.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        doc = json.loads((out_dir / f"{name}.json").read_text(encoding="utf-8"))
        target = dest / f"{name}.json"
        old = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
        if "result" not in doc and "result" in old:
            continue
        previous = previous_sim(old, doc)
        if previous:
            doc["meta"]["previous"] = previous
        files = {}
        for key, rel in doc.get("files", {}).items():
            copied = dest / f"{name}.{key}{Path(rel).suffix}"
            shutil.copyfile(out_dir / rel, copied)
            files[key] = copied.name
        if files:
            doc["files"] = files
        write_json(target, doc)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a timeout) as an exit, so that the way out runs: the running
    benchmark's process is killed and a throwaway PostgreSQL cluster stopped and removed."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="100,000 rows instead of 1,000,000 (and a short simulation); "
                             "not copied to docs/results")
    parser.add_argument("--only", metavar="NAME[,NAME...]",
                        help=f"run only these steps ({', '.join(STEPS)})")
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"),
                        help="where the results go (default: bench/out)")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR,
                        help="committed results, one folder per machine (default: docs/results)")
    parser.add_argument("--with-sim", action="store_true",
                        help="run the simulation on a CPU too (over an hour on 2 cores)")
    parser.add_argument("--sim-repeats", type=int, metavar="N",
                        help="repeats of the simulation (default: 3 on a GPU, 1 on a CPU); a "
                             "stopped simulation resumes when run again at the same commit, "
                             "with the same or more repeats")
    parser.add_argument("--no-report", action="store_true",
                        help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        names = select_steps(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    machine = meta.machine()
    tag = meta.machine_tag(machine)
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.sim_repeats is not None and args.sim_repeats < 1:
        parser.error("--sim-repeats must be at least 1")
    ctx = Context(out_dir, args.quick, args.with_sim, cuda=bool(machine["cuda_gpu"]),
                  sim_repeats=args.sim_repeats, commit=meta.git_commit(),
                  asked=frozenset(names if args.only else ()))
    print(f"Machine {tag}: {json.dumps(machine)}", flush=True)
    failed = []
    run_started, run_date, step_seconds = time.perf_counter(), meta.utc_now(), {}
    for name in names:
        run_meta = {"step": name, "date": meta.utc_now(), "commit": ctx.commit,
                    "machine": machine, "machine_tag": tag, "quick": args.quick}
        started, cpu_before = time.perf_counter(), meta.cpu_times()
        outcome = STEPS[name](ctx)
        run_meta["seconds"] = step_seconds[name] = round(time.perf_counter() - started, 1)
        run_meta["cpu_steal_share"] = meta.steal_share(cpu_before, meta.cpu_times())
        doc = wrap(outcome, run_meta, out_dir)
        write_json(out_dir / f"{name}.json", doc)
        if not args.quick:  # at once: a run stopped in a later step (a time limit) keeps it
            publish(out_dir, [name], args.results_dir / tag)
        print(f"{name}: " + ("measured" if outcome.result is not None else outcome.skipped or ""),
              flush=True)
        if outcome.failed:
            failed.append(name)
    if names == list(STEPS) and (ctx.cuda or not args.with_sim):
        # as `make bench` runs: every step, the simulation only where it runs by default
        total = round(time.perf_counter() - run_started, 1)
        write_json(out_dir / "run.json", {
            "meta": {"step": "run", "date": run_date, "commit": ctx.commit,
                     "machine": machine, "machine_tag": tag, "quick": args.quick,
                     "command": _shown(_python("bench.run", *(
                         sys.argv[1:] if argv is None else argv))),
                     "exit_code": 1 if failed else 0,
                     "seconds": total},
            "result": {"seconds": total,
                       "steps": step_seconds, "failed": failed}})
        if not args.quick:
            publish(out_dir, ["run"], args.results_dir / tag)
    if not args.no_report:
        written = report.write_report(report.OUT, run_dir=out_dir, results_dir=args.results_dir)
        print(f"Wrote {written}.")
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
