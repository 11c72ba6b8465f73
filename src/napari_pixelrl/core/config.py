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
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)


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

    def __post_init__(self) -> None:
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")

    @property
    def network_dtype(self) -> torch.dtype | None:
        """Autocast dtype for the network, or ``None`` for plain float32."""
        return PRECISIONS[self.precision]


@dataclass(frozen=True)
class NoiseModel:
    """The degradation a policy was trained for (recorded in checkpoints)."""

    kind: str = "gaussian"
    """``"gaussian"`` for now."""
    sigma: float | None = 25.0
    """Standard deviation on the 0-255 scale; ``None`` when unknown or blind."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further parameters of other noise kinds."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)
