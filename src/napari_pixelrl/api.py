"""Public scripting façade: load a policy, restore an image, evaluate on a folder. No Qt, no napari.

Example
-------
>>> from napari_pixelrl import api
>>> policy = api.load_policy("pretrained_25.npz")  # doctest: +SKIP
>>> result = api.restore(noisy, policy, return_values=True)  # doctest: +SKIP
>>> result.image, result.actions, result.values  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import inference
from .core.actions import ActionSet, get_action_set, register_action_set, registered_action_sets
from .core.checkpoint import (
    CheckpointError,
    Policy,
    detect_format,
    import_chainer_npz,
    load_checkpoint,
    read_header,
    save_checkpoint,
    write_atomically,
)
from .core.config import PRECISIONS, TASKS, InferenceConfig, NoiseModel, TrainConfig
from .core.data import ImageSet
from .core.distributed import Replicas
from .core.environment import PrecisionWarning, has_native_bfloat16, resolve_device, usable_precision
from .core.inference import Restoration, RestoreProgress, check_image, default_intensity_range
from .core.io import list_images, read_image, zarr_restoration
from .core.metrics import psnr, ssim
from .core.noise import degrade
from .core.noise_level import NoiseCheck
from .core.noise_level import check_noise as noise_check
from .core.recipe import Recipe
from .core.render import action_counts
from .core.sources import ImagePairs, NeighbourPairs, SyntheticNoise, TrainingData, fingerprint, split_rows
from .core.trainer import POLICY_FILE, STATE_FILE, Trainer, TrainUpdate, episode_loss, saved_config, stage_finished

__all__ = [
    "TASKS",
    "ActionSet",
    "Evaluation",
    "ImageScore",
    "NoiseCheck",
    "Policy",
    "PrecisionWarning",
    "Restoration",
    "RestoreProgress",
    "best_policy_file",
    "check_image",
    "check_noise",
    "clean_images",
    "default_intensity_range",
    "episodes_for_minutes",
    "episodes_in",
    "estimate_episode_seconds",
    "evaluate",
    "fine_tune",
    "has_native_bfloat16",
    "list_policies",
    "load_policy",
    "noisy_clean_pairs",
    "noisy_images",
    "noisy_pairs",
    "register_action_set",
    "registered_action_sets",
    "resolve_device",
    "restore",
    "restore_steps",
    "train",
    "zarr_restoration",
]

WEIGHTS_DIR = Path(__file__).parent / "core" / "weights"


def list_policies(task: str | None = None) -> dict[str, str]:
    """The policies shipped with the package, name → one-line description, in name order.

    Any name can be passed to :func:`load_policy`.

    Parameters
    ----------
    task : str, optional
        Only the policies for this task: a key of :data:`TASKS` (the kind of degradation they undo).
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    headers = {p.stem: read_header(p) for p in _shipped_files()}
    return {
        name: header.get("description", "")
        for name, header in headers.items()
        if task is None or header.get("noise_model", {}).get("kind") == task
    }


def _shipped_files() -> list[Path]:
    return sorted(WEIGHTS_DIR.glob("*.safetensors")) if WEIGHTS_DIR.is_dir() else []


def load_policy(name_or_path: str | os.PathLike[str]) -> Policy:
    """Load a shipped policy by name, or a policy file: our ``.safetensors`` or the authors' Chainer ``.npz``.

    The file format is told apart by content, not by the file name's suffix.

    Raises
    ------
    CheckpointError
        If no shipped policy has that name and no readable policy file is at that path.
    """
    shipped = [p.stem for p in _shipped_files()]
    if str(name_or_path) in shipped:
        return load_checkpoint(WEIGHTS_DIR / f"{name_or_path}.safetensors")
    path = Path(name_or_path).expanduser()
    if not path.exists():
        available = ", ".join(shipped) if shipped else "none yet"
        raise CheckpointError(
            f"no policy named {str(name_or_path)!r} and no file at that path. Shipped policies: {available}; "
            "or pass the path of a .safetensors checkpoint or of the authors' pretrained_<sigma>.npz."
        )
    if detect_format(path) == "chainer-npz":
        return import_chainer_npz(path)
    return load_checkpoint(path)


def restore(
    image: Any,
    policy: Policy,
    *,
    steps: int | None = None,
    device: str | torch.device = "auto",
    return_values: bool = False,
    intensity_range: tuple[float, float] | None = None,
    precision: str = "float32",
    channel_axis: int | None = None,
    rgb: bool | None = None,
    tile_size: int | None = None,
    memory_budget: int | None = None,
    out: Restoration | None = None,
) -> Restoration:
    """Restore an image, a stack or any n-D array of grayscale planes with a PixelRL policy (greedy actions, as
    at test time in the paper).

    Large planes are cut into tiles with a halo as wide as everything a pixel's result depends on, so the result
    equals the untiled one up to float rounding; planes (or tiles) of the same shape run together in batches.

    Parameters
    ----------
    image : array
        NumPy, dask or zarr array of any real dtype, finite. Its last two axes (the last two that are not a
        channel axis) are the planes restored, at least 3x3; all other axes (Z, T, channels, ...) index planes.
        Lazy arrays are read one tile at a time and never loaded whole. Not modified.
    policy : Policy
        From :func:`load_policy`.
    steps : int, optional
        Episode length; default ``policy.steps`` (5 for denoising).
    device : str or torch.device
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ...
    return_values : bool
        Also compute the value branch and return the per-step value map.
    intensity_range : (float, float), optional
        Input values mapped to 0 and 1, for every plane; the output is mapped back and clipped to this range.
        Default by dtype: uint8 (0, 255); floats within [0, 1] as they are; otherwise the minimum and maximum of
        the whole array, or of each channel when there is a channel axis.
    precision : {"float32", "bfloat16"}
        Arithmetic of the network. ``"bfloat16"`` is about 1.7x faster on CPUs with native bfloat16 and changed
        BSD68 PSNR by less than 0.01 dB in our benchmark, but is not bit-exact; filters always run in float32.
        Where the CPU has no native bfloat16 (:func:`has_native_bfloat16`; e.g. AVX2-only CPUs, where it would be
        about 11x slower) float32 runs instead, with a :class:`PrecisionWarning`.
    channel_axis : int, optional
        An axis of channels, each restored as grayscale with its own default intensity range (with a colour
        policy: the RGB(A) axis, restored as one colour image).
    rgb : bool, optional
        Whether the last axis is RGB(A) colour, restored channel by channel by a grayscale policy and as colour by a
        colour policy (``policy.action_set.channels == 3``, e.g. ``fading``: one intensity range, alpha kept, maps
        without a channel axis); ``None`` guesses as napari does
        (a last axis of 3 or 4, shorter than the two before it).
    tile_size : int, optional
        Side of each tile's core in pixels (the halo comes on top); default from ``memory_budget``.
    memory_budget : int, optional
        Bytes one batch of tiles may use; default a quarter of the free memory, at most 1.5 GiB, on a CPU and
        half the free memory on a GPU.
    out : Restoration, optional
        Arrays to write the results into instead of new NumPy arrays, e.g. :func:`zarr_restoration` for results
        larger than memory: ``image`` shaped like the input, ``actions`` (and ``values`` when asked for)
        shaped ``(*stack, steps, H, W)``.

    Returns
    -------
    Restoration
        Restored image (float32, input units and shape), action maps ``(*stack, steps, H, W)`` (``(steps, H, W)``
        for a 2-D image; the channel axis counts as a stack axis, except for a colour policy) and optional value
        maps.

    Raises
    ------
    ValueError
        For an image, steps, device, precision or ``out`` that cannot be used; the message says what works.
    MemoryError
        When a tile, or the results, would not fit the free memory (checked before starting).
    """
    work = restore_steps(
        image,
        policy,
        steps=steps,
        device=device,
        return_values=return_values,
        intensity_range=intensity_range,
        precision=precision,
        channel_axis=channel_axis,
        rgb=rgb,
        tile_size=tile_size,
        memory_budget=memory_budget,
        out=out,
    )
    while True:
        try:
            next(work)
        except StopIteration as finished:
            return finished.value


def restore_steps(
    image: Any,
    policy: Policy,
    *,
    steps: int | None = None,
    device: str | torch.device = "auto",
    return_values: bool = False,
    intensity_range: tuple[float, float] | None = None,
    precision: str = "float32",
    channel_axis: int | None = None,
    rgb: bool | None = None,
    tile_size: int | None = None,
    memory_budget: int | None = None,
    out: Restoration | None = None,
) -> Generator[RestoreProgress, None, Restoration]:
    """:func:`restore` one step at a time: yields a :class:`RestoreProgress` after each step of each batch of
    planes or tiles, and returns the result.

    For progress bars and cancellation: closing the generator (or stopping to iterate) abandons the work at the
    next step. The image, intensity ranges and memory are checked before the first step. Arguments as in
    :func:`restore`.

    Example
    -------
    >>> work = restore_steps(noisy, policy)  # doctest: +SKIP
    >>> result = yield from work  # inside another generator, e.g. a napari thread_worker  # doctest: +SKIP
    """
    config = InferenceConfig(
        steps=policy.steps if steps is None else steps,
        device=str(device),
        return_values=return_values,
        precision=precision,
        tile_size=tile_size,
        memory_budget=memory_budget,
    )
    array = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
    data = {"intensity_range": intensity_range, "channel_axis": channel_axis, "rgb": rgb}  # how to read the array
    return (yield from inference.restore_steps(array, policy, config, out=out, **data))


def check_noise(
    image: Any,
    policy: Policy,
    *,
    intensity_range: tuple[float, float] | None = None,
    channel_axis: int | None = None,
    rgb: bool | None = None,
) -> NoiseCheck | None:
    """Estimate the noise of ``image`` as :func:`restore` would map it, and compare it with the policy's.

    The estimate (Gaussian σ on the 0-255 scale; for a Poisson-Gaussian policy also the gain) comes from the centre
    512x512 window of the first plane (of the first channel). When it lies outside what the policy was trained for
    (more than a factor 1.5 off), ``advice`` names the shipped policy that fits, or fine-tuning.

    Returns
    -------
    NoiseCheck or None
        ``None`` for policies without a noise level (salt-and-pepper, text, colour).

    Examples
    --------
    >>> check = api.check_noise(noisy, api.load_policy("gaussian-50"))  # doctest: +SKIP
    >>> check.fits, check.advice  # doctest: +SKIP
    (False, 'noise sigma ≈ 5.19, but the policy was trained for sigma 50: try gaussian-blind, or fine-tune ...')
    """
    array = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
    channels = policy.action_set.channels
    layout = check_image(array, channel_axis=channel_axis, rgb=rgb, channels=channels)
    if channels != 1:
        return None
    window = inference.noise_window(array, layout, intensity_range)
    shipped = {path.stem: NoiseModel.from_dict(read_header(path)["noise_model"]) for path in _shipped_files()}
    return noise_check(window, policy.noise_model, shipped)


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image in :func:`evaluate`; ``action_counts[t, a]`` is how many pixels chose action ``a`` at
    step ``t``."""

    name: str
    psnr_noisy: float
    psnr: float
    ssim: float
    seconds: float
    action_counts: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """All scores of :func:`evaluate`, with means; ``action_names`` label the columns of the action counts."""

    noise: NoiseModel
    scores: list[ImageScore]
    action_names: tuple[str, ...]

    @property
    def mean_noisy_psnr(self) -> float:
        """Mean PSNR (dB) of the noisy inputs."""
        return float(np.mean([s.psnr_noisy for s in self.scores]))

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR (dB) of the restored images."""
        return float(np.mean([s.psnr for s in self.scores]))

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM of the restored images."""
        return float(np.mean([s.ssim for s in self.scores]))

    @property
    def mean_seconds(self) -> float:
        """Mean restore time per image, seconds."""
        return float(np.mean([s.seconds for s in self.scores]))

    @property
    def action_shares(self) -> np.ndarray:
        """Share of all pixels that chose each action at each step, ``(steps, len(action_names))``; rows sum to 1."""
        counts = np.sum([s.action_counts for s in self.scores], axis=0)
        return counts / counts.sum(axis=1, keepdims=True)


def as_unit_gray(image: np.ndarray, name: str) -> np.ndarray:
    """A clean test image as float32 in [0, 1]: 8-bit grey divided by 255 (the paper's convention)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"{name}: evaluation needs 8-bit grayscale images, got {image.dtype} of shape {image.shape}")
    return image.astype(np.float32) / 255.0


def evaluate(
    policy: Policy,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    sigma: float | None = None,
    noise: NoiseModel | None = None,
    seed: int = 0,
    steps: int | None = None,
    device: str | torch.device = "auto",
    limit: int | None = None,
    precision: str = "float32",
    on_image: Callable[[ImageScore], None] | None = None,
) -> Evaluation:
    """Degrade clean 8-bit grayscale images, restore them and score them with the paper's protocol.

    Noise comes from ``numpy.random.default_rng(seed)``, drawn image by image in sorted file order, so a run is
    reproducible and comparable with other methods on the same inputs (for Gaussian noise, exactly the draws of
    the paper-protocol benchmarks).

    Parameters
    ----------
    policy : Policy
        The policy to evaluate.
    data : path or sequence of paths
        A folder of images (all image files in it) or a list of image files.
    sigma : float, optional
        Gaussian noise standard deviation on the 0-255 scale.
    noise : NoiseModel, optional
        Any other degradation (used when ``sigma`` is not given). With neither, the policy's own noise model,
        if it has fixed parameters.
    seed : int
        Noise seed.
    steps, device, precision
        As in :func:`restore`.
    limit : int, optional
        Use only the first ``limit`` images.
    on_image : callable, optional
        Called with each image's :class:`ImageScore` as soon as it is done (for progress bars).
    """
    files = list_images(data) if isinstance(data, str | os.PathLike) else [Path(p) for p in data]
    files = files[:limit] if limit is not None else files
    if not files:
        raise ValueError(f"no images found in {data}")
    noise = NoiseModel(sigma=sigma) if sigma is not None else noise or policy.noise_model
    if noise.is_blind or (noise.uses_sigma and noise.sigma is None):
        raise ValueError(
            f"policy {policy.name!r} was trained for {noise.describe()}; give the noise level to evaluate at "
            "(sigma=..., or a NoiseModel with single values)"
        )
    rng = np.random.default_rng(seed)
    scores = []
    for path in files:
        clean = as_unit_gray(read_image(path), path.name)
        noisy = degrade(clean, noise, rng)
        start = time.perf_counter()
        result = restore(noisy, policy, steps=steps, device=device, intensity_range=(0.0, 1.0), precision=precision)
        seconds = time.perf_counter() - start
        restored, counts = result.image, action_counts(result.actions, len(policy.action_set))
        score = ImageScore(path.name, psnr(noisy, clean), psnr(restored, clean), ssim(restored, clean), seconds, counts)
        scores.append(score)
        if on_image is not None:
            on_image(score)
    return Evaluation(noise=noise, scores=scores, action_names=tuple(policy.action_set.names))


def train(
    recipe: Recipe | TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    images: ImageSet | None = None,
) -> Iterator[TrainUpdate]:
    """Train a policy, yielding a :class:`~napari_pixelrl.core.trainer.TrainUpdate` after every episode.

    A folder that holds an unfinished run of the same recipe is resumed exactly where it stopped; finished stages
    are skipped. Closing the generator (``break``) checkpoints the last finished episode. The final policy is
    ``run_dir/policy.safetensors`` (loadable with :func:`load_policy`); each stage also keeps its own folder,
    checkpoint, resume state and ``log.jsonl``.

    Parameters
    ----------
    recipe : Recipe or TrainConfig
        The stages to run (one config is a one-stage recipe).
    run_dir : path-like
        Output folder.
    images : ImageSet, optional
        Training images for every stage, instead of reading each stage's ``data`` folder.

    Example
    -------
    >>> config = TrainConfig(data="BSD432", noise=NoiseModel(sigma=25), episodes=1000, batch_size=16)  # doctest: +SKIP
    >>> for update in api.train(config, "runs/my-policy"):  # doctest: +SKIP
    ...     print(update.episode, update.reward, update.validation_psnr)
    """
    recipe = recipe if isinstance(recipe, Recipe) else Recipe((recipe,))
    run_dir = Path(run_dir)
    folders = recipe.stage_dirs(run_dir)
    loaded: dict[tuple[str, int, int], ImageSet] = {}
    previous: Path | None = None
    for index, (stage, folder) in enumerate(zip(recipe.stages, folders, strict=True), start=1):
        if stage.init is None and previous is not None:
            stage = replace(stage, init=str(previous))
        if not (folder / STATE_FILE).exists() and stage_finished(stage, folder):
            previous = folder / POLICY_FILE  # done in an earlier call, its resume state since removed
            continue
        initial = load_policy(stage.init) if stage.init else None
        stage_images = images
        if stage_images is None:
            action_set = initial.action_set if initial else get_action_set(stage.action_set)
            key = (stage.data, stage.validation_images, action_set.channels)
            stage_images = loaded[key] if key in loaded else ImageSet.from_folder(*key[:2], channels=key[2])
            loaded[key] = stage_images
        last = index == len(recipe.stages)
        trainer = Trainer(
            stage,
            folder,
            initial=initial,
            images=stage_images,
            name=(recipe.name or run_dir.name) if last else None,
            description=recipe.description if last else "",
        )
        for update in trainer.run():
            yield replace(update, stage=index, stages=len(recipe.stages))
        if trainer.episode < stage.episodes:
            return  # stopped early; the next call resumes here
        trainer.replicas.barrier()  # under torchrun: rank 0 has written the stage's policy that the next loads
        previous = folder / POLICY_FILE
    if previous is not None and previous != run_dir / POLICY_FILE and Replicas.from_env().is_main:
        write_atomically(run_dir / POLICY_FILE, lambda tmp: shutil.copyfile(previous, tmp))


# --- fine-tuning on the user's own data -------------------------------------------------------------------------


Range = tuple[float, float]


def _to_unit(
    image: np.ndarray, reference: np.ndarray | None = None, intensity_range: Range | None = None
) -> np.ndarray:
    """``image`` on [0, 1]: mapped with ``intensity_range``, else as :func:`restore` would map ``reference``
    (default: ``image`` itself). An RGB(A) image ``(H, W, 3 or 4)`` becomes channel-first RGB ``(3, H, W)``, for
    colour policies."""
    image = np.asarray(image)
    rgb = check_image(image).channel_axis is not None
    if rgb and image.ndim != 3:
        raise ValueError(
            f"training takes grayscale images or stacks of them, or single RGB images (H, W, 3); got shape "
            f"{image.shape}. Pass one image at a time."
        )
    low, high = intensity_range or default_intensity_range(np.asarray(reference if reference is not None else image))
    unit = ((image.astype(np.float64) - low) / (high - low)).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(unit[..., :3], -1, 0)) if rgb else unit


def clean_images(
    images: Sequence[np.ndarray],
    noise: NoiseModel,
    *,
    validation_fraction: float = 0.1,
    intensity_range: Range | None = None,
) -> SyntheticNoise:
    """Training data (a): clean images, degraded afresh with ``noise`` in every episode.

    Each image's bottom ``validation_fraction`` of rows is held out for validation; ``noise`` is on the [0, 1]
    scale the images are mapped to.

    Parameters
    ----------
    images : sequence of np.ndarray
        2-D clean images.
    noise : NoiseModel
        The degradation to learn to undo.
    validation_fraction : float
        Share of each image's rows held out.
    intensity_range : (float, float), optional
        Values mapped to 0 and 1, for every image; by default each image (or stack) is mapped as :func:`restore`
        maps it (``uint8`` by 255, floats within [0, 1] as they are, anything else by its own minimum and
        maximum). Give the range you will restore with, e.g. ``(0, 1)`` for float data that noise pushed outside
        [0, 1], or ``(0, 4095)`` for 12-bit data.
    """
    parts = [split_rows(_to_unit(image, None, intensity_range), validation_fraction) for image in images]
    units = [np.concatenate(part) for part in parts]
    image_set = ImageSet([p[0] for p in parts], [p[1] for p in parts], fingerprint(units), "arrays")
    return SyntheticNoise(image_set, noise)


def noisy_clean_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    validation_fraction: float = 0.1,
    intensity_range: Range | None = None,
) -> ImagePairs:
    """Training data (b): registered ``(noisy, clean)`` pairs, e.g. a clean image made by averaging many frames.

    By default both images of a pair are mapped to [0, 1] with the noisy image's range (as :func:`restore` maps
    it); see ``intensity_range`` in :func:`clean_images`.
    """
    units = [
        (_to_unit(noisy, None, intensity_range), _to_unit(clean, noisy, intensity_range)) for noisy, clean in pairs
    ]
    return ImagePairs(units, target_is_clean=True, validation_fraction=validation_fraction, name="noisy/clean pairs")


def noisy_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    validation_fraction: float = 0.1,
    intensity_range: Range | None = None,
) -> ImagePairs:
    """Training data (c): two independent noisy acquisitions of the same scene per pair; each is the other's target.

    The noise of the two must be independent (two exposures, not one image copied): then the reward stays
    unbiased (see :mod:`napari_pixelrl.core.sources`). Intensities: as in :func:`noisy_clean_pairs`.
    """
    units = [(_to_unit(a, None, intensity_range), _to_unit(b, a, intensity_range)) for a, b in pairs]
    both_ways = units + [(b, a) for a, b in units]
    return ImagePairs(both_ways, target_is_clean=False, validation_fraction=validation_fraction, name="noisy pairs")


def noisy_images(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    method: str = "neighbours",
    validation_fraction: float = 0.1,
    intensity_range: Range | None = None,
) -> NeighbourPairs | ImagePairs:
    """Training data (d): noisy images only.

    Parameters
    ----------
    images : array or sequence of arrays
        One 2-D image, several, or a stack ``(N, H, W)`` (mapped to [0, 1] with the stack's one range, as
        :func:`restore` maps a stack).
    method : {"neighbours", "frames"}
        ``"neighbours"``: each image is split into two half-size noisy images from neighbouring pixels (needs noise
        that is independent from pixel to pixel). ``"frames"``: consecutive frames of a stack are pairs (needs a
        scene that does not move between frames).
    validation_fraction : float
        Share of the rows, at the bottom, held out for validation.
    intensity_range : (float, float), optional
        Values mapped to 0 and 1, for every image; by default each image (or stack) is mapped as :func:`restore`
        maps it (``uint8`` by 255, floats within [0, 1] as they are, anything else by its own minimum and
        maximum). Give the range you will restore with, e.g. ``(0, 1)`` for float data that noise pushed outside
        [0, 1], or ``(0, 4095)`` for 12-bit data.
    """
    # A 3-D array is one stack, mapped to [0, 1] with one range as restore maps a stack; a list plane by plane.
    reference = np.asarray(images) if np.ndim(images) == 3 else None
    stack = [np.asarray(images)] if np.ndim(images) == 2 else list(images)
    units = [_to_unit(image, reference, intensity_range) for image in stack]
    if method == "frames":
        return ImagePairs.from_frames(np.stack(units), validation_fraction)
    if method != "neighbours":
        raise ValueError("method must be 'neighbours' or 'frames', got {method!r}")
    return NeighbourPairs(units, validation_fraction)


def fine_tune(
    policy: Policy | str,
    data: TrainingData,
    run_dir: str | os.PathLike[str],
    *,
    episodes: int | None = None,
    minutes: float | None = None,
    objective: str = "pathwise",
    lr: float = 3e-4,
    batch_size: int = 16,
    crop_size: int = 48,
    device: str = "auto",
    precision: str = "float32",
    seed: int = 0,
    validate_every: int = 20,
    name: str | None = None,
    rollout: str | None = None,
) -> Iterator[TrainUpdate]:
    """Adapt a policy to your data, yielding a :class:`~napari_pixelrl.core.trainer.TrainUpdate` per episode.

    Stops after ``episodes`` (the learning rate decays to zero there) or once ``minutes`` of training have passed,
    whichever comes first, or when the caller stops iterating. With ``minutes`` alone, ``episodes`` is planned
    from a measurement of the time per episode (:func:`episodes_for_minutes`), so that the learning rate still
    decays over the run; with neither, 200 episodes; the last finished episode is always saved to
    ``run_dir/policy.safetensors`` (loadable with :func:`load_policy`). The same call on the same folder resumes.

    Fine-tuning can also make a policy worse on your data (too few images, a learning rate too high for a policy
    that already suits them). So the starting policy is scored on the held-out crops first, and
    ``run_dir/best.safetensors`` always holds the best of it and every validated episode: a copy of the start
    (a record of 0 episodes) until an episode scores higher there. :func:`best_policy_file` names the file to use.

    Parameters
    ----------
    policy : Policy or str
        Starting policy (a shipped name, a checkpoint path or a loaded policy).
    data : TrainingData
        From :func:`clean_images`, :func:`noisy_clean_pairs`, :func:`noisy_pairs` or :func:`noisy_images`.
    run_dir : path-like
        Output folder.
    episodes, minutes
        Budget (see above).
    objective : str
        ``"pathwise"`` (default: the exact expected reward of each step, plus what the later steps make of it;
        better in 10 of the 12 fine-tunes of docs/benchmarks.md), ``"expected-reward"`` (the step's own reward
        only, a little faster per episode) or ``"a2c"`` (the paper's), see
        :class:`~napari_pixelrl.core.config.TrainConfig`.
    lr, batch_size, crop_size, seed, validate_every, device, precision
        As in :class:`~napari_pixelrl.core.config.TrainConfig`.
    name : str, optional
        Name of the new policy (default: the run folder's name).
    rollout : str, optional
        ``"sample"`` or ``"greedy"`` (see :class:`~napari_pixelrl.core.config.TrainConfig`); by default what the
        starting policy's last training stage used (``"greedy"`` for ``fading``, else the paper's ``"sample"``).

    Example
    -------
    >>> data = api.noisy_images(stack, method="frames")  # doctest: +SKIP
    >>> for update in api.fine_tune("poisson-gaussian", data, "runs/my-microscope", minutes=5):  # doctest: +SKIP
    ...     print(update.episode, update.reward, update.validation_psnr)
    >>> mine = api.load_policy("runs/my-microscope/policy.safetensors")  # doctest: +SKIP
    """
    start = policy if isinstance(policy, Policy) else load_policy(policy)
    precision = usable_precision(precision, resolve_device(device))  # one warning, not one per use
    if episodes is None and (Path(run_dir) / STATE_FILE).exists():
        episodes = saved_config(run_dir).episodes  # resuming: keep the schedule the run was planned with
    if episodes is None:
        plan = {"batch_size": batch_size, "crop_size": crop_size, "objective": objective, "device": device}
        episodes = 200 if minutes is None else episodes_for_minutes(start, minutes, precision=precision, **plan)
    # Only synthetic data are degraded with a noise model; for the other sources it just describes the new policy,
    # which keeps the starting policy's (TrainConfig insists on a noise level, so an unknown one is recorded as 0).
    noise = data.noise if isinstance(data, SyntheticNoise) else start.noise_model
    record = data.record()
    if rollout is None:
        stages = start.training.get("stages") or [{}]
        rollout = stages[-1].get("config", {}).get("rollout", "sample")
    config = TrainConfig(
        objective=objective,
        data=str(record.get("source", "")),
        noise=noise if noise.sigma is not None or not noise.uses_sigma else NoiseModel(sigma=0.0),
        init=start.source or start.name,
        action_set=start.action_set.name,
        model=start.model.config,
        episodes=episodes,
        batch_size=batch_size,
        crop_size=crop_size,
        steps=start.steps,
        rollout=rollout,
        lr=lr,
        max_rotation=0.0,
        seed=seed,
        validate_every=validate_every,
        checkpoint_every=max(1, validate_every),
        device=device,
        precision=precision,
    )
    description = f"{start.name} fine-tuned on {record.get('kind', 'your data')}"
    trainer = Trainer(config, run_dir, initial=start, name=name, description=description, data=data)
    best = _floor_at_start(trainer)
    began = time.perf_counter()  # minutes count from this call, also when it resumes an earlier run
    run = trainer.run()
    try:
        for update in run:
            score = update.validation_psnr
            if best is not None and update.checkpoint and score is not None and score > best:
                best = score
                write_atomically(trainer.run_dir / BEST_FILE, partial(shutil.copyfile, update.checkpoint))
            yield update
            if minutes is not None and time.perf_counter() - began >= 60.0 * minutes:
                break
    finally:
        run.close()  # checkpoints the last finished episode


BEST_FILE = "best.safetensors"
"""Where :func:`fine_tune` keeps the best policy on the held-out crops, the starting one included."""


def _floor_at_start(trainer: Trainer) -> float | None:
    """Held-out PSNR of the best policy so far in ``trainer``'s folder, writing the start there on a new run.

    ``None`` when the run does not validate (no held-out crops, or ``validate_every=0``): nothing to compare.
    """
    best_file = trainer.run_dir / BEST_FILE
    if best_file.exists():
        return read_header(best_file)["training"]["stages"][-1]["validation_psnr"]
    if not trainer.config.validate_every or not trainer.validation or trainer.episode > 0:
        return None
    trainer.last_validation = score = trainer.validate()
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(trainer.policy(), best_file)
    trainer.last_validation = None  # the start's score belongs to best.safetensors, not to the trained policy
    return score


def best_policy_file(run_dir: str | os.PathLike[str]) -> Path:
    """The policy of a :func:`fine_tune` run to use: ``best.safetensors`` (the best on the held-out crops, the
    starting policy included) where the run kept one, else the last episode's ``policy.safetensors`` (missing
    while no episode has finished)."""
    best, last = Path(run_dir) / BEST_FILE, Path(run_dir) / POLICY_FILE
    return best if best.exists() and last.exists() else last


def episodes_in(minutes: float, seconds_per_episode: float) -> int:
    """Episodes that fit in ``minutes`` at ``seconds_per_episode``, keeping 10% of the time for validation."""
    return max(1, int(60.0 * minutes / (1.1 * seconds_per_episode)))


def episodes_for_minutes(policy: Policy, minutes: float, **settings: object) -> int:
    """How many episodes of :func:`fine_tune` fit in ``minutes`` here (:func:`episodes_in` of a measurement).

    ``settings``: ``batch_size``, ``crop_size``, ``objective``, ``device``, ``precision`` as for
    :func:`estimate_episode_seconds`.
    """
    return episodes_in(minutes, estimate_episode_seconds(policy, **settings))


def estimate_episode_seconds(
    policy: Policy,
    *,
    batch_size: int = 16,
    crop_size: int = 48,
    objective: str = "pathwise",
    device: str = "auto",
    precision: str = "float32",
) -> float:
    """Seconds one training episode of :func:`fine_tune` takes here, measured on random crops (to plan a budget).

    Runs two episodes (forward and backward) on a copy of the network and returns the faster; ``policy`` is not
    changed. Validation, every ``validate_every`` episodes, adds a little on top.
    """
    target = resolve_device(device)
    precision = usable_precision(precision, target)
    model = copy.deepcopy(policy.model).to(target, memory_format=torch.channels_last).train()
    config = TrainConfig(
        objective=objective, batch_size=batch_size, crop_size=crop_size, steps=policy.steps, precision=precision
    )
    rng = np.random.default_rng(0)
    clean = rng.random((batch_size, policy.action_set.channels, crop_size, crop_size), dtype=np.float32)
    noisy = degrade(clean, NoiseModel(sigma=25.0), rng)
    clean_t, noisy_t = (
        torch.from_numpy(a).to(target).contiguous(memory_format=torch.channels_last) for a in (clean, noisy)
    )
    times = []
    for _ in range(2):
        start = time.perf_counter()
        episode_loss(model, clean_t, noisy_t, config, policy.action_set, None, PRECISIONS[precision]).loss.backward()
        times.append(time.perf_counter() - start)
    return min(times)
