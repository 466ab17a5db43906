"""Render docs/benchmarks.md from benchmark results: ``python -m bench.report [--out FILE]``.

Reads the committed results, ``docs/results/<machine-tag>/<step>.json`` (``make bench`` copies
each full run there), and this machine's latest run, ``bench/out/<step>.json``, both in the
wrapped format ``bench.run`` writes (``{"meta": ..., "result": ...}`` or ``"skipped"``). Per
step and machine one file is shown: a measured result before a skipped one, a full run before a
quick one, then the newest, then the committed copy.

Each benchmark is a `Section` in SECTIONS: a title, text that stays true whatever the figures,
and a function from one machine's `Result` to Markdown lines (tables and verdicts computed from
the figures). Adding a benchmark's renderer is one function and one entry there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learner.model import AGREEMENT_MIN as SCORING_CHECK_AGREEMENT
from learner.model import AGREEMENT_SAMPLE as SCORING_CHECK_SAMPLE
from learner.model import OV_INT8_MIN_TEXTS
from learner.model import SPEEDUP_MIN as SCORING_CHECK_SPEEDUP

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "docs" / "results"
RUN_DIR = ROOT / "bench" / "out"
OUT = ROOT / "docs" / "benchmarks.md"

IMPORT_TARGET_ROWS_PER_S = 20_000
EXPORT_TARGET_ROWS_PER_S = 50_000
QUEUE_P95_TARGET_MS = 20.0
QUEUE_FLAT_FACTOR = 2.0
SIM_TARGET_SHARE = 0.6
SCORING_CPU_SPEEDUP = 3.0
SCORING_GPU_TEXTS_PER_S = 10_000
SCORING_AGREEMENT = 0.99
ROUND_GPU_TARGET_S = 15.0
FASTLOOP_TARGET_S = 1.0
FASTLOOP_TARGET_POOL = 20_000
BENCH_TARGET_S = 30 * 60
SIM_ACCURACY_TARGETS = {50: 0.91, 100: 0.95, 300: 0.97}
"""Issue 6: mean accuracy at these label counts (TF-IDF + logistic regression's figures)."""
STEAL_NOTABLE = 0.02
"""CPU steal from which the page says what it does to timings."""
NOT_FOUND = "no result file in docs/results/ or bench/out/ yet"


@dataclass(frozen=True)
class Result:
    """One step's wrapped result file for one machine."""

    step: str
    tag: str
    meta: dict[str, Any]
    result: Any
    skipped: str | None
    files: dict[str, Path]
    source: Path
    committed: bool

    @property
    def measured(self) -> bool:
        return self.skipped is None

    def rank(self) -> tuple[bool, bool, str, bool]:
        """Higher is shown: measured, a full run, newer, committed."""
        return (self.measured, not self.meta.get("quick"), str(self.meta.get("date") or ""),
                self.committed)


@dataclass(frozen=True)
class Check:
    """One target judged on one machine's result: what the target is, the figure, the verdict
    (None where the run has no figure for it, e.g. a simulation that stopped short of 300
    labels)."""

    target: str
    figure: str
    ok: bool | None


Renderer = Callable[[Result], list[str]]
Checker = Callable[[Result], list[Check]]


def _no_targets(r: Result) -> list[Check]:
    return []


@dataclass(frozen=True)
class Section:
    """How one benchmark appears: title, text true whatever the figures, a renderer, and the
    issue's targets as `Check`s (the renderer states the same verdicts in its own words)."""

    title: str
    intro: str
    render: Renderer
    checks: Checker = _no_targets


def load(path: Path, tag: str | None, committed: bool) -> Result | None:
    """Read a wrapped result file; None (with a note on stderr) for anything else.

    Args:
        path: the ``<step>.json`` file.
        tag: the machine tag (the folder's name under docs/results), or None to take it from
            the file's meta.
        committed: whether the file lies under docs/results.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"note: {path} left out: {exc}", file=sys.stderr)
        return None
    if not (isinstance(doc, dict) and isinstance(doc.get("meta"), dict)
            and ("result" in doc or "skipped" in doc)):
        print(f"note: {path} left out: not a wrapped result (older format?)", file=sys.stderr)
        return None
    meta = doc["meta"]
    return Result(
        step=meta.get("step") or path.stem,
        tag=tag or meta.get("machine_tag") or "unknown-machine",
        meta=meta,
        result=doc.get("result"),
        skipped=None if "result" in doc else str(doc["skipped"] or "no reason recorded"),
        files={key: path.parent / rel for key, rel in doc.get("files", {}).items()},
        source=path,
        committed=committed,
    )


def collect(run_dir: Path, results_dir: Path) -> dict[str, dict[str, Result]]:
    """The result to show per step and machine tag: ``{step: {tag: Result}}``."""
    found: list[Result | None] = []
    if results_dir.is_dir():
        for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
            found += [load(f, folder.name, True) for f in sorted(folder.glob("*.json"))]
    if run_dir.is_dir():
        found += [load(f, None, False) for f in sorted(run_dir.glob("*.json"))]
    best: dict[str, dict[str, Result]] = {}
    for result in found:
        if result is None:
            continue
        shown = best.setdefault(result.step, {}).get(result.tag)
        if shown is None or result.rank() > shown.rank():
            best[result.step][result.tag] = result
    return best


# Markdown helpers -------------------------------------------------------------------------


def para(text: str) -> list[str]:
    """A paragraph wrapped at 99 characters, then a blank line."""
    return [*textwrap.wrap(text, 99, break_on_hyphens=False, break_long_words=False), ""]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, then a blank line."""
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    return [cells(header), "|" + "---|" * len(header), *map(cells, rows), ""]


def shell(command: str, width: int = 99) -> str:
    """A command with lines over ``width`` broken before options, as ``\\`` continuations."""
    out = []
    for line in command.splitlines():
        pieces = line.replace(" --", "\0--").split("\0")
        current = pieces[0]
        for piece in pieces[1:]:
            if len(current) + 1 + len(piece) + 2 > width:
                out.append(current + " \\")
                current = "    " + piece
            else:
                current += " " + piece
        out.append(current)
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _against(value: float, target: float, unit: str) -> str:
    return f"{value:,.0f} {unit}, {value / target - 1:+.0%} against the target"


def _when(date: str | None) -> str:
    """``2026-11-23T08:42:32Z`` as "on 2026-11-23 08:42 UTC"; a bare date as it is."""
    if not date:
        return "on a date not recorded"
    return "on " + (date[:16].replace("T", " ") + " UTC" if "T" in date else date)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _yes_no(value: Any) -> str:
    return "not recorded" if value is None else ("yes" if value else "no")


def machine_fields(machine: dict[str, Any]) -> dict[str, str]:
    """The machine as table cells; a missing figure reads "not recorded"."""
    def get(key: str) -> str:
        value = machine.get(key)
        return "not recorded" if value in (None, "") else str(value)

    ram = machine.get("ram_bytes")
    return {
        "CPU": get("cpu_model"),
        "logical cores": get("logical_cores"),
        # Older records lack avx512f; AVX-512 BF16 implies it.
        "AVX-512": _yes_no(machine.get("avx512f", True if machine.get("avx512_bf16") else None)),
        "AVX-512 BF16": _yes_no(machine.get("avx512_bf16")),
        "AMX BF16": _yes_no(machine.get("amx_bf16")),
        "RAM": f"{ram / 2**30:.0f} GiB" if ram else "not recorded",
        "OS": get("os"),
        "Python": get("python"),
        "SQLite": get("sqlite"),
        "torch": get("torch"),
        "CUDA GPU": machine.get("cuda_gpu") or "none",
    }


def describe_machine(tag: str, machine: dict[str, Any]) -> str:
    """One line: ``cpu-intel-2core`` (CPU, cores, RAM; Python, SQLite, torch, GPU)."""
    f = machine_fields(machine)
    return (f"`{tag}` ({f['CPU']}, {f['logical cores']} logical cores, {f['RAM']} RAM; "
            f"Python {f['Python']}, SQLite {f['SQLite']}, torch {f['torch']}, "
            f"CUDA GPU: {f['CUDA GPU']})")


def _relative(path: Path, doc_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), doc_dir)).as_posix()


def _link(path: Path, doc_dir: Path) -> str:
    rel = _relative(path, doc_dir)
    return f"[`{rel}`]({rel})"


def _header(r: Result, doc_dir: Path) -> list[str]:
    """Machine heading, command, date, commit and machine of one result."""
    lines = [f"### `{r.tag}`", ""]
    if r.meta.get("reconstructed"):
        lines += para("*Reconstructed*: measured by hand before `bench.report` existed; the "
                      "meta below is what the hand-written page said.")
    if r.meta.get("quick"):
        lines += para("*Quick run* (`--quick`): smaller sizes than a full run.")
    lines += ["```sh", shell(r.meta.get("command") or "(command not recorded)"), "```", ""]
    commit = r.meta.get("commit")
    lines += para(f"Run {_when(r.meta.get('date'))}, "
                  f"{f'commit `{commit}`' if commit else 'commit not recorded'}, on "
                  f"{describe_machine(r.tag, r.meta.get('machine') or {})}. "
                  f"Figures: {_link(r.source, doc_dir)}." + _steal(r.meta.get("cpu_steal_share")))
    return lines


def _steal(share: float | None) -> str:
    """The host's CPU steal during a run, where the run recorded it."""
    if share is None:
        return ""
    text = (f" CPU steal during the run: {share:.1%} of the machine's CPU time went to other "
            "guests of its host")
    if share < STEAL_NOTABLE:
        return text + "."
    return text + (f", which slows a timing at full load by up to about {1 / (1 - share) - 1:.0%}"
                   " against a quiet host.")


# Renderers: one per benchmark -------------------------------------------------------------


def check_import(r: Result) -> list[Check]:
    """As the caller waits; then, where the checkpoint ran after the commit, counting it."""
    x = r.result
    target = f"Import: at least {IMPORT_TARGET_ROWS_PER_S:,} rows/s"
    checks = [Check(f"{target}, as the caller waits", f"{x['rows_per_s']:,} rows/s",
                    x["rows_per_s"] >= IMPORT_TARGET_ROWS_PER_S)]
    done = x.get("checkpointed_rows_per_s")
    if done is not None:
        checks.append(Check(f"{target}, counting the background checkpoint", f"{done:,} rows/s",
                            done >= IMPORT_TARGET_ROWS_PER_S))
    return checks


def render_import(r: Result) -> list[str]:
    x = r.result
    rate = x["rows_per_s"]
    waits, *counting = check_import(r)
    load = x.get("load_average_1min")
    lines = [
        *para(f"{x['rows']:,} synthetic texts of about {x['chars_per_text']:,} characters, "
              f"written in batches of {x['batch_size']:,} rows"
              + (f"; 1-minute load average after the import: {load}." if load is not None
                 else ".")),
        *table(["file", "time", "rows/s", "CPU s", "peak RSS", "database"], [[
            f"{x['csv_bytes'] / 1e9:.2f} GB CSV, {x['rows']:,} rows", f"{x['import_s']:.1f} s",
            f"**{rate:,}**", f"{x['import_cpu_s']:.1f}", f"{x['peak_rss_mb']:,.0f} MB",
            f"{x['db_bytes'] / 1e9:.2f} GB"]]),
    ]
    if not counting:  # runs before the checkpoint moved out of the commit
        return lines + para(f"Target: at least {IMPORT_TARGET_ROWS_PER_S:,} rows/s: "
                            f"{verdict(waits.ok)} "
                            f"({_against(rate, IMPORT_TARGET_ROWS_PER_S, 'rows/s')}).")
    done = x["checkpointed_rows_per_s"]
    return lines + para(
        f"The time is until `import_file` returns, the rows committed (durable in SQLite's "
        f"write-ahead log) and visible. The checkpoint that copies them into the database file "
        f"then runs in a background thread, blocking no reader or writer; it had finished "
        f"{x['checkpointed_s'] - x['import_s']:.1f} s later ({x['checkpointed_s']:.1f} s in all, "
        f"{done:,} rows/s, {x['checkpointed_cpu_s']:.1f} CPU s). Target: at least "
        f"{IMPORT_TARGET_ROWS_PER_S:,} rows/s: {verdict(waits.ok)} for "
        f"the import as its caller waits for it "
        f"({_against(rate, IMPORT_TARGET_ROWS_PER_S, 'rows/s')}); counting the background "
        f"checkpoint: {verdict(counting[0].ok)} "
        f"({_against(done, IMPORT_TARGET_ROWS_PER_S, 'rows/s')}).")


EXPORT_FORMATS = {"jsonl": "JSONL", "csv": "CSV (formula-safe)", "parquet": "Parquet (snappy)"}


def _export_below(x: dict[str, Any]) -> list[str]:
    """The formats below the target, each with its rate."""
    target = x.get("target_rows_per_s") or EXPORT_TARGET_ROWS_PER_S
    return [f"{EXPORT_FORMATS.get(fmt, fmt)} ({f['rows_per_s']:,} rows/s)"
            for fmt, f in x["results"].items() if (f["rows_per_s"] or 0) < target]


def check_export(r: Result) -> list[Check]:
    x = r.result
    slowest = min(x["results"], key=lambda fmt: x["results"][fmt]["rows_per_s"] or 0)
    return [Check(f"Export: at least {EXPORT_TARGET_ROWS_PER_S:,} rows/s, every format",
                  f"{x['results'][slowest]['rows_per_s']:,} rows/s (slowest: "
                  f"{EXPORT_FORMATS.get(slowest, slowest)})", not _export_below(x))]


def render_export(r: Result) -> list[str]:
    x = r.result
    target = x.get("target_rows_per_s") or EXPORT_TARGET_ROWS_PER_S
    rows = [[EXPORT_FORMATS.get(fmt, fmt), f"{f['seconds']:.1f} s", f"**{f['rows_per_s']:,}**",
             f"{f['rows_per_cpu_s']:,}", f"{f['bytes'] / 1e9:.2f} GB", f"{f['peak_rss_mb']:,.0f} MB"]
            for fmt, f in x["results"].items()]
    below = _export_below(x)
    peak = max(f["peak_rss_mb"] for f in x["results"].values())
    detail = f"for {', '.join(below)}" if below else "for every format"
    return [
        *para(f"{x['rows']:,} labelled texts of about {x['text_chars']:,} characters."),
        *table(["format", "time", "rows/s", "rows per CPU s", "output", "peak RSS"], rows),
        *para(f"Target: at least {target:,} rows/s: {verdict(not below)} {detail}. Peak RSS "
              f"at most {peak:,.0f} MB for {x['rows']:,} rows."),
    ]


QUEUE_BACKENDS = {"queue": "SQLite", "queue-postgresql": "PostgreSQL"}


def _queue_growth(sizes: list[dict[str, Any]]) -> dict[str, float]:
    """p95 at the largest pool over p95 at the smallest, per call; empty for one size."""
    if len(sizes) < 2:
        return {}
    return {op: sizes[-1][op]["p95_ms"] / sizes[0][op]["p95_ms"] for op in ("claim", "submit")}


def check_queue(r: Result) -> list[Check]:
    sizes = sorted(r.result, key=lambda s: s["size"])
    worst = max(s[op]["p95_ms"] for s in sizes for op in ("claim", "submit"))
    name = f"Serving on {QUEUE_BACKENDS.get(r.step, r.step)}"
    checks = [Check(f"{name}: p95 under {QUEUE_P95_TARGET_MS:g} ms", f"worst p95 {worst:.2f} ms "
                    f"(up to {sizes[-1]['size']:,} texts)", worst < QUEUE_P95_TARGET_MS)]
    growth = _queue_growth(sizes)
    if growth:
        checks.append(Check(f"{name}: flat (p95 at the largest pool at most "
                            f"{QUEUE_FLAT_FACTOR:g}× that at the smallest)",
                            f"claim {growth['claim']:.2f}×, submit {growth['submit']:.2f}×",
                            all(g <= QUEUE_FLAT_FACTOR for g in growth.values())))
    return checks


def render_queue(r: Result) -> list[str]:
    sizes = sorted(r.result, key=lambda s: s["size"])
    rows = [[f"{s['size']:,}", *(f"{s[op][p]:.2f} ms" for op in ("claim", "submit")
                                 for p in ("p50_ms", "p95_ms", "p99_ms"))] for s in sizes]
    worst = max(s[op]["p95_ms"] for s in sizes for op in ("claim", "submit"))
    under, *flat = check_queue(r)
    server = " ".join(filter(None, [sizes[0].get("server_version"), r.meta.get("postgres")]))
    lines = [
        *para(f"{sizes[0]['answers']:,} answers by one annotator per pool size"
              + (f", past a queue of {sizes[0]['queue']:,}" if "queue" in sizes[0] else "")
              + (f"; PostgreSQL server: {server}." if server else ".")),
        *table(["texts", "claim p50", "claim p95", "claim p99", "submit p50", "submit p95",
                "submit p99"], rows),
    ]
    target = (f"Target: p95 under {QUEUE_P95_TARGET_MS:g} ms: "
              f"{verdict(under.ok)} (worst p95 {worst:.2f} ms)")
    if not flat:
        return lines + para(f"{target}; flatness needs two pool sizes.")
    return lines + para(
        f"{target}; flat as the pool grows (p95 at {sizes[-1]['size']:,} texts at most "
        f"{QUEUE_FLAT_FACTOR:g}× that at {sizes[0]['size']:,}): {verdict(flat[0].ok)} "
        f"({flat[0].figure}).")


def render_keyboard(r: Result) -> list[str]:
    x = r.result
    runs = sorted(x["runs"], key=lambda run: run["texts"])
    rows = [[f"{run['texts']:,}", f"{run['answers']}", *(f"{run[k]:.0f} ms" for k in
             ("p50_ms", "p95_ms", "p99_ms", "max_ms")), f"{run['stored']:,}",
             f"{run['lost_presses']}"] for run in runs]
    return [
        *para(f"Per pool, {runs[0]['answers']} answers timed after {runs[0]['warm_up']} left "
              f"out, {x['pause_s']:g} s after each text's keys were bound; \"stored\" counts "
              "the labels the database holds afterwards (every answer, those left out "
              "included); \"lost\" counts presses that brought no next text within 10 s "
              "and were made again."),
        *table(["texts", "answers", "p50", "p95", "p99", "slowest", "stored", "lost"], rows),
    ]


def render_predict(r: Result) -> list[str]:
    x = r.result
    rows = [[name, f"{x['texts_per_s'][name]:,.1f}",
             ", ".join(f"{s:.2f}" for s in x["seconds"][name]),
             ", ".join(x["precisions"][name])] for name in ("stream", "predict")]
    return [
        *para(f"{x['texts']:,} unlabelled BBC News texts, {x['train']:,} labelled ones to "
              f"fine-tune on ({x['fit_s']:.1f} s), {x['device']}; median of {x['repeats']} "
              "alternating runs" + (" (with 2, their mean)." if x["repeats"] == 2 else ".")),
        *table(["variant", "texts/s", "seconds per run", "scoring precision per run"], rows),
        *para(f"`predict` at {x['ratio']:.2f}x the speed of `stream`; the same predicted "
              f"label for {x['same_label_share']:.2%} of the texts in every repeat (the "
              "precision is decided afresh in each run); the file: "
              f"{x['rows']:,} rows, {x['bytes']:,} bytes. Peak RSS {x['peak_rss_before_mb']:,.0f}"
              f" MB before the runs, {x['peak_rss_after_mb']:,.0f} MB after."),
    ]


SCORING_VARIANTS = {
    "plain_fp32": "plain fp32 (input order, `no_grad`)",
    "optimised_fp32": "length-sorted, `inference_mode`, fp32",
    "optimised_auto": "the product's path (`precision=auto`)",
    "forced_bf16": "length-sorted, `inference_mode`, bf16 autocast always",
    "forced_int8": "length-sorted, `inference_mode`, int8 (the product's int8 copy) always",
    "forced_ov_int8": "length-sorted, OpenVINO int8 (the product's OpenVINO twin) always",
    "int8_dynamic": "int8 dynamic quantisation of the linear layers (per tensor)",
}


def _precision_check(x: dict[str, Any]) -> str:
    """How the product's check chose among fp32 and its faster candidates, where it ran."""
    needs = (f" (a candidate needs at least {SCORING_CHECK_AGREEMENT:.0%} agreement and "
             f"{SCORING_CHECK_SPEEDUP:g}x).")
    checks = x.get("auto_checks")
    if checks:
        found = "; ".join(f"{name} agreed with fp32 on {c['agreement']:.1%} of its check sample "
                          f"and scored it at {c['speedup']:.2f}x fp32's speed"
                          for name, c in checks.items())
        failed = "".join(f" {name} could not be built: {why}." for name, why in
                         (x.get("auto_failures") or {}).items())
        took = (f" The decision, on the first call "
                f"({x.get('auto_decision_texts', x['texts']):,} texts), took "
                f"{x['auto_decision_s']:.1f} s in all." if "auto_decision_s" in x else "")
        return " after the check: " + found + needs + failed + took
    agreement, speedup = x.get("auto_agreement_check"), x.get("auto_speedup_check")  # older runs
    if agreement is None:
        return "."
    found = f" after bf16 agreed with fp32 on {agreement:.1%} of its check sample"
    if speedup is None:
        return found + "."
    return found + f" and scored it at {speedup:.2f}x fp32's speed" + needs


def _on_cuda(r: Result) -> bool:
    return str(r.result.get("device", "")).startswith("cuda")


def check_scoring(r: Result) -> list[Check]:
    """On a GPU texts/s; on a CPU the speed-up over plain fp32, with the agreement."""
    auto = r.result["variants"].get("optimised_auto", {})
    rate, speedup, agreement = (auto.get(k, 0) for k in ("texts_per_s", "speedup", "agreement"))
    if _on_cuda(r):
        return [Check(f"Scoring on a GPU: at least {SCORING_GPU_TEXTS_PER_S:,} texts/s "
                      "(the target names an H100)",
                      f"{rate:,.0f} texts/s", rate >= SCORING_GPU_TEXTS_PER_S)]
    return [Check(f"Scoring on a CPU: at least {SCORING_CPU_SPEEDUP:g}x plain fp32, the same "
                  f"class for at least {SCORING_AGREEMENT:.0%}",
                  f"{speedup:.2f}x, {agreement:.2%} ({r.result['auto_precision']})",
                  speedup >= SCORING_CPU_SPEEDUP and agreement >= SCORING_AGREEMENT)]


def render_scoring(r: Result) -> list[str]:
    x = r.result
    gpu = _on_cuda(r)
    lines = para(
        f"{x['texts']:,} BBC News texts per variant and repeat ({x['mean_tokens']:g} tokens on "
        f"average after truncation; {x['share_at_max_length']:.0%} reach the {x['max_length']}-token "
        f"cap, so length-sorted batches save no padding on this corpus), batches of "
        f"{x['batch_size']}, {x['torch_threads']} torch threads, {x['device_name']}. The model was "
        f"fine-tuned on {x['fit_texts']} texts first. Median of {x['repeats']} alternating runs"
        + (f", each on the corpus's next {x['texts']:,} texts; agreement over the "
           f"{x['agreement_texts']:,} texts scored" if "agreement_texts" in x else "") + ". "
        f"The product's path chose **{x['auto_precision']}**" + _precision_check(x))
    rows = []
    for name, v in x["variants"].items():
        rows.append([SCORING_VARIANTS.get(name, f"`{name}`"), f"{v['texts_per_s']:,.0f}",
                     f"{v['speedup']:.2f}x", f"{v['agreement']:.2%}", f"{v['max_abs_diff']:.4f}"])
    lines += table(["variant", "texts/s", "against plain fp32", "same class as plain fp32",
                    "largest probability difference"], rows)
    auto = x["variants"].get("optimised_auto", {})
    [check] = check_scoring(r)
    if gpu:
        lines += para(f"Target on a GPU (the issue names an H100): at least "
                      f"{SCORING_GPU_TEXTS_PER_S:,} texts/s: "
                      + verdict(check.ok)
                      + f" ({_against(auto.get('texts_per_s', 0), SCORING_GPU_TEXTS_PER_S, 'texts/s')}).")
    else:
        lines += para(f"Target on a CPU: at least {SCORING_CPU_SPEEDUP:g}x plain fp32, with the "
                      f"same class for at least {SCORING_AGREEMENT:.0%} of texts: "
                      + verdict(check.ok)
                      + f" ({auto.get('speedup', 0):.2f}x, {auto.get('agreement', 0):.2%}).")
    host = x.get("host")
    if host:
        lines += para(
            f"The host's share: the same texts through the product's path with the model call "
            f"left out (tokenising, length-sorted collation, the copies to the "
            f"{'GPU' if gpu else 'model'} and back) ran at {host['texts_per_s']:,.0f} texts/s "
            f"(median of {len(host['seconds'])}): no precision can score faster than that on this "
            f"machine; the product's path reached {auto.get('texts_per_s', 0) / host['texts_per_s']:.0%} "
            "of it.")
    st = x.get("stream")
    if st:
        lines += para(
            f"Streaming: {st['texts']:,} texts through `predict_proba_stream` from a generator in "
            f"{st['seconds']:,.1f} s ({st['texts_per_s']:,.0f} texts/s, {st['precision']}); peak RSS "
            f"{st['peak_rss_before_mb']:,.0f} MB before (model loaded and fine-tuned"
            + (", its precision decided" if st.get("after_decision") else "") + ") and "
            f"{st['peak_rss_after_mb']:,.0f} MB after "
            f"({st['peak_rss_after_mb'] - st['peak_rss_before_mb']:+,.0f} MB)"
            + _after_first_chunk(st) + ". Texts are tokenised and scored 8,192 at a time, and "
            "only each chunk's probabilities are kept.")
    return lines


def _after_first_chunk(st: dict[str, Any]) -> str:
    """What the chunks after the first added to the peak RSS, where the run recorded it."""
    first = st.get("peak_rss_after_first_chunk_mb")
    if first is None or st.get("chunks", 0) < 2:
        return ""
    return (f"; {first:,.0f} MB after the first of {st['chunks']} chunks, so the "
            f"{st['chunks'] - 1} after it added {st['peak_rss_after_mb'] - first:+,.0f} MB")


STREAM_LEAK_MB = 64
"""How far the RSS may rise from the second tenth of a 1,000,000-text stream to its last tenth
(medians over their chunks): a leak of 80 bytes per text would add this much over the 800,000
texts between them. Medians, so that a one-off spike (the allocator's) does not count; the
peak RSS is reported beside it."""


def _stream_points(st: dict[str, Any]) -> list[list[float]]:
    """The per-chunk records at the first chunk and at about 10, 25, 50, 75 and 100%."""
    chunks = st["per_chunk"]
    picks = sorted({0, *(min(len(chunks) - 1, max(0, round(share * len(chunks)) - 1))
                         for share in (0.1, 0.25, 0.5, 0.75, 1.0))})
    return [chunks[i] for i in picks]


def _median_rss(chunks: list[list[float]], start: float, end: float) -> float:
    n = len(chunks)
    return statistics.median(rss for _, _, rss in chunks[round(start * n):round(end * n)])


def check_stream(r: Result) -> list[Check]:
    """The RSS from the second tenth of the stream to its last, where it streamed 1,000,000
    texts."""
    st = r.result["stream"]
    chunks = st.get("per_chunk", [])
    if st["texts"] < 1_000_000 or len(chunks) < 20:
        return []
    growth = _median_rss(chunks, 0.9, 1.0) - _median_rss(chunks, 0.1, 0.2)
    return [Check("Scoring streams a 1,000,000-text pool with bounded memory (the RSS over the "
                  f"pool's last tenth at most {STREAM_LEAK_MB} MB above that over its second "
                  "tenth, medians)",
                  f"{growth:+,.1f} MB (peak RSS {st['peak_rss_after_mb']:,.0f} MB)",
                  growth <= STREAM_LEAK_MB)]


def render_stream(r: Result) -> list[str]:
    x = r.result
    st = x["stream"]
    network = ("a random BERT of 2 layers and width 32" if x["model"] == "tiny"
               else f"`{x['model']}`")
    lines = para(
        f"{st['texts']:,} texts through `predict_proba_stream` from a generator, {x['chunk']:,} "
        f"per chunk, on {x['device']} with {x['torch_threads']} torch threads: {network} behind "
        f"the tokenizer of `{x['tokenizer']}`, fine-tuned first ({x['fit_s']:.1f} s); "
        f"{st['seconds']:,.0f} s in all ({st['texts_per_s']:,.0f} texts/s"
        + (", the host's path alone: tokenising, batching, copies" if x["model"] == "tiny"
           else "") + f"). Peak RSS {st['peak_rss_before_mb']:,.0f} MB before the stream.")
    rows = [[f"{done:,}", f"{peak:,.0f}", f"{now:,.0f}"] for done, peak, now in _stream_points(st)]
    lines += table(["texts so far", "peak RSS, MB", "RSS, MB"], rows)
    checks = check_stream(r)
    if checks:
        lines += para(f"Target: {checks[0].target[0].lower()}{checks[0].target[1:]}: "
                      f"{verdict(checks[0].ok)} ({checks[0].figure}).")
    return lines


def _round_runs(x: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The rounds a run timed, the warm one (where timed) first."""
    first = ("first round (fresh process)" if "warmup_s" not in x
             else f"first round (after the worker's {x['warmup_s']:.1f} s warm-up)")
    return [(name, run) for name, run in (("second round (warm process)", x if "timings" in x else None),
                                          (first, x.get("first")))
            if run]


def check_round(r: Result) -> list[Check]:
    """On a GPU only: the warm round where timed, else the first."""
    runs = _round_runs(r.result)
    if not (_on_cuda(r) and runs):
        return []
    name, run = runs[0]
    return [Check(f"Round on a GPU (200 labels, 20,000 texts): under {ROUND_GPU_TARGET_S:g} s",
                  f"{run['total_s']:.1f} s ({name.split(' (')[0]})",
                  run["total_s"] < ROUND_GPU_TARGET_S)]


def render_round(r: Result) -> list[str]:
    x = r.result
    runs = _round_runs(x)
    rows = []
    for name, run in runs:
        t = run["timings"]
        other = run["total_s"] - sum(t.values())
        scored_in = (run.get("scoring") or {}).get("precision", "–")  # – : not recorded then
        trained_in = run.get("trained_in") or "–"
        if run.get("training_bf16_speedup") is not None:  # the step timed to decide
            trained_in += f" (a step {run['training_bf16_speedup']:.2f}x in bf16)"
        rows.append([name, x["device"], f"{x['labels']}", f"{x['pool']:,}",
                     *(f"{t.get(k, 0):.1f}" for k in ("snapshot_s", "train_s")), trained_in,
                     *(f"{t.get(k, 0):.1f}" for k in ("evaluate_s", "score_s")),
                     scored_in, f"{t.get('write_s', 0):.1f}", f"{other:.1f}",
                     f"**{run['total_s']:.1f}**"])
    lines = table(["round", "device", "labels", "pool", "snapshot s", "train s", "trained in",
                   "evaluate s", "score + embed s", "scored in", "write s",
                   "other s (model files)", "total s"], rows)
    for check in check_round(r):
        run = runs[0][1]
        lines += para(f"Target on a GPU: the whole round under {ROUND_GPU_TARGET_S:g} s: "
                      + verdict(check.ok) + f" ({run['total_s']:.1f} s, "
                      + ("the second round)." if "timings" in x else
                         "a first round, the only one measured there, after the worker's warm-up)."
                         if "warmup_s" in x else "a first round, the only one measured there: it "
                         "includes the process's start-up, which the worker pays once)."))
    return lines

FASTLOOP_PARTS = ("read_s", "rank_s", "write_s")
SIM_STEPS = ("sim", "sim-fastloop")
"""Steps that `make bench` runs on a CPU only with ``--with-sim``."""
ASKED_STEPS = ("stream",)
"""Steps that `make bench` runs on a CPU only when named with ``--only``."""


def render_fastloop(r: Result) -> list[str]:
    runs = sorted(r.result["runs"], key=lambda run: run["pool"])
    first = runs[0]
    lines = para(
        f"{first['labels']} labelled texts, {first['dim']}-dimensional embeddings, a queue of "
        f"{first['queue_size']:,}; per strategy the median and the slowest of "
        f"{first['repeats']} re-ranks, after one first call in the process (it imports "
        f"scikit-learn and modAL: " + ", ".join(f"{run['first_call_s']:.1f} s at "
                                                 f"{run['pool']:,} texts" for run in runs)
        + "). Times in ms.")
    rows = []
    for run in runs:
        for name, s in run["strategies"].items():
            rows.append([f"{run['pool']:,}", f"`{name}`",
                         *(f"{s['median'][k] * 1000:,.0f}" for k in FASTLOOP_PARTS),
                         f"**{s['median']['wall_s'] * 1000:,.0f}**",
                         f"{s['max']['wall_s'] * 1000:,.0f}"])
    lines += table(["pool", "strategy", "read", "fit + rank", "write", "re-rank (median)",
                    "slowest"], rows)
    lines += para("The worker's check whether a re-rank is due (labels since the queue was "
                  "written), once per pass: " + ", ".join(
                      f"{run['due_check_s'] * 1000:.1f} ms at {run['pool']:,} texts"
                      for run in runs) + ".")
    compared = [run["diverse_against_modal"] for run in runs if run.get("diverse_against_modal")]
    if compared:
        lines += para(
            "`diverse` side by side with modAL's own ranked batch sampling "
            "(`modAL.batch.uncertainty_batch_sampling`) on the same shortlist: " + "; ".join(
                f"{c['picks']} picks from {c['shortlist']:,} candidates at {c['pool']:,} texts, "
                f"{c['product_s']:.2f} s against {c['modal_s']:.2f} s ({c['speedup']:g}x), "
                + ("the same picks in the same order" if c["same_picks"]
                   else "**different picks**") for c in compared) + ".")
    checks = check_fastloop(r)
    if not checks:
        return lines + para(f"Target: a re-rank under {FASTLOOP_TARGET_S:g} s at "
                            f"{FASTLOOP_TARGET_POOL:,} texts: not measured at that size.")
    return lines + para(
        f"Target: a re-rank under {FASTLOOP_TARGET_S:g} s at {FASTLOOP_TARGET_POOL:,} texts, "
        f"every strategy, every call: {verdict(checks[0].ok)} (slowest: {checks[0].figure}).")


def check_fastloop(r: Result) -> list[Check]:
    """The slowest re-rank at the target's pool size, if the run measured that size."""
    at = [run for run in r.result["runs"] if run["pool"] == FASTLOOP_TARGET_POOL]
    if not at:
        return []
    name, s = max(at[0]["strategies"].items(), key=lambda item: item[1]["max"]["wall_s"])
    worst = s["max"]["wall_s"]
    return [Check(f"Fast loop: a re-rank under {FASTLOOP_TARGET_S:g} s at "
                  f"{FASTLOOP_TARGET_POOL:,} texts, every strategy, every call",
                  f"`{name}`, {worst:.2f} s", worst < FASTLOOP_TARGET_S)]


def _mean_sd(s: dict[str, Any], metric: str, n: int, repeats: int) -> str:
    if n not in s["n_labels"]:
        return ""
    i = s["n_labels"].index(n)
    mean = f"{s[f'{metric}_mean'][i]:.3f}"
    return mean if repeats == 1 else f"{mean} ± {s[f'{metric}_std'][i]:.3f}"


def _versus_random(summary: dict[str, Any], name: str) -> str:
    s, rnd = summary[name], summary["random"]
    at, rnd_at = (dict(zip(x["n_labels"], x["accuracy_mean"])) for x in (s, rnd))
    below = [f"{n} labels ({at[n]:.3f} against {rnd_at[n]:.3f})"
             for n in _below_random_after_seed(summary, name, None)]
    if not below:
        return f"`{name}` is at or above random at every point."
    return f"`{name}` is below random at {len(below)} of {len(s['n_labels'])} points: " \
           f"{', '.join(below)}."


def _below_random_after_seed(summary: dict[str, Any], name: str, seed_size: int | None
                             ) -> list[int]:
    """The label counts after the seed texts where ``name``'s mean accuracy is below random's."""
    rnd = summary.get("random")
    rnd_at = dict(zip(rnd["n_labels"], rnd["accuracy_mean"])) if rnd else {}
    s = summary[name]
    return [n for n, a in zip(s["n_labels"], s["accuracy_mean"])
            if (seed_size is None or n > seed_size) and n in rnd_at and a < rnd_at[n]]


def _paired_with_random(curves: dict[str, list[list[dict[str, Any]]]], seed_size: int | None
                        ) -> list[str]:
    """Each active strategy's accuracy minus random's in the same repeat (the same split and
    seed texts), at each point after the seed texts: mean ± standard deviation over the repeats
    in percentage points, and how many repeats fell below random. Nothing for one repeat."""
    rnd = curves.get("random") or []
    active = [name for name in curves if name != "random"]
    if len(rnd) < 2 or not active:
        return []

    def at(run: list[dict[str, Any]]) -> dict[int, float]:
        return {p["n_labels"]: p["accuracy"] for p in run}

    rnd_at = [at(run) for run in rnd]
    counts = sorted(n for n in rnd_at[0] if seed_size is None or n > seed_size)
    below_total = compared = 0
    worst = 0.0
    rows = []
    for n in counts:
        cells = []
        for name in active:
            diffs = [100 * (mine[n] - theirs[n]) for mine, theirs
                     in zip(map(at, curves[name]), rnd_at) if n in mine and n in theirs]
            if len(diffs) < 2:
                cells.append("")
                continue
            below = sum(d < 0 for d in diffs)
            below_total, compared = below_total + below, compared + len(diffs)
            worst = min([worst, *diffs])
            cells.append(f"{statistics.mean(diffs):+.1f} ± {statistics.stdev(diffs):.1f} "
                         f"({below} of {len(diffs)} below)")
        rows.append([str(n), *cells])
    lines = para("Paired with random, repeat by repeat (the same split and seed texts): each "
                 "active strategy's accuracy minus random's, in percentage points, mean ± "
                 "standard deviation over the repeats, and in how many repeats it was below.")
    lines += table(["labels", *(f"`{name}` − random" for name in active)], rows)
    return lines + para(
        f"Below random in {below_total} of {compared} paired comparisons after the seed texts"
        + (f", by at most {-worst:.1f} points." if below_total else "."))


def _accuracy_targets(summary: dict[str, Any], seed_size: int | None) -> list[str]:
    """Issue 6's targets: accuracy at 50/100/300 labels, and at or above random after the seed."""
    head = ["strategy", *(f"{n} labels (target {t:.0%})" for n, t in SIM_ACCURACY_TARGETS.items()),
            "at or above random after the seed texts"]
    rows = []
    for name, s in summary.items():
        at = dict(zip(s["n_labels"], s["accuracy_mean"]))
        cells = [f"{at[n]:.3f} {verdict(at[n] >= t)}" if n in at else "not measured"
                 for n, t in SIM_ACCURACY_TARGETS.items()]
        if name == "random" or "random" not in summary:
            cells.append("—")
        else:
            below = _below_random_after_seed(summary, name, seed_size)
            cells.append(verdict(not below) + (f" (below at {', '.join(map(str, below))})" if below else ""))
        rows.append([f"`{name}`", *cells])
    return para("Accuracy targets (mean over the repeats):") + table(head, rows)


def _beside_previous(previous: dict[str, Any] | None, summary: dict[str, Any],
                     counts: list[int], seed_method: str) -> list[str]:
    """The run this one replaced (same protocol, earlier commit): accuracy then and now."""
    if not previous:
        return []
    before = previous.get("seed_method", seed_method)  # not kept by older runs: the same
    then = previous["accuracy"]
    names = [name for name in summary if name in then]
    now = {name: dict(zip(summary[name]["n_labels"], summary[name]["accuracy_mean"],
                          strict=True)) for name in names}

    def cell(name: str, n: int) -> str:
        before, after = then[name].get(str(n)), now[name].get(n)
        if before is None or after is None:
            return ""
        return f"{before:.3f} → {after:.3f} ({after - before:+.3f})"

    def mean_change(name: str) -> str:
        deltas = [now[name][n] - then[name][str(n)] for n in counts[1:]
                  if n in now[name] and str(n) in then[name]]
        return f"`{name}` {sum(deltas) / len(deltas):+.3f}" if deltas else f"`{name}` —"

    run = f"commit `{previous.get('commit')}`, {_when(previous.get('date'))}"
    lines = para(f"Beside the run this one replaced, with the same protocol ({run}): accuracy "
                 "then → now." if before == seed_method else
                 f"Beside the run this one replaced ({run}), with the same protocol but other "
                 f"seed texts ({SEED_WORDS[before]} then, {SEED_WORDS[seed_method]} now): "
                 "accuracy then → now.")
    lines += table(["labels", *names], [[str(n), *(cell(name, n) for name in names)]
                                        for n in counts])
    return lines + para("Mean change after the seed texts: "
                        + ", ".join(mean_change(name) for name in names) + ".")


SIM_LOOPS = {"sim": "fast loop off", "sim-fastloop": "fast loop on"}


def check_sim(r: Result) -> list[Check]:
    """Every active strategy (the worst one is the figure) against each label-efficiency target."""
    cfg, summary = r.result.get("config", {}), r.result["summary"]
    active = [name for name in summary if name != "random"]
    if not active:
        return []
    name_of = f"Label efficiency ({SIM_LOOPS.get(r.step, r.step)})"
    repeats = _count(cfg.get("repeats", 1), "repeat")
    checks = []
    for n, target in SIM_ACCURACY_TARGETS.items():
        at = {name: dict(zip(summary[name]["n_labels"], summary[name]["accuracy_mean"])).get(n)
              for name in active}
        what = f"{name_of}: every active strategy at least {target:.0%} accurate at {n} labels"
        if None in at.values():
            checks.append(Check(what, "not a point of this run", None))
            continue
        low = min(active, key=lambda name: at[name])
        checks.append(Check(what, f"lowest {at[low]:.3f} (`{low}`), {repeats}", at[low] >= target))
    if "random" not in summary:
        return checks
    below = [f"`{name}` at {', '.join(map(str, points))}" for name in active
             if (points := _below_random_after_seed(summary, name, cfg.get("seed_size")))]
    checks.append(Check(f"{name_of}: every active strategy at or above random after the seed "
                        "texts", ("below: " + "; ".join(below) if below else "none below")
                        + f", {repeats}", not below))
    shares = {name: summary[name].get("share_of_random_budget") for name in active}
    never = [name for name, share in shares.items() if share is None]
    worst = never[0] if never else max(active, key=lambda name: shares[name])
    checks.append(Check(f"{name_of}: every active strategy reaches random's final accuracy "
                        f"with at most {SIM_TARGET_SHARE:.0%} of its budget",
                        f"`{worst}` never reached it" if never
                        else f"largest {shares[worst]:.0%} (`{worst}`)",
                        not never and shares[worst] <= SIM_TARGET_SHARE))
    return checks


SEED_WORDS = {"uniform": "a uniform sample", "cold_start": "the cold-start queue's head"}


def _seed_texts(cfg: dict[str, Any]) -> str:
    """The seed set in words (runs from before ``seed_method`` existed seeded uniformly)."""
    if cfg.get("seed_method", "uniform") == "uniform":
        return f"{cfg['seed_size']} random texts"
    return (f"{cfg['seed_size']} texts, the head of the product's cold-start queue (k-means "
            "medoids, `learner/coldstart.py`)")


def _sim_time(x: dict[str, Any], rounds: int) -> str:
    """The run's wall time, or, where it kept curves of an earlier run (``--resume``), the
    time its rounds took in all (with one curve at a time, the wall time of the parts)."""
    resumed, curves = x.get("resumed") or [], x.get("curves", {})
    if not resumed:
        return (f". Wall time {x['wall_seconds'] / 60:.0f} minutes"
                + (f" ({rounds} rounds, {x['wall_seconds'] / rounds:.0f} s each on average)."
                   if rounds else "."))
    total = sum(p["seconds"] for runs in curves.values() for curve in runs for p in curve)
    n_curves = sum(len(runs) for runs in curves.values())
    return (f". Measured in parts: {len(resumed)} of the {n_curves} curves were kept from "
            f"earlier runs (`--resume`); the {rounds} rounds took "
            f"{total / 60:.0f} minutes in all ({total / rounds:.0f} s each on average).")


def render_sim(r: Result) -> list[str]:
    x = r.result
    cfg, summary, curves = x.get("config", {}), x["summary"], x.get("curves", {})
    names = list(summary)
    counts = sorted({n for s in summary.values() for n in s["n_labels"]})
    rounds = sum(len(curve) for runs in curves.values() for curve in runs)
    cap = cfg.get("pool_cap")
    text = (f"{x['n_texts']:,} texts after removing duplicates, {len(x['labels'])} labels, "
            f"{cfg['test_frac']:.0%} (about {round(x['n_texts'] * cfg['test_frac']):,}) held "
            f"out for testing. {_count(cfg['repeats'], 'repeat')}; every strategy of a repeat starts "
            f"from the same {_seed_texts(cfg)}, then takes batches of "
            f"{cfg['batch']} up to {cfg['budget']} labels, each round scoring "
            + (f"a uniform sample of at most {cap:,} pool texts" if cap else "the whole pool")
            + (f", with the fast loop re-ranking every {cfg.get('fast_every')} answers"
               if cfg.get("fast_loop") else "")
            + _sim_time(x, rounds))
    lines = para(text)
    for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        lines += table(["labels", *(f"{n} {label}" for n in names)],
                       [[str(n), *(_mean_sd(summary[s], metric, n, cfg["repeats"])
                                   for s in names)] for n in counts])
    lines += _beside_previous(r.meta.get("previous"), summary, counts,
                              cfg.get("seed_method", "uniform"))
    if cfg["repeats"] == 1:
        lines += para(
            f"One repeat, so no spread to show: a curve's point moves by a point or two between "
            f"runs (each of the {round(x['n_texts'] * cfg['test_frac']):,} test texts is "
            f"{1 / (x['n_texts'] * cfg['test_frac']):.2%} of the accuracy), and the verdicts "
            "against random below are indicative only.")
    else:
        lines += para(f"(mean ± standard deviation over {_count(cfg['repeats'], 'repeat')})")
    if "random" not in summary:
        return lines + para("No random baseline: label efficiency not computed.")
    rnd = summary["random"]
    rows = []
    for name in names:
        s = summary[name]
        share = s.get("share_of_random_budget")
        if name == "random":
            rows.append([f"`{name}`", f"{s['auc_accuracy']:.4f}", "—", "—", "baseline"])
            continue
        rows.append([f"`{name}`", f"{s['auc_accuracy']:.4f}",
                     str(s.get("labels_to_reach_random_final") or "never"),
                     f"{share:.0%}" if share is not None else "",
                     verdict(share is not None and share <= SIM_TARGET_SHARE)])
    lines += para(f"Random's final accuracy: {rnd['accuracy_mean'][-1]:.3f} at "
                  f"{rnd['n_labels'][-1]} labels. Area under the accuracy curve normalised "
                  f"over {counts[0]} to {counts[-1]} labels.")
    lines += table(["strategy", "AUC (accuracy)", "labels to reach random's final accuracy",
                    "share of random's budget", f"target: at most {SIM_TARGET_SHARE:.0%}"], rows)
    lines += para(" ".join(_versus_random(summary, n) for n in names if n != "random"))
    lines += _paired_with_random(curves, cfg.get("seed_size"))
    lines += _accuracy_targets(summary, cfg.get("seed_size"))
    if curves:
        finals = "; ".join(f"`{name}` " + ", ".join(f"{run[-1]['accuracy']:.3f}" for run in runs)
                           for name, runs in curves.items())
        lines += para(f"Final accuracy per repeat: {finals}.")
    return lines


def _run_steps(x: dict[str, Any]) -> str:
    return ", ".join(f"{step} {sec / 60:.1f}" for step, sec in x["steps"].items()) + " minutes"


def check_run(r: Result) -> list[Check]:
    """`make bench` end to end under 30 minutes (no verdict for a quick run)."""
    x = r.result
    figure = f"{x['seconds'] / 60:.1f} minutes" + (", quick" if r.meta.get("quick") else "")
    return [Check(f"`make bench` end to end: under {BENCH_TARGET_S // 60} minutes",
                  figure, None if r.meta.get("quick") else x["seconds"] < BENCH_TARGET_S)]


def render_run(r: Result) -> list[str]:
    x = r.result
    [check] = check_run(r)
    text = (f"End to end: {x['seconds'] / 60:.1f} minutes ({_run_steps(x)}, one after the "
            "other; a step that was not measured took seconds)")
    if check.ok is None:
        return para(text + ". A quick run has no target beyond a few minutes.")
    failed = x.get("failed") or []
    return para(text + f". Target: under {BENCH_TARGET_S // 60} minutes: {verdict(check.ok)}"
                + (f". Steps that failed: {', '.join(failed)}" if failed else "") + ".")


SECTIONS: dict[str, Section] = {
    "run": Section(
        "`make bench` end to end (issue 6)",
        "`bench.run`, which `make bench` runs, records the whole run's wall time, from its "
        "start until its last step ended, where it ran every step (no `--only`) as `make "
        "bench` does: on a CPU without the simulation, which `--with-sim` adds and which is "
        f"not timed here. Target: under {BENCH_TARGET_S // 60} minutes, and a `--quick` run "
        "in a few minutes.",
        render_run, check_run),
    "import": Section(
        "Import: a CSV into SQLite (issues 2 and 6)",
        "`bench.bench_import` writes a CSV of synthetic news-length texts (all distinct) to a "
        "temporary folder, then times `import_file` into a freshly migrated SQLite database. "
        "The import is one transaction: a file with a bad row writes nothing. Target: at least "
        f"{IMPORT_TARGET_ROWS_PER_S:,} rows/s.",
        render_import, check_import),
    "export": Section(
        "Export: labelled texts from SQLite (issues 2 and 6)",
        "`bench.bench_export` builds a SQLite project of labelled texts (every tenth labelled "
        "twice), then exports it to each format, each export in a fresh process so that its "
        "peak RSS is its own. Rows stream in batches, so memory stays flat. Target: at least "
        f"{EXPORT_TARGET_ROWS_PER_S:,} rows/s for every format.",
        render_export, check_export),
    "queue": Section(
        'Serving on SQLite: "claim next text" and "submit answer" as the pool grows',
        "`bench.bench_queue`: for each pool size a fresh database and a ranked queue of 500 "
        "(100 in a quick run), then one annotator claims and answers texts past the end of the "
        "queue, so the random fallback is measured too. Server-side latency of the functions the Annotate page "
        "calls, the first 10 calls left out. Each call is one short write unit; SQLite runs "
        f"with `synchronous=FULL`. Target: p95 under {QUEUE_P95_TARGET_MS:g} ms and flat as "
        f"the pool grows (here: p95 at the largest pool at most {QUEUE_FLAT_FACTOR:g}× that "
        "at the smallest).",
        render_queue, check_queue),
    "queue-postgresql": Section(
        'Serving on PostgreSQL: "claim next text" and "submit answer" as the pool grows',
        "The same benchmark with `--database-url` on PostgreSQL: `make bench` uses "
        "`BENCH_POSTGRES_URL` if set, otherwise a throwaway cluster on a loopback port with "
        "the server's default durability settings, removed afterwards. Same target.",
        render_queue, check_queue),
    "keyboard": Section(
        "At the keyboard: a label key to the next text, in a real browser",
        "`bench.bench_keyboard`: the wait an annotator sees, beyond the server-side figures "
        "above. Per pool size a fresh SQLite database with a ranked queue and the web app as "
        "`make run` starts it; headless Chromium (driven by Playwright) signs in and answers "
        "with the key 1. Each answer is timed in the page from the key's `keydown` to the "
        "text box showing the next text: the answer's write, the next claim, Streamlit's "
        "rerun of the labelling fragment (since it became one: the Annotate page's text, "
        "buttons and last answers; before, the whole page reran), the websocket and the "
        "browser's redraw. No target in the issue; absolute times from a shared machine, "
        "with a browser on the same cores.",
        render_keyboard),
    "scoring": Section(
        "Pool scoring throughput (issue 6)",
        "`bench.bench_scoring`: texts/s of the default model (MiniLM-L6) at max length 128, "
        "the plain fp32 loop against the product's scoring path, measured side by side in one "
        "process. On a CPU the product scores in the fastest of bf16 autocast (CPUs with bf16 "
        "units: AMX, AVX-512 BF16), torch's int8 (its linear layers quantised per output "
        "channel, activations dynamically) and OpenVINO's int8 (the network converted to "
        "OpenVINO, weights and activations quantised by NNCF with ranges from calibration texts "
        f"of the pool; weighed where the pool has at least {OV_INT8_MIN_TEXTS:,} texts and the "
        "x86 CPU has more than AVX2: AVX-512, VNNI or AMX) that "
        f"picks the same class as fp32 for at least {SCORING_CHECK_AGREEMENT:.0%} of a "
        f"{SCORING_CHECK_SAMPLE}-text sample and scores it at least {SCORING_CHECK_SPEEDUP:g}x "
        "as fast, and in fp32 when none does; on CUDA it uses bf16 autocast. Runs before "
        "commit 5abb2d6 had no int8 candidate (their `int8_dynamic` row quantised per tensor, "
        "for comparison only), runs before the OpenVINO candidate had no `forced_ov_int8` "
        "row. ONNX Runtime is not in the pinned requirements; tried outside `make bench` on "
        "`cpu-intel-2core` (512 texts, same fine-tuned model), it scored at 1.12x plain fp32 "
        "in fp32 and 1.53x in int8 (per channel, 99.6% agreement), no better than torch's own "
        "int8.",
        render_scoring, check_scoring),
    "predict": Section(
        "Predictions for a project's texts, against scoring them alone",
        "`bench.bench_predict`: `python -m app predict` (and a worker's prediction job) loads a "
        "model version, reads the project's texts from the database as an export does, scores "
        "them in the model's streaming path and writes each row with its predicted label, "
        "confidence and probabilities. Side by side, alternating, in one process on a fresh "
        "SQLite database: that path to a JSONL file (`predict`) against loading the same saved "
        "model and scoring the same texts, held in memory, through `predict_proba_stream` "
        "(`stream`). Both pay a fresh load and the scoring precision's decision. The model is "
        "the default one, fine-tuned for one epoch on the labelled texts. No target in the "
        "issue: the ratio says what the product's path costs beyond scoring.",
        render_predict),
    "round": Section(
        "Round time: 200 labels, 20,000-text pool (issue 6)",
        "`bench.bench_round`: one round through the worker's own path (snapshot, fine-tune the "
        "default model from scratch with the product's settings, evaluate, score and embed the "
        "whole pool, rank, then one write unit for the version, queue and embeddings) on a "
        "fresh SQLite database; timings as the run records them. Since the worker warms up "
        "when it starts (imports, the device, one training step of the model), the benchmark "
        "does so first and times it apart; runs from before then timed the first round of a "
        "fresh process, start-up included.",
        render_round, check_round),
    "fastloop": Section(
        "The fast loop between rounds: one re-rank (issue 6)",
        "`bench.bench_fastloop`: what the worker does after every few answers between "
        "transformer rounds (`learner.fastloop.fast_rerank`): read the latest model version's "
        "stored embeddings and the labels, fit a logistic regression on the labelled texts' "
        "embeddings, rank the unlabelled pool with the project's strategy, and write the queue "
        "in one write unit, on a fresh SQLite database. The embeddings are LSA vectors of the "
        "demo texts (TF-IDF, then a truncated SVD to MiniLM's 384 dimensions) with a little "
        "noise per repeat of a text, stored as float16 as a round stores them: the model's own "
        "take minutes to compute for 20,000 texts on a CPU, and the re-rank's cost depends on "
        f"their number and width. Target: under {FASTLOOP_TARGET_S:g} s for "
        f"{FASTLOOP_TARGET_POOL:,} texts.",
        render_fastloop, check_fastloop),
    "stream": Section(
        "Streaming a 1,000,000-text pool through scoring: memory (issue 6)",
        "`bench.bench_stream`: the pool streams through the product's scoring path in chunks, "
        "the next chunk tokenised while this one is scored, and only each chunk's "
        "probabilities are kept, so memory must stop growing after the first chunks. On a CPU "
        "the default model would take hours over a million texts, so the network there is a "
        "randomly initialised BERT of 2 layers and width 32 behind the default model's own "
        "tokenizer: every step the texts go through is the product's, and the network's own "
        "memory is a constant per batch (the scoring step streams with the default model). "
        "On a GPU the scoring step streams 1,000,000 texts with the default model itself. "
        "Not part of `make bench` on a CPU (about 10 minutes on 2 cores): "
        "`python -m bench.run --only stream`.",
        render_stream, check_stream),
    "sim": Section(
        "Active learning on the demo corpus (issues 3 and 6)",
        "`python -m app simulate` runs the worker's round code against an oracle that answers "
        "from the labels of the demo corpus (BBC News): every strategy (random always "
        "included) starts a repeat from the same seed texts (since 2756663 the head of the "
        "product's cold-start queue, before that a uniform sample) and is scored on the same "
        "held-out split, so the curves compare like with like. The model is fine-tuned fresh every "
        "round. Target: an active strategy reaches random's final accuracy with at most "
        f"{SIM_TARGET_SHARE:.0%} of random's label budget.",
        render_sim, check_sim),
    "sim-fastloop": Section(
        "Active learning with the fast loop between rounds (issue 6)",
        "The same simulation with `--fast-loop on`: within each batch the round's top texts "
        "are answered first, then after every few answers a logistic regression on the "
        "round's embeddings re-ranks the rest with the same strategy, as the worker does "
        "between transformer rounds. Compare with the section above (fast loop off).",
        render_sim, check_sim),
}


def render_section(section: Section, results: dict[str, Result], doc_dir: Path) -> list[str]:
    """One benchmark: its text, then each machine's result, or why there is none."""
    lines = [f"## {section.title}", "", *para(section.intro)]
    measured = [results[tag] for tag in sorted(results) if results[tag].measured]
    skipped = [results[tag] for tag in sorted(results) if not results[tag].measured]
    if not measured:
        why = "; ".join(f"{r.skipped} (`{r.tag}`, {_when(r.meta.get('date'))})"
                        for r in skipped) or NOT_FOUND
        return lines + para(f"**Not yet measured**: {why}.")
    for r in measured:
        lines += _header(r, doc_dir) + section.render(r)
        for key, path in r.files.items():
            lines += [f"![{r.step} {key}]({_relative(path, doc_dir)})", ""]
        for note in r.meta.get("notes", []):
            lines += para(note)
    for r in skipped:
        lines += para(f"Not measured on `{r.tag}`: {r.skipped}.")
    return lines


def render_targets(results: dict[str, dict[str, Result]]) -> list[str]:
    """Every target on the page in one table: a row per target, a column per machine."""
    cells: dict[str, dict[str, str]] = {}
    for step, section in SECTIONS.items():
        for tag, r in sorted(results.get(step, {}).items()):
            if not r.measured:
                continue
            run = f"`{r.meta.get('commit') or 'commit not recorded'}`" + (
                ", quick run" if r.meta.get("quick") else "")
            for check in section.checks(r):
                cells.setdefault(check.target, {})[tag] = (
                    f"{check.figure} ({run})" if check.ok is None
                    else f"{check.figure}: {verdict(check.ok)} ({run})")
    if not cells:
        return []
    tags = sorted({tag for row in cells.values() for tag in row})
    return [
        "## Targets at a glance", "",
        *para("The targets of the sections below, as those sections judge them, side by side: "
              "per machine the figure, the verdict and the commit it was measured at (a run at "
              "an older commit stands until the benchmark runs again there). — : not measured "
              "on that machine, or a target for another kind of machine."),
        *table(["target", *(f"`{tag}`" for tag in tags)],
               [[target, *(row.get(tag, "—") for tag in tags)] for target, row in cells.items()]),
    ]


def render(results: dict[str, dict[str, Result]], doc_dir: Path) -> str:
    """The whole page; ``doc_dir`` is where it will lie (links are relative to it)."""
    machines: dict[str, Result] = {}
    for by_tag in results.values():
        for tag, r in by_tag.items():
            if tag not in machines or str(r.meta.get("date")) > str(
                    machines[tag].meta.get("date")):
                machines[tag] = r
    header = list(machine_fields({}))
    lines = [
        "# Benchmarks", "",
        "<!-- Generated by `python -m bench.report` (`make bench` runs it): edit bench/report.py "
        "or the result files, not this page. -->", "",
        *para("Every figure below comes with the command that produced it, the machine, the "
              "date and the commit. `make bench` runs every benchmark, copies the results to "
              "`docs/results/<machine>/` and rewrites this page from them and from "
              "`bench/out/` (this machine's latest run, not committed); `make bench-quick` runs "
              "smaller sizes, which appear only where a machine has no full run. Wall times on "
              "a shared machine are noisy; CPU seconds are given where a benchmark records "
              "them, and where a run recorded it, the CPU steal during it (the time the host "
              "of a virtual machine gave to its other guests; older runs did not record it)."),
        "## Machines", "",
        *table(["machine", *header],
               [[f"`{tag}`", *machine_fields(machines[tag].meta.get("machine") or {}).values()]
                for tag in sorted(machines)]),
    ]
    for tag in sorted(machines):
        timed = {step: results[step][tag].meta["seconds"] for step in SECTIONS
                 if step != "run" and tag in results.get(step, {})
                 and results[step][tag].measured and "seconds" in results[step][tag].meta}
        gpu = bool((machines[tag].meta.get("machine") or {}).get("cuda_gpu"))
        opt_in = {} if gpu else {step: timed.pop(step) for step in SIM_STEPS if step in timed}
        asked = {} if gpu else {step: timed.pop(step) for step in ASKED_STEPS if step in timed}
        if timed:
            total = sum(timed.values())
            lines += para(
                f"`{tag}`: the benchmarks shown took {total / 60:.1f} minutes in all ("
                + ", ".join(f"{step} {sec / 60:.1f}" for step, sec in timed.items())
                + " minutes; `make bench` runs them one after the other)"
                + ("" if not opt_in else "; the simulation, which it runs on a CPU only with "
                   "`--with-sim`, took " + ", ".join(f"{sec / 60:.1f} minutes ({step})"
                                                     for step, sec in opt_in.items()) + " more")
                + "".join(f"; the {step} step, which it runs on a CPU only when asked for, "
                          f"took {sec / 60:.1f} minutes more" for step, sec in asked.items())
                + ".")
    if not any((r.meta.get("machine") or {}).get("cuda_gpu") for r in machines.values()):
        lines += para("No machine with a CUDA GPU has results here yet: GPU figures are not yet "
                      "measured.")
    lines += render_targets(results)
    for step, section in SECTIONS.items():
        lines += render_section(section, results.get(step, {}), doc_dir)
    return "\n".join(lines).rstrip() + "\n"


def write_report(out: Path = OUT, run_dir: Path = RUN_DIR, results_dir: Path = RESULTS_DIR
                 ) -> Path:
    """Render the page from ``run_dir`` and ``results_dir`` into ``out``; returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(collect(run_dir, results_dir), out.parent.resolve()), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="default: docs/benchmarks.md")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR,
                        help="this machine's latest run (default: bench/out)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="committed results, one folder per machine (default: docs/results)")
    args = parser.parse_args(argv)
    print(f"Wrote {write_report(args.out, args.run_dir, args.results_dir)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
