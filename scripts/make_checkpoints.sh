#!/usr/bin/env bash
# Regenerates checkpoints/: the alignments the app's Retrieval and Neighbourhoods tabs load at
# start-up, from the bundled data, through the CLI (one seed, each method tuned on its search of
# 3 fits as in `compare`), at three paired budgets per task: 30, 300 and the largest the task
# serves (`Task.max_budget()`: emoji 7987, spoken-words 3382 clip–transcript pairs).
#   bash scripts/make_checkpoints.sh                 # every task (about an hour on 2 CPU cores)
#   bash scripts/make_checkpoints.sh spoken-words    # one task's checkpoints only
# The first run also embeds what the splits need. Each checkpoint is
# <task>-N<budget>-<method>.safetensors + .json (meta: task, budget, encoders, chosen setting,
# test metrics), its matrices stored as float16 (the same retrieval lists as float32; tested).
#
# What keeps the folder under 60 MB (the app says which methods a budget lacks when asked):
# - GeRA, contrastive-only and the training-free baselines are shipped at every budget;
#   STRUCTURE and partner propagation (two more trained heads, ~2 MB each) at N = 300 only.
# - ASIF is not shipped at a task's largest budget. ASIF's checkpoint is its anchors (the raw
#   training pairs), which grow with N: at emoji's 7,987 that is 6,390 pairs of 1280- and 384-d
#   vectors, 21 MB even in float16.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORE=gera,contrastive,procrustes,asif,cca
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(emoji spoken-words)
for task in "${tasks[@]}"; do
  rm -f checkpoints/"$task"-N*.safetensors checkpoints/"$task"-N*.json
  largest=$("$PY" -c "from gera.data import get_task; print(get_task('$task').max_budget())")
  for budget in 30 300 "$largest"; do
    case $budget in
      300) methods=$CORE,structure,propagation ;;
      "$largest") methods=${CORE/asif,/} ;;
      *) methods=$CORE ;;
    esac
    "$PY" -m gera train --task "$task" --budget "$budget" --seeds 1 --methods "$methods" \
      --float16 --out checkpoints
  done
done
du -sh checkpoints
