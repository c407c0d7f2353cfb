#!/usr/bin/env bash
# The GPU checks of issue 20 in one run of about 9 minutes, for a lent GPU machine whose Python
# has torch, transformers and scikit-image but not Captum or faithmap:
#
#   bash benchmarks/gpu_session.sh OUT_DIR
#
# 1. benchmarks/cuda_check.py: every method and metric on CUDA against the CPU, host copies;
# 2. benchmarks/gpu.py: the ResNet-50-size timings, fp32 and bf16, against Captum and the limit;
# 3. faithmap bench --device cuda on the built-in default.
# Each step has its own time limit and writes its log and JSON to OUT_DIR as it goes, so a step
# cut short keeps what it measured. Captum comes from wheels in .whl/ when it is not installed
# (python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl
# captum==0.9.0).
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import captum" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-session-site \
        .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/gpu-session-site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, captum; print(torch.__version__, transformers.__version__, captum.__version__)"

timeout 150 python3 benchmarks/cuda_check.py --models cnn resnet vit \
    --out "$out/cuda_check.json" > "$out/cuda_check.log" 2>&1
echo "cuda_check: exit $?"
grep -E "^copies|differ|\berror\b" "$out/cuda_check.log" | head -40

timeout 320 python3 benchmarks/gpu.py --images 4 --repeats 2 --out "$out/gpu.json" \
    > "$out/gpu.log" 2>&1
echo "gpu.py: exit $?"
grep -vE "^\[(fp32|bf16)\] [a-z_]+: faithmap" "$out/gpu.log"

timeout 80 python3 -m faithmap bench --device cuda --out /tmp/gpu-session-bench \
    > "$out/bench.log" 2>&1
echo "faithmap bench --device cuda: exit $?"
tail -25 "$out/bench.log"
