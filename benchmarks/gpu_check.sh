#!/usr/bin/env bash
# One prepared GPU session (device tool): install carried wheels, run the GPU tests, the SSNet GPU benchmark,
# and short paper-profile runs of UNet and SSNet on a freshly generated 224x224 phantom. Results under $OUT.
# Usage on the device machine:  bash benchmarks/gpu_check.sh [STEPS]
# Packages missing on the GPU image travel as wheels in .whl/ (git-ignored via .git/info/exclude), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#     segmentation-models-pytorch==0.6.0 hydra-core==1.3.8 omegaconf==2.3.1 nibabel==5.4.2 pydicom==3.0.2
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
set -uo pipefail
STEPS=${1:-300}
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
timeout 240 python3 -m pytest -q tests/test_gpu.py tests/test_ssnet.py -x 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
timeout 240 python3 benchmarks/bench_ssnet.py --device cuda --skip-cpu-timing --steps 10 --json "$OUT/bench_ssnet_gpu.json" 2>&1 | tail -25 | tee "$OUT/bench_ssnet_gpu.txt"
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
