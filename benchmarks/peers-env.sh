#!/usr/bin/env bash
# A separate virtual environment for benchmarks/peers.py: napari-pixelrl (without its GUI) beside CAREamics.
#
#   bash benchmarks/peers-env.sh && .venv-peers/bin/python benchmarks/peers.py --minutes 5 20
#
# Why not an extra of pyproject.toml with constraints.txt's torch 2.13.0: CAREamics needs torchvision, and PyPI's
# torchvision for torch 2.13.0 (0.28.0) does not load beside the CPU wheel of torch 2.13.0 ("operator
# torchvision::nms does not exist"). The pair that loads here is torch 2.14.1 + torchvision 0.29.1 (both on this
# machine's disk; a CUDA build that runs on the CPU), but careamics 0.3.5 declares torch<2.14 and
# torchvision<=0.26, so it is installed without its declared dependencies and those are installed by hand, with
# its own bounds except torch and torchvision. napari-pixelrl and CAREamics then run on the same torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-peers
# shellcheck disable=SC1091
source .venv-peers/bin/activate
pip install -q --upgrade pip
pin="$(mktemp)"
echo "torch==2.14.1" > "$pin"
pip install -q -c "$pin" torch==2.14.1 torchvision==0.29.1
pip install -q --no-deps careamics==0.3.5
pip install -q -c "$pin" "bioimageio-core>=0.9.0,<=0.11.0" "lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3" \
    "microssim<=0.0.5" "torchmetrics>0.7.0,<1.9.0" "zarr>=3.0.0,<4.0.0" "pydantic>=2.11,<=2.14.1" \
    "numpy>=1.21,<=2.4.6" "tifffile<=2026.3.3" "scikit-image<=0.26.0" "matplotlib<=3.11.2" "pillow<=13.0.0" \
    "psutil<=7.2.2" "pyyaml<=6.0.3,!=6.0.0"
# napari-pixelrl's library and the benchmark's BM3D; napari itself is not needed here.
pip install -q --no-deps -e .
pip install -q -c "$pin" safetensors "dask[array]" "tqdm>=4.60" scipy bm3d
rm -f "$pin"
python -c "import careamics, napari_pixelrl.api, torch; print('careamics', careamics.__version__, 'torch', torch.__version__)"
