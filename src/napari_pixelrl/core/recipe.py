"""Training recipes: named sequences of :class:`~napari_pixelrl.core.config.TrainConfig` stages, read from JSON.

A recipe file is either one stage (a ``TrainConfig`` as a dictionary) or::

    {"name": "gaussian-25", "description": "...", "defaults": {...shared stage fields...},
     "stages": [{...stage 1...}, {...stage 2...}]}

Each stage starts from the previous stage's policy unless it names its own ``init``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import TrainConfig

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """A named sequence of training stages.

    Attributes
    ----------
    stages : tuple of TrainConfig
        Run in order; stage ``k + 1`` starts from stage ``k``'s policy unless its ``init`` is set.
    name : str
        Name given to the final policy (default: the run folder's name).
    description : str
        One-line description stored in the final policy.
    """

    stages: tuple[TrainConfig, ...]
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a recipe needs at least one stage")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Read the JSON form (see the module docstring); unknown keys are an error."""
        if "stages" not in data:
            return cls((TrainConfig.from_dict(data),))
        unknown = set(data) - {"name", "description", "defaults", "stages"}
        if unknown:
            raise ValueError(f"unknown recipe fields: {sorted(unknown)}")
        defaults = data.get("defaults", {})
        stages = tuple(TrainConfig.from_dict({**defaults, **stage}) for stage in data["stages"])
        return cls(stages, str(data.get("name", "")), str(data.get("description", "")))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        """Read a recipe (or single-stage config) JSON file.

        Raises
        ------
        ValueError
            If the file is not valid JSON or not a valid recipe; the message names the file.
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a valid training config or recipe ({err})") from err

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with every stage written out in full."""
        return {"name": self.name, "description": self.description, "stages": [s.to_dict() for s in self.stages]}

    def with_changes(self, **changes: Any) -> Recipe:
        """The same recipe with ``changes`` applied to every stage (e.g. ``device="cuda"``)."""
        return replace(self, stages=tuple(replace(stage, **changes) for stage in self.stages))

    def stage_dirs(self, run_dir: str | os.PathLike[str]) -> list[Path]:
        """Folder of each stage: ``run_dir`` itself for one stage, else ``run_dir/stage<k>-<objective>``."""
        run_dir = Path(run_dir)
        if len(self.stages) == 1:
            return [run_dir]
        return [run_dir / f"stage{k}-{stage.objective}" for k, stage in enumerate(self.stages, start=1)]
