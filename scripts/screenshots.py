"""Make the screenshots of docs/napari.md with a real napari window and the plugin, as a user would see it.

Needs a display; on a headless machine run it under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py [--out docs/images]

PNGs are saved true-colour (RGB): a palette would shift the action colours (tests/test_docs.py checks them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from napari_pixelrl.core.render import action_montage

WINDOW = (1500, 900)


def wait_for(widget) -> None:
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


def save(pixels: np.ndarray, path: Path, width: int | None = None, trim: bool = False) -> None:
    pixels = np.asarray(pixels)[..., :3]
    if trim:  # drop the black canvas around the data
        rows, cols = np.flatnonzero(pixels.any(axis=(1, 2))), np.flatnonzero(pixels.any(axis=(0, 2)))
        pixels = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    picture = Image.fromarray(pixels)
    if width is not None and picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.LANCZOS)
    picture.save(path, optimize=True)
    print(f"{path}: {picture.width}x{picture.height}, {path.stat().st_size // 1024} KiB")


def hover(viewer, layer, y: float, x: float) -> None:
    """Put the cursor over data pixel (y, x) of ``layer`` and update the status bar, as a mouse move would."""
    viewer.cursor.position = (*viewer.cursor.position[:-2], *layer.data_to_world((y, x))[-2:])
    viewer.update_status_from_cursor()
    QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-pixelrl")
    viewer.window._qt_window.resize(*WINDOW)
    noisy, _ = viewer.open_sample("napari-pixelrl", "camera-gaussian-25")[::-1]
    restore_dock, widget = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")
    widget.select_layer(noisy.name)
    widget.run()
    wait_for(widget)
    actions = viewer.layers[f"actions: {noisy.name} (gaussian-25)"]
    viewer.layers.selection.active = actions
    viewer.dims.set_current_step(0, 0)
    hover(viewer, actions, 180, 300)
    save(viewer.screenshot(canvas_only=False), out / "restore-widget.png", width=1200)

    actions.visible = False
    values = viewer.layers[f"values: {noisy.name} (gaussian-25)"]
    values.visible = True
    viewer.layers.selection.active = values
    shots = []
    for step in (0, actions.data.shape[0] - 1):  # first and last: the contrast follows the slider
        viewer.dims.set_current_step(0, step)
        QApplication.processEvents()
        shots.append(np.asarray(viewer.screenshot(canvas_only=True))[..., :3])
    gap = np.full((shots[0].shape[0], 16, 3), 255, np.uint8)
    save(np.concatenate([shots[0], gap, shots[1]], axis=1), out / "value-map.png", width=840)
    values.visible = False
    viewer.dims.set_current_step(0, 0)

    chosen = actions.data - 1  # labels are action index + 1
    montage = action_montage(chosen[:, 96:352, 96:352], widget.policy.action_set)
    save(np.asarray(montage), out / "action-steps.png", width=1200)

    viewer.layers.clear()
    noisy, _ = viewer.open_sample("napari-pixelrl", "cell-poisson-gaussian")[::-1]
    widget.policy_box.setCurrentIndex(widget.policy_box.findData("poisson-gaussian"))
    widget.select_layer(noisy.name)
    widget.action_map_box.setChecked(False)
    widget.value_map_box.setChecked(False)
    widget.run()
    wait_for(widget)
    viewer.grid.enabled = True
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    save(viewer.screenshot(canvas_only=True), out / "cell-restored.png", width=800, trim=True)
    viewer.grid.enabled = False
    viewer.layers.clear()
    noisy, _ = viewer.open_sample("napari-pixelrl", "cell-poisson-gaussian")[::-1]
    viewer.window.remove_dock_widget(restore_dock)
    _, trainer = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Train")
    trainer.set_source("noisy")
    trainer.first_layer.select(noisy.name)
    trainer.budget_unit.setCurrentText("episodes")
    trainer.budget.setValue(40)
    trainer.batch_size.setValue(8)
    trainer.crop_size.setValue(32)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer.folder.setText(run_dir)
        trainer.train()
        wait_for(trainer)
    viewer.reset_view()
    QApplication.processEvents()
    save(viewer.screenshot(canvas_only=False), out / "train-widget.png", width=1200)
    viewer.close()


if __name__ == "__main__":
    main()
