"""Write the colour training images of the shipped ``color`` policy: photographs bundled with scikit-image.

    python scripts/color_images.py runs/color-images

Six images to train on (astronaut, coffee, rocket, Hubble deep field, the left stereo motorcycle, retina) and, last
in sorted order so that training holds it out, *chelsea* for validation. ``benchmarks/tasks.py`` scores on
*chelsea* and *immunohistochemistry*, which training never sees as a training image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from skimage import data, io

TRAIN = {
    "astronaut": data.astronaut,
    "coffee": data.coffee,
    "rocket": data.rocket,
    "hubble": data.hubble_deep_field,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
    "retina": data.retina,
}
VALIDATION = {"chelsea": data.chelsea}


def write_color_images(folder: str | Path) -> Path:
    """Write the training images as ``1-astronaut.png`` ... and the validation image as ``9-chelsea.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, load) in enumerate(TRAIN.items(), start=1):
        io.imsave(folder / f"{i}-{name}.png", load(), check_contrast=False)
    for name, load in VALIDATION.items():
        io.imsave(folder / f"9-{name}.png", load(), check_contrast=False)
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    print(write_color_images(parser.parse_args().folder))
