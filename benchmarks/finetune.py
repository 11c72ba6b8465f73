"""Fine-tuning on microscopy data: the starting policy, fine-tuned with each kind of training data, and BM3D, in
one run, with the same few minutes of CPU per fine-tune.

Two settings, both on W2S widefield fluorescence fields (../shared/data/microscopy/W2S; fine-tuning uses the
train fields 001-020, scores the test fields 081-085 only):

* **synthetic**: the 400-frame averages ("clean") with Poisson-Gaussian noise (gain 0.03, read σ 3 grey levels)
  drawn with ``numpy.random.default_rng(seed)``. Training data: (a) clean images + that noise model; (b) one fixed
  noisy/clean pair per field; (c) two independent noisy draws per field; (d) one noisy draw per field alone
  (neighbour sub-sampling). Baseline: BM3D with the generalised Anscombe transform and the true noise parameters.
  PSNR with the paper's protocol (clip to [0, 1], 8-bit rounding).
* **real**: the single raw frames ("noisy") against the averages. Training data: (b) the real noisy/clean train
  pairs, (d) the real noisy train frames alone. W2S stretched every image to 0-255 on its own, so noisy and clean
  differ by a gain and offset: for training, each clean image is first fitted to its noisy frame by least squares
  (scale and offset); for scoring, every output (and the noisy input) is fitted to the clean image the same way
  before PSNR. Baseline: BM3D with the one σ that scores best on the first train pairs (a grid search; the real
  noise is signal-dependent and its level unknown).

    python benchmarks/finetune.py [--minutes 3] [--start gaussian-25] [--limit N]
        [--objectives expected-reward pathwise] [--precision bfloat16]

With several ``--objectives``, every kind of training data is fine-tuned once per objective (same minutes each),
so the objectives are compared on the same data, noise and test images in one run.
"""

from __future__ import annotations

import argparse
import tempfile

import bm3d
import numpy as np
from _common import W2S, fit, machine, timed
from microscopy import bm3d_gat

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.io import list_images, read_image
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade

NOISE = NoiseModel(kind="poisson-gaussian", gain=0.03, sigma=3.0)
TUNING_PAIRS = 3


def read_unit(folder, limit=None) -> list[np.ndarray]:
    return [read_image(p).astype(np.float32) / 255.0 for p in list_images(folder)[:limit]]


def fine_tuned(args: argparse.Namespace, sources: dict, policies: dict, notes: dict) -> None:
    """Fine-tune ``args.start`` on each of ``sources`` with each objective for ``args.minutes``; add the policies
    (and how many episodes each got) to ``policies`` and ``notes``."""
    budget = {"minutes": args.minutes, "seed": args.seed, "precision": args.precision}
    for name, data in sources.items():
        for objective in args.objectives:
            row = f"fine-tuned {name}" + (f", {objective}" if len(args.objectives) > 1 else "")
            with tempfile.TemporaryDirectory() as run_dir:  # episodes planned from a measured time per episode
                updates = list(api.fine_tune(args.start, data, run_dir, objective=objective, **budget))
                policies[row] = api.load_policy(f"{run_dir}/policy.safetensors")
            notes[row] = f"{len(updates)} episodes in {args.minutes:g} min"


def best_bm3d_sigma(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The σ (on the [0, 1] scale) of a grid for which BM3D scores the best mean PSNR on ``(noisy, clean)`` pairs."""
    grid = np.array([8, 11, 15, 20, 27, 36, 48, 64, 85, 113]) / 255.0
    scores = [np.mean([psnr(fit(bm3d.bm3d(n, sigma_psd=s), c), c) for n, c in pairs]) for s in grid]
    return float(grid[int(np.argmax(scores))])


def table(title: str, rows: dict[str, list[float]], seconds: dict[str, float], notes: dict[str, str]) -> None:
    base = np.mean(rows["BM3D"])
    print(f"\n{title}\n\n| method | PSNR (dB) | − BM3D (dB) | s/image | training |\n|---|---|---|---|---|")
    for name, values in rows.items():
        print(
            f"| {name} | {np.mean(values):.2f} | {np.mean(values) - base:+.2f} | "
            f"{seconds.get(name, 0.0):.2f} | {notes.get(name, '')} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="CPU minutes per fine-tune")
    parser.add_argument("--start", default="gaussian-25", help="policy to start from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--part", choices=["synthetic", "real", "both"], default="both")
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=["expected-reward"],
        choices=["expected-reward", "pathwise", "a2c"],
        help="training objective(s) of the fine-tunes (each source is fine-tuned once per objective)",
    )
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    print(
        f"machine: {machine()}; start: {args.start}; {args.minutes:g} min per fine-tune; seed {args.seed}; "
        f"objectives {', '.join(args.objectives)}; {args.precision}"
    )

    test_clean = read_unit(W2S / "test" / "clean", args.limit)
    if args.part in ("synthetic", "both"):
        synthetic(args, test_clean)
    if args.part in ("real", "both"):
        real(args, test_clean)


def synthetic(args: argparse.Namespace, test_clean: list[np.ndarray]) -> None:
    """Synthetic Poisson-Gaussian noise on the clean W2S fields."""
    rng = np.random.default_rng(args.seed)
    train_clean = read_unit(W2S / "train" / "clean")
    first = [degrade(c, NOISE, rng) for c in train_clean]
    second = [degrade(c, NOISE, rng) for c in train_clean]
    test_noisy = [degrade(c, NOISE, rng) for c in test_clean]
    unit = (0.0, 1.0)  # train on the scale the test images are restored with (noise leaves [0, 1])
    sources = {
        "(a) clean + noise model": api.clean_images(train_clean, NOISE, intensity_range=unit),
        "(b) noisy/clean pairs": api.noisy_clean_pairs(
            list(zip(first, train_clean, strict=True)), intensity_range=unit
        ),
        "(c) two noisy draws": api.noisy_pairs(list(zip(first, second, strict=True)), intensity_range=unit),
        "(d) noisy images alone": api.noisy_images(first, intensity_range=unit),
    }
    policies = {f"{args.start} (start)": api.load_policy(args.start)}
    policies["poisson-gaussian (shipped)"] = api.load_policy("poisson-gaussian")
    notes = {"poisson-gaussian (shipped)": "trained for this noise family (reference)"}
    fine_tuned(args, sources, policies, notes)
    rows: dict[str, list[float]] = {"noisy": [psnr(n, c) for n, c in zip(test_noisy, test_clean, strict=True)]}
    seconds: dict[str, float] = {}
    for name, policy in policies.items():
        outs = [timed(lambda n=n, p=policy: api.restore(n, p, intensity_range=(0, 1)).image) for n in test_noisy]
        rows[name] = [psnr(o, c) for (o, _), c in zip(outs, test_clean, strict=True)]
        seconds[name] = float(np.mean([s for _, s in outs]))
    outs = [timed(lambda n=n: bm3d_gat(n, NOISE.gain, NOISE.sigma)) for n in test_noisy]
    rows["BM3D"] = [psnr(o, c) for (o, _), c in zip(outs, test_clean, strict=True)]
    seconds["BM3D"] = float(np.mean([s for _, s in outs]))
    notes["BM3D"] = "with the generalised Anscombe transform, true noise parameters"
    table(f"Synthetic: W2S test clean + {NOISE.describe()} ({len(test_clean)} images)", rows, seconds, notes)


def real(args: argparse.Namespace, test_clean: list[np.ndarray]) -> None:
    """The real raw W2S frames against their 400-frame averages."""
    real_noisy = read_unit(W2S / "train" / "noisy")
    real_pairs = [(n, fit(c, n)) for n, c in zip(real_noisy, read_unit(W2S / "train" / "clean"), strict=True)]
    test_real = read_unit(W2S / "test" / "noisy", args.limit)
    policies = {f"{args.start} (start)": api.load_policy(args.start)}
    policies["poisson-gaussian (shipped)"] = api.load_policy("poisson-gaussian")
    notes: dict[str, str] = {}
    sources = {
        "(b) real noisy/clean pairs": api.noisy_clean_pairs(real_pairs, intensity_range=(0.0, 1.0)),
        "(d) real noisy frames alone": api.noisy_images(real_noisy, intensity_range=(0.0, 1.0)),
    }
    fine_tuned(args, sources, policies, notes)
    rows = {"noisy": [psnr(fit(n, c), c) for n, c in zip(test_real, test_clean, strict=True)]}
    seconds = {}
    for name, policy in policies.items():
        outs = [timed(lambda n=n, p=policy: api.restore(n, p, intensity_range=(0, 1)).image) for n in test_real]
        rows[name] = [psnr(fit(o, c), c) for (o, _), c in zip(outs, test_clean, strict=True)]
        seconds[name] = float(np.mean([s for _, s in outs]))
    sigma = best_bm3d_sigma(real_pairs[:TUNING_PAIRS])
    outs = [timed(lambda n=n: bm3d.bm3d(n, sigma_psd=sigma)) for n in test_real]
    rows["BM3D"] = [psnr(fit(o, c), c) for (o, _), c in zip(outs, test_clean, strict=True)]
    seconds["BM3D"] = float(np.mean([s for _, s in outs]))
    notes["BM3D"] = f"σ = {255 * sigma:.0f}/255, the best of a grid on {TUNING_PAIRS} train pairs"
    table(f"Real: W2S test raw frames vs 400-frame averages ({len(test_real)} images)", rows, seconds, notes)


if __name__ == "__main__":
    main()
