"""Reproduce the shipped policies from their recipes (``recipes/<name>.json``) and optionally install them.

    python scripts/train_shipped.py gaussian-25            # trains its prerequisites first (warmstart)
    python scripts/train_shipped.py --all --ship           # everything, then copy into the package

Each recipe's first stage starts from another run's policy (``runs/<prerequisite>/policy.safetensors``, or a
trunk kept in the repository, ``training/<trunk>/policy.safetensors``); missing prerequisites are trained first.
Runs resume where they stopped (run the same command again). ``--ship`` copies ``runs/<name>/policy.safetensors``
to ``src/napari_pixelrl/core/weights/<name>.safetensors``. The training record inside each policy (stages,
configs, episodes, wall time, machine, seed, data fingerprint, source commit) says how it was made;
``recipes/README.md`` lists the recipes and their costs. The trunks that the ``*-cnn`` policies' tenth action
runs ship in ``weights/estimators/trunk-<σ or noise kind>[.v<N>].safetensors``, copies of ``training/trunk-<...>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from color_images import write_color_images  # scripts/color_images.py

from napari_pixelrl import api, cli
from napari_pixelrl.core.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
WEIGHTS = ROOT / "src" / "napari_pixelrl" / "core" / "weights"
SHIPPED = tuple(api.list_policies())  # every policy in the package has its recipe


def prerequisite(name: str) -> Path | None:
    """The run folder a recipe starts from, read from its first stage's ``init``: ``runs/<name>`` or, for the
    trunks kept in the repository, ``training/<name>`` (each trained by ``recipes/<name>.json``)."""
    init = Recipe.load(RECIPES / f"{name}.json").stages[0].init
    return Path(init).parent if init and init.startswith(("runs/", "training/")) else None


def train(name: str, folder: Path) -> None:
    """Train ``name`` after its prerequisites, into ``folder``."""
    before = prerequisite(name)
    if before and not (before / "policy.safetensors").is_file():
        train(before.name, before)
    data = Path(Recipe.load(RECIPES / f"{name}.json").stages[0].data)
    if data == Path("runs/color-images") and not data.is_dir():
        write_color_images(data)  # made from scikit-image's bundled photographs
    print(f"== {name}", flush=True)
    code = cli.main(["train", str(folder), "--config", str(RECIPES / f"{name}.json")])
    if code != 0:
        sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"recipes to train (shipped: {', '.join(SHIPPED)})")
    parser.add_argument("--all", action="store_true", help="train every shipped policy")
    parser.add_argument("--ship", action="store_true", help="copy the results into the package")
    args = parser.parse_args()
    os.chdir(ROOT)  # recipes name data and runs relative to the repository root
    runs = Path("runs")
    names = list(SHIPPED) if args.all else args.names
    if not names:
        parser.error("name a recipe or pass --all")
    for name in names:
        train(name, runs / name)
        if args.ship:
            WEIGHTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runs / name / "policy.safetensors", WEIGHTS / f"{name}.safetensors")
            print(f"shipped {WEIGHTS / f'{name}.safetensors'}")


if __name__ == "__main__":
    main()
