"""Run the benchmarks: ``make bench`` (1,000,000 rows) or ``make bench-quick`` (100,000 rows).

Each benchmark is its own module (``bench.bench_import``, ``bench.bench_export``,
``bench.bench_queue``) and
runs in a child process so that peak memory is its own. Figures go to ``bench/out/*.json``;
``docs/benchmarks.md`` records them with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

OUT = Path("bench/out")


def run(module: str, *args: str) -> None:
    print(f"$ python -m {module} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", module, *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    args = parser.parse_args(argv)
    rows = "100000" if args.quick else "1000000"
    OUT.mkdir(parents=True, exist_ok=True)
    run("bench.bench_import", "--rows", rows, "--out", str(OUT / "import.json"))
    run("bench.bench_export", "--rows", rows, "--out", str(OUT / "export.json"))
    sizes = "10000,100000" if args.quick else "10000,100000,1000000"
    run("bench.bench_queue", "--sizes", sizes, "--out", str(OUT / "queue.json"))
    for name in ("import", "export", "queue"):
        print(name, json.dumps(json.loads((OUT / f"{name}.json").read_text()), indent=1)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
