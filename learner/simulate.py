"""Simulated labelling: the proof that active learning pays.

The same round code as the worker (`train_and_rank`) runs against an oracle that answers from a
labelled file. Every strategy (``random`` always included) starts a repeat from the same seed set
and is scored on the same held-out test split, so the curves compare like with like. The seed set
is, by default, what annotators of a new project label first: the head of the product's
cold-start queue (``learner.coldstart``), or else a uniform sample.

Each curve (one repeat of one strategy) is written to ``OUT/curves/`` the moment it is finished,
so a run stopped after hours keeps what it measured: ``resume`` runs only the curves still
missing, and refuses (``ResumeMismatch``) where a saved curve's settings, data or model are not
this run's, rather than mix them or overwrite them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from db.texts import text_hash
from learner.coldstart import FIRST, diverse_sample
from learner.errors import ResumeMismatch
from learner.rounds import RoundInput, train_and_rank

SEED_METHODS = ("cold_start", "uniform")
CURVES = "curves"
"""The folder in the output folder that holds one file per finished curve."""


@dataclass
class SimulationConfig:
    strategies: list[str] = field(default_factory=lambda: ["margin", "random"])
    seed_size: int = 20
    batch: int = 20
    budget: int = 200
    repeats: int = 3
    test_frac: float = 0.2
    pool_cap: int | None = None
    seed: int = 0
    fast_loop: bool = False
    fast_every: int = 5
    seed_method: str = "cold_start"

    def __post_init__(self) -> None:
        if "random" not in self.strategies:
            self.strategies = [*self.strategies, "random"]
        if not 0 < self.test_frac < 1:
            raise ValueError("test_frac must be between 0 and 1")
        if self.seed_size < 2 or self.batch < 1 or self.budget < self.seed_size:
            raise ValueError("need seed_size >= 2, batch >= 1 and budget >= seed_size")
        if self.seed_method not in SEED_METHODS:
            raise ValueError(f"seed_method must be one of {', '.join(SEED_METHODS)}")


def dedupe(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Drop repeated texts (same normalised text), keeping the first occurrence."""
    seen: set[str] = set()
    out_t, out_y = [], []
    for text, label in zip(texts, labels):
        key = text_hash(text)
        if key not in seen:
            seen.add(key)
            out_t.append(text)
            out_y.append(label)
    return out_t, out_y


def stratified_split(labels: Sequence[str], test_frac: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, test), each label split in the same proportion."""
    labels_arr = np.asarray(labels)
    train, test = [], []
    for label in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(labels_arr == label))
        k = int(round(len(idx) * test_frac))
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(test))


def split_and_seed(texts: Sequence[str], labels: Sequence[str], config: SimulationConfig,
                   repeat: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The training and test parts of ``repeat``, and its seed set (indices into ``texts``).

    ``cold_start``: the first ``seed_size`` texts of the queue the worker builds for a new
    project (``diverse_sample`` over the training part: medoids first), in its order.
    ``uniform``: a uniform sample of the training part. Both depend only on ``config.seed``
    and ``repeat``.
    """
    split_rng = np.random.default_rng(config.seed + repeat)
    train_idx, test_idx = stratified_split(labels, config.test_frac, split_rng)
    if config.seed_method == "uniform":
        seed = split_rng.choice(train_idx, size=config.seed_size, replace=False).tolist()
        return train_idx, test_idx, [int(i) for i in seed]
    # at least FIRST asked, as the worker's queue does: its head is then the same for any size
    picked = diverse_sample([texts[i] for i in train_idx], max(config.seed_size, FIRST),
                            np.random.default_rng([config.seed + repeat, 99]))
    return train_idx, test_idx, [int(train_idx[i]) for i in picked[: config.seed_size]]


def run_curve(
    texts: Sequence[str],
    labels: Sequence[str],
    label_set: Sequence[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    seed_idx: Sequence[int],
    strategy: str,
    config: SimulationConfig,
    factory: Callable[[], Any],
    rng: np.random.Generator,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One learning curve: label, train, query until the budget is spent."""
    labelled = list(seed_idx)
    points = []
    while True:
        t0 = time.perf_counter()
        chosen = set(labelled)
        pool = [int(i) for i in train_idx if int(i) not in chosen]
        if config.pool_cap and len(pool) > config.pool_cap:
            pool = sorted(rng.choice(pool, size=config.pool_cap, replace=False).tolist())
        last = len(labelled) >= config.budget
        data = RoundInput(
            labels=tuple(label_set),
            train_texts=[texts[i] for i in labelled],
            train_y=[labels[i] for i in labelled],
            eval_texts=[texts[i] for i in test_idx],
            eval_y=[labels[i] for i in test_idx],
            pool_ids=pool,
            pool_texts=[] if last else [texts[i] for i in pool],
            train_ids=list(labelled) if config.fast_loop else [],
        )
        n_next = min(config.batch, config.budget - len(labelled))
        result = train_and_rank(data, factory, strategy, n_next, rng)
        point = {
            "n_labels": len(labelled),
            "accuracy": result.metrics["accuracy"],
            "macro_f1": result.metrics["macro_f1"],
            "seconds": time.perf_counter() - t0,
            **{k: round(v, 3) for k, v in result.timings.items()},
        }
        points.append(point)
        if on_round:
            on_round({"strategy": strategy, **point})
        if last or not result.ranking:
            return points
        # the oracle answers: the labels of the picked texts are read from the file
        if config.fast_loop and strategy != "random":
            labelled.extend(fast_batch(result, data, labels, n_next, config.fast_every,
                                       strategy, rng))
        else:
            labelled.extend(entry.example_id for entry in result.ranking[:n_next])


def fast_batch(result: Any, data: RoundInput, labels: Sequence[str], n: int, every: int,
               strategy: str, rng: np.random.Generator) -> list[int]:
    """Pick the next ``n`` texts as the fast loop would: the round's top ``every``, then, after
    each ``every`` answers, a logistic regression on the round's embeddings re-ranks the rest."""
    from learner.fastloop import rank_on_embeddings

    position = {example_id: k for k, example_id in enumerate(data.pool_ids)}
    picked = [entry.example_id for entry in result.ranking[: min(every, n)]]
    while len(picked) < n:
        taken = {position[i] for i in picked}
        remaining = [k for k in range(len(data.pool_ids)) if k not in taken]
        if not remaining:
            break
        train = np.vstack([result.train_embeddings,
                           result.pool_embeddings[[position[i] for i in picked]]])
        answers = list(data.train_y) + [labels[i] for i in picked]
        order, _, _ = rank_on_embeddings(train, answers, result.pool_embeddings[remaining],
                                         strategy, min(every, n - len(picked)), rng)
        picked += [data.pool_ids[remaining[int(o)]] for o in order]
    return picked


def _curve(texts: Sequence[str], labels: Sequence[str], label_set: Sequence[str],
           config: SimulationConfig, factory: Callable[[], Any], repeat: int, strategy: str,
           on_round: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """One repeat of one strategy: every strategy of a repeat gets the same split and seed set."""
    train_idx, test_idx, seed_idx = split_and_seed(texts, labels, config, repeat)
    rng = np.random.default_rng(1000 * (config.seed + repeat) + 7)
    report = functools.partial(_tagged, on_round, repeat) if on_round else None
    return run_curve(texts, labels, label_set, train_idx, test_idx, seed_idx, strategy, config,
                     factory, rng, report)


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _tagged(on_round: Callable[[dict[str, Any]], None], repeat: int, point: dict[str, Any]) -> None:
    on_round({"repeat": repeat, **point})


def summarise(curves: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """Mean and std per labelled count, area under the curve, and labels-to-match-random."""
    out: dict[str, Any] = {}
    for strategy, runs in curves.items():
        n = [p["n_labels"] for p in runs[0]]
        acc = np.array([[p["accuracy"] for p in run] for run in runs])
        f1 = np.array([[p["macro_f1"] for p in run] for run in runs])
        secs = np.array([[p["seconds"] for p in run] for run in runs])
        out[strategy] = {
            "n_labels": n,
            "accuracy_mean": acc.mean(0).tolist(),
            "accuracy_std": acc.std(0).tolist(),
            "macro_f1_mean": f1.mean(0).tolist(),
            "macro_f1_std": f1.std(0).tolist(),
            "round_seconds_mean": secs.mean(0).tolist(),
            # normalised area under the accuracy curve (trapezoids over the labelled count)
            "auc_accuracy": float(np.trapezoid(acc.mean(0), n) / (n[-1] - n[0])) if len(n) > 1
            else float(acc.mean()),
        }
    if "random" in out:
        target = out["random"]["accuracy_mean"][-1]
        for strategy, s in out.items():
            reached = [n for n, a in zip(s["n_labels"], s["accuracy_mean"]) if a >= target]
            s["labels_to_reach_random_final"] = reached[0] if reached else None
            s["share_of_random_budget"] = (
                reached[0] / out["random"]["n_labels"][-1] if reached else None
            )
    return out


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, ax in zip(("accuracy", "macro_f1"), axes):
        for strategy, s in summary.items():
            n = np.array(s["n_labels"])
            mean, std = np.array(s[f"{metric}_mean"]), np.array(s[f"{metric}_std"])
            ax.plot(n, mean, marker="o", ms=3, label=strategy)
            ax.fill_between(n, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("labelled texts")
        ax.set_ylabel(metric.replace("_", "-"))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_key(config: SimulationConfig, texts: Sequence[str], labels: Sequence[str],
              model: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a curve depends on besides its repeat and strategy: the settings (not the list of
    strategies or the number of repeats), the exact texts and labels, and ``model`` (what the
    caller's factory builds, such as the backbone and training settings)."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(json.dumps([text, label]).encode())
    settings = {k: v for k, v in asdict(config).items() if k not in ("strategies", "repeats")}
    key = {"settings": settings, "data": digest.hexdigest(), "model": model or {}}
    return json.loads(json.dumps(key))  # as it reads back from a saved curve


def _curve_path(curves_dir: Path, repeat: int, strategy: str) -> Path:
    return curves_dir / f"{repeat}-{strategy}.json"


def save_curve(curves_dir: Path, key: dict[str, Any], repeat: int, strategy: str,
               points: list[dict[str, Any]]) -> None:
    """Write one finished curve; a file appears whole (written aside, then renamed) or not."""
    curves_dir.mkdir(parents=True, exist_ok=True)
    path = _curve_path(curves_dir, repeat, strategy)
    part = path.with_suffix(".part")
    part.write_text(json.dumps({"key": key, "repeat": repeat, "strategy": strategy,
                                "points": points}, indent=1))
    os.replace(part, path)


def finished_curves(curves_dir: Path, key: dict[str, Any],
                    jobs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """The curves of ``jobs`` already saved in ``curves_dir``.

    Raises:
        ResumeMismatch: a curve saved there was measured with another ``key`` (settings, data
            or model); the message names what differs. Nothing is run or overwritten.
    """
    saved: dict[tuple[int, str], list[dict[str, Any]]] = {}
    differ: dict[str, list[str]] = {}
    for path in sorted(curves_dir.glob("*.json")):
        try:
            curve = json.loads(path.read_text())
            repeat, strategy, points = curve["repeat"], curve["strategy"], curve["points"]
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not a whole curve file: nothing to keep
        if curve.get("key") != key:
            differ[path.name] = _differences(curve.get("key"), key)
        elif (repeat, strategy) in jobs and points:
            saved[(repeat, strategy)] = points
    if differ:
        what = sorted({difference for found in differ.values() for difference in found})
        raise ResumeMismatch(
            f"Cannot resume: {len(differ)} of the curves saved in {curves_dir} "
            f"({', '.join(list(differ)[:4])}{', ...' if len(differ) > 4 else ''}) were measured "
            f"differently: {'; '.join(what)}. Run without --resume to start afresh (it removes "
            "them), or write to another folder.")
    return saved


def _differences(saved: Any, now: Any, where: str = "") -> list[str]:
    """Where a saved curve key differs from this run's, as ``settings.batch: 20 saved, 50 now``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [difference for name in sorted(saved.keys() | now.keys())
                for difference in _differences(saved.get(name), now.get(name),
                                               f"{where}.{name}" if where else name)]
    if saved == now:
        return []
    if where == "data":
        return ["data: other texts or labels"]
    return [f"{where or 'key'}: {json.dumps(saved)} saved, {json.dumps(now)} now"]


def simulate(
    texts: Sequence[str],
    labels: Sequence[str],
    config: SimulationConfig,
    factory: Callable[[], Any],
    out_dir: Path,
    title: str = "Labelwise simulation",
    on_round: Callable[[dict[str, Any]], None] | None = None,
    workers: int = 1,
    resume: bool = False,
    model: dict[str, Any] | None = None,
    only_repeats: Collection[int] | None = None,
    on_curve: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every strategy over ``config.repeats`` seeds; write results.json and curve.png.

    With ``workers`` > 1 the curves (one per repeat and strategy) run in that many spawned
    processes, so ``factory`` and ``on_round`` must be picklable (module-level functions,
    ``functools.partial``); each curve is the same as in a sequential run, since its split,
    seed set and generator depend only on the seed, the repeat and nothing else.

    Every finished curve is saved in ``out_dir/curves/``. With ``resume`` the curves saved there
    by an earlier run are kept and only the others run; every saved curve must have this run's
    :func:`curve_key` (``model`` describes what ``factory`` builds), or :class:`ResumeMismatch`
    is raised before anything runs. Without ``resume``, earlier curves there are removed first.
    A resumed curve is only as current as the code that measured it.

    ``on_curve`` is called in this process as each curve is saved, with its ``repeat`` and
    ``strategy``, how many of this run's curves are ``finished`` of the ``total`` to run, and
    the ``seconds`` since they started.

    ``only_repeats`` runs just those repeats' curves, so that one simulation can be measured
    in parts (other sessions, other machines: copy their ``curves/`` files into one folder,
    then ``resume``); without ``resume`` it removes only those repeats' saved curves. Until
    every curve is there, nothing is summarised: the result has ``missing`` (the curves still
    to run) and no results.json or plot is written.
    """
    texts, labels = dedupe(texts, labels)
    label_set = sorted(set(labels))
    jobs = [(repeat, strategy) for repeat in range(config.repeats) for strategy in config.strategies]
    key = curve_key(config, texts, labels, model)
    curves_dir = out_dir / CURVES
    if only_repeats is not None and not set(only_repeats) <= set(range(config.repeats)):
        raise ValueError(f"only_repeats must be among 0 to {config.repeats - 1}")
    mine = [job for job in jobs if only_repeats is None or job[0] in only_repeats]
    if resume:
        done = finished_curves(curves_dir, key, jobs)
    else:
        done = {}
        stale = (curves_dir.glob("*.json") if only_repeats is None  # the other parts' stay
                 else (_curve_path(curves_dir, *job) for job in mine))
        for path in stale:
            path.unlink(missing_ok=True)
    kept = set(done)
    todo = [job for job in mine if job not in kept]
    started = time.perf_counter()

    def finish(job: tuple[int, str], points: list[dict[str, Any]]) -> None:
        done[job] = points
        save_curve(curves_dir, key, *job, points)
        if on_curve:
            on_curve({"repeat": job[0], "strategy": job[1], "finished": len(done) - len(kept),
                      "total": len(todo), "seconds": time.perf_counter() - started})

    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        processes = min(workers, len(todo))
        threads = max(1, (os.cpu_count() or 1) // processes)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            futures = {pool.submit(_curve, texts, labels, label_set, config, factory, repeat,
                                   strategy, on_round): (repeat, strategy)
                       for repeat, strategy in todo}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    else:
        for repeat, strategy in todo:
            finish((repeat, strategy), _curve(texts, labels, label_set, config, factory, repeat,
                                              strategy, on_round))
    resumed = [f"{repeat}/{strategy}" for repeat, strategy in jobs if (repeat, strategy) in kept]
    missing = [f"{repeat}/{strategy}" for repeat, strategy in jobs
               if (repeat, strategy) not in done]
    if missing:  # a part: no summary, and none left from an earlier whole run
        for summary_file in ("results.json", "curve.png"):
            (out_dir / summary_file).unlink(missing_ok=True)
        return {"config": asdict(config), "resumed": resumed, "missing": missing,
                "wall_seconds": time.perf_counter() - started}
    curves: dict[str, list[list[dict[str, Any]]]] = {s: [] for s in config.strategies}
    for repeat, strategy in jobs:
        curves[strategy].append(done[(repeat, strategy)])
    summary = summarise(curves)
    results = {
        "config": asdict(config),
        "n_texts": len(texts),
        "labels": label_set,
        "wall_seconds": time.perf_counter() - started,
        "workers": workers,
        "resumed": resumed,
        "missing": [],
        "summary": summary,
        "curves": curves,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(summary, out_dir / "curve.png", title)
    return results
