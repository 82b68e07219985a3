#!/usr/bin/env bash
# Every table and figure in the README and the About tab. The experiments are named in
# gera/results_set.py: `report --all` runs each one whose results/NAME.json is missing or was made
# by another command (so a stopped run resumes), then writes results/figures/NAME.{html,png} and
# records each experiment's wall time in results/report-all.txt (for a part of it:
# `python -m gera report --all --only NAME,... [--force] [--figures-only]`). The rest are the
# semi-supervised diagnostics and the benchmarks, which measure this machine, not the methods.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p results
status=0
"$PY" -m gera report --all || status=$?  # a failed experiment is named there; the rest still run
"$PY" scripts/semi_diagnostics.py --task fashion-mnist --budget 100 --methods pseudo,propagation \
    --out results/fashion-mnist-100-semi-diagnostics.json > results/fashion-mnist-100-semi-diagnostics.txt
"$PY" -m gera bench > results/bench.txt
"$PY" -m gera bench --scale --skip-encoders > results/bench-scale.txt
bash scripts/bench-compare.sh > results/bench-compare.txt
bash scripts/bench-rev.sh dab7be5 compare --task fashion-mnist --budget 100 --matmul-precision medium > results/bench-rev-dab7be5.txt
bash scripts/bench-rev.sh dab7be5 compare --task emoji --budget 3000 --seeds 0,1 --methods structure --matmul-precision medium > results/bench-rev-dab7be5-emoji-structure.txt
"$PY" scripts/bench_structure_loss.py > results/bench-structure-loss.txt
"$PY" -m gera.ui.bench > results/app-bench.txt
"$PY" -m gera.ui.bench --load > results/app-load.txt
# The GPU runs (README "On a GPU") need a machine with CUDA; what it lacks travels as a snapshot
# made here:  "$PY" -m gera snapshot --task emoji --seeds 5 --dtype float16 --out .gpu/emoji-f16.npz
# There:      GERA_MPS=1 bash scripts/gpu-run.sh .gpu/emoji-f16.npz OUT   (OUT/emoji-sweep-cuda.*
# are results/emoji-sweep-cuda.*; results/gpu-h200.txt gathers OUT's files under their commands).
exit $status
