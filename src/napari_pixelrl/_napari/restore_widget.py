"""The Restore dock widget: pick an image layer and a policy, run it in a background thread, show why pixels changed.

The widget holds no algorithm: it gathers settings, runs :func:`napari_pixelrl.api.restore_steps` in a napari
``thread_worker`` (one progress update per step; Cancel stops at the next one) and hands the result to
:func:`~napari_pixelrl._napari.layers.show_restoration`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..api import Restoration, RestoreProgress, list_policies, load_policy, restore_steps
from ..core.actions import ActionSet
from ..core.checkpoint import CheckpointError, Policy
from ..core.render import action_shares
from .layers import METADATA_KEY, layer_image, show_restoration

__all__ = ["RestoreWidget", "restore_selected_layer"]

_LOAD_FILE = "__load_file__"
"""Data of the policy picker's last entry, which opens a file dialog."""
_POLICY_FILES = "PixelRL policies (*.safetensors *.npz);;All files (*)"
MAX_STEPS = 50


class _Failed(NamedTuple):
    """What went wrong in the worker, in words for the user."""

    message: str


@thread_worker
def _restore_in_background(
    image: np.ndarray, policy: Policy, steps: int, device: str, values: bool
) -> Generator[RestoreProgress, None, Restoration | _Failed]:
    """Errors a user can act on (device, memory, failures inside torch) come back as a :class:`_Failed` result
    rather than an exception: the panel shows them as a plain notification, and superqt, which takes a
    RuntimeError out of a generator (or an exception returned by it) for an aborted thread, would otherwise
    never report them."""
    try:
        return (yield from restore_steps(image, policy, steps=steps, device=device, return_values=values))
    except (RuntimeError, ValueError, MemoryError) as err:
        return _Failed(str(err))


def available_devices() -> list[tuple[str, str]]:
    """``(label, device)`` for the device picker: auto, the CPU, each CUDA device, and MPS when present."""
    devices = [("auto (GPU if present)", "auto"), ("cpu", "cpu")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append((f"cuda:{index} ({torch.cuda.get_device_name(index)})", f"cuda:{index}"))
    if torch.backends.mps.is_available():
        devices.append(("mps (Apple GPU)", "mps"))
    return devices


class RestoreWidget(QWidget):
    """Dock widget that restores an image layer with a PixelRL policy and adds the result, action map and value map.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are listed and receive the results.
    """

    def __init__(self, napari_viewer: Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._policies: dict[str, Policy] = {}
        self._policy_key = ""
        self._worker: GeneratorWorker | None = None
        self._restored = False
        self._started = 0.0

        self.layer_box = QComboBox()
        self.layer_box.setToolTip("Image layer to restore (2-D grayscale). It is never modified.")
        self.policy_box = QComboBox()
        self.policy_box.setToolTip("Shipped policies, policies you loaded, or load a checkpoint file")
        self.policy_info = QLabel()
        self.policy_info.setWordWrap(True)
        self.steps = QSpinBox()
        self.steps.setRange(1, MAX_STEPS)
        self.steps.setToolTip("Episode length: how many times each pixel picks an action (default: the policy's)")
        self.device_box = QComboBox()
        for label, device in available_devices():
            self.device_box.addItem(label, device)
        self.action_map_box = QCheckBox("action map")
        self.action_map_box.setChecked(True)
        self.action_map_box.setToolTip("Add a Labels layer (steps, H, W): the action each pixel took at each step")
        self.value_map_box = QCheckBox("value map")
        self.value_map_box.setChecked(True)
        self.value_map_box.setToolTip("Add an Image layer (steps, H, W): the critic's expected future reward")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("step %v of %m")
        self.progress.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.legend = QTableWidget()
        self.legend.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.legend.verticalHeader().setVisible(False)
        self.legend.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.legend.setMinimumWidth(320)
        self.legend.setToolTip("Share of pixels that took each action at each step of the last run")

        form = QFormLayout()
        form.addRow("image", self.layer_box)
        form.addRow("policy", self.policy_box)
        form.addRow("", self.policy_info)
        form.addRow("steps", self.steps)
        form.addRow("device", self.device_box)
        outputs = QHBoxLayout()
        outputs.addWidget(self.action_map_box)
        outputs.addWidget(self.value_map_box)
        form.addRow("show", outputs)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("actions: % of pixels at each step"))
        layout.addWidget(self.legend)

        for name, description in list_policies().items():
            self.policy_box.addItem(name, name)
            self.policy_box.setItemData(self.policy_box.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.policy_box.addItem("load checkpoint…", _LOAD_FILE)
        default = self.policy_box.findData("gaussian-25")
        self.policy_box.setCurrentIndex(max(default, 0))
        self._on_policy_chosen(self.policy_box.currentIndex())

        self.policy_box.currentIndexChanged.connect(self._on_policy_chosen)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._refresh_layers)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        events.inserted.connect(self._watch_layer)
        self._refresh_layers()

    # --- pickers -------------------------------------------------------------------------------------------

    def _refresh_layers(self, event: object = None) -> None:
        current = self.layer_box.currentData()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and layer.metadata.get(METADATA_KEY, {}).get("role") != "values":
                self.layer_box.addItem(layer.name, layer.unique_id)
        self.layer_box.blockSignals(False)
        active = self.viewer.layers.selection.active
        if self.layer_box.findData(current) >= 0:
            self.layer_box.setCurrentIndex(self.layer_box.findData(current))
        elif isinstance(active, Image) and self.layer_box.findData(active.unique_id) >= 0:
            self.layer_box.setCurrentIndex(self.layer_box.findData(active.unique_id))

    def _watch_layer(self, event: object) -> None:
        event.value.events.name.connect(self._refresh_layers)

    def _selected_layer(self) -> Image | None:
        for layer in self.viewer.layers:
            if layer.unique_id == self.layer_box.currentData():
                return layer
        return None

    def select_layer(self, name: str) -> None:
        """Make the image layer called ``name`` the one to restore."""
        index = self.layer_box.findText(name)
        if index < 0:
            raise ValueError(f"no image layer named {name!r} in the viewer")
        self.layer_box.setCurrentIndex(index)

    def _on_policy_chosen(self, index: int) -> None:
        key = self.policy_box.itemData(index)
        if key == _LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Load a PixelRL policy", "", _POLICY_FILES)
            if path:
                self.add_policy_file(path)
            else:
                self._select_policy_key(self._policy_key)
            return
        try:
            policy = self._load(key)
        except CheckpointError as err:
            show_error(f"could not load policy {key!r}: {err}")
            self._select_policy_key(self._policy_key)
            return
        self._policy_key = key
        self.steps.setValue(min(policy.steps, MAX_STEPS))
        description = policy.description or "no description"
        self.policy_info.setText(f"{description}\ntrained for {policy.noise_model.describe()}, {policy.steps} steps")
        self._show_legend(policy.action_set)

    def _load(self, key: str) -> Policy:
        if key not in self._policies:
            self._policies[key] = load_policy(key)
        return self._policies[key]

    def _select_policy_key(self, key: str) -> None:
        self.policy_box.blockSignals(True)
        self.policy_box.setCurrentIndex(max(self.policy_box.findData(key), 0))
        self.policy_box.blockSignals(False)

    def add_policy_file(self, path: str | Path) -> Policy | None:
        """Load a policy file (ours or the authors' ``.npz``), add it to the picker and select it.

        Returns the policy, or ``None`` (with an error notification) when the file cannot be loaded.
        """
        key = str(Path(path).expanduser().resolve())
        try:
            policy = self._load(key)
        except CheckpointError as err:
            show_error(f"could not load {Path(path).name}: {err}")
            self._select_policy_key(self._policy_key)
            return None
        if self.policy_box.findData(key) < 0:
            # Inserting before the current entry moves the current index: no signal for that.
            self.policy_box.blockSignals(True)
            self.policy_box.insertItem(self.policy_box.count() - 1, f"{policy.name} ({Path(key).name})", key)
            self.policy_box.setItemData(self.policy_box.findData(key), key, Qt.ItemDataRole.ToolTipRole)
            self.policy_box.blockSignals(False)
        self.policy_box.setCurrentIndex(self.policy_box.findData(key))
        return policy

    @property
    def policy(self) -> Policy:
        """The selected policy."""
        return self._load(self._policy_key)

    # --- running -------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a restoration is in progress."""
        return self._worker is not None

    def run(self) -> GeneratorWorker | None:
        """Restore the selected layer in a background thread; returns the worker (``None`` if nothing started)."""
        if self._worker is not None:
            return None
        source = self._selected_layer()
        if source is None:
            show_warning("PixelRL: there is no image layer to restore; open an image or a sample first")
            return None
        try:
            image = layer_image(source)
        except (TypeError, ValueError) as err:
            show_error(f"PixelRL: {err}")
            return None
        policy, action_map = self.policy, self.action_map_box.isChecked()
        steps = self.steps.value()
        worker = _restore_in_background(
            image, policy, steps, self.device_box.currentData(), self.value_map_box.isChecked()
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(partial(self._on_restored, source, policy, action_map))
        worker.aborted.connect(self._on_cancelled)
        worker.errored.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker, self._restored = worker, False
        self._started = time.perf_counter()
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self.status.setText(f"restoring {source.name} with {policy.name}…")
        self._set_running(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running restoration after its current step; nothing is added to the viewer."""
        if self._worker is not None:
            self.status.setText("cancelling after this step…")
            self._worker.quit()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for control in (self.layer_box, self.policy_box, self.steps, self.device_box):
            control.setEnabled(not running)

    def _on_progress(self, progress: RestoreProgress) -> None:
        self.progress.setValue(progress.done)

    def _on_restored(self, source: Image, policy: Policy, action_map: bool, result: Restoration | _Failed) -> None:
        self._restored = True
        if isinstance(result, _Failed):
            self.status.setText(f"failed: {result.message}")
            show_error(f"PixelRL: {result.message}")
            return
        layers = show_restoration(self.viewer, source, result, policy, action_map=action_map)
        seconds = time.perf_counter() - self._started
        self.status.setText(f"{layers.image.name}: {seconds:.1f} s")
        self._show_legend(policy.action_set, action_shares(result.actions, len(policy.action_set)))

    def _on_cancelled(self) -> None:
        self._restored = True  # reported once
        self.status.setText("cancelled; nothing was added")
        show_info("PixelRL: restoration cancelled")

    def _on_failed(self, error: Exception) -> None:
        # napari's worker already shows the error as a notification; keep it in the widget too.
        self.status.setText(f"failed: {error}")

    def _on_finished(self) -> None:
        if self._worker is not None and self._worker.abort_requested and not self._restored:
            self._on_cancelled()
        self._worker = None
        self._set_running(False)

    # --- legend --------------------------------------------------------------------------------------------

    def _show_legend(self, action_set: ActionSet, shares: np.ndarray | None = None) -> None:
        """One row per action (colour swatch and name), one column per step with its share of pixels."""
        steps = 0 if shares is None else shares.shape[0]
        self.legend.clear()
        self.legend.setRowCount(len(action_set))
        self.legend.setColumnCount(1 + steps)
        self.legend.setHorizontalHeaderLabels(["action", *(str(t + 1) for t in range(steps))])
        for row, (name, color) in enumerate(zip(action_set.names, action_set.colors, strict=True)):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(*color))
            item = QTableWidgetItem(name)
            item.setIcon(QIcon(swatch))
            self.legend.setItem(row, 0, item)
            for t in range(steps):
                cell = QTableWidgetItem(f"{100 * shares[t, row]:.0f}")
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.legend.setItem(row, 1 + t, cell)
        header = self.legend.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column in range(1, 1 + steps):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)


def restore_selected_layer(viewer: Viewer) -> None:
    """Menu command (*Layers > Filter*): open the Restore widget on the selected image layer."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")
    active = viewer.layers.selection.active
    if isinstance(active, Image):
        widget.select_layer(active.name)
    elif active is not None:
        show_warning(f"PixelRL restores image layers; {active.name!r} is a {type(active).__name__} layer")
