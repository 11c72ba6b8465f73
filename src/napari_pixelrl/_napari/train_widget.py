"""The Train dock widget: fine-tune a policy on the user's own layers, with live curves, a preview and Cancel.

The widget gathers settings and layers, builds the training data with the :mod:`napari_pixelrl.api` helpers and
runs :func:`napari_pixelrl.api.fine_tune` in a napari ``thread_worker``. The worker yields one update per episode;
Cancel asks it to stop after the current episode, which saves the policy (nothing trained is lost). The finished
(or cancelled) policy joins the session's policy list, so the Restore panel offers it at once.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error, show_info
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..api import (
    BEST_FILE,
    best_policy_file,
    clean_images,
    default_intensity_range,
    episodes_for_minutes,
    episodes_in,
    estimate_episode_seconds,
    fine_tune,
    load_policy,
    noisy_clean_pairs,
    noisy_images,
    noisy_pairs,
    restore,
)
from ..core.checkpoint import read_header
from ..core.config import RGB_TASKS, NoiseModel
from ..core.noise import degrade_image
from ..core.sources import TrainingData
from ..core.trainer import TrainUpdate
from .curves import CurvePlot
from .layers import layer_image
from .pickers import SESSION_POLICIES, LayerPicker, PolicyPicker, TaskPicker, available_devices, is_image
from .workers import USER_ERRORS, Failed

__all__ = ["SOURCES", "TrainWidget"]

SOURCES = {
    "clean": (
        "clean image + noise model",
        "You have a clean image: PixelRL adds noise of the kind you describe, anew each episode, and learns to "
        "remove it.",
    ),
    "pairs": (
        "noisy + clean images",
        "You have a noisy image and a clean one of the same field (e.g. the average of many frames): PixelRL "
        "learns to turn the first into the second.",
    ),
    "noisy-pairs": (
        "two noisy images",
        "You have two noisy images of the same field taken one after the other: each serves as the other's "
        "target; because their noise differs, only the shared signal can be learnt.",
    ),
    "noisy": (
        "noisy image or stack only",
        "You have only noisy data: PixelRL splits each image into two half-size images from neighbouring pixels "
        "(or pairs consecutive frames of a stack) and uses each as the other's target.",
    ),
}
"""Training data kinds: key -> (label, one-sentence explanation)."""

PREVIEW_SIZE = 128
ROOT = Path.home() / "napari-pixelrl" / "runs"
"""Where runs go unless the user picks a folder."""


class Planned(NamedTuple):
    """First message of a run: the budget in episodes (measured from the minutes, when given in minutes)."""

    episodes: int


class TrainProgress(NamedTuple):
    """One episode done, and the preview region restored by the latest checkpoint (when one was written)."""

    update: TrainUpdate
    preview: np.ndarray | None


class Preview(NamedTuple):
    """A region to restore during training: input, its intensity range, its top-left corner in the layer, and its
    units as ``(offset, scale)``: a layer value ``v`` is ``(v - offset) / scale`` here."""

    image: np.ndarray
    intensity_range: tuple[float, float]
    corner: tuple[int, int]
    units: tuple[float, float] = (0.0, 1.0)


@thread_worker
def _fine_tune_in_background(
    policy_key: str,
    data: TrainingData,
    run_dir: Path,
    budget: tuple[str, float],
    settings: dict,
    preview: Preview | None,
    stop: threading.Event,
) -> Generator[Planned | TrainProgress, None, Path | Failed]:
    """Plan the budget, train, restore the preview after each checkpoint; stop after the episode when asked.

    User errors come back as :class:`~.workers.Failed` (see there for why).
    """
    try:
        policy = load_policy(policy_key)  # a private copy: the Restore panel may use its own at the same time
        unit, amount = budget
        plan = {key: settings[key] for key in ("batch_size", "crop_size", "objective", "device")}
        episodes = max(1, round(amount)) if unit == "episodes" else episodes_for_minutes(policy, amount, **plan)
        yield Planned(episodes)
        minutes = amount if unit == "minutes" else None
        updates = fine_tune(policy, data, run_dir, episodes=episodes, minutes=minutes, name=run_dir.name, **settings)
        with closing(updates):  # closing saves the last finished episode
            for update in updates:
                restored = None
                if preview is not None and update.checkpoint:
                    current = load_policy(update.checkpoint)
                    restored = restore(preview.image, current, intensity_range=preview.intensity_range).image
                yield TrainProgress(update, restored)
                if stop.is_set():
                    break
        return best_policy_file(run_dir)
    except USER_ERRORS as err:
        return Failed(str(err))


def default_crop_size(shape: tuple[int, ...], neighbours: bool) -> int:
    """Training crop side for an image of ``shape``: 48, or less for small images (a multiple of 8, >= 16)."""
    usable = int(min(shape[-2] * 0.9, shape[-1])) // (2 if neighbours else 1)
    return int(max(16, min(48, usable // 8 * 8)))


class TrainWidget(QWidget):
    """Dock widget that fine-tunes a PixelRL policy on the viewer's layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are the training data; the preview layer goes there too.
    """

    def __init__(self, napari_viewer: Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker: GeneratorWorker | None = None
        self._stop = threading.Event()
        self._episodes = 0
        self._result: Path | None = None
        self._preview_layer: Image | None = None
        self._preview_region: Preview | None = None
        self._source_layer: Image | None = None
        self._started = 0.0

        self.source_box = QComboBox()
        for key, (label, explanation) in SOURCES.items():
            self.source_box.addItem(label, key)
            self.source_box.setItemData(self.source_box.count() - 1, explanation, Qt.ItemDataRole.ToolTipRole)
        self.source_info = QLabel()
        self.source_info.setWordWrap(True)
        self.first_label, self.second_label = QLabel(), QLabel()
        self.first_layer = LayerPicker(napari_viewer, is_image)
        self.second_layer = LayerPicker(napari_viewer, is_image)
        self.method_box = QComboBox()
        self.method_box.addItem("neighbouring pixels", "neighbours")
        self.method_box.addItem("consecutive frames (stack)", "frames")
        self.task_box = TaskPicker("poisson-gaussian", allow_all=False)
        self.task_box.setToolTip(
            "What the policy learns to undo: the degradation added to a clean image, and the shipped policies to "
            "start from"
        )
        self.sigma = QDoubleSpinBox()
        self.sigma.setRange(0.0, 255.0)
        self.sigma.setValue(25.0)
        self.sigma.setToolTip("Gaussian σ, or the camera's read noise for Poisson-Gaussian, in grey levels of 255")
        self.gain = QDoubleSpinBox()
        self.gain.setDecimals(4)
        self.gain.setRange(0.0001, 1.0)
        self.gain.setValue(0.03)
        self.gain.setToolTip("Poisson-Gaussian: brightness of one photon on the [0, 1] scale (1 / photons at white)")
        self.density = QDoubleSpinBox()
        self.density.setRange(0.01, 0.99)
        self.density.setSingleStep(0.05)
        self.density.setValue(0.2)
        self.density.setToolTip("Salt-and-pepper, text: fraction of the pixels replaced")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(0.15)
        self.strength.setToolTip("Fading (RGB): how far the colours have faded (0.15 is the shipped policy's)")
        self.policy_box = PolicyPicker("poisson-gaussian")
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.1, 100000)
        self.budget.setValue(5.0)
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["minutes", "episodes"])
        self.estimate_label = QLabel("press Estimate for the time per episode")
        self.estimate_label.setWordWrap(True)
        self.estimate_button = QPushButton("Estimate")
        self.device_box = QComboBox()
        for label, device in available_devices():
            self.device_box.addItem(label, device)

        self.advanced = QGroupBox("advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self.objective = QComboBox()
        self.objective.addItems(["pathwise", "expected-reward", "a2c"])
        self.objective.setToolTip(
            "pathwise (default): learns each step's own reward and what the later steps make of it; "
            "expected-reward: the step's own reward only (a little faster per episode); a2c: the paper's actor-critic"
        )
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1e-2)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(3e-4)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(16)
        self.crop_size = QSpinBox()
        self.crop_size.setRange(8, 512)
        self.crop_size.setValue(48)
        self.crop_size.setToolTip("Side of the square training crops; follows the image size until you change it")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(f"automatic: {ROOT}/<layer>-<date-time>")
        advanced_form = QFormLayout(self.advanced)
        advanced_form.addRow("objective", self.objective)
        advanced_form.addRow("learning rate", self.lr)
        advanced_form.addRow("batch size", self.batch_size)
        advanced_form.addRow("crop size", self.crop_size)
        advanced_form.addRow("seed", self.seed)
        advanced_form.addRow("output folder", self.folder)
        self.advanced.toggled.connect(self._fold_advanced)
        self._fold_advanced(False)

        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save policy as…")
        self.save_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.reward_plot = CurvePlot("per episode")
        self.reward_plot.add_series("reward", "#ff7f0e")
        self.reward_plot.add_series("loss", "#1f77b4")
        self.psnr_plot = CurvePlot("held-out region")
        self.psnr_plot.add_series("PSNR dB", "#2ca02c")

        form = QFormLayout()
        form.addRow("data", self.source_box)
        form.addRow("", self.source_info)
        form.addRow(self.first_label, self.first_layer)
        form.addRow(self.second_label, self.second_layer)
        form.addRow("pairs from", self.method_box)
        self.noise_row = QWidget()
        noise = QHBoxLayout(self.noise_row)
        noise.setContentsMargins(0, 0, 0, 0)
        self._noise_fields = {}
        fields = (("σ", self.sigma), ("gain", self.gain), ("density", self.density), ("strength", self.strength))
        for name, widget in fields:
            label = QLabel(name)
            noise.addWidget(label)
            noise.addWidget(widget)
            self._noise_fields[name] = (label, widget)
        form.addRow("task", self.task_box)
        form.addRow("noise", self.noise_row)
        form.addRow("start from", self.policy_box)
        budget = QHBoxLayout()
        budget.addWidget(self.budget)
        budget.addWidget(self.budget_unit)
        budget.addWidget(self.estimate_button)
        form.addRow("budget", budget)
        form.addRow("", self.estimate_label)
        form.addRow("device", self.device_box)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.reward_plot)
        layout.addWidget(self.psnr_plot)
        layout.addWidget(self.save_button)

        self.task_box.task_changed.connect(self._on_task_changed)
        self.source_box.currentIndexChanged.connect(self._on_source_changed)
        self.first_layer.currentIndexChanged.connect(self._suggest_crop_size)
        self.method_box.currentIndexChanged.connect(self._suggest_crop_size)
        self.crop_size.valueChanged.connect(self._crop_size_edited)
        self.estimate_button.clicked.connect(self.estimate)
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._save_as)
        self._crop_size_chosen = self._suggesting = False
        self._on_source_changed()
        self._on_task_changed(self.task_box.task)

    # --- settings ------------------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """Key of the chosen kind of training data (see :data:`SOURCES`)."""
        return self.source_box.currentData()

    def set_source(self, key: str) -> None:
        """Choose the kind of training data by key."""
        self.source_box.setCurrentIndex(self.source_box.findData(key))

    def _on_source_changed(self, index: int = 0) -> None:
        labels = {
            "clean": ("clean image", None),
            "pairs": ("noisy image", "clean image"),
            "noisy-pairs": ("noisy image 1", "noisy image 2"),
            "noisy": ("noisy image", None),
        }[self.source]
        if self.source == "pairs" and self.task_box.task in RGB_TASKS:  # a colour style: before/after pairs
            labels = ("before (RGB)", "after (RGB)")
        self.first_label.setText(labels[0])
        self.second_label.setText(labels[1] or "")
        noisy_target = self.source in ("noisy", "noisy-pairs")
        self.psnr_plot.title = "held-out region, against noisy data" if noisy_target else "held-out region"
        self.psnr_plot.setToolTip(
            "PSNR of the held-out bottom 10% of the image, restored by the latest policy, against its target. "
            + (
                "Your target here is itself noisy: the PSNR stays low and moves little even when the policy "
                "improves; the preview layer shows the progress better."
                if noisy_target
                else "Higher is better."
            )
        )
        self.psnr_plot.update()
        self.second_label.setVisible(labels[1] is not None)
        self.second_layer.setVisible(labels[1] is not None)
        self.method_box.setEnabled(self.source == "noisy")
        self.noise_row.setEnabled(self.source == "clean")
        self.source_info.setText(SOURCES[self.source][1])
        self._suggest_crop_size()

    def _on_task_changed(self, task: str) -> None:
        self.policy_box.set_task(task)
        shown = {"gaussian": ("σ",), "poisson-gaussian": ("σ", "gain"), "fading": ("strength",)}.get(task, ("density",))
        for name, pair in self._noise_fields.items():
            for widget in pair:
                widget.setVisible(name in shown)
        self._on_source_changed()

    def _fold_advanced(self, unfolded: bool) -> None:
        for child in self.advanced.findChildren(QWidget):
            child.setVisible(unfolded)

    def _crop_size_edited(self) -> None:
        self._crop_size_chosen = not self._suggesting

    def _suggest_crop_size(self, *args: object) -> None:
        layer = self.first_layer.layer()
        if layer is None or self._crop_size_chosen:
            return
        neighbours = self.source == "noisy" and self.method_box.currentData() == "neighbours"
        self._suggesting = True
        shape = tuple(layer.data.shape)[: -1 if layer.rgb else None]  # an RGB layer's colour axis is no plane axis
        self.crop_size.setValue(default_crop_size(shape, neighbours))
        self._suggesting = False

    def _settings(self) -> dict:
        return {
            "objective": self.objective.currentText(),
            "lr": self.lr.value(),
            "batch_size": self.batch_size.value(),
            "crop_size": self.crop_size.value(),
            "seed": self.seed.value(),
            "device": self.device_box.currentData(),
            "validate_every": 10,
        }

    def _noise(self) -> NoiseModel:
        task = self.task_box.task
        if task == "gaussian":
            return NoiseModel(kind="gaussian", sigma=self.sigma.value())
        if task == "poisson-gaussian":
            return NoiseModel(kind="poisson-gaussian", sigma=self.sigma.value(), gain=self.gain.value())
        if task == "fading":
            return NoiseModel(kind="fading", strength=self.strength.value())
        return NoiseModel(kind=task, density=self.density.value())

    def _data(self) -> tuple[TrainingData, Image, Preview]:
        """Training data and the preview region from the chosen layers; raises ValueError with the fix."""
        first = self.first_layer.layer()
        if first is None:
            raise ValueError("there is no image layer to train on; open an image or a sample first")
        image = layer_image(first)  # an image, a stack of planes, or one RGB image
        planes = [image] if image.ndim == 2 or first.rgb else list(image)
        middle = planes[len(planes) // 2]
        source = self.source
        if source == "noisy":
            if self.method_box.currentData() == "frames":
                if image.ndim != 3:
                    raise ValueError(f"layer {first.name!r} is not a stack (N, H, W); pairs from neighbouring pixels")
                return noisy_images(image, method="frames"), first, self._preview(middle, image, None)
            return noisy_images(image), first, self._preview(middle, image, None)
        whole = default_intensity_range(image)  # a stack is restored with one range: train with it too
        if source == "clean":
            data = clean_images(planes, self._noise(), intensity_range=whole)
            return data, first, self._preview(middle, image, self._noise())
        second = self.second_layer.layer()
        if second is None or second is first:
            raise ValueError(f"choose a second image layer ({self.second_label.text()}) different from the first")
        other = layer_image(second)
        if other.shape != image.shape:
            raise ValueError(
                f"{first.name!r} is {image.shape} and {second.name!r} is {other.shape}: pairs must be the same size"
            )
        pairs = list(zip(planes, [other] if other.ndim == 2 or second.rgb else list(other), strict=True))
        helper = noisy_clean_pairs if source == "pairs" else noisy_pairs
        data = helper(pairs, intensity_range=whole)
        return data, first, self._preview(middle, image, None)

    def _preview(self, image: np.ndarray, whole: np.ndarray, noise: NoiseModel | None) -> Preview:
        """The centre of a plane (at most 128x128), mapped with the range of the ``whole`` layer as restoring it
        would; degraded with ``noise`` when the image is clean. An RGB(A) image keeps its colour axis last."""
        top, left = (max(0, (n - PREVIEW_SIZE) // 2) for n in image.shape[:2])
        crop = image[top : top + PREVIEW_SIZE, left : left + PREVIEW_SIZE]
        low, high = default_intensity_range(whole)
        if noise is None:
            return Preview(np.ascontiguousarray(crop), (low, high), (top, left))
        unit = (crop.astype(np.float32) - low) / (high - low)
        unit = unit[..., :3] if noise.kind in RGB_TASKS else unit  # colour: RGB without alpha
        return Preview(degrade_image(unit, noise, np.random.default_rng(0)), (0.0, 1.0), (top, left), (low, high - low))

    def _run_dir(self, layer: Image) -> Path:
        if self.folder.text().strip():
            return Path(self.folder.text().strip()).expanduser()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in layer.name).strip("-") or "policy"
        return ROOT / f"{name}-{stamp}"

    # --- estimate ------------------------------------------------------------------------------------------

    def estimate(self) -> None:
        """Measure the time per episode with the current settings (in the background) and show the budget."""
        settings, policy = self._settings(), self.policy_box.policy
        self.estimate_label.setText("measuring…")
        worker = thread_worker(estimate_episode_seconds)(
            policy,
            batch_size=settings["batch_size"],
            crop_size=settings["crop_size"],
            objective=settings["objective"],
            device=settings["device"],
        )
        worker.returned.connect(self._show_estimate)
        worker.start()

    def _show_estimate(self, seconds: float) -> None:
        amount = self.budget.value()
        if self.budget_unit.currentText() == "minutes":
            text = f"≈ {seconds:.1f} s per episode: about {episodes_in(amount, seconds)} episodes"
        else:
            text = f"≈ {seconds:.1f} s per episode: about {amount * seconds / 60:.1f} minutes"
        self.estimate_label.setText(text)

    # --- running -------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether training is in progress."""
        return self._worker is not None

    def train(self) -> GeneratorWorker | None:
        """Start fine-tuning in a background thread; returns the worker (``None`` if nothing started)."""
        if self._worker is not None:
            return None
        try:
            data, layer, preview = self._data()
        except (TypeError, ValueError) as err:
            show_error(f"PixelRL: {err}")
            return None
        run_dir = self._run_dir(layer)
        self._stop.clear()
        if layer is not self._source_layer:
            self._preview_layer = None  # a new preview layer for another image
        self._result, self._source_layer, self._preview_region = None, layer, preview
        self.reward_plot.clear()
        self.psnr_plot.clear()
        worker = _fine_tune_in_background(
            self.policy_box.currentData(),
            data,
            run_dir,
            (self.budget_unit.currentText(), self.budget.value()),
            self._settings(),
            preview,
            self._stop,
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.status.setText(f"measuring the time per episode, then training into {run_dir}…")
        self._set_running(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the current episode; the policy trained so far is saved and offered for restoring."""
        if self._worker is not None:
            self._stop.set()
            self.status.setText("stopping after this episode; the policy so far will be saved…")

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(not running and self._result is not None)
        for control in (self.source_box, self.first_layer, self.second_layer, self.policy_box, self.advanced):
            control.setEnabled(not running)

    def _on_progress(self, message: Planned | TrainProgress) -> None:
        if isinstance(message, Planned):
            self._episodes = message.episodes
            self._started = time.perf_counter()
            self.progress.setRange(0, message.episodes)
            self.progress.setFormat("episode %v of %m")
            return
        update = message.update
        self.progress.setValue(update.episode)
        self.reward_plot.add_point("reward", update.episode, update.reward)
        self.reward_plot.add_point("loss", update.episode, update.loss)
        if update.validation_psnr is not None:
            self.psnr_plot.add_point("PSNR dB", update.episode, update.validation_psnr)
        per_episode = (time.perf_counter() - self._started) / max(1, update.episode)
        remaining = per_episode * (self._episodes - update.episode)
        self.status.setText(
            f"episode {update.episode}: reward {update.reward:.3f}, about {remaining / 60:.1f} min left"
        )
        if message.preview is not None:
            self._show_preview(message.preview)

    def _show_preview(self, restored: np.ndarray) -> None:
        if self._preview_layer is None or self._preview_layer not in self.viewer.layers:
            source, region = self._source_layer, self._preview_region
            top, left = region.corner
            scale = tuple(source.scale[-2:])
            translate = (source.translate[-2] + top * scale[0], source.translate[-1] + left * scale[1])
            offset, unit = region.units
            self._preview_layer = self.viewer.add_image(
                restored,
                name=f"{source.name} preview (training)",
                scale=scale,
                translate=translate,
                contrast_limits=[(limit - offset) / unit for limit in source.contrast_limits],  # shown as the layer
            )
        else:
            self._preview_layer.data = restored

    def _on_done(self, result: Path | Failed) -> None:
        if isinstance(result, Failed):
            self.status.setText(f"failed: {result.message}")
            show_error(f"PixelRL: {result.message}")
            return
        if not result.exists():
            self.status.setText("stopped before the first episode finished; nothing was saved")
            return
        self._result = result
        SESSION_POLICIES.add(result)
        done = "stopped" if self._stop.is_set() else "finished"
        kept = ""
        if result.name == BEST_FILE:  # the best on the held-out region, which may be the starting policy
            stage = read_header(result)["training"]["stages"][-1]
            kept = (
                " (no episode beat the starting policy on the held-out region: it is kept unchanged)"
                if stage["episodes_done"] == 0
                else f" (episode {stage['episodes_done']}, the best on the held-out region: "
                f"{stage['validation_psnr']:.2f} dB)"
            )
        self.status.setText(f"{done}; the policy{kept} is in {result} and listed in the Restore panel")
        show_info(f"PixelRL: training {done}; policy saved to {result}{kept}")

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _save_as(self) -> None:
        if self._result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the policy", f"{self._result.parent.name}.safetensors")
        if path:
            self.save_policy(path)

    def save_policy(self, path: str | Path) -> Path:
        """Copy the last trained policy to ``path`` (and list it in the policy pickers)."""
        if self._result is None:
            raise ValueError("no policy has been trained yet")
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(self._result, tmp)
        tmp.replace(target)
        SESSION_POLICIES.add(target)
        return target
