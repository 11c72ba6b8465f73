"""Configuration dataclasses, one per concern, shared by the API, the CLI and checkpoint metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the PixelRL fully convolutional network.

    The defaults are the paper's denoising network (487,179 parameters with the 33x33 RMC filter).
    """

    in_channels: int = 1
    """Channels of the image the network sees (1 for grayscale)."""
    width: int = 64
    """Feature channels of every hidden convolution."""
    trunk_dilations: tuple[int, ...] = (1, 2, 3, 4)
    """Dilation of each 3x3 trunk convolution; the first maps ``in_channels`` to ``width``."""
    branch_dilations: tuple[int, ...] = (3, 2)
    """Dilation of each 3x3 convolution in the policy branch and (separately) the value branch."""
    n_actions: int = 9
    """Number of actions, i.e. policy output channels."""
    reward_filter_size: int = 33
    """Side of the reward map convolution (RMC) filter; odd."""

    def __post_init__(self) -> None:
        # Stored as tuples even when read back from JSON lists.
        object.__setattr__(self, "trunk_dilations", tuple(int(d) for d in self.trunk_dilations))
        object.__setattr__(self, "branch_dilations", tuple(int(d) for d in self.branch_dilations))
        if self.width < 1 or self.n_actions < 1 or self.in_channels < 1 or not self.trunk_dilations:
            raise ValueError(f"invalid ModelConfig: {self}")
        if self.reward_filter_size < 1 or self.reward_filter_size % 2 == 0:
            raise ValueError(f"reward_filter_size must be odd and positive, got {self.reward_filter_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**_known(cls, data))


PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class InferenceConfig:
    """How a policy is run on an image."""

    steps: int | None = None
    """Episode length T; ``None`` uses the policy's own (5 for denoising)."""
    device: str = "auto"
    """``"auto"`` (CUDA, then MPS, then CPU), or any ``torch.device`` string."""
    return_values: bool = False
    """Also run the value branch and return the per-step value map."""
    precision: str = "float32"
    """Arithmetic of the network: ``"float32"`` (exact, the default) or ``"bfloat16"`` (autocast; about 1.7x
    faster on CPUs with native bfloat16 such as recent AMD EPYC / Intel Xeon, not bit-exact)."""
    tile_size: int | None = None
    """Side of each tile's core in pixels (a halo comes on top); ``None``: from ``memory_budget``."""
    memory_budget: int | None = None
    """Bytes one batch of tiles may use; ``None``: a quarter of the free memory, at most 1.5 GiB, on a CPU and
    half the free memory on a GPU."""

    def __post_init__(self) -> None:
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("tile_size", "memory_budget"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")

    @property
    def network_dtype(self) -> torch.dtype | None:
        """Autocast dtype for the network, or ``None`` for plain float32."""
        return PRECISIONS[self.precision]


TASKS = {
    "gaussian": "Gaussian noise",
    "poisson-gaussian": "microscopy noise (Poisson-Gaussian)",
    "salt-and-pepper": "salt-and-pepper noise",
    "text": "overlaid text",
    "fading": "faded colours (RGB)",
}
"""What a policy restores, by the kind of degradation it was trained to undo: kind -> label for users."""
NOISE_KINDS = tuple(TASKS)
RGB_TASKS = ("fading",)
"""Tasks whose policies restore RGB images (the colour action set); the others restore grayscale planes."""
_PARAMETERS = ("sigma", "gain", "density", "font_size", "strength")  # the Level fields of a NoiseModel
_NO_SIGMA = ("salt-and-pepper", "text", "fading")  # kinds without Gaussian noise
TEXT_FONT_SIZE = (10.0, 20.0)
FADING_STRENGTH = 0.15

Level = float | tuple[float, float]
"""A noise parameter: one value, or a ``(low, high)`` range drawn uniformly per image (a blind policy)."""


def _as_level(value: Any, name: str) -> Level | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if len(value) != 2 or not 0 <= float(value[0]) <= float(value[1]):
            raise ValueError(f"{name} range must be (low, high) with 0 <= low <= high, got {value!r}")
        return (float(value[0]), float(value[1]))
    if float(value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class NoiseModel:
    """The degradation a policy is trained for (recorded in checkpoints) and that training data is given.

    Every parameter is one value or a ``(low, high)`` range drawn uniformly per image.

    * ``"gaussian"``: ``y = x + N(0, sigma/255)``.
    * ``"poisson-gaussian"`` (fluorescence microscopy): ``y = gain · Poisson(x / gain) + N(0, sigma/255)``, where
      ``gain`` is the intensity of one photon on the [0, 1] scale (``1/gain`` photons at full scale: 0.01 is a bright
      100-photon image, 0.1 a dim 10-photon one) and ``sigma`` the camera's read noise on the 0-255 scale.
    * ``"salt-and-pepper"``: a fraction ``density`` of the pixels set to 0 or 1 with equal odds.
    * ``"text"`` (blind inpainting): random strings of letters and digits in random grey levels, drawn with
      Pillow's built-in font of ``font_size`` pixels (default 10-20) at random places, until a fraction ``density``
      of the pixels is covered (:func:`~napari_pixelrl.core.noise.overlay_text`).
    * ``"fading"`` (RGB images): lower saturation and contrast, a warm cast and lifted blacks, all set by one
      ``strength`` (default 0.15) (:func:`~napari_pixelrl.core.noise.fade_colors`).
    """

    kind: str = "gaussian"
    """One of :data:`NOISE_KINDS`: ``"gaussian"``, ``"poisson-gaussian"``, ``"salt-and-pepper"``, ``"text"``,
    ``"fading"``."""
    sigma: Level | None = 25.0
    """Gaussian standard deviation on the 0-255 scale (read noise for Poisson-Gaussian); ``None`` when unknown."""
    gain: Level | None = None
    """Poisson-Gaussian only: intensity of one photon on the [0, 1] scale."""
    density: Level | None = None
    """Salt-and-pepper and text only: fraction of pixels replaced."""
    font_size: Level | None = None
    """Text only: height of the font in pixels (default 10-20)."""
    strength: Level | None = None
    """Fading only: how far colours fade (default 0.15; see :func:`~.noise.fade_colors`)."""

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if self.kind in _NO_SIGMA:
            object.__setattr__(self, "sigma", None)
        if self.kind == "text" and self.font_size is None:
            object.__setattr__(self, "font_size", TEXT_FONT_SIZE)
        if self.kind == "fading" and self.strength is None:
            object.__setattr__(self, "strength", FADING_STRENGTH)
        for name in _PARAMETERS:
            object.__setattr__(self, name, _as_level(getattr(self, name), name))
        if self.kind == "poisson-gaussian" and self.gain is None:
            raise ValueError("a poisson-gaussian noise model needs a gain (intensity of one photon)")
        if self.kind in ("salt-and-pepper", "text") and self.density is None:
            raise ValueError(f"a {self.kind} noise model needs a density (fraction of pixels replaced)")
        if self.density is not None and max(_levels(self.density)) > 1:
            raise ValueError(f"density is a fraction of the pixels, at most 1; got {self.density!r}")
        if self.font_size is not None and min(_levels(self.font_size)) < 4:
            raise ValueError(f"font_size must be at least 4 pixels, got {self.font_size!r}")

    @property
    def uses_sigma(self) -> bool:
        """Whether this kind adds Gaussian noise of level ``sigma`` (not salt-and-pepper, text or colour)."""
        return self.kind not in _NO_SIGMA

    @property
    def is_blind(self) -> bool:
        """True when some parameter is a range rather than one value."""
        return any(isinstance(getattr(self, name), tuple) for name in _PARAMETERS)

    def typical(self) -> NoiseModel:
        """The same model with every range replaced by its middle (a fixed example of what a blind policy meets)."""
        middle = {
            n: sum(v) / 2 if isinstance(v, tuple) else v for n in _PARAMETERS if (v := getattr(self, n)) is not None
        }
        return NoiseModel(kind=self.kind, **{"sigma": None, **middle})

    def describe(self) -> str:
        """Short human-readable form, e.g. ``"gaussian sigma=5-55"``."""

        def fmt(v: Level) -> str:
            return f"{v[0]:g}-{v[1]:g}" if isinstance(v, tuple) else f"{v:g}"

        parts = [f"{n}={fmt(v)}" for n in _PARAMETERS if (v := getattr(self, n)) is not None]
        return " ".join([self.kind, *parts])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseModel:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**_known(cls, data))


def _levels(level: Level) -> tuple[float, ...]:
    return level if isinstance(level, tuple) else (level,)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return dict(data)


OBJECTIVES = ("a2c", "expected-reward", "natural-reward", "imitation", "lookahead", "pathwise", "denoiser")
CROP_WEIGHTS = ("equal", "psnr")
ROLLOUTS = ("sample", "greedy")
RESUMABLE_CHANGES = ("device", "precision", "log_every")
"""TrainConfig fields that a run may resume with changed: where it runs, its arithmetic (bfloat16 only where native;
a stage longer than a session continues on whatever host the next session gets) and how densely it logs."""


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. The defaults are the paper's denoising recipe (A2C with RMC, σ = 25).

    ``objective`` picks the loss:

    * ``"a2c"``: the paper's multi-step per-pixel advantage actor-critic with reward map convolution.
    * ``"expected-reward"``: the same, except that the policy term is the exact expected one-step reward
      ``-Σ_a π(a|s) r(a)`` (every action's reward is known during training): no sampling noise, a fast start.
    * ``"natural-reward"``: the natural policy gradient of that expected reward for a softmax per pixel (Kakade,
      NIPS 2001): each action's logit moves by its exact one-step advantage ``r(a) - Σ_b π(b|s) r(b)``, not by
      ``π(a|s)`` times it, so an action whose probability has fallen near zero still gets its whole advantage
      (tried on ``gaussian-blind-cnn`` to revive its per-σ estimates, which it did not: docs/training.md).
    * ``"imitation"``: the same, except that the policy term is behaviour cloning of the per-pixel greedy oracle
      (the action that most lowers each pixel's error, known during training), weighted by how much the choice
      matters at that pixel.
    * ``"lookahead"``: imitation of a look-ahead oracle instead: with ``k`` steps left, ±1 steps can still move a
      pixel ``k`` grey levels, so every action whose result lies within ``k`` grey levels of the clean value is a
      target, and beyond that the one that leaves the least error ``max(0, |x - a(s)| - k/255)²``.
    * ``"pathwise"``: the exact expected one-step reward, plus the error left after the later steps,
      backpropagated through the rollout (each step's chosen action forward, π's gradient backward:
      straight-through), so that a step also learns what the later steps' filters make of its change.
    * ``"denoiser"``: supervised warm start of the trunk and value branch as a residual denoiser (mean squared
      error), the network shape the authors initialised from; a later stage copies it into both branches.
    """

    objective: str = "a2c"
    """``"a2c"``, ``"expected-reward"``, ``"natural-reward"``, ``"imitation"``, ``"lookahead"``, ``"pathwise"`` or
    ``"denoiser"``."""
    data: str = ""
    """Folder of clean training images (8-bit grayscale or any image scaled to [0, 1] by its dtype)."""
    noise: NoiseModel = field(default_factory=NoiseModel)
    """Degradation applied freshly to every crop in every episode."""
    init: str | None = None
    """Start from this policy (shipped name or checkpoint path); ``None`` starts from random weights."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape when starting from random weights (ignored with ``init``)."""
    action_set: str = "denoise"
    """Registered action set of the policy."""
    episodes: int = 30_000
    """Number of updates (one per episode)."""
    batch_size: int = 64
    """Crops per episode."""
    crop_size: int = 70
    """Side of the square random crops."""
    steps: int = 5
    """Episode length T."""
    rollout: str = "sample"
    """How the episode moves on: ``"sample"`` actions from the policy (the paper) or take its ``"greedy"`` argmax
    (useful with ``"imitation"``: the states seen in training are then those seen when restoring)."""
    crop_weights: str = "equal"
    """How the crops of a batch share the policy term: ``"equal"`` (the paper: the mean over all pixels, so crops
    with more error, e.g. higher noise, weigh more) or ``"psnr"`` (each crop weighted by one over its initial mean
    error, normalised to mean 1 over the batch: the gradient of the mean PSNR, so that a blind policy learns low
    noise levels as well as high ones; in a ``"denoiser"`` stage it weights each crop's squared error)."""
    gamma: float = 0.95
    """Discount γ."""
    entropy_beta: float = 0.01
    """Weight β of the entropy bonus."""
    value_weight: float = 0.5
    """Weight of the value loss ½(R - V)²."""
    reward_map_conv: bool = True
    """Use the learned reward map convolution in the returns (the paper's RMC); off: ``R_t = r_t + γ R_{t+1}``."""
    lr: float = 1e-3
    """Adam learning rate at episode 0."""
    lr_power: float = 0.9
    """Polynomial decay ``lr · (1 - episode/episodes)^lr_power``."""
    max_rotation: float = 10.0
    """Random rotation of each crop, degrees either way (0 turns it off). The paper's augmentation; its bilinear
    interpolation blurs the clean crops, which costs a denoiser trained on them about 0.1 dB on real images
    (docs/training.md), so our later recipes turn it off."""
    flip: bool = True
    """Random horizontal flips."""
    quarter_turns: bool = False
    """Random turns of each crop by a multiple of 90° (exact; with ``flip``, all eight orientations)."""
    seed: int = 0
    """Seeds crops, noise, action sampling and weight initialisation."""
    validation_images: int = 8
    """The last N training files (sorted) are held out and scored greedily for validation PSNR."""
    validation_crop: int = 128
    """Side of the centre crop of each validation image."""
    validate_every: int = 100
    """Episodes between validations (0: never)."""
    checkpoint_every: int = 100
    """Episodes between checkpoints (the last episode always writes one)."""
    log_every: int = 1
    """Episodes between lines of ``log.jsonl`` (validated episodes and the last are always logged): long stages
    whose run folder is kept in the repository log every 50th, so that 40,000 episodes make 0.4 MB, not 19."""
    device: str = "auto"
    """``"auto"`` (CUDA, then MPS, then CPU) or a torch device string."""
    precision: str = "float32"
    """``"float32"`` or ``"bfloat16"`` (autocast of the network on supporting hardware)."""

    def __post_init__(self) -> None:
        if isinstance(self.noise, dict):
            object.__setattr__(self, "noise", NoiseModel.from_dict(self.noise))
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {', '.join(ROLLOUTS)}, got {self.rollout!r}")
        if self.crop_weights not in CROP_WEIGHTS:
            raise ValueError(f"crop_weights must be one of {', '.join(CROP_WEIGHTS)}, got {self.crop_weights!r}")
        positive = ("episodes", "batch_size", "steps", "crop_size", "validation_crop", "log_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be at least 8 pixels, got {self.crop_size}")
        if not 0 <= self.gamma <= 1 or self.lr <= 0 or self.entropy_beta < 0 or self.value_weight < 0:
            raise ValueError("need 0 <= gamma <= 1, lr > 0, entropy_beta >= 0 and value_weight >= 0")
        if self.noise.sigma is None and self.noise.uses_sigma:
            raise ValueError("training needs a noise level: set noise.sigma")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (nested noise and model configs as dictionaries)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**_known(cls, data))
