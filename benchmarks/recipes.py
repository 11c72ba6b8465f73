"""Policy recipe ideas on a testbed with a known ceiling, one row per idea, same seed, same validation, same minutes.

The testbed: the authors' σ = 25 release with its trunk, value branch and value head kept and its policy side
(policy branch, convGRU, policy head) replaced by fresh weights from ``--seed``. The release's own policy is the
ceiling (27.60 dB on these crops when the issue measured it). Every idea trains that start for
the same ``--minutes`` of this machine, split over its stages by the fractions below, each stage's episodes
planned from a measurement of its seconds per episode (its learning rate then decays to zero within its share).
Scores: greedy PSNR on the trainer's own held-out crops (the last 8 BSD432 images, centre 128², σ = 25, validation
noise of seed 0), and the share of pixels taking each action at each step, beside the release's. A diagnostic for
choosing the recipe of the shipped policies: nothing trained from the release's weights ships.

    python benchmarks/recipes.py --minutes 30                     # every idea, 30 min each
    python benchmarks/recipes.py --minutes 2 --ideas pathwise     # a quick look at one
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RELEASE, SHARED, machine

from napari_pixelrl import api
from napari_pixelrl.core.checkpoint import Policy, save_checkpoint
from napari_pixelrl.core.config import NoiseModel, TrainConfig
from napari_pixelrl.core.data import ImageSet
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.model import PixelRLNet
from napari_pixelrl.core.recipe import Recipe
from napari_pixelrl.core.render import action_counts
from napari_pixelrl.core.sources import SyntheticNoise, ValidationPair

BSD432 = SHARED / "data" / "BSD432"
SIGMA = 25.0
BASE = {"batch_size": 16, "crop_size": 48, "validate_every": 0, "checkpoint_every": 100}

# name -> stages as (share of the minutes, TrainConfig fields); every stage also gets BASE unless it sets them.
IDEAS: dict[str, list[tuple[float, dict[str, Any]]]] = {
    "imitation": [
        (0.15, {"objective": "imitation", "lr": 1e-3}),
        (0.25, {"objective": "expected-reward", "lr": 3e-4}),
        (0.60, {"objective": "pathwise", "lr": 1e-4}),
    ],
    "lookahead": [
        (0.15, {"objective": "lookahead", "lr": 1e-3}),
        (0.25, {"objective": "expected-reward", "lr": 3e-4}),
        (0.60, {"objective": "pathwise", "lr": 1e-4}),
    ],
    "expected-reward": [
        (0.3, {"objective": "expected-reward", "lr": 3e-4}),
        (0.7, {"objective": "pathwise", "lr": 1e-4}),
    ],
    "pathwise": [(1.0, {"objective": "pathwise", "lr": 1e-4})],
    "pathwise-fast": [(1.0, {"objective": "pathwise", "lr": 3e-4})],
    "entropy-schedule": [
        (0.3, {"objective": "expected-reward", "lr": 3e-4, "entropy_beta": 0.05}),
        (0.7, {"objective": "pathwise", "lr": 1e-4}),
    ],
    "a2c-64": [(1.0, {"objective": "a2c", "lr": 1e-3, "batch_size": 64})],
    "lookahead-entropy": [
        (0.15, {"objective": "lookahead", "lr": 1e-3}),
        (0.25, {"objective": "expected-reward", "lr": 3e-4, "entropy_beta": 0.05}),
        (0.60, {"objective": "pathwise", "lr": 1e-4, "entropy_beta": 0.03}),
    ],
}
DESCRIBED = {
    "imitation": "imitation of the greedy oracle → expected reward → pathwise (the order of our recipes)",
    "lookahead": "imitation of the look-ahead oracle → expected reward → pathwise",
    "expected-reward": "expected reward → pathwise (no imitation)",
    "pathwise": "pathwise alone, lr 1e-4",
    "pathwise-fast": "pathwise alone, lr 3e-4",
    "entropy-schedule": "expected reward with entropy β 0.05 (5x) → pathwise β 0.01",
    "a2c-64": "the paper's A2C, 64 crops, lr 1e-3",
    "lookahead-entropy": "look-ahead imitation → expected reward β 0.05 → pathwise β 0.03 (entropy kept late)",
}


def testbed_start(seed: int, path: Path) -> Path:
    """Save the release with a fresh policy side (from ``seed``) to ``path``: the start every idea trains."""
    release = api.load_policy(RELEASE / f"pretrained_{SIGMA:g}.npz")
    torch.manual_seed(seed)
    fresh = PixelRLNet(release.model.config)
    for part in ("policy_branch", "gru", "policy_head"):
        getattr(release.model, part).load_state_dict(getattr(fresh, part).state_dict())
    start = Policy(
        model=release.model,
        action_set=release.action_set,
        steps=release.steps,
        noise_model=NoiseModel(sigma=SIGMA),
        name="testbed",
        training={"stages": []},
        description=f"the σ = 25 release's trunk and value side, policy side fresh from seed {seed}",
    )
    return save_checkpoint(start, path)


def idea_recipe(name: str, start: Path, minutes: float, seed: int, precision: str) -> Recipe:
    """The stages of idea ``name`` from ``start``, each with the episodes its share of ``minutes`` affords here."""
    policy = api.load_policy(start)
    stages = []
    for share, fields in IDEAS[name]:
        settings = {**BASE, **fields}
        seconds = api.estimate_episode_seconds(
            policy,
            batch_size=settings["batch_size"],
            crop_size=settings["crop_size"],
            objective=settings["objective"],
            precision=precision,
        )
        episodes = api.episodes_in(share * minutes, seconds)
        config = TrainConfig(
            data=str(BSD432),
            noise=NoiseModel(sigma=SIGMA),
            seed=seed,
            precision=precision,
            episodes=episodes,
            **settings,
        )
        stages.append(config)
    return Recipe((replace(stages[0], init=str(start)), *stages[1:]), name=name)


def scores(policy: Policy, pairs: list[ValidationPair]) -> tuple[float, np.ndarray]:
    """Mean greedy PSNR (dB) on the validation ``pairs`` and the share of pixels per action at each step."""
    values, counts = [], 0
    for pair in pairs:
        result = api.restore(pair.input, policy, intensity_range=(0.0, 1.0), device="cpu")
        values.append(psnr(result.image, pair.reference))
        counts = counts + action_counts(result.actions, len(policy.action_set))
    return float(np.mean(values)), counts / counts.sum(axis=1, keepdims=True)


def shares_cell(shares: np.ndarray, names: tuple[str, ...]) -> str:
    """Each step's two most taken actions with their shares, e.g. ``box 61% · +1 20% / …``."""
    steps = []
    for row in shares:
        top = np.argsort(row)[::-1][:2]
        steps.append(" · ".join(f"{names[a]} {100 * row[a]:.0f}%" for a in top))
    return " / ".join(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training minutes per idea")
    parser.add_argument("--ideas", nargs="+", choices=sorted(IDEAS), default=list(IDEAS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="bfloat16", help="bfloat16 falls back to float32 where not native")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: temporary)")
    args = parser.parse_args()
    images = ImageSet.from_folder(BSD432, TrainConfig().validation_images)
    pairs = SyntheticNoise(images, NoiseModel(sigma=SIGMA)).validation(TrainConfig().validation_crop, args.seed)
    release = api.load_policy(RELEASE / f"pretrained_{SIGMA:g}.npz")
    names = tuple(release.action_set.names)

    print(f"machine: {machine()}; {args.minutes:g} min per idea, seed {args.seed}", flush=True)
    rows = {"the release (ceiling)": (*scores(release, pairs), "")}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        start = testbed_start(args.seed, root / "start.safetensors")
        rows["start (fresh policy side)"] = (*scores(api.load_policy(start), pairs), "")
        for name in args.ideas:
            recipe = idea_recipe(name, start, args.minutes, args.seed, args.precision)
            began = time.perf_counter()
            for _ in api.train(recipe, root / name, images=images):
                pass
            spent = (time.perf_counter() - began) / 60
            episodes = " + ".join(str(stage.episodes) for stage in recipe.stages)
            rows[DESCRIBED[name]] = (
                *scores(api.load_policy(root / name / "policy.safetensors"), pairs),
                f"{episodes} episodes, {spent:.1f} min",
            )
            print(f"{name}: {rows[DESCRIBED[name]][0]:.2f} dB ({rows[DESCRIBED[name]][2]})", flush=True)

    print(
        f"\nσ = 25, {len(pairs)} held-out BSD432 crops of 128², greedy; shares: the two most taken actions per step\n"
    )
    print("| idea | PSNR (dB) | − release (dB) | training | action shares, step 0 / 1 / … |\n|---|---|---|---|---|")
    ceiling = rows["the release (ceiling)"][0]
    for name, (value, shares, training) in rows.items():
        print(f"| {name} | {value:.2f} | {value - ceiling:+.2f} | {training} | {shares_cell(shares, names)} |")


if __name__ == "__main__":
    main()
