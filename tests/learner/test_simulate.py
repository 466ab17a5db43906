"""The simulation command: same round code, an oracle from the file's labels, curves on disk."""

from __future__ import annotations

import filecmp
import json
import os
import re

from app.cli import main
import pytest

from learner.coldstart import FIRST
from learner.errors import ResumeMismatch
from learner.simulate import (SimulationConfig, simulate, split_and_seed, stratified_split,
                              summarise)
from tests.learner.test_coldstart import corpus
from tests.tiny_bert import synthetic_texts


def test_simulate_command_writes_results_and_plot(tmp_path, tiny_model_dir, capsys):
    texts, labels = synthetic_texts(40, classes=("fruit", "vehicle", "colour"), seed=5)
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(json.dumps({"body": t, "topic": y}) for t, y in zip(texts, labels)))
    out = tmp_path / "sim"
    code = main(["simulate", "--data", str(data), "--text-field", "body", "--label-field", "topic",
                 "--strategy", "margin", "--seed-size", "6", "--batch", "6", "--budget", "18",
                 "--repeats", "2", "--test-frac", "0.25", "--model", str(tiny_model_dir),
                 "--max-length", "16", "--epochs", "3", "--seed-method", "uniform",
                 "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seed_method"] == "uniform"
    assert (out / "curve.png").stat().st_size > 1000
    assert set(results["summary"]) == {"margin", "random"}  # random is always included
    for strategy, s in results["summary"].items():
        assert s["n_labels"] == [6, 12, 18]
        assert len(s["accuracy_mean"]) == len(s["accuracy_std"]) == 3
        assert all(0 <= a <= 1 for a in s["accuracy_mean"])
        assert len(results["curves"][strategy]) == 2  # one curve per repeat
    said = capsys.readouterr()
    assert "AUC" in said.out
    # progress: each saved curve, how many are left and an estimate of the time they need
    progress = [line for line in said.err.splitlines() if line.startswith("curve ")]
    assert [line.split(" after ")[0] for line in progress] == [
        "curve 1 of 4 saved (repeat 0, margin)", "curve 2 of 4 saved (repeat 0, random)",
        "curve 3 of 4 saved (repeat 1, margin)", "curve 4 of 4 saved (repeat 1, random)"]
    assert all(re.search(r"after \d+\.\d min; about \d+ min left$", line)
               for line in progress[:3]) and progress[3].endswith("min; all done")
    assert sorted(p.name for p in (out / "curves").iterdir()) == [
        "0-margin.json", "0-random.json", "1-margin.json", "1-random.json"]
    # run again with --resume: every curve is kept as measured (its timings too), none re-run
    assert main(["simulate", "--data", str(data), "--text-field", "body", "--label-field",
                 "topic", "--strategy", "margin", "--seed-size", "6", "--batch", "6", "--budget",
                 "18", "--repeats", "2", "--test-frac", "0.25", "--model", str(tiny_model_dir),
                 "--max-length", "16", "--epochs", "3", "--seed-method", "uniform", "--resume",
                 "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["resumed"] == ["0/margin", "0/random", "1/margin", "1/random"]
    assert again["curves"] == results["curves"]
    assert "Kept 4 curves" in capsys.readouterr().out
    # --resume with another training setting: refused before training, the curves untouched
    saved = {p.name: p.read_bytes() for p in (out / "curves").iterdir()}
    assert main(["simulate", "--data", str(data), "--text-field", "body", "--label-field",
                 "topic", "--strategy", "margin", "--seed-size", "6", "--batch", "6", "--budget",
                 "18", "--repeats", "2", "--test-frac", "0.25", "--model", str(tiny_model_dir),
                 "--max-length", "16", "--epochs", "2", "--seed-method", "uniform", "--resume",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Cannot resume: 4 of the curves saved in" in err
    assert "model.train.epochs: 3 saved, 2 now" in err
    assert {p.name: p.read_bytes() for p in (out / "curves").iterdir()} == saved


def test_simulate_command_stopped_says_how_to_resume(tmp_path, tiny_model_dir, monkeypatch,
                                                     capsys):
    import app.cli

    texts, labels = synthetic_texts(30, classes=("fruit", "vehicle", "colour"), seed=8)
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels)))

    def ctrl_c_in_the_second_curve(point):
        if point["strategy"] == "random":
            raise KeyboardInterrupt

    monkeypatch.setattr(app.cli, "_show_round", ctrl_c_in_the_second_curve)
    out = tmp_path / "sim"
    argv = ["simulate", "--data", str(data), "--strategy", "margin", "--seed-size", "6",
            "--batch", "6", "--budget", "12", "--repeats", "1", "--test-frac", "0.25", "--model",
            str(tiny_model_dir), "--max-length", "16", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 130
    assert f"{out / 'curves'}; the same command with --resume" in capsys.readouterr().err
    assert [p.name for p in (out / "curves").iterdir()] == ["0-margin.json"]
    monkeypatch.setattr(app.cli, "_show_round", lambda point: None)
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["resumed"] == ["0/margin"]


def test_simulate_command_runs_one_repeat_and_says_how_to_merge(tmp_path, tiny_model_dir,
                                                                capsys):
    texts, labels = synthetic_texts(30, classes=("fruit", "vehicle", "colour"), seed=9)
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels)))
    out = tmp_path / "sim"
    argv = ["simulate", "--data", str(data), "--strategy", "margin", "--seed-size", "6",
            "--batch", "6", "--budget", "12", "--repeats", "2", "--test-frac", "0.25", "--model",
            str(tiny_model_dir), "--max-length", "16", "--epochs", "1", "--out", str(out)]
    assert main([*argv, "--only-repeat", "2"]) == 1
    assert "--only-repeat takes 0 to 1" in capsys.readouterr().err
    assert main([*argv, "--only-repeat", "1"]) == 0
    said = capsys.readouterr().out
    assert f"Saved the curves of repeat 1 in {out / 'curves'}; 2 curves are still to run " \
           "(0/margin, 0/random)." in said and "--resume and without --only-repeat" in said
    assert sorted(p.name for p in (out / "curves").iterdir()) == ["1-margin.json",
                                                                  "1-random.json"]
    assert not (out / "results.json").exists()


def test_curves_in_worker_processes_equal_sequential_ones(tmp_path, tiny_model_dir):
    """Run as subprocesses: spawning from a pytest process that ran AppTest can hang."""
    import subprocess
    import sys

    texts, labels = synthetic_texts(30, classes=("fruit", "vehicle", "colour"), seed=2)
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels)))
    curves = {}
    for workers in ("1", "3"):
        out = tmp_path / f"sim-{workers}"
        done = subprocess.run(
            [sys.executable, "-m", "app", "simulate", "--data", str(data), "--strategy", "margin",
             "--seed-size", "6", "--batch", "6", "--budget", "12", "--repeats", "2",
             "--test-frac", "0.25", "--model", str(tiny_model_dir), "--max-length", "16",
             "--epochs", "2", "--workers", workers, "--out", str(out)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "LABELWISE_DATA_DIR": str(tmp_path)})
        assert done.returncode == 0, done.stderr[-2000:]
        results = json.loads((out / "results.json").read_text())
        assert results["workers"] == int(workers)
        assert len(list((out / "curves").glob("*.json"))) == 4  # saved as each finished
        # progress counted in the main process, whichever process ran the curve
        assert sorted(re.findall(r"^curve (\d) of 4 saved", done.stderr, re.M)) == [
            "1", "2", "3", "4"]
        curves[workers] = {s: [[(p["n_labels"], p["accuracy"]) for p in c] for c in cs]
                           for s, cs in results["curves"].items()}
    assert curves["1"] == curves["3"]
    assert len(curves["3"]["margin"]) == 2 and len(curves["3"]["random"]) == 2


def test_split_is_stratified_and_disjoint():
    import numpy as np

    labels = ["a"] * 50 + ["b"] * 30
    train, test = stratified_split(labels, 0.2, np.random.default_rng(0))
    assert not set(train) & set(test) and len(train) + len(test) == 80
    assert sorted(labels[i] for i in test).count("a") == 10
    assert sorted(labels[i] for i in test).count("b") == 6


def test_summary_measures_labels_needed_to_match_random():
    point = lambda n, a: {"n_labels": n, "accuracy": a, "macro_f1": a, "seconds": 1.0}  # noqa: E731
    curves = {
        "margin": [[point(10, 0.5), point(20, 0.8), point(30, 0.9)]],
        "random": [[point(10, 0.5), point(20, 0.6), point(30, 0.8)]],
    }
    summary = summarise(curves)
    assert summary["margin"]["labels_to_reach_random_final"] == 20
    assert summary["random"]["labels_to_reach_random_final"] == 30
    assert summary["margin"]["auc_accuracy"] > summary["random"]["auc_accuracy"]


def test_random_is_always_included():
    assert SimulationConfig(strategies=["entropy"]).strategies == ["entropy", "random"]


def test_fast_loop_simulation_reranks_within_a_batch(tmp_path, tiny_model_dir):
    texts, labels = synthetic_texts(40, classes=("fruit", "vehicle", "colour"), seed=6)
    data = tmp_path / "toy.csv"
    import csv

    with data.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    out_dir = tmp_path / "fast"
    assert main(["simulate", "--data", str(data), "--strategy", "entropy", "--seed-size", "6",
                 "--batch", "6", "--budget", "18", "--repeats", "1", "--model",
                 str(tiny_model_dir), "--max-length", "16", "--epochs", "2", "--fast-loop", "on",
                 "--fast-every", "2", "--out", str(out_dir)]) == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert results["config"]["fast_loop"] is True
    assert results["config"]["seed_method"] == "cold_start"  # the default
    assert results["summary"]["entropy"]["n_labels"] == [6, 12, 18]


def test_fast_batch_takes_the_round_top_then_reranked_picks():
    import numpy as np

    from db.queue import QueueEntry
    from learner.rounds import RoundInput, RoundResult
    from learner.simulate import fast_batch

    pool_ids = [10, 11, 12, 13, 14, 15]
    vectors = np.array([[1, 0], [0, 1], [0.7, 0.7], [0.9, 0.1], [0.1, 0.9], [0.72, 0.69]])
    data = RoundInput(("x", "y"), ["a", "b"], ["x", "y"], [], [], pool_ids, ["t"] * 6,
                      train_ids=[1, 2])
    result = RoundResult(model=None, metrics={}, ranking=[QueueEntry(13, "uncertain")],
                         pool_embeddings=vectors, train_embeddings=np.array([[1, 0.05], [0.05, 1]]))
    labels = {10: "x", 11: "y", 12: "x", 13: "x", 14: "y", 15: "y"}
    picked = fast_batch(result, data, labels, 3, 1, "margin", np.random.default_rng(0))
    assert picked[:2] == [13, 12]  # the round's top, then the boundary text
    # 12 answered "x" moves the boundary towards y: a fixed ranking would now give 15 (next to
    # 12, now confidently x); the re-ranked one asks about 14 instead
    assert picked[2] == 14


def test_cold_start_seed_set_is_the_head_of_the_product_queue_from_the_training_part():
    texts, kinds = corpus(per_topic=100)  # 3 topics and 3 odd texts
    for repeat in range(8):  # a uniform sample fails in 6 of these 8 (checked)
        config = SimulationConfig(seed_size=24, seed=10)  # the medoids of ~240 texts: 30
        train_idx, test_idx, seed = split_and_seed(texts, kinds, config, repeat)
        assert len(set(seed)) == 24 and set(seed) <= set(train_idx.tolist())
        # what the worker's queue shows first: every topic at once, no odd text
        assert {kinds[i] for i in seed[:6]} == {"money", "music", "sport"}, repeat
        assert "odd" not in {kinds[i] for i in seed}, repeat
        assert split_and_seed(texts, kinds, config, repeat)[2] == seed  # deterministic
    # the head does not depend on how many are asked (the queue is longer than FIRST)
    for repeat in range(2):
        seed = split_and_seed(texts, kinds, SimulationConfig(seed_size=24, seed=10), repeat)[2]
        for size in (6, FIRST + 5):
            other = split_and_seed(texts, kinds, SimulationConfig(seed_size=size, seed=10),
                                   repeat)[2]
            assert other[:6] == seed[:6] and len(set(other)) == size


def test_uniform_seed_set_is_a_sample_of_the_training_part():
    texts, kinds = corpus(per_topic=40)
    config = SimulationConfig(seed_size=12, seed_method="uniform")
    train_idx, test_idx, seed = split_and_seed(texts, kinds, config, 0)
    assert len(set(seed)) == 12 and set(seed) <= set(train_idx.tolist())
    cold = split_and_seed(texts, kinds, SimulationConfig(seed_size=12), 0)
    assert cold[1].tolist() == test_idx.tolist() and cold[2] != seed  # same split, other texts
    with pytest.raises(ValueError, match="seed_method"):
        SimulationConfig(seed_method="kmeans")


class _TfidfLogreg:
    """A cheap model with the round's interface (fit with classes and progress)."""

    def __init__(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression())

    def fit(self, texts, y, classes=None, progress=None):
        self.pipeline.fit(texts, y)
        self.classes_ = self.pipeline.classes_
        return self

    def predict_proba(self, texts):
        return self.pipeline.predict_proba(texts)

    def predict_proba_and_embed(self, texts, progress=None):
        vectors = self.pipeline[:-1].transform(texts)
        return self.pipeline[-1].predict_proba(vectors), vectors.toarray()


class _Stop(Exception):
    pass


def _accuracies(results):
    return {s: [[p["accuracy"] for p in curve] for curve in curves]
            for s, curves in results["curves"].items()}


def test_a_stopped_simulation_keeps_its_finished_curves_and_resumes_with_the_rest(tmp_path):
    texts, labels = synthetic_texts(60, classes=("fruit", "vehicle", "colour"), seed=3)
    config = SimulationConfig(strategies=["margin"], seed_size=6, batch=6, budget=18, repeats=2,
                              test_frac=0.25)

    def stop_at_second_repeat(point):
        if point["repeat"] == 1:
            raise _Stop

    out = tmp_path / "sim"
    with pytest.raises(_Stop):
        simulate(texts, labels, config, _TfidfLogreg, out, on_round=stop_at_second_repeat)
    assert sorted(p.name for p in (out / "curves").iterdir()) == ["0-margin.json", "0-random.json"]
    assert not (out / "results.json").exists()

    rounds = []
    resumed = simulate(texts, labels, config, _TfidfLogreg, out, on_round=rounds.append,
                       resume=True)
    assert resumed["resumed"] == ["0/margin", "0/random"]
    assert {(p["repeat"], p["strategy"]) for p in rounds} == {(1, "margin"), (1, "random")}
    whole = simulate(texts, labels, config, _TfidfLogreg, tmp_path / "whole")
    assert whole["resumed"] == []
    assert _accuracies(resumed) == _accuracies(whole)
    assert resumed["summary"]["margin"]["accuracy_mean"] == whole["summary"]["margin"][
        "accuracy_mean"]


def test_a_simulation_measured_in_parts_equals_a_whole_run(tmp_path):
    import shutil

    texts, labels = synthetic_texts(60, classes=("fruit", "vehicle", "colour"), seed=5)
    config = SimulationConfig(strategies=["margin"], seed_size=6, batch=6, budget=18, repeats=2,
                              test_frac=0.25)
    here, there = tmp_path / "here", tmp_path / "there"
    rounds = []
    part = simulate(texts, labels, config, _TfidfLogreg, here, on_round=rounds.append,
                    only_repeats=[1])
    assert {(p["repeat"], p["strategy"]) for p in rounds} == {(1, "margin"), (1, "random")}
    assert part["missing"] == ["0/margin", "0/random"] and "summary" not in part
    assert not (here / "results.json").exists()  # nothing summarised from half the curves
    simulate(texts, labels, config, _TfidfLogreg, there, only_repeats=[0])
    for path in (there / "curves").iterdir():  # the other machine's part, copied in
        shutil.copy(path, here / "curves")
    rounds.clear()
    merged = simulate(texts, labels, config, _TfidfLogreg, here, on_round=rounds.append,
                      resume=True)
    assert rounds == [] and merged["missing"] == []  # trained nothing
    assert merged["resumed"] == ["0/margin", "0/random", "1/margin", "1/random"]
    whole = simulate(texts, labels, config, _TfidfLogreg, tmp_path / "whole")
    assert _accuracies(merged) == _accuracies(whole)
    assert merged["summary"]["margin"]["accuracy_mean"] == whole["summary"]["margin"][
        "accuracy_mean"]
    # a part run again without resume replaces only its own curves, and drops the summary
    again = simulate(texts, labels, config, _TfidfLogreg, here, only_repeats=[0])
    assert again["missing"] == ["1/margin", "1/random"]  # saved, but not resumed
    assert sorted(p.name for p in (here / "curves").iterdir()) == [
        "0-margin.json", "0-random.json", "1-margin.json", "1-random.json"]
    assert not (here / "results.json").exists()
    assert _accuracies(simulate(texts, labels, config, _TfidfLogreg, here, resume=True)) == \
        _accuracies(whole)
    with pytest.raises(ValueError, match="only_repeats must be among 0 to 1"):
        simulate(texts, labels, config, _TfidfLogreg, here, only_repeats=[2])


def test_resume_keeps_curves_of_the_same_settings_data_and_model_and_refuses_others(tmp_path):
    import shutil

    texts, labels = synthetic_texts(60, classes=("fruit", "vehicle", "colour"), seed=4)
    config = SimulationConfig(strategies=["margin"], seed_size=6, batch=6, budget=12, repeats=1,
                              test_frac=0.25)
    base = tmp_path / "base"
    simulate(texts, labels, config, _TfidfLogreg, base, model={"backbone": "a"})
    measured = {p.name: p.read_bytes() for p in (base / "curves").iterdir()}
    tries = iter(range(100))

    def resume(texts=texts, labels=labels, config=config, model=None):
        """Resume in a copy of the first run's folder, so each try meets only its curves."""
        out = tmp_path / f"try-{next(tries)}"
        shutil.copytree(base, out)
        try:
            return simulate(texts, labels, config, _TfidfLogreg, out, resume=True,
                            model={"backbone": "a"} if model is None else model)["resumed"]
        except ResumeMismatch as exc:
            # refused before anything ran: the saved curves are as they were, no results
            assert {p.name: p.read_bytes() for p in (out / "curves").iterdir()} == measured
            assert filecmp.cmp(out / "results.json", base / "results.json", shallow=False)
            return str(exc)

    assert resume() == ["0/margin", "0/random"]
    # more repeats or strategies do not change a finished curve: kept
    more = SimulationConfig(strategies=["margin", "entropy"], seed_size=6, batch=6, budget=12,
                            repeats=2, test_frac=0.25)
    assert resume(config=more) == ["0/margin", "0/random"]
    # another model, another batch size, one label changed: refused, saying what differs
    refused = resume(model={"backbone": "b"})
    assert refused.startswith("Cannot resume: 2 of the curves saved in ")
    assert '0-margin.json, 0-random.json) were measured differently: model.backbone: "a" ' \
           'saved, "b" now. Run without --resume' in refused
    assert "settings.batch: 6 saved, 3 now." in resume(config=SimulationConfig(
        strategies=["margin"], seed_size=6, batch=3, budget=12, repeats=1, test_frac=0.25))
    assert "data: other texts or labels." in resume(
        labels=[labels[0] if i == 5 else y for i, y in enumerate(labels)])
    # a run without resume starts afresh: curves of earlier runs in its folder are removed
    simulate(texts, labels, SimulationConfig(strategies=["entropy"], seed_size=6, batch=6,
                                             budget=12, repeats=1, test_frac=0.25),
             _TfidfLogreg, base)
    assert sorted(p.name for p in (base / "curves").iterdir()) == ["0-entropy.json",
                                                                   "0-random.json"]
