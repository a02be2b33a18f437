#!/usr/bin/env bash
# One prepared GPU session (device tool): install carried wheels, run the GPU tests, the SSNet GPU benchmark,
# the training benchmark of every registered method at the paper profile (bench_train.py: step time, TFLOP/s,
# share of the bf16 peak, memory, data wait, SDPA backends), and short paper-profile runs of UNet and SSNet on a
# freshly generated 224x224 phantom. Results under $OUT.
# Usage on the device machine:  bash benchmarks/gpu_check.sh [STEPS] [SECTIONS]
#   SECTIONS: comma-separated subset of tests,bench,train,compile (default tests,bench,train). "compile" also
#   measures ssnet and unet with train.compile=true and train.channels_last=true (several minutes of compilation).
# Rough budget on one H200: tests ~3 min, bench ~3 min (+1 min per 4 extra baselines), train ~3 min at 300 steps.
# Packages missing on the GPU image travel as wheels in .whl/ (git-ignored via .git/info/exclude), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#     segmentation-models-pytorch==0.6.0 hydra-core==1.3.8 omegaconf==2.3.1 nibabel==5.4.2 pydicom==3.0.2
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
set -uo pipefail
STEPS=${1:-300}
SECTIONS=${2:-tests,bench,train}
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
ssnet() { python3 -m ssnet.cli "$@"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch,lightning;print('torch',torch.__version__,'lightning',lightning.__version__)"; } 2>&1 | tee "$OUT/env.txt"
if has tests; then
  timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_augment.py tests/test_ssnet.py 2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
fi
if has bench; then
  timeout 240 python3 benchmarks/bench_ssnet.py --device cuda --skip-cpu-timing --steps 10 --json "$OUT/bench_ssnet_gpu.json" 2>&1 | tail -25 | tee "$OUT/bench_ssnet_gpu.txt"
  timeout 420 python3 benchmarks/bench_train.py --profile paper --steps 20 --out "$OUT/bench_train.csv" 2>&1 | tail -30 | tee "$OUT/bench_train.txt"
  python3 benchmarks/bench_train.py --markdown "$OUT/bench_train.csv" > "$OUT/bench_train.md" 2>&1
fi
if has compile; then
  timeout 420 python3 benchmarks/bench_train.py --profile paper --steps 20 --methods ssnet,unet --no-sdpa \
    --override train.compile=true --out "$OUT/bench_train_compile.csv" 2>&1 | tail -8 | tee "$OUT/bench_train_compile.txt"
  timeout 240 python3 benchmarks/bench_train.py --profile paper --steps 20 --methods ssnet,unet --no-sdpa \
    --override train.channels_last=true --out "$OUT/bench_train_channels_last.csv" 2>&1 | tail -8 | tee "$OUT/bench_train_channels_last.txt"
fi
has train || { ls -la "$OUT"; exit 0; }
start=$(date +%s)
ssnet phantom --out /tmp/phantom --workers 16 2>&1 | tail -2 | tee "$OUT/phantom.txt"
echo "phantom seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/phantom.txt"
ssnet split /tmp/phantom --scans 443,63,115 | tee -a "$OUT/phantom.txt"
for model in unet ssnet; do
  timeout 400 python3 -m ssnet.cli train model=$model profile=paper data.dir=/tmp/phantom run_root=/tmp/runs \
    train.max_steps="$STEPS" train.val_every=100 train.progress_bar=false 2>&1 | tail -4 | tee "$OUT/train_$model.txt"
  cp /tmp/runs/$model-*/run.json "$OUT/run_$model.json" 2>/dev/null
done
ls -la "$OUT"
