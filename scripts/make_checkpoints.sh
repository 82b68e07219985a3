#!/usr/bin/env bash
# Regenerates checkpoints/: the alignments the app's Retrieval and Neighbourhoods tabs load at
# start-up, from the bundled data, through the CLI (one seed, each method tuned on its grid of 3
# as in `compare`), at three paired budgets per task: 30, 300 and the largest the task serves
# (`Task.max_budget()`: emoji 7987, spoken-words 713). About 15 minutes on 2 CPU cores with a warm
# embedding cache; the first run also embeds what the splits need. Each checkpoint is
# <task>-N<budget>-<method>.safetensors + .json (meta: task, budget, encoders, chosen setting,
# test metrics), its matrices stored as float16 (the same retrieval lists as float32; tested).
#
# One exception keeps the folder under 60 MB: ASIF is not shipped at emoji's largest budget.
# ASIF's checkpoint is its anchors (the raw training pairs), which grow with N: 6,390 pairs of
# 1280- and 384-d vectors, 21 MB even in float16. The app says so when it is asked for.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ALL=gera,contrastive,procrustes,asif,cca,structure
rm -f checkpoints/*.safetensors checkpoints/*.json
for task in emoji spoken-words; do
  largest=$("$PY" -c "from gera.data import get_task; print(get_task('$task').max_budget())")
  for budget in 30 300 "$largest"; do
    methods=$ALL
    if [ "$task" = emoji ] && [ "$budget" = "$largest" ]; then
      methods=gera,contrastive,procrustes,cca,structure
    fi
    "$PY" -m gera train --task "$task" --budget "$budget" --seeds 1 --methods "$methods" \
      --float16 --out checkpoints
  done
done
du -sh checkpoints
