"""Peak memory and time of the napari Restore panel on a large image, in a real viewer (needs a display:
run under ``xvfb-run -a``).

    xvfb-run -a python benchmarks/widget_memory.py --size 8192 [--values]
    xvfb-run -a python benchmarks/widget_memory.py --size 512 --planes 16     # a 3-D stack (Z, Y, X)

The image is the same noisy 8-bit photo as in ``scale.py`` (a stack: one noise draw per plane); the panel
restores it with its defaults (tiles from the memory budget) and adds the restored image and action map layers
(and the value map with ``--values``). Reports the process's peak resident memory, which includes napari, Qt and
the layers.
"""

from __future__ import annotations

import argparse
import resource
import time

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from scale import noisy_photo

from napari_pixelrl._napari.restore_widget import RestoreWidget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--values", action="store_true", help="also add the value map layer")
    parser.add_argument("--planes", type=int, default=0, help="a 3-D stack of this many planes instead of 2-D")
    args = parser.parse_args()
    viewer = napari.Viewer(show=False)
    if args.planes:
        image = np.stack([noisy_photo(args.size, seed) for seed in range(args.planes)])
    else:
        image = noisy_photo(args.size)
    viewer.add_image(image, name="noisy")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")
    assert isinstance(widget, RestoreWidget)
    widget.value_map_box.setChecked(args.values)
    start = time.perf_counter()
    widget.run()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    layers = [layer.name for layer in viewer.layers]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB
    megapixels = image.size / 1e6
    values = "on" if args.values else "off"
    shape = "x".join(map(str, image.shape))
    print(f"| napari Restore panel | {shape} | value map {values} | {seconds:.0f} s "
          f"| {seconds / megapixels:.1f} s/MP | {peak:.2f} GiB | layers: {', '.join(layers)} |")  # fmt: skip
    viewer.close()


if __name__ == "__main__":
    main()
