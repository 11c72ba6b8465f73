"""Command line: ``napari-pixelrl restore`` and ``napari-pixelrl evaluate`` over the :mod:`napari_pixelrl.api`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__, api
from .core.checkpoint import CheckpointError
from .core.config import PRECISIONS
from .core.io import IMAGE_SUFFIXES, list_images, read_image, write_tiff


def _restore(args: argparse.Namespace) -> int:
    policy = api.load_policy(args.policy)
    api.resolve_device(args.device)  # a bad --device is one error, not one per image
    outdir = Path(args.output)
    failures = 0
    for path in tqdm([Path(p) for p in args.inputs], desc="restoring", unit="image"):
        try:
            result = api.restore(
                read_image(path), policy, steps=args.steps, device=args.device, precision=args.precision
            )
        except (OSError, ValueError, MemoryError) as err:
            tqdm.write(f"skipped {path}: {err}")
            failures += 1
            continue
        write_tiff(outdir / f"{path.stem}_restored.tif", result.image)
        write_tiff(outdir / f"{path.stem}_actions.tif", result.actions)
    names = ", ".join(f"{i}={name}" for i, name in enumerate(policy.action_set.names))
    print(f"wrote {len(args.inputs) - failures} restored image(s) to {outdir}; action map values: {names}")
    return 1 if failures else 0


def _evaluate(args: argparse.Namespace) -> int:
    policy = api.load_policy(args.policy)
    files = list_images(args.data)[: args.limit]
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {args.data}")
    bar = tqdm(desc=f"evaluating σ={args.sigma:g}", unit="image", total=len(files))

    def report(score: api.ImageScore) -> None:
        bar.update()
        if args.verbose:
            tqdm.write(
                f"{score.name:>24}  noisy {score.psnr_noisy:6.2f} dB  restored {score.psnr:6.2f} dB  "
                f"SSIM {score.ssim:.4f}  {score.seconds:6.2f} s"
            )

    result = api.evaluate(
        policy,
        files,
        sigma=args.sigma,
        seed=args.seed,
        steps=args.steps,
        device=args.device,
        precision=args.precision,
        on_image=report,
    )
    bar.close()
    noisy = float(np.mean([s.psnr_noisy for s in result.scores]))
    print(f"policy {policy.name}  sigma {args.sigma:g}  seed {args.seed}  images {len(result.scores)}")
    print(f"PSNR  noisy {noisy:.2f} dB  restored {result.mean_psnr:.2f} dB")
    print(f"SSIM  restored {result.mean_ssim:.4f}")
    print(f"time  {result.mean_seconds:.3f} s per image")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-pixelrl`` argument parser."""
    parser = argparse.ArgumentParser(prog="napari-pixelrl", description="PixelRL image restoration.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--policy",
            required=True,
            help="shipped policy name, .safetensors checkpoint, or the authors' pretrained_<sigma>.npz",
        )
        sub.add_argument("--steps", type=int, default=None, help="episode length (default: the policy's, 5)")
        sub.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
        sub.add_argument(
            "--precision",
            default="float32",
            choices=sorted(PRECISIONS),
            help="network arithmetic: float32 (exact) or bfloat16 (faster on CPUs with native bf16)",
        )

    restore = commands.add_parser("restore", help="restore 2-D grayscale images and write their action maps")
    restore.add_argument("inputs", nargs="+", metavar="IN", help="image files (TIFF, PNG, JPEG, BMP)")
    restore.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    common(restore)
    restore.set_defaults(run=_restore)

    evaluate = commands.add_parser("evaluate", help="add Gaussian noise to clean images, restore and score them")
    evaluate.add_argument("--data", required=True, help="folder of clean 8-bit grayscale images")
    evaluate.add_argument("--sigma", type=float, required=True, help="noise standard deviation, 0-255 scale")
    evaluate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    evaluate.add_argument("--limit", type=int, default=None, help="use only the first N images")
    evaluate.add_argument("-v", "--verbose", action="store_true", help="print every image's scores")
    common(evaluate)
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-pixelrl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CheckpointError, ValueError, OSError, MemoryError) as err:
        print(f"napari-pixelrl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
