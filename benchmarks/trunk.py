"""The warm-start trunk as a denoiser: its own output (noisy minus the noise it predicts) on BSD68 at σ = 15, 25
and 50, beside BM3D on the same noisy images in the same run, and beside IRCNN's and DnCNN-S's published numbers.

Protocol: that of ``benchmarks/bsd68.py`` (the paper's; noise not clipped, seeded image by image, outputs
clipped and rounded to 8 bits). Each checkpoint is a ``"denoiser"`` stage (e.g. ``training/trunk-blind``, or
copies of its ``policy.safetensors`` taken while it trained); its row gives the episodes it had done and the
hours it had trained, from its own training record, so that rows of one run draw PSNR against training time.

    python benchmarks/trunk.py training/trunk-blind/policy.safetensors          # all 68 images, ~25 min (BM3D)
    python benchmarks/trunk.py runs/trunk-snapshots/*.safetensors --limit 10 --sigmas 25
    python benchmarks/trunk.py training/trunk-15-sharp/policy.safetensors --sigmas 15 --orientations 1 8

``--orientations 1 8`` gives each checkpoint a second row, its estimates averaged over the image's eight
orientations (quarter turns and mirror images; ``core.model.denoised``), as the self-ensembled estimators do.
IRCNN's and DnCNN-S's published numbers are single passes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bm3d
import numpy as np
import torch
from _common import BSD68, machine
from bsd68 import Method, run

from napari_pixelrl import api
from napari_pixelrl.core.io import list_images
from napari_pixelrl.core.model import ORIENTATIONS, denoised

PUBLISHED = {  # BSD68 PSNR (dB) as the papers report them (not measured here)
    "IRCNN": {15: 31.63, 25: 29.15, 50: 26.19},  # Zhang et al., CVPR 2017, Table 2
    "DnCNN-S": {15: 31.73, 25: 29.23, 50: 26.23},  # Zhang et al., TIP 2017, Table 2
}


def denoiser_method(policy: api.Policy, orientations: int = 1) -> Method:
    """The checkpoint's trunk → value branch → value head run as a residual denoiser in float32 on the CPU,
    averaged over ``orientations`` orientations of the image."""
    model = policy.model.float().eval()

    @torch.no_grad()
    def method(noisy: np.ndarray) -> np.ndarray:
        image = torch.from_numpy(noisy)[None, None].float()
        return denoised(model, image, orientations)[0, 0].clamp(0, 1).numpy()

    return method


def training_done(policy: api.Policy) -> tuple[int, float]:
    """Episodes of the checkpoint's last stage and training hours over all its stages, from its record."""
    stages = policy.training.get("stages", [])
    if not stages or stages[-1].get("objective") != "denoiser":
        raise ValueError(f"{policy.source} is not a denoiser stage (its last stage must have objective 'denoiser')")
    return stages[-1]["episodes_done"], sum(stage["wall_seconds"] for stage in stages) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="denoiser-stage policy files")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument(
        "--orientations", type=int, nargs="+", default=[1], choices=ORIENTATIONS, help="one row per count"
    )
    args = parser.parse_args()
    files = list_images(BSD68)[: args.limit]
    policies = {path: api.load_policy(path) for path in args.checkpoints}
    done = {path: training_done(policy) for path, policy in policies.items()}
    order = sorted(policies, key=lambda path: done[path][::-1])  # by training hours: the last row trained longest
    bm3d.bm3d(np.zeros((64, 64), np.float32), sigma_psd=0.1)  # warm-up outside the timed runs

    print(f"BSD68, {len(files)} images, noise seed {args.seed}; machine: {machine()}")
    print("| checkpoint | episodes | training hours | " + " | ".join(f"σ {s:g} (dB)" for s in args.sigmas) + " |")
    print("|---" * (3 + len(args.sigmas)) + "|")
    rows = {
        (path, k): f"{path}" + (f" x{k} orientations" if k > 1 else "") for path in order for k in args.orientations
    }
    results: dict[str, dict[float, float]] = {}
    for sigma in args.sigmas:
        methods = {row: denoiser_method(policies[path], k) for (path, k), row in rows.items()}
        methods["BM3D"] = lambda x, sigma=sigma: bm3d.bm3d(x, sigma_psd=sigma / 255.0)
        for name, (value, _seconds) in run(methods, sigma, files, args.seed).items():
            results.setdefault(name, {})[sigma] = value
    for (path, _k), row in rows.items():
        episodes, hours = done[path]
        cells = [f"{results[row][s]:.2f}" for s in args.sigmas]
        print(f"| {row} | {episodes} | {hours:.2f} | " + " | ".join(cells) + " |")
    print("| BM3D (same run) | | | " + " | ".join(f"{results['BM3D'][s]:.2f}" for s in args.sigmas) + " |")
    for name, scores in PUBLISHED.items():
        print(
            f"| {name} (published) | | | "
            + " | ".join(f"{scores.get(int(s), float('nan')):.2f}" for s in args.sigmas)
            + " |"
        )
    longest = [row for (path, _k), row in rows.items() if path == order[-1]]
    for reference in ("BM3D", "IRCNN"):
        theirs = results["BM3D"] if reference == "BM3D" else PUBLISHED["IRCNN"]
        for row in longest:
            ours = results[row]
            gaps = [f"{ours[s] - theirs.get(s, theirs.get(int(s), float('nan'))):+.2f}" for s in args.sigmas]
            print(f"| {row} − {reference} | | | " + " | ".join(gaps) + " |")


if __name__ == "__main__":
    main()
