"""PixelRL fine-tuning beside what microscopists use, on real microscopy: CAREamics Noise2Void and BM3D, same
data, same minutes of wall time on the same cores, in one run.

Data: the W2S widefield fluorescence fields (../shared/data/microscopy/W2S). Everything that trains sees only the
single raw *noisy* frames of ``train/`` (fields 001-020, 3 channels: 60 frames of 512x512), self-supervised; no
clean image trains anything. BM3D's one parameter, σ, is the best of a grid on the first 3 train noisy/clean pairs
(as a user would tune it by eye). Scores: the 15 raw test frames (fields 081-085) against their 400-frame
averages, every output (and the noisy input) first fitted to the average by a least-squares gain and offset
(W2S stretched every image to 0-255 on its own), then PSNR and SSIM with the paper's protocol (clip, 8 bits).

Rows: the noisy input; BM3D; the shipped ``poisson-gaussian`` policy; and for each N of ``--minutes``:

* PixelRL: ``api.fine_tune`` from ``poisson-gaussian`` on the noisy frames (``api.noisy_images``, neighbour
  sub-sampling) for N minutes, with the fine-tuning defaults (objective ``pathwise``, float32);
* CAREamics Noise2Void: ``create_advanced_n2v_config`` with its defaults apart from what it requires (patch
  64x64, batch 16; axes SYX; augmentations, UNet, Adam, mean/std normalisation, 8 validation patches taken from
  the training frames as by default), stopped after N minutes by the Lightning trainer's ``max_time``.

``s/image`` is the time to restore one 512x512 test frame (mean over the test frames). CAREamics is not a
dependency of napari-pixelrl and cannot share ``constraints.txt``'s torch: ``benchmarks/peers-env.sh`` makes an
environment with both (it says why it is built as it is)::

    bash benchmarks/peers-env.sh
    .venv-peers/bin/python benchmarks/peers.py --minutes 5 20          # about 1 h 15 min on 2 cores
    .venv-peers/bin/python benchmarks/peers.py --minutes 1 --limit 3   # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bm3d
import numpy as np
import torch
from _common import W2S, fit, fitted_scores, machine, timed
from finetune import TUNING_PAIRS, best_bm3d_sigma, read_unit

from napari_pixelrl import api

START = "poisson-gaussian"
N2V_PATCH, N2V_BATCH = (64, 64), 16

Restorer = Callable[[np.ndarray], np.ndarray]


def pixelrl_fine_tuned(frames: list[np.ndarray], minutes: float, seed: int) -> tuple[Restorer, str]:
    """``START`` fine-tuned on the noisy ``frames`` alone for ``minutes``; its restorer and a note."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        data = api.noisy_images(frames, intensity_range=(0.0, 1.0))
        episodes = len(list(api.fine_tune(START, data, run_dir, minutes=minutes, seed=seed)))
        policy = api.load_policy(f"{run_dir}/policy.safetensors")
    note = f"{episodes} episodes, {(time.perf_counter() - began) / 60:.1f} min wall"
    return (lambda noisy: api.restore(noisy, policy, intensity_range=(0, 1)).image), note


def n2v_trained(frames: list[np.ndarray], minutes: float, seed: int, work_dir: Path) -> tuple[Restorer, str]:
    """CAREamics Noise2Void trained on the noisy ``frames`` for ``minutes`` of wall time; its restorer and a note."""
    from careamics import CAREamist, __version__
    from careamics.config import create_advanced_n2v_config

    config = create_advanced_n2v_config(
        experiment_name="n2v",
        data_type="array",
        axes="SYX",
        patch_size=list(N2V_PATCH),
        batch_size=N2V_BATCH,
        num_epochs=1_000_000,  # the time limit stops it
        trainer_params={"max_time": {"seconds": round(60 * minutes)}},
        seed=seed + 1,  # CAREamics asks for a seed > 0
    )
    began = time.perf_counter()
    model = CAREamist(config, work_dir=work_dir, enable_progress_bar=False)
    model.train(train_data=np.stack(frames))
    steps = model.trainer.global_step

    def restore(noisy: np.ndarray) -> np.ndarray:
        predictions, _ = model.predict(noisy[None])
        return np.asarray(predictions[0], np.float32).reshape(noisy.shape)

    note = f"careamics {__version__}, {steps} steps of {N2V_BATCH} x {N2V_PATCH[0]}², "
    return restore, note + f"{(time.perf_counter() - began) / 60:.1f} min wall"


def score(restorer: Restorer, noisy: list[np.ndarray], clean: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean fitted PSNR, mean fitted SSIM and mean seconds per image of ``restorer`` on the test frames."""
    scores, seconds = [], []
    for n, c in zip(noisy, clean, strict=True):
        output, spent = timed(lambda n=n: restorer(n))
        scores.append(fitted_scores(output, c))
        seconds.append(spent)
    psnrs, ssims = zip(*scores, strict=True)
    return float(np.mean(psnrs)), float(np.mean(ssims)), float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 20.0], help="training minutes (each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N test frames only")
    parser.add_argument("--no-careamics", action="store_true", help="leave out Noise2Void (e.g. not installed)")
    args = parser.parse_args()
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; seed {args.seed}", flush=True)

    train_noisy = read_unit(W2S / "train" / "noisy")
    tuning = [(n, fit(c, n)) for n, c in zip(train_noisy, read_unit(W2S / "train" / "clean"), strict=True)]
    test_noisy = read_unit(W2S / "test" / "noisy", args.limit)
    test_clean = read_unit(W2S / "test" / "clean", args.limit)
    shipped = api.load_policy(START)
    sigma = best_bm3d_sigma(tuning[:TUNING_PAIRS])
    tuned = f"σ = {255 * sigma:.0f}/255, the best of a grid on {TUNING_PAIRS} train pairs"
    methods: dict[str, tuple[Restorer, str]] = {
        "noisy input": (lambda n: n, ""),
        "BM3D": (lambda n: bm3d.bm3d(n, sigma_psd=sigma), tuned),
        f"`{START}` (shipped)": (lambda n: api.restore(n, shipped, intensity_range=(0, 1)).image, "no training here"),
    }
    with tempfile.TemporaryDirectory() as work:
        for minutes in args.minutes:
            methods[f"PixelRL fine-tuned, {minutes:g} min"] = pixelrl_fine_tuned(train_noisy, minutes, args.seed)
            print(f"PixelRL {minutes:g} min: {methods[f'PixelRL fine-tuned, {minutes:g} min'][1]}", flush=True)
            if not args.no_careamics:
                row = f"CAREamics Noise2Void, {minutes:g} min"
                methods[row] = n2v_trained(train_noisy, minutes, args.seed, Path(work) / f"n2v-{minutes:g}")
                print(f"N2V {minutes:g} min: {methods[row][1]}", flush=True)
        rows = {name: score(restorer, test_noisy, test_clean) for name, (restorer, _) in methods.items()}

    base = rows["BM3D"][0]
    print(f"\nReal W2S test frames vs 400-frame averages ({len(test_noisy)} frames; fitted gain and offset)\n")
    print("| method | PSNR (dB) | SSIM | − BM3D (dB) | s/image | training |\n|---|---|---|---|---|---|")
    for name, (value, similarity, seconds) in rows.items():
        spent = "" if name == "noisy input" else f"{seconds:.2f}"
        print(f"| {name} | {value:.2f} | {similarity:.3f} | {value - base:+.2f} | {spent} | {methods[name][1]} |")
    for minutes in [] if args.no_careamics else args.minutes:
        ours, theirs = rows[f"PixelRL fine-tuned, {minutes:g} min"], rows[f"CAREamics Noise2Void, {minutes:g} min"]
        print(
            f"\nat {minutes:g} min: PixelRL − Noise2Void = {ours[0] - theirs[0]:+.2f} dB PSNR, "
            f"{ours[1] - theirs[1]:+.3f} SSIM; restore time ratio {ours[2] / theirs[2]:.2f}"
        )


if __name__ == "__main__":
    main()
