"""Calibrating the measured-σ estimate (``cnn estimate sigma measured``, core/estimate.py) on training images.

The action measures the noise level around each pixel from the residual of our blind denoiser (root mean square
over a window, times a calibration scale) and blends the per-σ denoisers' estimates at that level. This
script scores that blend for each window and scale on *training* images (the last N of BSD432, the test set BSD68
untouched), beside the matched denoiser told the true σ and the blind denoiser, all on the same noisy images, and
prints the median measured level. The defaults of :class:`~napari_pixelrl.core.estimate.MeasuredEstimate` are the
window and scale with the best sum over the three σ.

Protocol: that of ``benchmarks/bsd68.py`` (noise not clipped, seeded image by image, outputs clipped and rounded
to 8 bits, PSNR with peak 255).

    python benchmarks/measured_level.py                       # last 16 BSD432 images, about 3 min on 2 cores
    python benchmarks/measured_level.py --windows 17 33 --scales 1.0 1.05 1.1
    python benchmarks/measured_level.py --version 1                 # the levels of set v1 (σ 15, 25, 50)
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from _common import SHARED, machine
from bsd68 import add_gaussian_noise

from napari_pixelrl.core.actions import get_action_set
from napari_pixelrl.core.estimate import MeasuredEstimate, level_weights
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr


def _image(batch: torch.Tensor) -> np.ndarray:
    """The one image of a ``(1, 1, H, W)`` batch (``psnr`` clips and rounds it to 8 bits)."""
    return batch[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="the last N images of BSD432")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50])
    parser.add_argument("--windows", type=int, nargs="+", default=[17, 33])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.05, 1.1, 1.15, 1.2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", type=int, default=None, help="of denoise-cnn-measured (default: the latest)")
    args = parser.parse_args()
    files = list_images(SHARED / "data" / "BSD432")[-args.images :]
    measured: MeasuredEstimate = get_action_set("denoise-cnn-measured", args.version).actions[-1].apply
    levels = tuple(measured.levels)
    settings = list(itertools.product(args.windows, args.scales))
    print(f"BSD432, last {len(files)} images, noise seed {args.seed}; machine: {machine()}")
    totals = dict.fromkeys(settings, 0.0)
    for sigma in args.sigmas:
        rng = np.random.default_rng(args.seed)
        scores: dict[object, list[float]] = {key: [] for key in [*settings, "matched", "blind"]}
        medians: dict[int, list[float]] = {window: [] for window in args.windows}
        matched = min(levels, key=lambda level: abs(level - sigma))
        for path in files:
            clean = read_image(path).astype(np.float32) / 255.0
            noisy = torch.from_numpy(add_gaussian_noise(clean, sigma, rng))[None, None]
            with torch.no_grad():
                estimates = [estimate(noisy) for estimate in measured.levels.values()]
                scores["matched"].append(psnr(_image(estimates[levels.index(matched)]), clean))
                scores["blind"].append(psnr(_image(measured.meter(noisy)), clean))
                for window in args.windows:
                    raw = MeasuredEstimate(measured.levels, measured.meter, window, scale=1.0).noise_level(noisy)
                    medians[window].append(raw.median().item())
                    for scale in args.scales:
                        weights = level_weights(raw * scale, levels)
                        blend = sum(w * e for w, e in zip(weights, estimates, strict=True))
                        scores[window, scale].append(psnr(_image(blend), clean))
        print(
            f"\nσ = {sigma:g}: matched (σ = {matched} denoiser) {np.mean(scores['matched']):.3f} dB, "
            f"blind denoiser {np.mean(scores['blind']):.3f} dB"
        )
        for window in args.windows:
            row = "  ".join(f"×{scale:g} {np.mean(scores[window, scale]):.3f}" for scale in args.scales)
            print(f"  window {window}: raw median level {np.median(medians[window]):.2f}; measured blend {row}")
        for key in settings:
            totals[key] += float(np.mean(scores[key]))
    best = max(settings, key=totals.get)
    print(f"\nbest sum over σ: window {best[0]}, scale {best[1]:g} ({totals[best]:.3f} dB)")


if __name__ == "__main__":
    main()
