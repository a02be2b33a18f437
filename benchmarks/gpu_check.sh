#!/usr/bin/env bash
# One prepared GPU session (device tool): install carried wheels, then the sections asked for, everything logged to
# $OUT/log.txt with elapsed seconds, in the order tests, unet, ssnet, profile, bench, variants, tables as CSV under $OUT (the device tool returns at most 8 files).
# Usage on the device machine:  bash benchmarks/gpu_check.sh [SECTIONS] [SSNET_STEPS]
#   tests    GPU tests (tests/test_gpu.py, the CUDA augmentation test)                         ~1.5 min
#   bench    bench_train.py at the paper profile, every registered method (+ sdpa_backends.csv)   ~3-4 min
#   profile  benchmarks/profile_step.py: SSNet's forward per module and top kernels                ~0.5 min
#   unet     a real paper-profile UNet run (3,200 steps, validation, prediction, scoring)          target <= 1.5 min
#   ssnet    a real paper-profile SSNet run of SSNET_STEPS steps (default 3200; target <= 8 min at 3,200)
#   variants bench_train.py for ssnet,unet with deterministic off, channels-last, torch.compile      ~3 min
#   determinism  one tiny CUDA training step of every method with deterministic kernels           ~0.5 min
#   dataprof profile_step.py --data: UNet's data path (loader, transfer, augmentation) by operator    ~0.3 min
#   Environment: BENCH_METHODS (comma-separated, default all nine), VARIANTS (space-separated overrides).
#   Default: tests,bench,profile,unet. The phantom (224², paper difficulty, 621 scans) is generated in the
#   background on the CPU cores when unet or ssnet is asked for.
# Packages missing on the GPU image travel as wheels in .whl/ (git-ignored), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl segmentation-models-pytorch==0.6.0 \
#     monai==1.6.1 hydra-core==1.3.8 omegaconf==2.3.1 nibabel==5.4.2 pydicom==3.0.2 hydra-submitit-launcher==1.2.0 submitit==1.5.4
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
set -uo pipefail
SECTIONS=${1:-tests,bench,profile,unet}
SSNET_STEPS=${2:-3200}
BENCH_METHODS=${BENCH_METHODS:-ssnet,unet,unetpp,transunet,swinunetr,pns_plus,afb_urr,dpstt,vivim}
VARIANTS=${VARIANTS:-train.deterministic=false train.channels_last=true train.compile=true}
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch,lightning;print('torch',torch.__version__,'cuda',torch.version.cuda,'lightning',lightning.__version__)"; } 2>&1 | tee -a "$LOG"
say "sections $SECTIONS"
if has unet || has ssnet; then  # CPU work, overlapped with the GPU sections
  ( [ -f /tmp/phantom/split.csv ] || { python3 -m ssnet.cli phantom --out /tmp/phantom --workers 12 \
      && python3 -m ssnet.cli split /tmp/phantom --scans 443,63,115; } ) > /tmp/phantom.log 2>&1 &
  PHANTOM_PID=$!
fi
if has tests; then
  say "tests"
  timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_augment.py tests/test_vivim.py -k "cuda or gpu or paper or engine or mamba or stage1" 2>&1 | tail -25 | tee -a "$LOG"
fi
if has determinism; then
  say "determinism"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -k deterministic_mode 2>&1 | tail -6 | tee -a "$LOG"
fi
if has dataprof; then
  say "profile_step unet --data"
  timeout 90 python3 benchmarks/profile_step.py --method unet --profile paper --data --steps 10 --warmup 3 --top 25 2>&1 | grep -v -E "USDT|Warning" | tail -30 | tee -a "$LOG"
fi
real_run() {  # model steps limit_s: one paper-profile run through `ssnet train`, its run.json under $OUT
  local model=$1 steps=$2 limit=$3 start
  wait "$PHANTOM_PID" 2>/dev/null; tail -3 /tmp/phantom.log | tee -a "$LOG"
  say "train $model, $steps steps"
  start=$(date +%s)
  timeout "$limit" python3 -m ssnet.cli train model="$model" profile=paper data.dir=/tmp/phantom run_root=/tmp/runs \
    train.max_steps="$steps" train.progress_bar=false 2>&1 | grep -v Warning | tail -4 | tee -a "$LOG"
  say "train $model: $(( $(date +%s) - start )) s wall (command, with prediction and scoring)"
  cp /tmp/runs/"$model"-*/run.json "$OUT/run_$model.json" 2>/dev/null && python3 - "$OUT/run_$model.json" <<'EOF' | tee -a "$LOG"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  run.json: train {d.get('train_seconds')} s, {d.get('train_seconds_per_step')} s/step, "
      f"validation {d.get('val_seconds')} s = {d.get('val_share')} of training (bound 0.05)")
EOF
}
has unet && real_run unet 3200 240
has ssnet && real_run ssnet "$SSNET_STEPS" 560
if has profile; then
  say "profile_step ssnet"
  timeout 150 python3 benchmarks/profile_step.py --method ssnet --profile paper --steps 3 --warmup 3 --top 30 2>&1 | grep -v -E "USDT|Warning" | tail -50 | tee -a "$LOG"
fi
if has bench; then
  say "bench_train (paper profile)"
  timeout 330 python3 benchmarks/bench_train.py --profile paper --steps 20 --warmup 3 \
    --methods "$BENCH_METHODS" --out "$OUT/bench_train.csv" 2>&1 | grep -v Warning | tail -40 | tee -a "$LOG"
fi
if has variants; then
  say "variants"
  for v in $VARIANTS; do
    timeout 300 python3 benchmarks/bench_train.py --profile paper --steps 20 --warmup 3 --methods ssnet,unet --no-sdpa \
      --override "$v" --out "/tmp/variant_${v//[=.]/_}.csv" 2>&1 | grep -v Warning | tail -3 | sed "s/^/$v  /" | tee -a "$LOG"
  done
  python3 - "$OUT/bench_train_variants.csv" /tmp/variant_*.csv <<'EOF'
import sys, pandas as pd
pd.concat([pd.read_csv(p).assign(variant=p.split("variant_")[1][:-4]) for p in sys.argv[2:]]).to_csv(sys.argv[1], index=False)
EOF
fi
say "done"
ls -la "$OUT"
