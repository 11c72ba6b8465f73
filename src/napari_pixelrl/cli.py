"""Command line over :mod:`napari_pixelrl.api`: ``restore``, ``evaluate``, ``train`` and ``policies``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from tqdm import tqdm

from . import __version__, api
from .batch import RestoreJob, expand_inputs, restore_files
from .core.checkpoint import CheckpointError, write_atomically
from .core.config import (
    CROP_WEIGHTS,
    NOISE_KINDS,
    OBJECTIVES,
    PRECISIONS,
    RESUMABLE_CHANGES,
    NoiseModel,
    TrainConfig,
)
from .core.distributed import Replicas
from .core.environment import usable_precision
from .core.io import IMAGE_SUFFIXES, list_images
from .core.metrics import psnr, to_uint8
from .core.noise import degrade_image
from .core.recipe import Recipe
from .core.render import action_montage


def _restore(args: argparse.Namespace) -> int:
    device = api.resolve_device(args.device)  # a bad --device is one error, not one per file
    job = RestoreJob(
        policy=args.policy,
        steps=args.steps,
        device=args.device,
        precision=usable_precision(args.precision, device),  # warned once here, not in every worker
        values=args.values,
        tile_size=args.tile_size,
        channel_axis=args.channel_axis,
        threads=args.threads,
    )
    policy = api.load_policy(args.policy)  # a bad --policy is one error, not one per file
    paths = expand_inputs(args.inputs)
    where = f"on {args.scheduler}" if args.scheduler else f"in {args.workers} process(es)"
    in_process = args.scheduler is None and (args.workers == 1 or len(paths) <= 1)
    failures, megapixels, start = 0, 0.0, time.perf_counter()
    with (
        tqdm(total=len(paths), desc=f"restoring {where}", unit="file") as bar,
        tqdm(
            desc=f"this file: {policy.steps if args.steps is None else args.steps} steps x its planes and tiles",
            unit="step",
            position=1,
            leave=False,
            disable=not in_process,
        ) as steps,
    ):

        def on_progress(progress: api.RestoreProgress) -> None:
            if steps.total != progress.total or progress.done < steps.n:  # a new file
                steps.reset(total=progress.total)
            steps.update(progress.done - steps.n)

        results = restore_files(
            paths, args.output, job, workers=args.workers, scheduler=args.scheduler, on_progress=on_progress
        )
        for result in results:
            bar.update()
            if result.error is not None:
                tqdm.write(f"skipped {result.path}: {result.error}")
                failures += 1
            elif result.noise is not None:
                tqdm.write(f"note: {result.path}: {result.noise}")
            megapixels += result.megapixels
    seconds = time.perf_counter() - start
    if failures == len(paths):
        print(
            f"napari-pixelrl: error: nothing restored: none of the {len(paths)} input(s) could be restored (above)",
            file=sys.stderr,
        )
        return 2
    names = ", ".join(f"{i}={name}" for i, name in enumerate(policy.action_set.names))
    print(
        f"wrote {len(paths) - failures} restored file(s) to {args.output} "
        f"({megapixels:.2f} megapixels in {seconds:.1f} s, {megapixels / max(seconds, 1e-9):.3f} MP/s)"
    )
    print(f"action map values: {names}")
    return 1 if failures else 0


def _evaluate(args: argparse.Namespace) -> int:
    policy = api.load_policy(args.policy)
    files = list_images(args.data)[: args.limit]
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {args.data}")
    noise = _noise_from_flags(args)
    shown = noise.describe() if noise else policy.noise_model.describe()
    bar = tqdm(desc=f"evaluating {shown}", unit="image", total=len(files))

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
        noise=noise,
        seed=args.seed,
        steps=args.steps,
        device=args.device,
        precision=args.precision,
        on_image=report,
    )
    bar.close()
    print(f"policy {policy.name}  noise {result.noise.describe()}  seed {args.seed}  images {len(result.scores)}")
    print(f"PSNR  noisy {result.mean_noisy_psnr:.2f} dB  restored {result.mean_psnr:.2f} dB")
    print(f"SSIM  restored {result.mean_ssim:.4f}")
    print(f"time  {result.mean_seconds:.3f} s per image")
    shares = result.action_shares
    width = max(len(name) for name in result.action_names)
    print("actions: share of the pixels that chose each, at step " + ", ".join(str(t) for t in range(len(shares))))
    for name, row in zip(result.action_names, shares.T, strict=True):
        print(f"  {name:<{width}}  " + " ".join(f"{100 * share:6.1f}%" for share in row))
    return 0


def _level(values: list[float] | None) -> float | tuple[float, float] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else (values[0], values[1])


def _noise_from_flags(args: argparse.Namespace) -> NoiseModel | None:
    """The noise model the flags describe, or ``None`` when no noise flag was given."""
    flags = (args.noise, args.sigma, args.gain, args.density, args.font_size, args.strength)
    if all(flag is None for flag in flags):
        return None
    kind = args.noise or "gaussian"
    sigma = _level(args.sigma)
    if sigma is None and kind == "gaussian":
        raise ValueError("Gaussian noise needs --sigma")
    levels = {name: _level(getattr(args, name)) for name in ("gain", "density", "font_size", "strength")}
    return NoiseModel(kind=kind, sigma=sigma, **levels)


_TRAIN_FLAGS = {  # flag -> TrainConfig field, for the plain-valued settings
    "objective": "objective",
    "data": "data",
    "init": "init",
    "episodes": "episodes",
    "batch_size": "batch_size",
    "crop_size": "crop_size",
    "steps": "steps",
    "lr": "lr",
    "seed": "seed",
    "device": "device",
    "precision": "precision",
    "crop_weights": "crop_weights",
    "validate_every": "validate_every",
    "checkpoint_every": "checkpoint_every",
}


def _recipe_from_args(args: argparse.Namespace) -> Recipe:
    saved = Path(args.run_dir) / "recipe.json"
    if args.config:
        recipe = Recipe.load(args.config)
    elif saved.is_file():
        recipe = Recipe.load(saved)
    elif args.data:
        recipe = Recipe((TrainConfig(data=args.data),))
    else:
        raise ValueError("give --config FILE (a config or recipe JSON) or at least --data FOLDER")
    changes = {field: getattr(args, flag) for flag, field in _TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    noise = _noise_from_flags(args)
    if noise is not None:
        changes["noise"] = noise
    return recipe.with_changes(**changes) if changes else recipe


def _train(args: argparse.Namespace) -> int:
    recipe = _recipe_from_args(args)
    run_dir = Path(args.run_dir)
    saved = run_dir / "recipe.json"
    described = json.dumps(recipe.with_changes(device="auto").to_dict(), indent=1)
    neutral = {name: getattr(TrainConfig(), name) for name in RESUMABLE_CHANGES}  # may differ on resume
    if saved.is_file() and Recipe.load(saved).with_changes(**neutral) != recipe.with_changes(**neutral):
        raise ValueError(f"{run_dir} holds a run of another recipe ({saved}); train into a new folder")
    # Under torchrun every process runs this; rank 0 writes the files and shows progress. Ctrl-C there stops all
    # processes at once (torchrun's own handling): rank 0 saves its finished episodes, and the same command resumes.
    replicas = Replicas.from_env()
    if replicas.is_main:
        write_atomically(saved, lambda tmp: tmp.write_text(described + "\n"))  # makes run_dir; others may be reading

    stop = {"asked": False}

    def ask_to_stop(signum: int, frame: object) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        tqdm.write("stopping after this episode (press Ctrl-C again to abort without saving it)")

    distributed = replicas.world_size > 1
    previous = signal.getsignal(signal.SIGINT) if distributed else signal.signal(signal.SIGINT, ask_to_stop)
    bar, stage = None, 0
    try:
        updates = api.train(recipe, run_dir)
        for update in updates:
            if update.stage != stage:
                if bar is not None:
                    bar.close()
                stage = update.stage
                bar = tqdm(
                    total=update.episodes,
                    initial=update.episode - 1,
                    desc=f"stage {update.stage}/{update.stages} {update.objective}",
                    unit="episode",
                    disable=not replicas.is_main,
                )
            bar.update()
            shown = {"reward": f"{update.reward:.3f}"}
            if update.validation_psnr is not None:
                shown["val_psnr"] = f"{update.validation_psnr:.2f}"
            bar.set_postfix(shown, refresh=False)
            if stop["asked"]:
                updates.close()  # checkpoints this episode
                break
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    final = run_dir / "policy.safetensors"
    if not replicas.is_main:
        return 0
    if stop["asked"]:
        print(f"stopped; run the same command to resume from the checkpoint in {run_dir}")
        return 130
    print(f"policy written to {final}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    policy = api.load_policy(args.policy)
    rgb = policy.action_set.channels == 3
    name = args.image or ("chelsea" if rgb else "camera")
    clean = getattr(skimage.data, name)()
    if clean.ndim != (3 if rgb else 2) or clean.dtype != np.uint8:
        samples = "chelsea, astronaut, coffee, ..." if rgb else "camera, coins, moon, ..."
        kind = "a colour" if rgb else "a grayscale"
        raise ValueError(f"policy {policy.name} needs {kind} scikit-image sample ({samples}), not {name!r}")
    clean = clean.astype(np.float32) / 255.0
    noise = _noise_from_flags(args) or policy.noise_model.typical()
    if noise.uses_sigma and noise.sigma is None:
        noise = replace(noise, sigma=25.0)  # a policy trained on data of unknown noise level
    noisy = degrade_image(clean, noise, np.random.default_rng(args.seed))
    result = api.restore(noisy, policy, device=args.device, intensity_range=(0.0, 1.0))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(noisy)).save(out / "noisy.png")
    Image.fromarray(to_uint8(result.image)).save(out / "restored.png")
    action_montage(result.actions, policy.action_set).save(out / "actions.png")
    print(f"{name} + {noise.describe()} restored by policy {policy.name}, {result.actions.shape[0]} steps")
    print(f"PSNR  noisy {psnr(noisy, clean):.2f} dB  restored {psnr(result.image, clean):.2f} dB")
    print(f"wrote {out / 'noisy.png'}, {out / 'restored.png'} and {out / 'actions.png'} (action map per step)")
    return 0


def _policies(args: argparse.Namespace) -> int:
    if not api.list_policies():
        print("no policies are shipped with this installation")
    for task, label in api.TASKS.items():
        shipped = api.list_policies(task)
        if shipped:
            print(f"{label}:")
        for name, description in shipped.items():
            print(f"  {name:<18} {description}")
    return 0


def _noise_flags(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument("--noise", choices=NOISE_KINDS, default=None, help=f"noise kind {what}")
    sub.add_argument(
        "--sigma",
        type=float,
        nargs="+",
        metavar="S",
        help="Gaussian σ (read noise for poisson-gaussian), 0-255 scale; two values give a range drawn per image",
    )
    sub.add_argument(
        "--gain",
        type=float,
        nargs="+",
        metavar="G",
        help="poisson-gaussian: intensity of one photon on the [0, 1] scale (1/photons at full scale); value or range",
    )
    sub.add_argument(
        "--density",
        type=float,
        nargs="+",
        metavar="D",
        help="salt-and-pepper, text: fraction of pixels; value or range",
    )
    sub.add_argument(
        "--font-size", type=float, nargs="+", metavar="PX", help="text: font height in pixels (default 10 20)"
    )
    sub.add_argument(
        "--strength", type=float, nargs="+", metavar="S", help="fading: how far colours faded (default 0.15)"
    )


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
            help="network arithmetic: float32 (exact) or bfloat16 (faster where native, else float32 with a warning)",
        )

    restore = commands.add_parser(
        "restore",
        help="restore images, stacks and zarr arrays (files, folders, globs) and write their action maps",
        description="Restore every plane of every input and write <name>_restored.tif and <name>_actions.tif "
        "(a TIFF's resolution and ImageJ metadata kept), or <name>_restored.zarr for zarr inputs, into OUTDIR. "
        "Large planes are tiled exactly; a file that cannot be restored is reported and skipped.",
    )
    restore.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help="image files (TIFF, PNG, JPEG, BMP), .zarr folders, folders of them, or quoted globs ('data/*.tif')",
    )
    restore.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    common(restore)
    restore.add_argument("--values", action="store_true", help="also write the value maps (<name>_values.tif)")
    restore.add_argument(
        "--tile-size", type=int, default=None, metavar="PX", help="core of each tile (default: from free memory)"
    )
    restore.add_argument(
        "--channel-axis", type=int, default=None, metavar="AXIS", help="axis of channels, each restored alone"
    )
    restore.add_argument(
        "--workers", type=int, default=1, metavar="N", help="restore N files at a time in worker processes"
    )
    restore.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per file (default: all cores / workers; 1 per task on a cluster)",
    )
    restore.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (tcp://host:8786); its workers must see the same paths",
    )
    restore.set_defaults(run=_restore)

    evaluate = commands.add_parser("evaluate", help="add noise to clean images, restore and score them")
    evaluate.add_argument("--data", required=True, help="folder of clean 8-bit grayscale images")
    _noise_flags(evaluate, "to add (default: the policy's own, if it has fixed parameters)")
    evaluate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    evaluate.add_argument("--limit", type=int, default=None, help="use only the first N images")
    evaluate.add_argument("-v", "--verbose", action="store_true", help="print every image's scores")
    common(evaluate)
    evaluate.set_defaults(run=_evaluate)

    train = commands.add_parser(
        "train",
        help="train a policy into RUN_DIR; the same command resumes an interrupted run",
        description="Train a policy. Settings come from --config (a TrainConfig or recipe JSON, e.g. "
        "recipes/gaussian-25.json), else from RUN_DIR/recipe.json when resuming, else from the defaults "
        "(the paper's recipe); flags override them in every stage. Ctrl-C stops after the current episode "
        "and saves; run the same command to resume.",
    )
    train.add_argument("run_dir", metavar="RUN_DIR", help="output folder (policy, resume state, log.jsonl)")
    train.add_argument("--config", help="TrainConfig or recipe JSON file")
    train.add_argument("--objective", choices=OBJECTIVES, default=None)
    train.add_argument("--data", help="folder of clean training images")
    train.add_argument("--init", help="start from this policy (shipped name or checkpoint)")
    for flag, kind in (
        ("episodes", int),
        ("batch-size", int),
        ("crop-size", int),
        ("steps", int),
        ("lr", float),
        ("seed", int),
        ("validate-every", int),
        ("checkpoint-every", int),
    ):
        train.add_argument(f"--{flag}", type=kind, default=None)
    train.add_argument("--device", default=None, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    train.add_argument("--precision", choices=sorted(PRECISIONS), default=None)
    train.add_argument(
        "--crop-weights",
        choices=CROP_WEIGHTS,
        default=None,
        help="psnr: weight each crop by 1/its initial error (for blind noise ranges; default equal, the paper's)",
    )
    _noise_flags(train, "to train for (default gaussian)")
    train.set_defaults(run=_train)

    demo = commands.add_parser(
        "demo", help="add noise to a bundled sample image, restore it, write PNGs of the result and its action map"
    )
    demo.add_argument("-o", "--output", default="pixelrl-demo", metavar="OUTDIR", help="folder for the PNGs")
    demo.add_argument("--policy", default="gaussian-25", help="shipped policy name or checkpoint (default gaussian-25)")
    demo.add_argument(
        "--image",
        default=None,
        help="scikit-image sample: camera, coins, moon, ... (default camera; chelsea for a colour policy)",
    )
    demo.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    demo.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    _noise_flags(demo, "to add (default: what the policy was trained for, ranges at their middle)")
    demo.set_defaults(run=_demo)

    policies = commands.add_parser("policies", help="list the shipped policies")
    policies.set_defaults(run=_policies)
    return parser


def _print_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"napari-pixelrl: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-pixelrl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # a fallback from bfloat16 is said once, as one plain line
            warnings.simplefilter("once", api.PrecisionWarning)
            warnings.showwarning = _print_warning
            return args.run(args)
    except (CheckpointError, ValueError, OSError, MemoryError) as err:
        print(f"napari-pixelrl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
