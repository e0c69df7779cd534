#!/usr/bin/env bash
# The GPU check (issue #13), for a machine with an NVIDIA GPU; nothing here downloads.
#
#   bash tests/gpu_check.sh [OUT]      # OUT: where logs and tables go (default gpu_check)
#
# Needs a Python (PYTHON, default: python) with this repository installed and both
# frameworks' CUDA builds: pip install -e '.[torch,gpu,workflow]' (see README, "GPUs and
# mixed precision"). Steps, each logged to OUT/:
#   1. both frameworks see the GPU, and the math settings they run with;
#   2. the smoke study with device: cuda, in a copy of the workflow (the checkout's results/
#      and reports/ stay untouched); every run must end ok on device cuda;
#   3. python -m bench speed --device cuda in fp32 and bf16, both frameworks interleaved.
# About 4-5 minutes on one H100/H200-class GPU. DEVICE=cpu runs the same steps on a CPU, to
# try the script itself on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT=$(mkdir -p "${1:-gpu_check}" && cd "${1:-gpu_check}" && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/summary.txt"; }

say "1. GPUs as the frameworks see them"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$OUT/nvidia-smi.txt" || say "nvidia-smi not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.is_available() and torch.cuda.get_device_name(0))" 2>&1 | tee -a "$OUT/summary.txt"
$PY -c "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'; import tensorflow as tf;
print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))" 2>&1 \
  | tail -1 | tee -a "$OUT/summary.txt"

say "2. the smoke study with device: $DEVICE"
WORK=$(mktemp -d)
cp -r "$REPO/Snakefile" "$REPO/workflow" "$REPO/config" "$WORK/"
(cd "$WORK" && $PY -m snakemake --cores 4 --configfile config/smoke.yaml \
   --config device="$DEVICE") > "$OUT/smoke.log" 2>&1 || { say "smoke study FAILED (smoke.log)"; exit 1; }
$PY - "$WORK/results/summary.parquet" "$DEVICE" <<'EOF' | tee -a "$OUT/summary.txt"
import sys

import pandas as pd

df = pd.read_parquet(sys.argv[1])
print(f"{len(df)} runs; status {df['status'].value_counts().to_dict()}; "
      f"device {df['device'].value_counts().to_dict()}; {df['device_name'].iloc[0]}")
cols = ["family", "framework", "size", "test_acc", "train_samples_per_s", "model_mem_mb",
        "peak_device_mem_mb"]
print(df[df["lr_role"] != "grid"].groupby(["family", "framework", "size"])[cols[3:]]
      .median().round(3).to_string())
bad = df[(df["status"] != "ok") | (df["device"] != sys.argv[2])]
if len(bad):
    print(bad[["run_id", "status", "device", "message"]].to_string())
    sys.exit(1)
EOF
cp -r "$WORK/reports" "$OUT/smoke_reports"

for precision in fp32 bf16; do
  say "3. bench speed --device $DEVICE --precision $precision"
  $PY -m bench speed --device "$DEVICE" --precision "$precision" --rounds 2 \
    > "$OUT/speed_$precision.txt" 2> "$OUT/speed_$precision.log" \
    || { say "speed $precision FAILED (speed_$precision.log)"; tail -3 "$OUT/speed_$precision.log"; exit 1; }
  tee -a "$OUT/summary.txt" < "$OUT/speed_$precision.txt"
done
say "done: $OUT/summary.txt"
