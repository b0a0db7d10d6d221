#!/usr/bin/env bash
# The whole GPU check of train_bridge as one command for a lent single-GPU machine (a few minutes):
# versions, then `bench/gpu_sft.sh` on the same prepared shards: eager micro-batch 16 (the baseline)
# and compiled 32; NCCL + FSDP/DDP on CUDA through torchrun (one process) with a stop and an
# exact-resume comparison; then compiled 32 with nvJPEG decoding, compiled 32 with PyTorch's flash
# attention instead of cuDNN's, compiled 32 under single-GPU FSDP2 (bf16 parameters: no per-step
# autocast weight casts), compiled 32 with 4 micro-batches per optimizer step, and those three
# together (compiled 64, slower than 32 on an H200, is left out to fit the device time).
# SKIP_CORRECTNESS=1 leaves out the torchrun and nvJPEG parts (verified on an H200 already) to spend
# the device time on throughput. Every result is a JSON line in $OUT/results.jsonl (per-step metrics
# and logs beside it); a failing part is reported and the rest still run.
#
#   OUT=results WHEELS=.whl bench/gpu_check.sh     # WHEELS: pydantic & co. (bench/gpu_wheels.sh fetches them)
#   PYTHON=.venv/bin/python MODEL=tiny COMMON='--image-size 28' SAMPLES=128 bench/gpu_check.sh   # CPU smoke test
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
WORK=${WORK:-$(mktemp -d)}
LIMIT=${LIMIT:-240}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! $PY -c "import pydantic" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "${WHEELS:-.whl}"/*.whl || exit 1
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import sys, torch, transformers, torchvision; print(sys.version.split()[0], torch.__version__, transformers.__version__, torchvision.__version__)"
nproc

PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" $PY bench/gpu_sft_prep.py --out "$WORK/prep" --samples "${SAMPLES:-1024}" \
  >"$WORK/prep.txt" || exit 1
export MANIFEST=$(tail -n1 "$WORK/prep.txt") TOKENIZER="$WORK/prep/tokenizer" PYTHON=$PY

sft() {  # name, micro-batch, steps, extra `train-bridge sft` flags, global batch (default: micro-batch)
  local began=$SECONDS result
  echo "===== $1" >>"$OUT/logs.txt"
  result=$(MICRO=$2 GLOBAL=${5:-$2} STEPS=$3 EXTRA="${COMMON:-} ${4:-}" WORK="$WORK/$1" timeout "$LIMIT" bench/gpu_sft.sh \
    2>>"$OUT/logs.txt")
  echo "== $1 rc=$? wall=$((SECONDS - began))s $result"
  echo "{\"run\": \"$1\", \"result\": ${result:-null}}" >>"$OUT/results.jsonl"
  sed "s/^/{\"run\": \"$1\", \"metrics\": /; s/\$/}/" "$WORK/$1/run/metrics.jsonl" >>"$OUT/metrics.jsonl" 2>/dev/null
}
sft eager 16 25
sft compiled-b32 32 30 --compile
# NCCL + FSDP/DDP on CUDA with the tiny preset: an uninterrupted run vs stop after 3 + resume.
torchrun() {  # out folder, then more flags
  local out=$1; shift
  timeout 120 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m train_bridge.cli sft \
    --manifest "$MANIFEST" --tokenizer "$TOKENIZER" --model tiny --out "$WORK/$out" --global-batch 8 \
    --micro-batch 4 --max-steps 6 --num-workers 2 --lr 1e-3 "$@" >>"$OUT/logs.txt" 2>&1
}
for parallel in $([ -n "${SKIP_CORRECTNESS:-}" ] || echo fsdp ddp); do
  torchrun "$parallel-whole" --parallel "$parallel" --resume none
  torchrun "$parallel-part" --parallel "$parallel" --resume none --stop-after 3
  torchrun "$parallel-part" --parallel "$parallel" --resume auto
  $PY - "$WORK/$parallel-whole/metrics.jsonl" "$WORK/$parallel-part/metrics.jsonl" "$parallel" <<'PYEOF' \
    | tee -a "$OUT/results.jsonl"
import json, sys
whole, part = ([json.loads(line) for line in open(path)] for path in sys.argv[1:3])
print(json.dumps({
    "parallel": sys.argv[3], "steps": [len(whole), len(part)],
    "same_data": [a["data"] for a in whole] == [b["data"] for b in part],
    "same_null_losses": [a["loss"] is None for a in whole] == [b["loss"] is None for b in part],
    "max_loss_difference": max(
        (abs(a["loss"] - b["loss"]) for a, b in zip(whole, part) if None not in (a["loss"], b["loss"])),
        default=0.0,
    ),
    "losses": [a["loss"] if a["loss"] is None else round(a["loss"], 5) for a in whole],
}))
PYEOF
done
[ -n "${SKIP_CORRECTNESS:-}" ] || sft compiled-b32-nvjpeg 32 30 "--compile --gpu-decode"
sft compiled-b32-flash 32 30 "--compile --attention flash"
sft compiled-b32-fsdp 32 30 "--compile --parallel fsdp"
# V1-2 steps the optimizer once per 512 samples: per-step work (AdamW over fp32 weights, clipping,
# metrics) amortized over 4 micro-batches instead of 1.
sft compiled-b32-global128 32 8 --compile 128  # 8 steps: one epoch of the 1,024 samples
# The three together: what a user would run if each helps.
sft compiled-b32-flash-fsdp-global128 32 8 "--compile --attention flash --parallel fsdp" 128
