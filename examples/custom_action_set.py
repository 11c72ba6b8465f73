"""Your own actions, end to end: define them, train a policy that picks among them, restore an image with it.

    python examples/custom_action_set.py                       # 150 episodes, a few minutes on 2 CPU cores
    python examples/custom_action_set.py --episodes 600 --run runs/my-actions

Actions are plain functions of the whole current image, a ``(B, 1, H, W)`` float tensor in about [0, 1], returning an
image of the same shape; each pixel then keeps the result of the action its policy chose. This example gives the
policy five: do nothing, one grey level darker or brighter, a 3x3 median and a 3x3 mean. The set is registered
under a name and version, which the trained policy's file records: register it (import this module) before loading
that policy anywhere, or ship it in a package through the ``napari_pixelrl.action_sets`` entry point so that napari
finds it by itself (docs/tasks.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.config import ModelConfig, NoiseModel, TrainConfig
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade


def median_3x3(image: torch.Tensor) -> torch.Tensor:
    """Median of each 3x3 window, edge pixels repeated at the border."""
    windows = F.unfold(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel_size=3)  # (B, 9, H*W)
    return windows.median(dim=1).values.view_as(image)


def mean_3x3(image: torch.Tensor) -> torch.Tensor:
    """Mean of each 3x3 window, mirrored at the border."""
    return F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="reflect"), kernel_size=3, stride=1)


MY_ACTIONS = api.register_action_set(
    api.ActionSet.from_functions(
        "example-3x3",
        {
            "do nothing": lambda image: image,
            "darker": lambda image: image - 1 / 255,
            "brighter": lambda image: image + 1 / 255,
            "median 3x3": median_3x3,
            "mean 3x3": mean_3x3,
        },
        radius=1,  # the widest action looks one pixel away: tiled restores need to know
        description="example: grey level -1/+1, 3x3 median and mean",
    )
)


def main(argv: list[str] | None = None) -> float:
    """Train (or resume) the example policy and print the PSNR it gains on a bundled image; returns that gain."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/BSD432", help="folder of clean training images")
    parser.add_argument("--run", default="runs/example-3x3", help="output folder (resumed if it exists)")
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--width", type=int, default=64, help="feature channels of the network")
    args = parser.parse_args(argv)

    config = TrainConfig(
        objective="imitation",  # learn the greedy oracle's choices: the fastest start from random weights
        data=args.data,
        noise=NoiseModel(kind="gaussian", sigma=25),
        action_set=MY_ACTIONS.name,
        model=ModelConfig(width=args.width, n_actions=len(MY_ACTIONS)),
        episodes=args.episodes,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        validation_images=2,
        validate_every=max(args.episodes // 5, 1),
        device="auto",
    )
    for update in api.train(config, args.run):
        if update.validation_psnr is not None:
            print(f"episode {update.episode}/{update.episodes}: validation PSNR {update.validation_psnr:.2f} dB")

    policy = api.load_policy(Path(args.run) / "policy.safetensors")
    clean = skdata.camera()[128:384, 128:384].astype(np.float32) / 255
    noisy = degrade(clean, NoiseModel(sigma=25), np.random.default_rng(0))
    result = api.restore(noisy, policy, intensity_range=(0, 1))
    gain = psnr(result.image, clean) - psnr(noisy, clean)
    shares = np.bincount(result.actions.ravel(), minlength=len(MY_ACTIONS)) / result.actions.size
    print(f"camera, sigma 25: {psnr(noisy, clean):.2f} dB -> {psnr(result.image, clean):.2f} dB ({gain:+.2f})")
    print("actions taken: " + ", ".join(f"{n} {s:.0%}" for n, s in zip(MY_ACTIONS.names, shares, strict=True)))
    return gain


if __name__ == "__main__":
    main()
