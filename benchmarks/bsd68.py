"""Faithfulness and speed on BSD68: the authors' release through our importer vs BM3D, on the same noisy inputs.

Protocol (the paper's): clean = 8-bit image / 255; noisy = clean + N(0, σ/255), not clipped, drawn with
``numpy.random.default_rng(seed)`` image by image in sorted file order; outputs clipped to [0, 1] and rounded to
8 bits; PSNR with peak 255, averaged over the images. BM3D (the ``bm3d`` package) is told the true σ.

    python benchmarks/bsd68.py                     # σ = 15, 25, 50 on all 68 images (about 15 min on 2 cores)
    python benchmarks/bsd68.py --sigmas 25 --limit 5
"""

from __future__ import annotations

import argparse

import bm3d
import numpy as np
from _common import BSD68, RELEASE, machine, timed

from napari_pixelrl import api
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import add_gaussian_noise

PAPER_PIXELRL = {15: 31.40, 25: 28.85, 50: 25.88}  # the paper's table (convGRU + RMC)


METHODS = ("ours", "ours_bf16", "bm3d")


def run(sigma: float, files: list, seed: int) -> dict[str, tuple[float, float]]:
    """Mean PSNR (dB) and mean seconds per image of each method, on the same noisy images."""
    policy = api.load_policy(RELEASE / f"pretrained_{sigma:g}.npz")
    methods = {
        "ours": lambda x: api.restore(x, policy, device="cpu", intensity_range=(0, 1)).image,
        "ours_bf16": lambda x: api.restore(x, policy, device="cpu", intensity_range=(0, 1), precision="bfloat16").image,
        "bm3d": lambda x: bm3d.bm3d(x, sigma_psd=sigma / 255.0),
    }
    rng = np.random.default_rng(seed)
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in METHODS}
    for path in files:
        clean = read_image(path).astype(np.float32) / 255.0
        noisy = add_gaussian_noise(clean, sigma, rng)
        for name, method in methods.items():
            restored, seconds = timed(lambda method=method, noisy=noisy: method(noisy))
            scores[name].append((psnr(restored, clean), seconds))
    return {name: tuple(np.mean(values, axis=0)) for name, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    args = parser.parse_args()
    files = list_images(BSD68)[: args.limit]
    # Warm-up (first-call allocations, oneDNN kernel selection) outside the timed runs.
    api.restore(np.zeros((64, 64), np.float32), api.load_policy(RELEASE / "pretrained_25.npz"), device="cpu")
    bm3d.bm3d(np.zeros((64, 64), np.float32), sigma_psd=0.1)

    print(f"BSD68, {len(files)} images, noise seed {args.seed}; machine: {machine()}")
    print(
        "| σ | ours, float32 (dB) | paper (dB) | BM3D (dB) | ours - BM3D (dB) | ours bfloat16 - float32 (dB) "
        "| ours s/img | bfloat16 s/img | BM3D s/img | ours / BM3D time | bfloat16 / BM3D time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for sigma in args.sigmas:
        r = run(sigma, files, args.seed)
        (ours, ours_s), (fast, fast_s), (base, base_s) = (r[name] for name in METHODS)
        paper = PAPER_PIXELRL.get(int(sigma), float("nan"))
        print(
            f"| {sigma:g} | {ours:.2f} | {paper:.2f} | {base:.2f} | {ours - base:+.2f} | {fast - ours:+.3f} "
            f"| {ours_s:.2f} | {fast_s:.2f} | {base_s:.2f} | {ours_s / base_s:.2f} | {fast_s / base_s:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
