#!/usr/bin/env bash
# Regenerates checkpoints/: the alignments the app's Retrieval and Neighbourhoods tabs load at
# start-up, from the bundled data, through the CLI (one seed, each method tuned on its grid of 3
# as in `compare`). A few minutes on 2 CPU cores with a warm embedding cache; the first run also
# embeds what the splits need. Each checkpoint is <task>-<method>.safetensors + .json (meta: task,
# budget, encoders, chosen setting, test metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -f checkpoints/*.safetensors checkpoints/*.json
"$PY" -m gera train --task emoji --budget 300 --seeds 1 --out checkpoints
"$PY" -m gera train --task spoken-words --budget 300 --seeds 1 --out checkpoints
