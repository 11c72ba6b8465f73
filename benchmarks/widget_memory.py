"""Peak memory and time of the napari Restore panel on a large image, in a real viewer (needs a display:
run under ``xvfb-run -a``).

    xvfb-run -a python benchmarks/widget_memory.py --size 8192 [--values]

The image is the same noisy 8-bit photo as in ``scale.py``; the panel restores it with its defaults (tiles from
the memory budget) and adds the restored image and action map layers (and the value map with ``--values``).
Reports the process's peak resident memory, which includes napari, Qt and the layers.
"""

from __future__ import annotations

import argparse
import resource
import time

import napari
from qtpy.QtWidgets import QApplication
from scale import noisy_photo

from napari_pixelrl._napari.restore_widget import RestoreWidget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--values", action="store_true", help="also add the value map layer")
    args = parser.parse_args()
    viewer = napari.Viewer(show=False)
    viewer.add_image(noisy_photo(args.size), name="noisy")
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
    megapixels = args.size**2 / 1e6
    values = "on" if args.values else "off"
    print(f"| napari Restore panel | {args.size}x{args.size} | value map {values} | {seconds:.0f} s "
          f"| {seconds / megapixels:.1f} s/MP | {peak:.2f} GiB | layers: {', '.join(layers)} |")  # fmt: skip
    viewer.close()


if __name__ == "__main__":
    main()
