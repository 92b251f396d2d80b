#!/usr/bin/env bash
# The GPU check of the transformer side, in one script of at most 8 minutes: the card, the SFT step
# and a REINFORCE round of the engine for 1 and for MODELS stacked models (tokens or traces per
# second, fraction of the bf16 matmul peak measured in the same run, MFU against PEAK_TFLOPS), then
# finding 1 at the ladder's middle size (5M parameters) with 5 seeds as one stack per stage.
# Writes $OUT/: bench.jsonl (one JSON object a line), finding1/ (results.json, report.md,
# accuracy.png), summary.json (everything above in one object, with the wall times).
#
#   OUT=runs/gpu_check bash scripts/gpu_check.sh        # on a GPU machine, from the checkout
#   OUT=/tmp/gpu_check DEVICE=cpu SCALE=tiny SIZE=0.2M MODELS=2 SEEDS="0 1" BUDGET=256 N=8 bash scripts/gpu_check.sh
#                                                       # the tiny setting: the same steps on a CPU, seconds
# Settings (environment): DEVICE (cuda), SCALE (gpu), SIZE (5M), MODELS (8), SEEDS ("0 1 2 3 4"),
# BUDGET (RL traces per run, 200000), PEAK_TFLOPS (989: dense bf16 of an H100 SXM / H200),
# LIMIT (seconds for finding 1, 300), BENCH_LIMIT (seconds for each of the 4 benchmarks, 40; so at most
# 460 s in all, with the start), N (the benchmarks' batch or prompts; default theirs), PYTHON (python).
set -euo pipefail
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-gpu}
SIZE=${SIZE:-5M}
MODELS=${MODELS:-8}
SEEDS=${SEEDS:-0 1 2 3 4}
BUDGET=${BUDGET:-200000}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
LIMIT=${LIMIT:-300}
BENCH_LIMIT=${BENCH_LIMIT:-40}
PYTHON=${PYTHON:-python}
N=${N:-}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: > "$OUT/bench.jsonl"
start=$(date +%s)
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
fi
for kind in train rl; do
    for k in 1 "$MODELS"; do
        # shellcheck disable=SC2046
        timeout "$BENCH_LIMIT" "$PYTHON" -m hlsm bench "$kind" --json --device "$DEVICE" --scale "$SCALE" --size "$SIZE" --models "$k" \
            $([ "$kind" = train ] && echo --peak-tflops "$PEAK_TFLOPS") $([ -n "$N" ] && echo --n "$N") \
            | tee -a "$OUT/bench.jsonl" || echo "bench $kind --models $k: stopped after ${BENCH_LIMIT} s or failed"
    done
done
bench_s=$(( $(date +%s) - start ))
f1_start=$(date +%s)
f1_status=0
# shellcheck disable=SC2086
timeout "$LIMIT" "$PYTHON" -m hlsm.sims.finding1_rl_data --scale "$SCALE" --size "$SIZE" --seeds $SEEDS \
    --budget "$BUDGET" --out "$OUT/finding1" --cache "$OUT/cache" > "$OUT/finding1.log" 2>&1 || f1_status=$?
f1_s=$(( $(date +%s) - f1_start ))
"$PYTHON" - "$OUT" "$bench_s" "$f1_s" "$f1_status" "$DEVICE" "$SCALE" "$SIZE" "$MODELS" "$BUDGET" "$SEEDS" <<'PY'
import json, sys
from pathlib import Path

out, bench_s, f1_s, status, device, scale, size, models, budget, seeds = sys.argv[1:]
rows = [json.loads(line) for line in (Path(out) / "bench.jsonl").read_text().splitlines() if line.strip()]
gpu = Path(out) / "gpu.txt"
summary = {
    "device": device, "scale": scale, "size": size, "models": int(models), "budget": int(budget),
    "seeds": [int(s) for s in seeds.split()], "gpu": gpu.read_text().strip() if gpu.exists() else None,
    "bench": rows, "bench_s": int(bench_s), "finding1_s": int(f1_s), "finding1_exit": int(status),
}
results = Path(out) / "finding1" / "results.json"
if results.exists():
    r = json.loads(results.read_text())
    summary["finding1"] = {"means": r.get("means"), "contrasts": r.get("contrasts"), "wall_s": r["settings"]["wall_s"]}
(Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
keys = ("benchmark", "models", "params", "tokens_per_s", "rl_traces_per_s", "ratio", "fraction_of_peak", "mfu")
for row in rows:
    print("  ".join(f"{k}={row[k]}" for k in keys if k in row))
print(f"finding 1: exit {status} after {f1_s} s; summary in {out}/summary.json")
PY
