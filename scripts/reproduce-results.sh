#!/usr/bin/env bash
# Every figure in the README comes from one of these commands (tables in results/*.txt, full
# results in results/*.json). Several hours on 2 CPU cores with a warm embedding cache (never yet
# run end to end in one go: each README section names the command and the file it came from).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() {  # run NAME ARGS...: table to results/NAME.txt, JSON to results/NAME.json
  local name=$1; shift
  "$PY" -m gera "$@" --json "results/$name.json" > "results/$name.txt"
}
mkdir -p results
run fashion-mnist-100       compare --task fashion-mnist --budget 100
run fashion-mnist-100-structure compare --task fashion-mnist --budget 100 --methods gera,contrastive,structure
run fashion-mnist-100-pseudo      compare --task fashion-mnist --budget 100 --methods pseudo,contrastive --grid-size 1
run fashion-mnist-100-propagation compare --task fashion-mnist --budget 100 --methods propagation,contrastive,gera --grid-size 1
run fashion-mnist-100-pool  ablate  --task fashion-mnist --budget 100 --param pool --values 0,100,1000,5000 --alpha 10
"$PY" scripts/semi_diagnostics.py --task fashion-mnist --budget 100 --methods pseudo,propagation \
    --out results/fashion-mnist-100-semi-diagnostics.json > results/fashion-mnist-100-semi-diagnostics.txt
run emoji-300               compare --task emoji --budget 300 --fits 3 --methods gera,contrastive,procrustes,asif,cca
run emoji-300-fits6         compare --task emoji --budget 300
run emoji-300-alpha         ablate  --task emoji --budget 300 --param alpha --values 0.1,1,10,100
run emoji-300-unpaired-b    ablate  --task emoji --budget 300 --param unpaired_b --values 300,1500,6000
run emoji-300-unpaired-a    ablate  --task emoji --budget 300 --param unpaired_a --values 300,1000,3000
run spoken-words-100        compare --task spoken-words --budget 100
run emoji-sweep             sweep   --task emoji --budgets 10,30,100,300,1000,3000
"$PY" -m gera report results/emoji-sweep.json --metrics recall@1_a2b,recall@10_a2b,zero_shot_top1,knn_jaccard_a > results/emoji-sweep-summary.txt
"$PY" -m gera bench > results/bench.txt
"$PY" -m gera bench --scale --skip-encoders > results/bench-scale.txt
bash scripts/bench-compare.sh > results/bench-compare.txt
"$PY" -m gera.ui.bench > results/app-bench.txt
"$PY" -m gera.ui.bench --load > results/app-load.txt
