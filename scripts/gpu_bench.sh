#!/usr/bin/env bash
# GPU throughput check of the transformer side: device, SFT training tokens/s and model FLOPs
# utilisation at four model scales, KV-cache sampling. Writes $OUT/ (default runs/gpu/).
#   OUT=runs/gpu PEAK_TFLOPS=989 bash scripts/gpu_bench.sh      # 989: dense bf16 peak, H100 SXM / H200
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PEAK_TFLOPS=${PEAK_TFLOPS:-989}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python - <<'PY' | tee "$OUT/bench.jsonl"
import json, os, torch
from hlsm.app.bench import bench_sample, bench_train

peak = float(os.environ["PEAK_TFLOPS"])
print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}))
# (batch, d_model, layers, heads): the CPU model at two batch sizes, then GPU-scale models
for n, d, layers, heads in [(64, 128, 3, 4), (1024, 128, 3, 4), (512, 512, 8, 8), (512, 768, 12, 12)]:
    r = bench_train(n=n, steps=20, device="cuda", peak_tflops=peak, d_model=d, n_layer=layers, n_head=heads,
                    progress=False)
    print(json.dumps(r), flush=True)
print(json.dumps(bench_sample(device="cuda", progress=False)), flush=True)
PY
