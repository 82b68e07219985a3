#!/usr/bin/env bash
# Issue 10's comparison timings, before → after, measured in one run on this machine:
#   scripts/bench-compare.sh [BEFORE_REV]   (default cebcd0d, main before the speed work)
# Runs the same fashion-mnist compare (5 seeds, 5 methods, 3 settings each) with the code at
# BEFORE_REV (a temporary worktree, same venv and embedding cache) and with this checkout, then
# this checkout's default compare (default methods, default tuning budget); this checkout's two
# again with --matmul-precision medium (bfloat16 products where the CPU has bfloat16 units).
# Prints wall times, their ratios, and every table (the numbers must agree up to seed noise).
# Needs a warm cache:
#   python -m gera embed --task fashion-mnist --budgets 100
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
BEFORE=${1:-cebcd0d}
OUT=$(mktemp -d)
trap 'git worktree remove --force "$OUT/before" >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT
git worktree add --detach "$OUT/before" "$BEFORE" >/dev/null 2>&1
ARGS=(compare --task fashion-mnist --budget 100 --seeds 0,1,2,3,4
      --methods gera,contrastive,procrustes,asif,cca --grid-size 3)
seconds() { local t0; t0=$(date +%s.%N); "$@" >"$OUT/last.txt" 2>/dev/null; awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'; }
before=$(cd "$OUT/before" && seconds "$PY" -m gera "${ARGS[@]}"); cp "$OUT/last.txt" "$OUT/before.txt"
after=$(seconds "$PY" -m gera "${ARGS[@]}"); cp "$OUT/last.txt" "$OUT/after.txt"
default=$(seconds "$PY" -m gera compare --task fashion-mnist --budget 100); cp "$OUT/last.txt" "$OUT/default.txt"
MEDIUM=(--matmul-precision medium)
after_medium=$(seconds "$PY" -m gera "${ARGS[@]}" "${MEDIUM[@]}"); cp "$OUT/last.txt" "$OUT/after-medium.txt"
default_medium=$(seconds "$PY" -m gera compare --task fashion-mnist --budget 100 "${MEDIUM[@]}"); cp "$OUT/last.txt" "$OUT/default-medium.txt"
echo "machine: $(nproc) cores, $(date -u +%F)"
echo "python -m gera ${ARGS[*]}"
printf "  before (%s): %6.1f s\n  after:          %6.1f s   (%.1f× faster)\n" "$BEFORE" "$before" "$after" "$(awk -v a="$before" -v b="$after" 'BEGIN { print a / b }')"
printf "  after, %s: %6.1f s   (%.1f× faster than before)\n" "${MEDIUM[*]}" "$after_medium" \
  "$(awk -v a="$before" -v b="$after_medium" 'BEGIN { print a / b }')"
printf "python -m gera compare --task fashion-mnist --budget 100   (defaults: %s)\n  %6.1f s\n" \
  "$(grep -m1 'seeds' "$OUT/default.txt" | sed 's/  */ /g')" "$default"
printf "  %s: %6.1f s\n" "${MEDIUM[*]}" "$default_medium"
for f in before after after-medium default default-medium; do echo; echo "--- $f"; cat "$OUT/$f.txt"; done
