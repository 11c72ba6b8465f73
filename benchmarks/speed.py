"""Speed of one 512x512, 5-step episode (policy path) against BM3D on the same noisy image, in one run.

Also times a straightforward implementation of the same episode (NCHW tensors, all nine filters every step, value
branch computed, plain out-of-place GRU) to show what each optimisation buys. All on the CPU.

    python benchmarks/speed.py [--repeats 3] [--sigma 25]

The policy is the authors' σ=25 release when ../shared has it, else a randomly initialised network of the same
shape (the cost of an episode does not depend on the weights, only slightly on which filters get chosen).
"""

from __future__ import annotations

import argparse

import bm3d
import numpy as np
import skimage.data
import torch
from _common import RELEASE, machine, timed

from napari_pixelrl import api
from napari_pixelrl.core.actions import DENOISE
from napari_pixelrl.core.checkpoint import Policy
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.model import PixelRLNet
from napari_pixelrl.core.noise import add_gaussian_noise


def straightforward_episode(model: PixelRLNet, noisy: np.ndarray, steps: int) -> np.ndarray:
    """The episode as a first implementation would write it: NCHW, every filter each step, value computed."""
    state = torch.from_numpy(noisy)[None, None]
    h = torch.zeros(1, model.config.width, *noisy.shape)
    gru = model.gru
    with torch.no_grad():
        for _ in range(steps):
            features = model.trunk(state)
            x = model.policy_branch(features)
            z = torch.sigmoid(gru.W_z(x) + gru.U_z(h))
            r = torch.sigmoid(gru.W_r(x) + gru.U_r(h))
            h = (1 - z) * h + z * torch.tanh(gru.W(x) + gru.U(r * h))
            model.value_head(model.value_branch(features))
            actions = model.policy_head(h).argmax(1, keepdim=True)
            candidates = torch.stack([a.apply(state) for a in DENOISE.actions])
            state = candidates.gather(0, actions[None]).squeeze(0)
    return state.clamp(0, 1)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sigma", type=float, default=25)
    args = parser.parse_args()

    release = RELEASE / "pretrained_25.npz"
    if release.is_file():
        policy, weights = api.load_policy(release), "authors' σ=25 release"
    else:
        policy = Policy(PixelRLNet().eval(), DENOISE, 5, NoiseModel(), "random")
        weights = "random weights"
    clean = skimage.data.camera().astype(np.float32) / 255.0  # 512x512, bundled with scikit-image
    noisy = add_gaussian_noise(clean, args.sigma, np.random.default_rng(0))

    # The straightforward baseline runs first, before api.restore tunes the allocator for this process.
    plain = min(timed(lambda: straightforward_episode(policy.model, noisy, 5))[1] for _ in range(args.repeats))
    bm3d_s = min(timed(lambda: bm3d.bm3d(noisy, sigma_psd=args.sigma / 255))[1] for _ in range(args.repeats))
    api.restore(noisy, policy, device="cpu")  # warm-up
    ours = min(timed(lambda: api.restore(noisy, policy, device="cpu"))[1] for _ in range(args.repeats))
    ours_v = min(
        timed(lambda: api.restore(noisy, policy, device="cpu", return_values=True))[1] for _ in range(args.repeats)
    )
    ours_bf16 = min(
        timed(lambda: api.restore(noisy, policy, device="cpu", precision="bfloat16"))[1] for _ in range(args.repeats)
    )
    print(
        f"512x512 camera + Gaussian σ={args.sigma:g}, 5 steps, {weights}, best of {args.repeats}; machine: {machine()}"
    )
    print("| method | seconds | / BM3D |")
    print("|---|---|---|")
    for name, seconds in (
        ("BM3D (bm3d package, σ given)", bm3d_s),
        ("PixelRL straightforward (NCHW, all filters, value branch)", plain),
        ("PixelRL api.restore (policy path)", ours),
        ("PixelRL api.restore, return_values=True", ours_v),
        ("PixelRL api.restore, precision='bfloat16'", ours_bf16),
    ):
        print(f"| {name} | {seconds:.2f} | {seconds / bm3d_s:.2f} |")


if __name__ == "__main__":
    main()
