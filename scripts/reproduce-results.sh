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
bash scripts/bench-rev.sh cebcd0d sweep --task emoji --budgets 30,100,1000 --seeds 3 --methods gera,contrastive,procrustes,asif,cca --grid-size 3 > results/bench-rev-cebcd0d-emoji-sweep.txt
# Timing runs of the whole emoji sweep: at the settings issue 10 set its target with (five methods,
# three fits; in results/cpu/, out of the app's budget chart) and today's defaults at `medium`.
mkdir -p results/cpu
"$PY" -m gera sweep --task emoji --budgets 10,30,100,300,1000,3000 --methods gera,contrastive,procrustes,asif,cca --fits 3 \
    --json results/cpu/emoji-sweep-fits3.json > results/cpu/emoji-sweep-fits3.txt
"$PY" -m gera sweep --task emoji --budgets 10,30,100,300,1000,3000 --matmul-precision medium \
    --json results/emoji-sweep-medium.json > results/emoji-sweep-medium.txt
"$PY" scripts/bench_structure_loss.py > results/bench-structure-loss.txt
{ echo "# python scripts/bench_structure_loss.py --compiled --repeats 20   (Inductor cache warm)"
  "$PY" scripts/bench_structure_loss.py --compiled --repeats 20
  echo; echo "# the same with an empty Inductor cache: TORCHINDUCTOR_CACHE_DIR=\$(mktemp -d) python scripts/bench_structure_loss.py --compiled --repeats 5"
  TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) "$PY" scripts/bench_structure_loss.py --compiled --repeats 5
} > results/bench-structure-loss-compiled.txt
"$PY" -m gera.ui.bench > results/app-bench.txt
"$PY" -m gera.ui.bench --load > results/app-load.txt
# The GPU runs (README "On a GPU") need a machine with CUDA; what it lacks travels as a snapshot
# made here:  "$PY" -m gera snapshot --task emoji --seeds 5 --dtype float16 --out .gpu/emoji-f16.npz
# There:      GERA_MPS=1 bash scripts/gpu-run.sh .gpu/emoji-f16.npz OUT   (OUT/emoji-sweep-cuda.*
# are results/emoji-sweep-cuda.*; results/gpu-h200.txt gathers OUT's files under their commands).
exit $status
