#!/usr/bin/env bash
# Every GPU measurement and CUDA test of cfglab in one go (~6-8 minutes on one H100/H200;
# each part has its own time limit, 800 s at most in all). Where one command may run 10 minutes
# at most, split it: PARTS="tests pe_cost" bash benchmarks/gpu_check.sh, then
# PARTS="loop_rot loop_abs profile_rot" bash benchmarks/gpu_check.sh.
# Run from the repository root on a CUDA machine:
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR defaults to benchmarks/results/gpu
# Each part writes its own log under OUT_DIR; a failing part does not stop the others.
# Copy the figures into benchmarks/RESULTS.md ("GPU check" section) with the GPU's name.
set -u
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
OUT=${1:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$PWD} RAY_USAGE_STATS_ENABLED=0
PAPER="--device cuda --layers 12 --heads 12 --dim 768 --context 512"

PARTS=${PARTS:-"tests pe_cost loop_rot loop_abs profile_rot"}  # a subset: PARTS="tests pe_cost"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log, and say how it went
  local name=$1 limit=$2; shift 2
  case " $PARTS " in *" $name "*) ;; *) echo "== $name: skipped (PARTS)"; return ;; esac
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - t0)) s (log $OUT/$name.log)"
  tail -n 25 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# 1. CUDA tests: FlexAttention rel/pos against the explicit path (values, gradients, bf16), the
#    bf16 training steps on CUDA, the fused optimizer.
part tests 180 bash -c "$PY -m pytest -q -p no:cacheprovider tests/test_flex.py; \
  $PY -m pytest -q -p no:cacheprovider tests/test_models.py tests/test_train.py \
  -m 'not slow' -k 'cuda or bf16 or fused or optimizer'"

# 2. rel's cost against rot at paper size (target: rel <= 1.5x rot), FlexAttention against the
#    blocked path (rel:eager) in the same run; pos too. bf16 autocast, MFU per model.
part pe_cost 200 $PY benchmarks/bench_models.py $PAPER --batch 16 --no-hf \
  --pes rot,abs,rel,rel:eager,pos,pos:eager --rounds 3 --steps 3

# 3. The real training loop's step at paper size (target: rot and abs >= 0.40 MFU):
#    eager against torch.compile, interleaved in the same run.
part loop_rot 180 $PY benchmarks/bench_train_step.py $PAPER --pe rot --batch 32 \
  --grammar grammars/cfg3f.cfg --grammar-chunk 4096 --variants base,compile --rounds 3 --steps 10
part loop_abs 120 $PY benchmarks/bench_train_step.py $PAPER --pe abs --batch 32 \
  --grammar grammars/cfg3f.cfg --grammar-chunk 4096 --variants compile --rounds 3 --steps 10

# 4. Where the compiled step's time goes (top kernels), for RESULTS.md.
part profile_rot 120 $PY benchmarks/bench_train_step.py $PAPER --pe rot --batch 32 \
  --grammar grammars/cfg3f.cfg --grammar-chunk 4096 --variants compile --profile compile

echo "== done: logs in $OUT"
