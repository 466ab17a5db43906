"""bench.run: step selection, the wrapped files, publishing, and steps that cannot run here."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from bench import meta, report, run
from tests.bench.conftest import MACHINE, sim_result, wrapped, write

ORDER = ["import", "export", "queue", "queue-postgresql", "keyboard", "scoring", "predict", "round",
         "fastloop", "stream", "sim", "sim-fastloop"]


@pytest.fixture
def ctx(tmp_path: Path) -> run.Context:
    return run.Context(tmp_path / "out", quick=True, with_sim=False, cuda=False)


def test_steps_in_order_each_with_a_report_section():
    assert list(run.STEPS) == ORDER
    assert list(report.SECTIONS) == ["run", *ORDER]  # the whole run's record, then the steps


def test_only_selects_a_subset_in_step_order():
    assert run.select_steps(None) == ORDER
    assert run.select_steps("sim, import") == ["import", "sim"]
    with pytest.raises(ValueError, match="unknown step.*nope"):
        run.select_steps("queue,nope")


def _fake_steps(monkeypatch, calls: list[str]) -> None:
    def fake(name: str):
        def step(ctx: run.Context) -> run.Outcome:
            calls.append(name)
            if name == "sim":
                return run.Outcome(skipped="not here")
            curve = ctx.out_dir / "fig.png"
            curve.write_bytes(b"png")
            return run.Outcome(f"bench {name}", {"figure": 1}, exit_code=0,
                               files={"curve": curve})
        return step

    monkeypatch.setattr(run, "STEPS", {name: fake(name) for name in ORDER})
    monkeypatch.setattr(meta, "machine", lambda: dict(MACHINE))
    ticks = iter(range(0, 10_000, 100))  # each reading 100 ticks later, 10 of them stolen

    def cpu_times() -> dict[str, int]:
        t = next(ticks)
        return {"user": t * 9 // 10, "nice": 0, "system": 0, "idle": 0, "iowait": 0, "irq": 0,
                "softirq": 0, "steal": t // 10}

    monkeypatch.setattr(meta, "cpu_times", cpu_times)


def test_main_runs_only_the_chosen_steps_and_wraps_their_results(monkeypatch, tmp_path):
    calls: list[str] = []
    _fake_steps(monkeypatch, calls)
    out, results = tmp_path / "out", tmp_path / "results"
    code = run.main(["--quick", "--only", "sim,queue", "--out-dir", str(out), "--results-dir", str(results),
                     "--no-report"])
    assert code == 0 and calls == ["queue", "sim"]
    doc = json.loads((out / "queue.json").read_text())
    assert doc["result"] == {"figure": 1} and doc["files"] == {"curve": "fig.png"}
    assert {"step", "command", "date", "commit", "machine", "machine_tag", "quick", "exit_code",
            "seconds"} <= set(doc["meta"])
    assert doc["meta"]["command"] == "bench queue" and doc["meta"]["machine_tag"] == "cpu-4core"
    assert json.loads((out / "sim.json").read_text())["skipped"] == "not here"
    assert not (out / "import.json").exists()
    assert doc["meta"]["cpu_steal_share"] == 0.1  # the fake readings below: 10 of 100 ticks
    assert not results.exists()  # a quick run is not published


def test_a_full_run_is_published_and_a_skip_keeps_the_measured_result(monkeypatch, tmp_path):
    _fake_steps(monkeypatch, [])
    results = tmp_path / "results"
    write(results / "cpu-4core" / "sim.json", wrapped("sim", {"measured": "before"}))
    code = run.main(["--only", "queue,sim", "--out-dir", str(tmp_path / "out"),
                     "--results-dir", str(results), "--no-report"])
    assert code == 0
    published = json.loads((results / "cpu-4core" / "queue.json").read_text())
    assert published["files"] == {"curve": "queue.curve.png"}
    assert (results / "cpu-4core" / "queue.curve.png").read_bytes() == b"png"
    assert json.loads((results / "cpu-4core" / "sim.json").read_text())["result"] == {
        "measured": "before"}


def test_each_step_is_published_as_it_ends_so_a_stopped_run_keeps_the_finished_ones(
        monkeypatch, tmp_path):
    calls: list[str] = []
    _fake_steps(monkeypatch, calls)

    def stopped(ctx: run.Context) -> run.Outcome:
        raise SystemExit(128 + 15)  # SIGTERM, as a time limit sends it

    monkeypatch.setitem(run.STEPS, "export", stopped)
    results = tmp_path / "results" / "cpu-4core"
    with pytest.raises(SystemExit):
        run.main(["--only", "import,export,queue", "--out-dir", str(tmp_path / "out"),
                  "--results-dir", str(tmp_path / "results"), "--no-report"])
    assert calls == ["import"]
    assert json.loads((results / "import.json").read_text())["result"] == {"figure": 1}
    assert (results / "import.curve.png").exists()
    assert not (results / "export.json").exists() and not (results / "queue.json").exists()


def test_every_step_carries_the_commit_the_run_started_at(monkeypatch, tmp_path):
    """Each step publishes into docs/results as it ends: the tree is dirty after the first."""
    _fake_steps(monkeypatch, [])
    states = iter(["abc1234", "abc1234+dirty", "abc1234+dirty", "abc1234+dirty"])
    monkeypatch.setattr(meta, "git_commit", lambda: next(states))
    assert run.main(["--only", "import,export,queue", "--out-dir", str(tmp_path / "out"),
                     "--results-dir", str(tmp_path / "results"), "--no-report"]) == 0
    for name in ("import", "export", "queue"):
        doc = json.loads((tmp_path / "results" / "cpu-4core" / f"{name}.json").read_text())
        assert doc["meta"]["commit"] == "abc1234"


def test_a_simulation_replacing_one_of_the_same_protocol_keeps_its_accuracy(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    earlier = wrapped("sim", sim_result(active_gain=0.05), commit="old1234")
    write(results / "sim.json", earlier)
    write(out / "sim.json", wrapped("sim", sim_result(), commit="new5678"))
    run.publish(out, ["sim"], results)
    previous = json.loads((results / "sim.json").read_text())["meta"]["previous"]
    assert previous["commit"] == "old1234" and previous["date"] == earlier["meta"]["date"]
    assert previous["accuracy"]["margin"] == dict(zip(
        ["20", "40", "60", "80", "100"], earlier["result"]["summary"]["margin"]["accuracy_mean"]))
    assert previous["accuracy"]["random"]["100"] == pytest.approx(0.89)

    assert previous["seed_method"] == "uniform"  # runs before the setting seeded uniformly

    reseeded = sim_result()
    reseeded["config"]["seed_method"] = "cold_start"  # only the seed texts differ: beside it
    write(results / "sim.json", earlier)
    write(out / "sim.json", wrapped("sim", reseeded, commit="new5678"))
    run.publish(out, ["sim"], results)
    previous = json.loads((results / "sim.json").read_text())["meta"]["previous"]
    assert previous["commit"] == "old1234" and previous["seed_method"] == "uniform"

    other = sim_result()
    other["config"]["batch"] = 10  # another protocol: nothing to set beside it
    write(out / "sim.json", wrapped("sim", other))
    run.publish(out, ["sim"], results)
    assert "previous" not in json.loads((results / "sim.json").read_text())["meta"]


def test_a_run_of_every_step_records_its_wall_time_end_to_end(monkeypatch, tmp_path):
    calls: list[str] = []
    _fake_steps(monkeypatch, calls)
    out, results = tmp_path / "out", tmp_path / "results"
    assert run.main(["--out-dir", str(out), "--results-dir", str(results), "--no-report"]) == 0
    assert calls == ORDER
    doc = json.loads((out / "run.json").read_text())
    assert doc["meta"]["step"] == "run" and doc["meta"]["command"].endswith(
        "-m bench.run --out-dir " + str(out) + " --results-dir " + str(results) + " --no-report")
    assert list(doc["result"]["steps"]) == ORDER and doc["result"]["failed"] == []
    steps = [json.loads((out / f"{name}.json").read_text())["meta"]["seconds"] for name in ORDER]
    assert doc["result"]["steps"] == dict(zip(ORDER, steps))
    assert doc["result"]["seconds"] == doc["meta"]["seconds"] >= sum(steps) - 0.1 * len(steps)
    assert json.loads((results / "cpu-4core" / "run.json").read_text()) == doc  # published

    # a subset of the steps, or the simulation on a CPU, is not `make bench` as it runs
    for args in (["--only", "import,export"], ["--with-sim"]):
        out = tmp_path / "-".join(args)
        assert run.main([*args, "--out-dir", str(out), "--results-dir", str(out / "r"),
                         "--no-report"]) == 0
        assert not (out / "run.json").exists()
        assert not (out / "r" / "cpu-4core" / "run.json").exists()


def test_unknown_step_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        run.main(["--only", "nope", "--no-report"])
    assert exc.value.code == 2 and "unknown step" in capsys.readouterr().err


def test_a_benchmark_that_writes_nothing_fails(monkeypatch, ctx):
    monkeypatch.setattr(run, "_call", lambda argv: 3)
    outcome = run.step_queue(ctx)
    assert outcome.failed and outcome.skipped == "failed: exit code 3 and no figures written"


def test_postgres_skipped_without_url_or_server_binaries(monkeypatch, ctx, tmp_path):
    monkeypatch.delenv("BENCH_POSTGRES_URL", raising=False)
    monkeypatch.setattr(run, "INITDB_GLOB", str(tmp_path / "postgresql" / "*" / "bin" / "initdb"))
    outcome = run.step_queue_postgresql(ctx)
    assert outcome.result is None and not outcome.failed
    assert outcome.skipped.startswith("no PostgreSQL: BENCH_POSTGRES_URL is not set and no "
                                      "server binaries match")


def test_postgres_url_from_the_environment(monkeypatch, ctx):
    seen: list[tuple[str, ...]] = []
    monkeypatch.setenv("BENCH_POSTGRES_URL", "postgresql+psycopg://u:secret@db/x")
    monkeypatch.setattr(run, "_bench", lambda ctx, name, module, *args: seen.append(args)
                        or run.Outcome("cmd", [], exit_code=0))
    outcome = run.step_queue_postgresql(ctx)
    assert seen == [("--sizes", "10000,100000", "--answers", "150", "--queue", "100",
                     "--database-url", "postgresql+psycopg://u:secret@db/x")]
    assert outcome.meta == {"postgres": "the server at BENCH_POSTGRES_URL"}


def test_newest_initdb_is_chosen(monkeypatch, tmp_path):
    for version in ("9", "15", "13"):
        write(tmp_path / version / "bin" / "initdb", {})
    monkeypatch.setattr(run, "INITDB_GLOB", str(tmp_path / "*" / "bin" / "initdb"))
    assert run.find_initdb() == tmp_path / "15" / "bin" / "initdb"


def test_scoring_round_and_fastloop_pass_quick_through(monkeypatch, ctx):
    seen: list[tuple[str, tuple[str, ...]]] = []
    monkeypatch.setattr(run, "_bench", lambda ctx, name, module, *args: seen.append((module, args))
                        or run.Outcome("cmd", {}, exit_code=0))
    run.step_scoring(ctx)
    run.step_round(run.Context(ctx.out_dir, quick=False, with_sim=False, cuda=False))
    run.step_fastloop(ctx)
    assert seen == [("bench.bench_scoring", ("--quick",)), ("bench.bench_round", ()),
                    ("bench.bench_fastloop", ("--quick",))]


def test_the_million_text_stream_runs_on_a_cpu_when_asked_for_or_quick(monkeypatch, ctx):
    seen: list[tuple[str, tuple[str, ...]]] = []
    monkeypatch.setattr(run, "_bench", lambda ctx, name, module, *args: seen.append((module, args))
                        or run.Outcome("cmd", {}, exit_code=0))
    full = run.Context(ctx.out_dir, quick=False, with_sim=False, cuda=False)
    assert "--only stream" in run.step_stream(full).skipped  # not in a plain `make bench`
    assert "default model itself" in run.step_stream(dataclasses.replace(
        full, cuda=True, asked=frozenset({"stream"}))).skipped  # the scoring step streams there
    run.step_stream(dataclasses.replace(full, asked=frozenset({"stream"})))
    run.step_stream(ctx)  # quick
    assert seen == [("bench.bench_stream", ()), ("bench.bench_stream", ("--quick",))]


def test_only_names_the_steps_asked_for(monkeypatch, tmp_path):
    seen: list[frozenset[str]] = []
    monkeypatch.setattr(run, "STEPS", {"stream": lambda ctx: seen.append(ctx.asked)
                                       or run.Outcome(skipped="fake")})
    monkeypatch.setattr(meta, "git_commit", lambda: "abc1234")
    args = ["--out-dir", str(tmp_path / "o"), "--results-dir", str(tmp_path / "r"), "--no-report"]
    run.main(["--only", "stream", *args])
    run.main(args)
    assert seen == [frozenset({"stream"}), frozenset()]


def test_sim_needs_with_sim_or_a_gpu(monkeypatch, ctx):
    assert "--with-sim" in run.step_sim(ctx).skipped
    calls: list[list[str]] = []
    monkeypatch.setattr(run, "_call", lambda argv: calls.append(argv) or 0)
    gpu = run.Context(ctx.out_dir, quick=False, with_sim=False, cuda=True)
    outcome = run.step_sim(gpu)
    assert outcome.failed  # the fake wrote no results.json
    simulate = calls[1]
    assert simulate[simulate.index("--budget") + 1] == "300"
    assert [simulate[i + 1] for i, a in enumerate(simulate) if a == "--strategy"] == [
        "margin", "entropy", "least_confidence", "diverse"]
    assert simulate[simulate.index("--fast-loop") + 1] == "off"
    run.step_sim_fastloop(gpu)
    assert calls[-1][calls[-1].index("--fast-loop") + 1] == "on"


def test_sim_on_a_cpu_labels_in_batches_of_50_once(monkeypatch, ctx):
    calls: list[list[str]] = []
    monkeypatch.setattr(run, "_call", lambda argv: calls.append(argv) or 0)
    run.step_sim_fastloop(run.Context(ctx.out_dir, quick=False, with_sim=True, cuda=False))
    simulate = calls[1]
    given = {a: simulate[i + 1] for i, a in enumerate(simulate) if a.startswith("--")}
    assert {k: given[k] for k in ("--seed-size", "--batch", "--budget", "--repeats",
                                  "--pool-cap", "--fast-loop")} == {
        "--seed-size": "50", "--batch": "50", "--budget": "300", "--repeats": "1",
        "--pool-cap": "1000", "--fast-loop": "on"}
    assert [simulate[i + 1] for i, a in enumerate(simulate) if a == "--strategy"] == [
        "margin", "entropy", "least_confidence", "diverse"]


def test_sim_repeats_and_resuming_a_stopped_simulation_at_the_same_commit(monkeypatch, ctx):
    calls: list[list[str]] = []
    monkeypatch.setattr(run, "_call", lambda argv: calls.append(argv) or 0)
    cpu = run.Context(ctx.out_dir, quick=False, with_sim=True, cuda=False, sim_repeats=3,
                      commit="abc1234")

    def simulate_at(commit: str) -> list[str]:
        run.step_sim_fastloop(dataclasses.replace(cpu, commit=commit))
        return calls[-1]

    first = simulate_at("abc1234")
    assert first[first.index("--repeats") + 1] == "3"
    assert "--resume" not in first  # nothing to resume from
    assert "--resume" in simulate_at("abc1234")  # same commit: the finished curves are kept
    assert "--resume" not in simulate_at("abc1234+dirty")  # code may differ from the commit
    assert "--resume" not in simulate_at("abc1234")  # the last run was not at a clean commit
    assert "--resume" in simulate_at("abc1234")
    assert "--resume" not in simulate_at("fed4321")  # another commit: afresh
    cpu = dataclasses.replace(cpu, commit="fed4321")
    run.step_sim(cpu)  # the other simulation has its own folder
    assert "--resume" not in calls[-1]

    def simulate_with(**changes) -> list[str]:
        run.step_sim_fastloop(dataclasses.replace(cpu, **changes))
        return calls[-1]

    assert "--resume" in simulate_with(sim_repeats=5)  # more repeats: the finished ones are kept
    # another protocol (seed, batch, budget): afresh, where simulate would refuse to resume
    assert "--resume" not in simulate_with(quick=True)
    assert "--resume" not in simulate_with()


def test_commands_are_shown_from_the_repository_root_without_passwords():
    shown = run._shown([sys.executable, "-m", "x", "--out", str(run.ROOT / "bench" / "out"),
                        "--database-url", "postgresql+psycopg://u:secret@h:5432/db"])
    assert "secret" not in shown and "u:***@h:5432" in shown
    assert " --out bench/out " in shown


@pytest.mark.slow
@pytest.mark.skipif(run.find_initdb() is None, reason="no PostgreSQL server binaries here")
def test_throwaway_postgres_starts_and_is_removed():
    import psycopg

    with run.throwaway_postgres(run.find_initdb()) as url:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("on",)
            data = Path(conn.execute("SHOW data_directory").fetchone()[0])
        assert data.is_dir()
    assert not data.exists()


def test_sigterm_runs_the_way_out(tmp_path):
    """`kill` on a run mid-step still stops what the step holds (a throwaway PostgreSQL)."""
    import signal
    import subprocess

    marker = tmp_path / "cleaned"
    script = f"""
import sys, time
from contextlib import contextmanager
from bench import meta, run

@contextmanager
def held():
    try:
        yield
    finally:
        open({str(marker)!r}, "w").write("stopped")

def step(ctx):
    with held():
        print("holding", flush=True)
        time.sleep(120)

run.STEPS = {{"import": step}}
meta.machine = lambda: {MACHINE!r}
sys.exit(run.main(["--quick", "--only", "import", "--out-dir", {str(tmp_path / "out")!r},
                   "--no-report"]))
"""
    with subprocess.Popen([sys.executable, "-c", script], cwd=run.ROOT, stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != "holding":
            pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert marker.read_text() == "stopped"
