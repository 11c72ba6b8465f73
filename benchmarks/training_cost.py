"""Quality against training CPU time: the paper's plain recipe and ours, evaluated on BSD68 in one run.

The plain recipe is the paper's A2C with RMC from random weights, batch 64 of 70x70 crops, float32, σ = 25, seed
0 (``TrainConfig()`` defaults with the BSD432 data), trained here for ``--minutes`` of wall time on this machine.
Ours is read from the stage folders of a finished ``runs/gaussian-25`` (``scripts/train_shipped.py gaussian-25``):
each stage's policy with the cumulative training time recorded in it. Every policy is scored on the same BSD68
noisy images (paper protocol, seed 0).

    python benchmarks/training_cost.py --minutes 20 [--limit 68]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import BSD68, SHARED, machine

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel, TrainConfig
from napari_pixelrl.core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def train_plain(minutes: float, run_dir: Path) -> Path:
    """Train the paper's recipe for ``minutes`` of wall time (resuming if ``run_dir`` has a run); return the policy."""
    config = TrainConfig(data=str(SHARED / "data" / "BSD432"), noise=NoiseModel(sigma=25.0), validate_every=0)
    trainer = Trainer(config, run_dir)
    if trainer.seconds < minutes * 60:
        for update in trainer.run():
            print(
                f"plain recipe: episode {update.episode}, {update.seconds:.0f} s, reward {update.reward:.3f}",
                flush=True,
            )
            if update.seconds >= minutes * 60:
                break
    return run_dir / "policy.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget of the plain recipe")
    parser.add_argument("--limit", type=int, default=None, help="first N BSD68 images only")
    parser.add_argument("--ours", type=Path, default=ROOT / "runs" / "gaussian-25")
    args = parser.parse_args()
    plain = train_plain(args.minutes, ROOT / "runs" / "plain-paper-recipe")
    rows = [("paper's recipe (A2C+RMC from scratch, batch 64 of 70², fp32)", plain)]
    warm = api.load_policy(sorted(args.ours.glob("stage*"))[0] / "policy.safetensors").training["stages"][0]
    for stage in sorted(args.ours.glob("stage*")):
        rows.append((f"ours, after {stage.name.split('-', 1)[1]}", stage / "policy.safetensors"))
    print(f"BSD68 σ = 25, seed 0; machine: {machine()}")
    print(
        f"(our warm start, {warm['objective']}: {warm['episodes_done']} episodes, {warm['wall_seconds'] / 60:.1f} min)"
    )
    print("| policy | training wall time (min) | episodes | BSD68 PSNR (dB) |")
    print("|---|---|---|---|")
    for label, path in rows:
        policy = api.load_policy(path)
        stages = policy.training["stages"]
        minutes = sum(s["wall_seconds"] for s in stages) / 60
        episodes = " + ".join(str(s["episodes_done"]) for s in stages)
        score = api.evaluate(policy, BSD68, sigma=25.0, seed=0, device="cpu", limit=args.limit)
        print(f"| {label} | {minutes:.1f} | {episodes} | {np.round(score.mean_psnr, 2):.2f} |", flush=True)


if __name__ == "__main__":
    main()
