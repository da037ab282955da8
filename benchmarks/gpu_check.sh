#!/usr/bin/env bash
# The prepared check for a lent CUDA device, run from the repository root (under 8 minutes):
#   1. the CUDA tests (pytest -m cuda: tests/torch/test_cuda_samplers.py and any other test
#      marked cuda), 150 s at most;
#   2. the sampler overhead benchmark on cuda (benchmarks/bench_samplers.py --device cuda), with
#      the CUDA-graph rows for the 1x3x8x8 batch (target: RES-2M graphed <= 1.2 x the eager
#      one-axpy lower bound), 180 s at most;
#   3. the league's timing on cuda: the quick league (python -m experiments.league --quick
#      --device cuda), 150 s at most.
# Python: $PYTHON if set, else .venv/bin/python, else .ci/install makes .venv (120 s at most;
# its torch must be a CUDA build: set TORCH_INDEX_URL to a CUDA wheel index if needed). The
# whole script stops within GPU_CHECK_SECONDS (default 470 s): a part's timeout is cut to the
# time left, and a part with none left is skipped (and counted as failed). Logs and tables go
# to $OUT if set, else benchmarks/results/gpu-<UTC time>/. Every part runs even if an earlier
# one fails; the exit status is the number of parts that failed (0: all passed).
# Usage: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 98

results="${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$results"
summary="$results/gpu_check_summary.txt"
: >"$summary"
failed=0
deadline=$(($(date +%s) + ${GPU_CHECK_SECONDS:-470}))

note() { echo "$*" | tee -a "$summary"; }

part() { # part NAME SECONDS COMMAND...: run COMMAND under a timeout, log to NAME.log
  local name=$1 limit=$2 start status
  shift 2
  start=$(date +%s)
  if [ $((deadline - start)) -lt "$limit" ]; then limit=$((deadline - start)); fi
  if [ "$limit" -le 0 ]; then
    note "== $name: skipped, no time left"
    failed=$((failed + 1))
    return
  fi
  note "== $name (timeout ${limit} s): $*"
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" 2>&1 | tee "$results/$name.log"
  status=${PIPESTATUS[0]}
  note "== $name: exit $status after $(($(date +%s) - start)) s"
  if [ "$status" -ne 0 ]; then failed=$((failed + 1)); fi
}

note "gpu_check at $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi -L 2>&1 | tee -a "$summary" || note "nvidia-smi not found"

python="${PYTHON:-.venv/bin/python}"
if [ ! -x "$python" ]; then
  part install 120 bash .ci/install
  python=.venv/bin/python
fi
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  note "torch in $python has no CUDA device (torch $("$python" -c 'import torch; print(torch.__version__)' 2>&1)); stopping"
  exit 99
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$summary"

part cuda_tests 150 "$python" -m pytest -m cuda -q -p no:cacheprovider tests
part bench_samplers 180 "$python" benchmarks/bench_samplers.py --device cuda --repeats 7
part league_cuda 150 "$python" -m experiments.league --quick --device cuda --out "$results"

note "parts failed: $failed; results in $results"
exit "$failed"
