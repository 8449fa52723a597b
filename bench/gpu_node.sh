#!/usr/bin/env bash
# The GPU checks of issue 19 as one script, for a node with an NVIDIA GPU (about 10 minutes on one):
#
#     DATAGEN_MODEL_DIR=... bash bench/gpu_node.sh [EGL device, default 0]
#
# 1. the device path's exactness on this GPU: device geometry against numpy's, float16 rounding
#    against numpy's, painted backgrounds against numpy's, batched and layered against one at a time, and the
#    ground-truth consistency tests on both geometry paths (the tests that assert llvmpipe are left out);
# 2. the host cost per sample on both paths (bench/host_cost.py), the GPU's GL time beside it;
# 3. samples/s on this GPU with 1..4 worker processes, host cores busy, GPU memory (bench/throughput.py).
set -euo pipefail
device="${1:-0}"
export DATAGEN_EGL_DEVICE="$device"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
python -m pytest -q tests/test_device_geometry.py tests/test_layered.py tests/test_background.py tests/test_render.py \
    -k "not geometry_setting and not llvmpipe"
for geometry in device host; do
    python bench/host_cost.py --geometry "$geometry" --samples 128 --repeats 3
done
python bench/throughput.py --device "$device" --max-workers 4 --samples 4096 --repeats 1
