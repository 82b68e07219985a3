#!/usr/bin/env bash
# The GPU checks as one short run on a machine with CUDA but none of the encoders' weights or data
# (the README's "GPU" section): the CUDA tests, the training bench on cuda and on the CPU, and the
# full emoji sweep from a snapshot made here with
#   python -m gera snapshot --task emoji --seeds 5 --dtype float16 --out .gpu/emoji-f16.npz
# Usage there: bash scripts/gpu-run.sh SNAPSHOT OUT_DIR [BUDGETS] [WORKERS] [SWEEP_TIMEOUT_S]
# Each step runs whatever the last one did; everything it prints lands in OUT_DIR.
# GERA_RUN_STEPS picks steps (default "tests bench sweep"); GERA_MPS=1 runs the sweep's worker
# processes under CUDA MPS where the driver has it (one shared context: their small kernels run
# side by side instead of taking turns).
# GERA_STACK_FITS: the sweep once per value given, in order (default "auto": tuning's first
# settings trained as one stacked model on CUDA; "never": one by one), into emoji-sweep-<device>[-<value>].*
set -u -o pipefail
steps=${GERA_RUN_STEPS:-tests bench sweep}
snapshot=$1 out=$2 budgets=${3:-10,30,100,300,1000,3000} workers=${4:-15} sweep_timeout=${5:-420}
device=${GERA_RUN_DEVICE:-cuda}  # cpu: try this script where there is no GPU
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 GERA_CACHE_DIR=${GERA_CACHE_DIR:-/tmp/gera-cache}
mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  nproc
  $python -c "import sys, numpy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__,
'torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$out/machine.txt"

has() { [[ " $steps " == *" $1 "* ]]; }

if has tests; then
stamp "CUDA tests"
$python -m pytest -q --noconftest -p no:cacheprovider -rs tests/test_cuda.py 2>&1 \
  | tee "$out/test-cuda.txt"
fi

runs=("$device 3")
# the same machine's CPU, for the ratio (one job: time is short); GERA_BENCH_CPU=0 skips it
[ "$device" = cpu ] || [ "${GERA_BENCH_CPU:-1}" = 0 ] || runs+=("cpu 1")
has bench && for run in "${runs[@]}"; do
  set -- $run
  stamp "training bench on $1"
  stacks=auto; [ "$1" = cpu ] || stacks=never,auto  # on CUDA: eager steps against graphed ones
  $python -m gera bench --task "snapshot:$snapshot" --budget 100 --skip-encoders --repeats "$2" \
    --device "$1" --stack-fits "$stacks" 2>&1 | tee "$out/bench-$1.txt"
done

has sweep || exit 0
mps=off
if [ "${GERA_MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  # -d fails where a daemon already runs: its clients use MPS all the same
  if nvidia-cuda-mps-control -d; then
    mps=on
    trap 'echo quit | nvidia-cuda-mps-control' EXIT  # also when a time limit kills the sweep
  fi
fi
status=0
for stack in ${GERA_STACK_FITS:-auto}; do
  tag=$device; [ "$stack" = auto ] || tag=$device-$stack
  stamp "sweep on $device, $workers workers, budgets $budgets, MPS $mps, stack-fits $stack"
  start=$(date +%s%N)
  timeout "$sweep_timeout" $python -m gera sweep --task "snapshot:$snapshot" --budgets "$budgets" \
    --seeds 5 --device "$device" --workers "$workers" --stack-fits "$stack" \
    --json "$out/emoji-sweep-$tag.json" > "$out/emoji-sweep-$tag.txt" 2> "$out/emoji-sweep-$tag.log"
  code=$?
  end=$(date +%s%N)
  echo "MPS $mps, $workers workers, stack-fits $stack: sweep exit $code, wall $(( (end - start) / 1000000 )) ms (timeout ${sweep_timeout} s)" \
    | tee -a "$out/emoji-sweep-$tag.txt"
  tail -5 "$out/emoji-sweep-$tag.log"
  [ "$code" = 0 ] || status=$code
done
stamp done
exit "$status"
