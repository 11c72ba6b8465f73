"""Pickers shared by the Restore and Train panels: image layers of the viewer, policies, devices.

Policy files trained or loaded during the napari session are kept in :data:`SESSION_POLICIES`; every policy picker
lists them and learns of new ones at once (a policy fine-tuned in the Train panel appears in the Restore panel).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from napari.layers import Image, Layer
from napari.utils.notifications import show_error
from napari.viewer import Viewer
from psygnal import Signal
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from ..api import TASKS, list_policies, load_policy
from ..core.checkpoint import CheckpointError, Policy
from .layers import METADATA_KEY

__all__ = ["SESSION_POLICIES", "LayerPicker", "PolicyFiles", "PolicyPicker", "TaskPicker", "available_devices"]

_LOAD_FILE = "__load_file__"
"""Data of the policy picker's last entry, which opens a file dialog."""
_POLICY_FILES = "PixelRL policies (*.safetensors *.npz);;All files (*)"


def available_devices() -> list[tuple[str, str]]:
    """``(label, device)`` for a device picker: auto, the CPU, each CUDA device, and MPS when present."""
    devices = [("auto (GPU if present)", "auto"), ("cpu", "cpu")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append((f"cuda:{index} ({torch.cuda.get_device_name(index)})", f"cuda:{index}"))
    if torch.backends.mps.is_available():
        devices.append(("mps (Apple GPU)", "mps"))
    return devices


class PolicyFiles:
    """Policy files of this napari session. ``changed`` is emitted with a file's path each time it is added or
    rewritten (pickers then reload it)."""

    changed = Signal(str)

    def __init__(self) -> None:
        self._paths: list[str] = []

    @property
    def paths(self) -> list[str]:
        """Known files, oldest first."""
        return list(self._paths)

    def add(self, path: str | Path) -> str:
        """Add (or announce a new version of) a policy file; returns its resolved path."""
        key = str(Path(path).expanduser().resolve())
        if key not in self._paths:
            self._paths.append(key)
        self.changed.emit(key)
        return key


SESSION_POLICIES = PolicyFiles()


class LayerPicker(QComboBox):
    """The viewer's layers that ``accept`` keeps, by identity: a renamed layer stays chosen.

    Follows the viewer as layers are added, removed, moved or renamed; when the chosen layer disappears, the
    active layer (if acceptable) becomes the choice.
    """

    def __init__(self, viewer: Viewer, accept: Callable[[Layer], bool], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.accept = viewer, accept
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self.refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _watch_name(self, event: object) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: object = None) -> None:
        """Rebuild the list from the viewer, keeping the current choice when it still exists."""
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        for layer in self.viewer.layers:
            if self.accept(layer):
                self.addItem(layer.name, layer.unique_id)
        self.blockSignals(False)
        active = self.viewer.layers.selection.active
        if self.findData(current) >= 0:
            self.setCurrentIndex(self.findData(current))
        elif active is not None and self.findData(active.unique_id) >= 0:
            self.setCurrentIndex(self.findData(active.unique_id))
        self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Layer | None:
        """The chosen layer, or ``None`` when there is none."""
        for layer in self.viewer.layers:
            if layer.unique_id == self.currentData():
                return layer
        return None

    def select(self, name: str) -> None:
        """Choose the layer called ``name``."""
        index = self.findText(name)
        if index < 0:
            raise ValueError(f"no suitable layer named {name!r} in the viewer")
        self.setCurrentIndex(index)


def is_image(layer: Layer) -> bool:
    """Image layers, except the value maps PixelRL made (stacks of steps, not images to restore)."""
    return isinstance(layer, Image) and layer.metadata.get(METADATA_KEY, {}).get("role") != "values"


class TaskPicker(QComboBox):
    """What to restore: the kinds of degradation of :data:`~napari_pixelrl.api.TASKS` (data: the kind, or ``None``
    for *all tasks* when ``allow_all``). ``task_changed`` is emitted with the new choice."""

    task_changed = Signal(object)

    def __init__(self, default: str | None = None, allow_all: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip("What to restore; the policy list shows the policies made for it")
        if allow_all:
            self.addItem("all tasks", None)
        for kind, label in TASKS.items():
            self.addItem(label, kind)
        self.setCurrentIndex(max(self.findData(default), 0))
        self.currentIndexChanged.connect(lambda index: self.task_changed.emit(self.itemData(index)))

    @property
    def task(self) -> str | None:
        """The chosen task (a key of ``TASKS``), or ``None`` for all tasks."""
        return self.currentData()

    def set_task(self, task: str | None) -> None:
        """Choose a task by key (``None``: all tasks)."""
        index = self.findData(task)
        if index < 0:
            raise ValueError(f"no task {task!r} here; choose one of {', '.join(TASKS)}")
        self.setCurrentIndex(index)


class PolicyPicker(QComboBox):
    """Shipped policies (description as tooltip), this session's policy files, and *load checkpoint…*.

    ``policy_changed`` is emitted with the newly chosen :class:`Policy`. A file that cannot be loaded gives an
    error notification and the choice stays as it was.
    """

    policy_changed = Signal(object)

    def __init__(self, default: str = "gaussian-25", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip("Shipped policies, policies of this session, or load a checkpoint file")
        self._policies: dict[str, Policy] = {}
        self._key = ""
        self._shipped = list_policies()
        for name, description in self._shipped.items():
            self.addItem(name, name)
            self.setItemData(self.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.addItem("load checkpoint…", _LOAD_FILE)
        for path in SESSION_POLICIES.paths:
            self._offer(path)
        self.setCurrentIndex(max(self.findData(default), 0))
        self._on_chosen(self.currentIndex())
        self.currentIndexChanged.connect(self._on_chosen)
        SESSION_POLICIES.changed.connect(self._on_session_file)
        # The session list outlives the panels: stop listening when this picker's Qt object goes.
        listener = self._on_session_file
        self.destroyed.connect(lambda *_: SESSION_POLICIES.changed.disconnect(listener))

    def set_task(self, task: str | None) -> None:
        """List only the shipped policies for ``task`` (``None``: all; this session's files stay listed). When the
        chosen policy is no longer listed, the first one for the task is chosen; with none for the task, the chosen
        one stays."""
        wanted = list_policies(task) or {k: d for k, d in self._shipped.items() if k == self._key}
        self.blockSignals(True)
        for name in self._shipped:
            if self.findData(name) >= 0:
                self.removeItem(self.findData(name))
        for position, (name, description) in enumerate(wanted.items()):
            self.insertItem(position, name, name)
            self.setItemData(position, description, Qt.ItemDataRole.ToolTipRole)
        self.blockSignals(False)
        if self.findData(self._key) >= 0:
            self._select_key(self._key)
        elif wanted:
            first = next(iter(wanted))
            self._select_key(first)
            self._on_chosen(self.findData(first))

    @property
    def policy(self) -> Policy:
        """The chosen policy (loaded once, then cached)."""
        return self._load(self._key)

    def _load(self, key: str) -> Policy:
        if key not in self._policies:
            self._policies[key] = load_policy(key)
        return self._policies[key]

    def _on_chosen(self, index: int) -> None:
        key = self.itemData(index)
        if key is None:  # no entry (index -1): keep the chosen policy
            self._select_key(self._key)
            return
        if key == _LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Load a PixelRL policy", "", _POLICY_FILES)
            if not path or self.add_file(path) is None:
                self._select_key(self._key)
            return
        try:
            policy = self._load(key)
        except CheckpointError as err:
            show_error(f"could not load policy {key!r}: {err}")
            self._select_key(self._key)
            return
        self._key = key
        self.policy_changed.emit(policy)

    def _select_key(self, key: str) -> None:
        self.blockSignals(True)
        self.setCurrentIndex(max(self.findData(key), 0))
        self.blockSignals(False)

    def _offer(self, key: str) -> None:
        """List a policy file (without choosing it)."""
        if self.findData(key) >= 0:
            return
        # Inserting before the current entry moves the current index: no signal for that.
        self.blockSignals(True)
        self.insertItem(self.count() - 1, f"{Path(key).parent.name}/{Path(key).name}", key)
        self.setItemData(self.findData(key), key, Qt.ItemDataRole.ToolTipRole)
        self.blockSignals(False)

    def _on_session_file(self, key: str) -> None:
        self._policies.pop(key, None)  # a new version of the file: load it afresh when chosen
        self._offer(key)
        if key == self._key:
            self._on_chosen(self.currentIndex())

    def add_file(self, path: str | Path) -> Policy | None:
        """Load a policy file, list it (for every picker of the session) and choose it here.

        Returns the policy, or ``None`` (with an error notification) when the file cannot be loaded.
        """
        key = str(Path(path).expanduser().resolve())
        try:
            policy = self._load(key)
        except CheckpointError as err:
            show_error(f"could not load {Path(path).name}: {err}")
            return None
        SESSION_POLICIES.add(key)
        self._policies[key] = policy
        self.setCurrentIndex(self.findData(key))
        return policy
