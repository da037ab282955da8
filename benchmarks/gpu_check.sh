#!/usr/bin/env bash
# The prepared check for a lent CUDA device, run from the repository root (under 8 minutes):
#   1. the CUDA tests (pytest -m cuda: tests/torch/test_cuda_samplers.py and any other test
#      marked cuda), 150 s at most;
#   2. the sampler overhead benchmark on cuda (benchmarks/bench_samplers.py --device cuda), with
#      the CUDA-graph rows for the 1x3x8x8 batch (target: RES-2M graphed <= 1.2 x the eager
#      one-axpy lower bound), 180 s at most;
#   3. the league's timing on cuda: the quick league (python -m experiments.league --quick
#      --device cuda), 150 s at most.
# Python: the first of $PYTHON, .venv/bin/python, python3, python whose torch sees a CUDA device
# (a lent machine has its own CUDA torch as python3 and no network; .venv is not carried);
# .ci/install only if none does (120 s at most; set TORCH_INDEX_URL to a CUDA wheel index). The
# league needs diffusers and k-diffusion, which a lent machine lacks: wheels in .whl/ (carried,
# gitignored; made here by `pip download --no-deps -d .whl diffusers==0.42.1
# k-diffusion==0.1.1.post1`) are installed into a temporary folder on PYTHONPATH. The
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

commit="${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
note "gpu_check at $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 |
  tee -a "$summary" || note "nvidia-smi not found"

with_cuda() { # the first executable among the arguments whose torch sees a CUDA device
  local candidate path
  for candidate in "$@"; do
    [ -n "$candidate" ] || continue
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      echo "$path"
      return 0
    fi
  done
  return 1
}

if ! python=$(with_cuda "${PYTHON:-}" .venv/bin/python python3 python); then
  part install 120 bash .ci/install
  if ! python=$(with_cuda .venv/bin/python); then
    first="${PYTHON:-.venv/bin/python}"
    note "torch in $first has no CUDA device (torch $("$first" -c 'import torch; print(torch.__version__)' 2>&1)); stopping"
    exit 99
  fi
fi
"$python" -c "import torch; print('python', '$python', 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$summary"
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl &&
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" && note "installed .whl/: $(ls .whl)"
fi

part cuda_tests 150 "$python" -m pytest -m cuda -q -p no:cacheprovider tests
part bench_samplers 180 "$python" benchmarks/bench_samplers.py --device cuda --repeats 7 \
  --out "$results/samplers_cuda.csv"
part league_cuda 150 "$python" -m experiments.league --quick --device cuda --out "$results"

note "-- in short:"
tail -n 1 "$results/cuda_tests.log" 2>/dev/null | tee -a "$summary"
grep -i "graph" "$results/bench_samplers.log" 2>/dev/null | tee -a "$summary"
note "parts failed: $failed; results in $results"
exit "$failed"
