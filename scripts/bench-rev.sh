#!/usr/bin/env bash
# One gera command timed with the code at REV (a temporary worktree, same venv and embedding
# cache) and with this checkout, one after the other on this machine, then where each run's
# fitting time went and whether their tables agree:
#   scripts/bench-rev.sh REV compare --task fashion-mnist --budget 100 --matmul-precision medium
# The command must accept --json (compare, sweep); each side writes its own, kept in $KEEP
# (a folder) when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
REV=$1; shift
OUT=$(mktemp -d)
trap 'git worktree remove --force "$OUT/before" >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT
git worktree add --detach "$OUT/before" "$REV" >/dev/null 2>&1
seconds() { local t0; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'; }
before=$(cd "$OUT/before" && seconds "$PY" -m gera "$@" --json "$OUT/before.json")
after=$(seconds "$PY" -m gera "$@" --json "$OUT/after.json")
echo "machine: $(nproc) cores, $(date -u +%F)"
echo "python -m gera $*"
printf "  before (%s): %7.1f s\n  now (%s):     %7.1f s   (%.2f× faster)\n" "$REV" "$before" \
  "$(git rev-parse --short HEAD)" "$after" "$(awk -v a="$before" -v b="$after" 'BEGIN { print a / b }')"
cp "$OUT/before.json" "$OUT/before-$REV.json"
PYTHONPATH=. "$PY" scripts/sweep_fit_times.py "$OUT/before-$REV.json" "$OUT/after.json"
PYTHONPATH=. "$PY" scripts/results_agree.py "$OUT/before-$REV.json" "$OUT/after.json"
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$OUT/before-$REV.json" "$OUT/after.json" "$KEEP/"; fi
