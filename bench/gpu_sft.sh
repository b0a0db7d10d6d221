#!/usr/bin/env bash
# One-GPU SFT throughput check of train_bridge: ~50 steps of the `small` preset (InternViT-300M +
# 0.5B LLM shapes) at 448 px in bf16; prints samples/s, tokens/s, MFU and data-wait as JSON.
#
#   bench/gpu_sft.sh                      # synthetic shards + tokenizer (no Ray needed)
#   MANIFEST=out/demo/manifest.json TOKENIZER=path/to/tokenizer bench/gpu_sft.sh   # prepared shards
#
# Env: WHEELS (folder of wheels installed with --no-index when pydantic is missing; default
# .whl), MODEL (small), STEPS (50), MICRO (32), GLOBAL (samples per optimizer step; default MICRO),
# WORKERS (12), EXTRA (`train-bridge sft` flags;
# default "--compile", the best measured; "" for eager), WORK (scratch folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORK=${WORK:-$(mktemp -d)}
STEPS=${STEPS:-50}
MICRO=${MICRO:-32}
GLOBAL=${GLOBAL:-$MICRO}
WORKERS=${WORKERS:-12}
if ! $PY -c "import pydantic" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links "${WHEELS:-.whl}" pydantic
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${MANIFEST:-}" ]]; then
  MANIFEST=$($PY bench/gpu_sft_prep.py --out "$WORK/prep" --samples $(( (STEPS + 2) * GLOBAL )) | tail -n1)
  TOKENIZER="$WORK/prep/tokenizer"
fi
# shellcheck disable=SC2086
$PY -m train_bridge.cli sft --manifest "$MANIFEST" --model "${MODEL:-small}" --tokenizer "$TOKENIZER" --out "$WORK/run" \
  --global-batch "$GLOBAL" --micro-batch "$MICRO" --max-steps "$STEPS" --num-workers "$WORKERS" \
  --lr 1e-5 --no-gradient-checkpointing --resume none --save-every -1 ${EXTRA---compile} >/dev/null
$PY - "$WORK/run/metrics.jsonl" <<'PYEOF'
import json, statistics, sys
import torch
rows = [json.loads(line) for line in open(sys.argv[1])]
steady = rows[len(rows) // 5:] or rows  # skip warm-up (allocator, autotuning, compilation)
mean = lambda key: statistics.fmean(r[key] for r in steady)
times = sorted(r["step_time"] for r in steady)
print(json.dumps({
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "steps": len(rows), "steady_steps": len(steady),
    "samples_per_s": mean("samples_per_s"), "tokens_per_s": mean("tokens_per_s"),
    "mfu": mean("mfu") if "mfu" in steady[0] else None,
    "mfu_median": statistics.median(r["mfu"] for r in steady) if "mfu" in steady[0] else None,
    "data_wait": mean("data_wait"),
    "step_time_median": times[len(times) // 2], "step_time_max": times[-1],
    "warmup_s": sum(r["step_time"] for r in rows[: len(rows) - len(steady)]),
    "final_loss": rows[-1]["loss"], "dropped": rows[-1]["dropped"], "truncated": rows[-1]["truncated"],
}))
PYEOF
