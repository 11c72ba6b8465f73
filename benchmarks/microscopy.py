"""Poisson-Gaussian (fluorescence-microscopy-like) noise: our policies against BM3D with a variance-stabilising
transform, on the same noisy images, in one run.

Clean images: the 15 W2S test fields (../shared/data/microscopy/W2S/test/clean, 400-frame averages of real
widefield fluorescence images, 8-bit, /255). Noise: ``y = gain · Poisson(x / gain) + N(0, read/255)`` drawn with
``numpy.random.default_rng(seed)`` image by image. Baseline: the generalised Anscombe transform (GAT), BM3D with
unit noise, and the closed-form approximation of the exact unbiased inverse (Mäkitalo & Foi, IEEE TIP 2013).
PSNR with the paper's protocol (clip, 8-bit rounding, peak 255).

    python benchmarks/microscopy.py [--policies poisson-gaussian gaussian-blind] [--limit 5]

Beside a policy with our CNN estimate as a tenth action (beyond the paper; core/estimate.py) comes that estimate
alone (the action taken once by every pixel).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import bm3d
import numpy as np
from _common import SHARED, estimate_alone, has_cnn_estimate, machine, timed

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade

W2S_CLEAN = SHARED / "data" / "microscopy" / "W2S" / "test" / "clean"
LEVELS = ((0.01, 2.0), (0.03, 3.0), (0.1, 5.0))  # (gain: intensity of one photon, read noise σ on 0-255)


def gat(y: np.ndarray, gain: float, read: float) -> np.ndarray:
    """Generalised Anscombe transform of ``y`` (intensity units) to unit-variance noise."""
    z, sigma = y / gain, read / 255.0 / gain  # photon units
    return 2.0 * np.sqrt(np.maximum(z + 3.0 / 8.0 + sigma**2, 0.0))


def inverse_gat(d: np.ndarray, gain: float, read: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`gat` (Mäkitalo & Foi 2013)."""
    sigma = read / 255.0 / gain
    d = np.maximum(d, 1e-3)
    s = np.sqrt(1.5)
    z = 0.25 * d**2 + 0.25 * s / d - 11.0 / 8.0 / d**2 + 0.625 * s / d**3 - 0.125 - sigma**2
    return gain * np.maximum(z, 0.0)


def bm3d_gat(noisy: np.ndarray, gain: float, read: float) -> np.ndarray:
    """BM3D in the variance-stabilised domain."""
    return inverse_gat(bm3d.bm3d(gat(noisy, gain, read), sigma_psd=1.0), gain, read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["poisson-gaussian", "gaussian-blind"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    args = parser.parse_args()
    files = list_images(W2S_CLEAN)[: args.limit]
    policies: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name in args.policies:
        policy = api.load_policy(name)
        policies[name] = lambda x, p=policy: api.restore(x, p, device="cpu", intensity_range=(0, 1)).image
        if has_cnn_estimate(policy):
            policies[f"{name} estimate alone"] = estimate_alone(policy)
    print(f"W2S test clean images: {len(files)}, noise seed {args.seed}; machine: {machine()}")
    names = [*policies, "BM3D+GAT"]
    print(
        "| gain | read σ | noisy (dB) | "
        + " | ".join(f"{n} (dB)" for n in names)
        + " | "
        + " | ".join(f"{n} − BM3D+GAT" for n in policies)
        + " | s/img "
        + " / ".join(names)
        + " |"
    )
    print("|---" * (3 + 2 * len(names) - 1 + 1) + "|")
    for gain, read in LEVELS:
        noise = NoiseModel(kind="poisson-gaussian", gain=gain, sigma=read)
        rng = np.random.default_rng(args.seed)
        scores: dict[str, list[tuple[float, float]]] = {n: [] for n in ["noisy", *names]}
        for path in files:
            clean = read_image(path).astype(np.float32) / 255.0
            noisy = degrade(clean, noise, rng)
            scores["noisy"].append((psnr(noisy, clean), 0.0))
            for name, method in policies.items():
                out, seconds = timed(lambda m=method, x=noisy: m(x))
                scores[name].append((psnr(out, clean), seconds))
            out, seconds = timed(lambda x=noisy, g=gain, r=read: bm3d_gat(x, g, r))
            scores["BM3D+GAT"].append((psnr(out, clean), seconds))
        mean = {n: np.mean(v, axis=0) for n, v in scores.items()}
        base = mean["BM3D+GAT"][0]
        print(
            f"| {gain:g} | {read:g} | {mean['noisy'][0]:.2f} | "
            + " | ".join(f"{mean[n][0]:.2f}" for n in names)
            + " | "
            + " | ".join(f"{mean[n][0] - base:+.2f}" for n in policies)
            + " | "
            + " / ".join(f"{mean[n][1]:.2f}" for n in names)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
