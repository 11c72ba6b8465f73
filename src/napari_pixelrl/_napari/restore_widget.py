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

import numpy as np
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
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

from ..api import Restoration, RestoreProgress, check_noise, restore_steps
from ..core.actions import ActionSet
from ..core.checkpoint import Policy
from ..core.render import action_shares
from .layers import LayerData, layer_data, show_restoration
from .pickers import LayerPicker, PolicyPicker, TaskPicker, available_devices, is_image
from .workers import USER_ERRORS, Failed

__all__ = ["RestoreWidget", "restore_selected_layer"]

MAX_STEPS = 50


@thread_worker
def _restore_in_background(
    image: LayerData, policy: Policy, steps: int, device: str, values: bool
) -> Generator[RestoreProgress, None, Restoration | Failed]:
    """Restore in the worker thread; user errors come back as :class:`~.workers.Failed` (see there for why)."""
    try:
        return (
            yield from restore_steps(
                image.data, policy, steps=steps, device=device, return_values=values, rgb=image.rgb
            )
        )
    except USER_ERRORS as err:
        return Failed(str(err))


@thread_worker
def _check_noise_in_background(image: LayerData, policy: Policy) -> str:
    """The noise row's text for ``image`` and ``policy`` (its estimate reads the whole plane: seconds on 16 M
    pixels, so never in the UI thread)."""
    try:
        check = check_noise(image.data, policy, rgb=image.rgb)
    except ValueError as err:
        return f"not checked: {err}"
    return "" if check is None else ("" if check.fits else "⚠ ") + check.advice


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
        self._worker: GeneratorWorker | None = None
        self._restored = False
        self._started = 0.0
        self._noise_checks: list[GeneratorWorker] = []  # running checks; only the latest one's answer is shown

        self.layer_box = LayerPicker(napari_viewer, is_image)
        self.layer_box.setToolTip("Image layer to restore: a 2-D grayscale image or a 3-D stack. It is never modified.")
        self.task_box = TaskPicker()
        self.policy_box = PolicyPicker("gaussian-25")
        self.policy_info = QLabel()
        self.policy_info.setWordWrap(True)
        self.noise_info = QLabel()
        self.noise_info.setWordWrap(True)
        self.noise_info.setToolTip("The noise of the image as the policy would see it, against what it was trained for")
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
        self.progress.setFormat("no run yet")  # "%v of %m steps" once a run starts
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
        form.addRow("task", self.task_box)
        form.addRow("policy", self.policy_box)
        form.addRow("", self.policy_info)
        form.addRow("noise", self.noise_info)
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

        self.task_box.task_changed.connect(self.policy_box.set_task)
        self.policy_box.policy_changed.connect(self._on_policy_chosen)
        self.layer_box.currentIndexChanged.connect(self._check_noise)
        self._on_policy_chosen(self.policy_box.policy)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    # --- pickers -------------------------------------------------------------------------------------------

    def select_layer(self, name: str) -> None:
        """Make the image layer called ``name`` the one to restore."""
        self.layer_box.select(name)

    def add_policy_file(self, path: str | Path) -> Policy | None:
        """Load a policy file (ours or the authors' ``.npz``), list it in every panel and select it here.

        Returns the policy, or ``None`` (with an error notification) when the file cannot be loaded.
        """
        return self.policy_box.add_file(path)

    def _on_policy_chosen(self, policy: Policy) -> None:
        self.steps.setValue(min(policy.steps, MAX_STEPS))
        description = policy.description or "no description"
        self.policy_info.setText(f"{description}\ntrained for {policy.noise_model.describe()}, {policy.steps} steps")
        self._show_legend(policy.action_set)
        self._check_noise()

    def _check_noise(self, *args: object) -> None:
        """Say, in a background thread, whether the chosen image's noise fits the chosen policy (in-memory images
        up to 16 M pixels)."""
        layer = self.layer_box.layer()
        try:
            source = layer_data(layer) if layer is not None else None
        except (TypeError, ValueError):
            source = None
        if source is None or not isinstance(source.data, np.ndarray) or source.data.size > 2**24:
            self._noise_checks.clear()  # an answer still on its way is for another image: it is not shown
            self.noise_info.setText("" if source is None else "not checked here (large or lazy image)")
            return
        self.noise_info.setText("checking the noise …")
        worker = _check_noise_in_background(source, self.policy)
        worker.returned.connect(partial(self._show_noise_check, worker))
        worker.finished.connect(partial(self._forget_noise_check, worker))
        self._noise_checks.append(worker)
        worker.start()

    @property
    def checking_noise(self) -> bool:
        """Whether a noise check is in progress."""
        return bool(self._noise_checks)

    def _show_noise_check(self, worker: GeneratorWorker, text: str) -> None:
        if self._noise_checks and worker is self._noise_checks[-1]:
            self.noise_info.setText(text)

    def _forget_noise_check(self, worker: GeneratorWorker) -> None:
        if worker in self._noise_checks:
            self._noise_checks.remove(worker)

    @property
    def policy(self) -> Policy:
        """The selected policy."""
        return self.policy_box.policy

    # --- running -------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a restoration is in progress."""
        return self._worker is not None

    def run(self) -> GeneratorWorker | None:
        """Restore the selected layer in a background thread; returns the worker (``None`` if nothing started)."""
        if self._worker is not None:
            return None
        source = self.layer_box.layer()
        if source is None:
            show_warning("PixelRL: there is no image layer to restore; open an image or a sample first")
            return None
        try:
            image = layer_data(source)
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
        self.progress.setFormat("%v of %m steps")
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
        self.progress.setRange(0, progress.total)  # steps x planes (x tiles) of the image
        self.progress.setValue(progress.done)

    def _on_restored(self, source: Image, policy: Policy, action_map: bool, result: Restoration | Failed) -> None:
        self._restored = True
        if isinstance(result, Failed):
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
        self.legend.setHorizontalHeaderLabels(["action", *(f"step {t}" for t in range(steps))])
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
