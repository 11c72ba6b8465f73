"""The paper's other tasks on BSD68: our policies beside classical baselines, on the same degraded images, in one
run.

* Salt-and-pepper noise at densities 0.1 / 0.5 / 0.9: our blind ``salt-and-pepper`` policy against 3x3 and 5x5
  median filters and the adaptive median filter (windows up to 7x7 and up to 15x15).
* Overlaid text (blind restoration): our ``text-removal`` policy (and ``text-removal-cnn``, beyond the paper), which
  does not get the mask, against
  scikit-image's biharmonic inpainting *given the true mask* and a 5x5 median filter (blind).
* Faded colours (RGB): our ``fading`` policy against auto levels (per channel, and one stretch for all channels)
  on two scikit-image photographs that its training never used, at several strengths (8-bit faded input).

Protocol: clean = 8-bit image / 255; degradations from ``numpy.random.default_rng(seed)`` image by image in sorted
file order (``napari_pixelrl.core.noise``); outputs clipped to [0, 1] and rounded to 8 bits; PSNR with peak 255 and
SSIM, averaged over the images; seconds per image on this machine.

    python benchmarks/tasks.py                                 # both tasks, all 68 images
    python benchmarks/tasks.py --task text --limit 5
    python benchmarks/tasks.py --salt-and-pepper runs/salt-and-pepper/policy.safetensors   # a policy not shipped
    python benchmarks/tasks.py --task text --text text-removal text-removal-cnn --text-densities 0.15

Salt-and-pepper and text columns are named by the policies' names; beside a policy with our CNN estimate as a tenth
action (beyond the paper; core/estimate.py) comes that estimate alone (the action taken once by every pixel).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _common import BSD68, estimate_alone, has_cnn_estimate, machine, timed
from skimage import data
from skimage.color import deltaE_cie76, rgb2lab
from skimage.restoration import inpaint_biharmonic

from napari_pixelrl import api
from napari_pixelrl.core.baselines import adaptive_median_filter, auto_levels, median_filter
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr, ssim, to_uint8
from napari_pixelrl.core.noise import degrade, fade_colors, overlay_text

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(degraded image, true mask of the degraded pixels) -> restored image."""


def _policy(name: str | api.Policy) -> Method:
    policy = api.load_policy(name) if isinstance(name, str) else name
    return lambda x, mask: api.restore(x, policy, device="cpu", intensity_range=(0, 1)).image


def _policies(names: list[str]) -> dict[str, Method]:
    """Each policy by its name, and beside one with the CNN-estimate action (beyond the paper) that estimate alone."""
    methods: dict[str, Method] = {}
    for name in names:
        policy = api.load_policy(name)
        methods[policy.name] = _policy(policy)
        if has_cnn_estimate(policy):
            estimate = estimate_alone(policy)
            methods[f"{policy.name} estimate alone"] = lambda x, mask, estimate=estimate: estimate(x)
    return methods


def table(methods: dict[str, Method], degradations: dict[str, Callable], files: list, seed: int) -> None:
    """Print one row per degradation: PSNR, SSIM and seconds per image of every method."""
    header = ["degraded (dB)", *(f"{n} (dB)" for n in methods), *(f"{n} SSIM" for n in methods)]
    header += [f"{n} s/img" for n in methods]
    print("| degradation | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for label, degrade_one in degradations.items():
        rng = np.random.default_rng(seed)
        scores: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
        before = []
        for path in files:
            clean = read_image(path).astype(np.float32) / 255.0
            degraded, mask = degrade_one(clean, rng)
            before.append(psnr(degraded, clean))
            for name, method in methods.items():
                restored, seconds = timed(lambda m=method, d=degraded, k=mask: m(d, k))
                scores[name].append((psnr(restored, clean), ssim(restored, clean), seconds))
        means = {name: np.mean(values, axis=0) for name, values in scores.items()}
        cells = [f"{np.mean(before):.2f}", *(f"{m[0]:.2f}" for m in means.values())]
        cells += [f"{m[1]:.3f}" for m in means.values()] + [f"{m[2]:.2f}" for m in means.values()]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def salt_and_pepper(args: argparse.Namespace, files: list) -> None:
    methods: dict[str, Method] = {
        **_policies(args.salt_and_pepper),
        "median 3x3": lambda x, mask: median_filter(x, 3),
        "median 5x5": lambda x, mask: median_filter(x, 5),
        "adaptive median ≤7": lambda x, mask: adaptive_median_filter(x, 7),
        "adaptive median ≤15": lambda x, mask: adaptive_median_filter(x, 15),
    }

    def at(density: float) -> Callable:
        noise = NoiseModel(kind="salt-and-pepper", density=density)
        return lambda clean, rng: (degrade(clean, noise, rng), None)

    names = ", ".join(args.salt_and_pepper)
    print(f"\nSalt-and-pepper, BSD68 ({len(files)} images), seed {args.seed}, policies {names}")
    table(methods, {f"density {d:g}": at(d) for d in args.densities}, files, args.seed)


def text(args: argparse.Namespace, files: list) -> None:
    methods: dict[str, Method] = {
        **_policies(args.text),
        "biharmonic (true mask)": lambda x, mask: inpaint_biharmonic(x, mask, split_into_regions=True),
        "median 5x5 (blind)": lambda x, mask: median_filter(x, 5),
    }

    def at(density: float) -> Callable:
        def one(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            degraded, alpha = overlay_text(clean, density, tuple(args.font_size), rng)
            return degraded, alpha > 0

        return one

    print(
        f"\nOverlaid text, font {args.font_size[0]:g}-{args.font_size[1]:g} px, BSD68 ({len(files)} images), "
        f"seed {args.seed}, policies {', '.join(args.text)} (blind)"
    )
    table(methods, {f"text covering {d:.0%}": at(d) for d in args.text_densities}, files, args.seed)


def fading(args: argparse.Namespace) -> None:
    """Faded colours on photographs the policy never trained on: mean CIELAB ΔE (CIE76) and PSNR (RGB)."""
    policy = api.load_policy(args.fading)
    methods = {
        "ours": lambda x: api.restore(x, policy, device="cpu", intensity_range=(0, 1)).image,
        "auto levels per channel": lambda x: auto_levels(x, per_channel=True),
        "auto levels (one stretch)": lambda x: auto_levels(x, per_channel=False),
    }
    images = {"chelsea": data.chelsea(), "immunohistochemistry": data.immunohistochemistry()}
    print(f"\nFaded colours, scikit-image's {' and '.join(images)} (never trained on), policy {args.fading}")
    header = ["faded ΔE", *(f"{n} ΔE" for n in methods), "faded dB", *(f"{n} dB" for n in methods)]
    header += [f"{n} s/img" for n in methods]
    print("| image, strength | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for name, image in images.items():
        clean = image.astype(np.float32) / 255.0
        reference = rgb2lab(clean)
        for strength in args.strengths:
            faded = to_uint8(np.moveaxis(fade_colors(np.moveaxis(clean, -1, 0), strength), 0, -1)) / np.float32(255)
            results = [(faded, 0.0), *(timed(lambda m=m, x=faded: m(x)) for m in methods.values())]
            cells = [f"{float(deltaE_cie76(reference, rgb2lab(np.clip(r, 0, 1))).mean()):.2f}" for r, _ in results]
            cells += [f"{psnr(r, clean):.2f}" for r, _ in results] + [f"{t:.2f}" for _, t in results[1:]]
            print(f"| {name}, {strength:g} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("all", "salt-and-pepper", "text", "fading"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--salt-and-pepper", nargs="+", default=["salt-and-pepper"], help="policy names or paths")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    parser.add_argument("--text", nargs="+", default=["text-removal"], help="policy names or paths")
    parser.add_argument("--text-densities", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--font-size", type=float, nargs=2, default=[10, 20])
    parser.add_argument("--fading", default="fading", help="policy name or path")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    args = parser.parse_args()
    files = list_images(BSD68)[: args.limit]
    print(f"machine: {machine()}")
    if args.task in ("all", "salt-and-pepper"):
        salt_and_pepper(args, files)
    if args.task in ("all", "text"):
        text(args, files)
    if args.task in ("all", "fading"):
        fading(args)


if __name__ == "__main__":
    main()
