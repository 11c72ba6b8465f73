"""BSD68 Gaussian denoising: our shipped policies, the authors' release (through our importer) and BM3D, all on the
same noisy inputs, in one run.

Protocol (the paper's): clean = 8-bit image / 255; noisy = clean + N(0, σ/255), not clipped, drawn with
``numpy.random.default_rng(seed)`` image by image in sorted file order; outputs clipped to [0, 1] and rounded to
8 bits; PSNR with peak 255, averaged over the images. BM3D (the ``bm3d`` package) is told the true σ.

    python benchmarks/bsd68.py                     # σ = 15, 25, 50 on all 68 images (about 25 min on 2 cores)
    python benchmarks/bsd68.py --sigmas 25 --limit 5
    python benchmarks/bsd68.py --ours runs/gaussian-{sigma}/policy.safetensors   # policies not shipped yet
    python benchmarks/bsd68.py --bf16               # add the release run in bfloat16
    python benchmarks/bsd68.py --cnn runs/gaussian-{sigma}-cnn/policy.safetensors   # a policy with the CNN action
    python benchmarks/bsd68.py --blind-cnn runs/gaussian-blind-cnn/policy.safetensors  # blind, measured-σ estimate
    python benchmarks/bsd68.py --only BM3D ours+cnn blind+cnn   # some methods only (column names)
    python benchmarks/bsd68.py --sigmas 15 --only ours+cnn blind+cnn --decimals 4   # close calls: 4 decimals

Where a policy of the nine actions plus our per-σ CNN estimate (beyond the paper; core/estimate.py) is given or
shipped (``gaussian-{sigma}-cnn``), two columns come with it: that policy, and the CNN estimate alone (the action
taken once by every pixel), to show what the policy adds to it. Likewise for the blind policy with a CNN estimate
(``gaussian-blind-cnn``: since session 27 set ``denoise-cnn-measured``, the per-σ estimates blended at the noise level
measured around each pixel, v3 since session 30; before, ``denoise-cnn-15-25-50-blind``): it, and its last action
(the CNN estimate) alone.

The release rows need ../shared/reference/pixelrl-official; without it they are left out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import bm3d
import numpy as np
from _common import BSD68, RELEASE, estimate_alone, machine, timed

from napari_pixelrl import api
from napari_pixelrl.core.checkpoint import CheckpointError
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import add_gaussian_noise

PAPER_PIXELRL = {15: 31.40, 25: 28.85, 50: 25.88}  # the paper's table (convGRU + RMC)

Method = Callable[[np.ndarray], np.ndarray]

DIFFERENCES = (
    ("ours − BM3D", "ours", "BM3D"),
    ("ours − release", "ours", "release"),
    ("blind − ours", "ours blind", "ours"),
    ("ours+cnn − BM3D", "ours+cnn", "BM3D"),
    ("ours+cnn − cnn alone", "ours+cnn", "cnn estimate alone"),
    ("blind+cnn − BM3D", "blind+cnn", "BM3D"),
    ("blind+cnn − ours+cnn", "blind+cnn", "ours+cnn"),
    ("blind+cnn − blind cnn alone", "blind+cnn", "blind cnn estimate alone"),
)
"""Columns ``a − b`` (dB) printed where both methods ran."""


def _policy_method(policy: api.Policy, precision: str = "float32") -> Method:
    return lambda x: api.restore(x, policy, device="cpu", intensity_range=(0, 1), precision=precision).image


def _optional_policy(name: str) -> api.Policy | None:
    """The policy ``name`` (a shipped name or a path), or ``None`` where there is none."""
    try:
        return api.load_policy(name)
    except CheckpointError:
        return None


def methods_for(sigma: float, args: argparse.Namespace) -> dict[str, Method]:
    """Every method to run at noise level ``sigma``, by column name."""
    methods = {
        "ours": _policy_method(api.load_policy(args.ours.format(sigma=f"{sigma:g}"))),
        "ours blind": _policy_method(api.load_policy(args.blind)),
    }
    cnn = _optional_policy(args.cnn.format(sigma=f"{sigma:g}"))  # None: none shipped for this σ and none given
    if cnn is not None:
        if cnn.action_set.name != f"denoise-cnn-{sigma:g}":
            raise SystemExit(f"--cnn: {args.cnn} is a policy of {cnn.action_set.name!r}, not denoise-cnn-{sigma:g}")
        methods["ours+cnn"] = _policy_method(cnn)
        methods["cnn estimate alone"] = estimate_alone(cnn)
    blind_cnn = _optional_policy(args.blind_cnn)
    if blind_cnn is not None:
        methods["blind+cnn"] = _policy_method(blind_cnn)
        methods["blind cnn estimate alone"] = estimate_alone(blind_cnn)
    release = RELEASE / f"pretrained_{sigma:g}.npz"
    if release.is_file():
        methods["release"] = _policy_method(api.load_policy(release))
        if args.bf16:
            methods["release bf16"] = _policy_method(api.load_policy(release), "bfloat16")
    methods["BM3D"] = lambda x: bm3d.bm3d(x, sigma_psd=sigma / 255.0)
    return methods


def run(methods: dict[str, Method], sigma: float, files: list, seed: int) -> dict[str, tuple[float, float]]:
    """Mean PSNR (dB) and mean seconds per image of each method, on the same noisy images."""
    rng = np.random.default_rng(seed)
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
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
    parser.add_argument("--ours", default="gaussian-{sigma}", help="matched policy name/path, {sigma} filled in")
    parser.add_argument("--blind", default="gaussian-blind", help="blind policy name or path")
    parser.add_argument("--bf16", action="store_true", help="also run the release in bfloat16")
    parser.add_argument("--cnn", default="gaussian-{sigma}-cnn", help="policy with the CNN action, {sigma} filled in")
    parser.add_argument("--blind-cnn", default="gaussian-blind-cnn", help="blind policy with our CNN estimates")
    parser.add_argument("--only", nargs="+", metavar="COLUMN", help='run only these methods, e.g. "BM3D" "ours+cnn"')
    parser.add_argument("--decimals", type=int, default=2, help="decimals of the PSNR columns and their differences")
    args = parser.parse_args()
    files = list_images(BSD68)[: args.limit]
    # Warm-up (first-call allocations, oneDNN kernel selection) outside the timed runs.
    api.restore(np.zeros((64, 64), np.float32), api.load_policy(args.blind), device="cpu")
    bm3d.bm3d(np.zeros((64, 64), np.float32), sigma_psd=0.1)

    print(f"BSD68, {len(files)} images, noise seed {args.seed}; machine: {machine()}")
    header = None
    for sigma in args.sigmas:
        methods = methods_for(sigma, args)
        if args.only:
            unknown = sorted(set(args.only) - set(methods))
            if unknown:
                raise SystemExit(f"--only: no method {unknown} at σ {sigma:g}; the methods are {sorted(methods)}")
            methods = {name: method for name, method in methods.items() if name in args.only}
        r = run(methods, sigma, files, args.seed)
        psnrs = {name: value[0] for name, value in r.items()}
        d = args.decimals
        cells = {f"{name} (dB)": f"{value:.{d}f}" for name, value in psnrs.items()}
        cells["paper's PixelRL (dB)"] = f"{PAPER_PIXELRL.get(int(sigma), float('nan')):.2f}"
        for column, a, b in DIFFERENCES:
            if a in psnrs and b in psnrs:
                cells[column] = f"{psnrs[a] - psnrs[b]:+.{d}f}"
        if "release bf16" in psnrs:
            cells["release bf16 − float32"] = f"{psnrs['release bf16'] - psnrs['release']:+.3f}"
        cells.update({f"{name} s/img": f"{value[1]:.2f}" for name, value in r.items()})
        if "ours" in r and "BM3D" in r:
            cells["ours / BM3D time"] = f"{r['ours'][1] / r['BM3D'][1]:.2f}"
        if header is None:
            header = list(cells)
            print("| σ | " + " | ".join(header) + " |")
            print("|---" * (len(header) + 1) + "|")
        print(f"| {sigma:g} | " + " | ".join(cells.get(column, "") for column in header) + " |", flush=True)


if __name__ == "__main__":
    main()
