"""The Restore dock widget and the result layers, headless under a virtual X display (pytest-xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_policy
from napari.layers import Image, Labels
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_pixelrl import api
from napari_pixelrl._napari.restore_widget import RestoreWidget, restore_selected_layer
from napari_pixelrl.core.actions import DENOISE
from napari_pixelrl.core.checkpoint import save_checkpoint

WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def noisy() -> np.ndarray:
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(40, 200, 40), (32, 1))
    return np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)


def dock(viewer) -> RestoreWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")
    assert isinstance(widget, RestoreWidget)
    return widget


def run_to_end(qtbot, widget: RestoreWidget) -> None:
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def errors_since(count: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[count:] if n.severity >= NotificationSeverity.WARNING]


def test_widget_docks_from_the_manifest_and_lists_shipped_policies(viewer):
    widget = dock(viewer)
    names = [widget.policy_box.itemText(i) for i in range(widget.policy_box.count())]
    assert set(api.list_policies()) <= set(names)
    assert names[-1] == "load checkpoint…"
    assert widget.policy.name == "gaussian-25" and widget.steps.value() == 5
    assert widget.device_box.itemData(0) == "auto"


def test_task_picker_lists_the_policies_for_a_task(viewer):
    widget = dock(viewer)
    listed = lambda: [widget.policy_box.itemData(i) for i in range(widget.policy_box.count() - 1)]  # noqa: E731
    assert widget.task_box.task is None and set(listed()) == set(api.list_policies())
    widget.task_box.set_task("gaussian")
    assert listed() == list(api.list_policies("gaussian")) and widget.policy.name == "gaussian-25"
    widget.task_box.set_task("poisson-gaussian")  # the chosen policy is not for this task: the first one is chosen
    first = listed()[0]
    assert listed() == list(api.list_policies("poisson-gaussian")) and set(listed()) >= {"poisson-gaussian"}
    assert first.startswith("poisson-gaussian") and widget.policy.name == first
    assert "trained for poisson-gaussian" in widget.policy_info.text()
    widget.task_box.set_task(None)
    assert set(listed()) == set(api.list_policies()) and widget.policy.name == first
    widget.policy_box.setCurrentIndex(widget.policy_box.findData("not listed"))  # index -1: nothing changes
    assert widget.policy_box.currentData() == first and widget.policy.name == first


def test_layer_picker_follows_the_viewer(viewer):
    widget = dock(viewer)
    assert widget.layer_box.count() == 0
    viewer.add_image(np.zeros((8, 8)), name="a")
    viewer.add_labels(np.zeros((8, 8), int), name="not an image")
    viewer.add_image(np.zeros((8, 8)), name="b")
    assert [widget.layer_box.itemText(i) for i in range(widget.layer_box.count())] == ["a", "b"]
    widget.select_layer("a")
    viewer.layers.selection.active = viewer.layers["b"]
    viewer.layers["a"].name = "renamed"
    assert widget.layer_box.currentText() == "renamed"  # the choice follows the layer, not its old name
    del viewer.layers["b"]
    assert [widget.layer_box.itemText(i) for i in range(widget.layer_box.count())] == ["renamed"]


def test_run_adds_restored_image_action_map_and_value_map(viewer, qtbot, noisy):
    source = viewer.add_image(
        noisy, name="noisy", scale=(0.5, 2.0), translate=(3.0, -1.0), units=("um", "um"), contrast_limits=(10, 240)
    )
    widget = dock(viewer)
    assert widget.progress.text() == "no run yet"  # not "0 of 100 steps" before anything ran
    widget.select_layer("noisy")
    widget.steps.setValue(3)
    run_to_end(qtbot, widget)
    assert widget.progress.text() == "3 of 3 steps"

    expected = api.restore(noisy, api.load_policy("gaussian-25"), steps=3, return_values=True)
    restored = viewer.layers["restored: noisy (gaussian-25)"]
    actions = viewer.layers["actions: noisy (gaussian-25)"]
    values = viewer.layers["values: noisy (gaussian-25)"]
    assert isinstance(restored, Image) and isinstance(actions, Labels) and isinstance(values, Image)
    np.testing.assert_allclose(restored.data, expected.image, atol=1e-4)
    assert restored.data.dtype == np.float32 and restored.data.shape == noisy.shape
    np.testing.assert_array_equal(restored.scale, source.scale)
    np.testing.assert_array_equal(restored.translate, source.translate)
    assert restored.units == source.units and actions.units[1:] == source.units
    assert tuple(restored.contrast_limits) == (10, 240)
    # Action map: label = action + 1, (steps, H, W), each action in its fixed colour, name under the cursor.
    assert actions.data.shape == (3, *noisy.shape) and actions.data.dtype == np.uint8
    np.testing.assert_array_equal(actions.data, expected.actions + 1)
    for index, color in enumerate(DENOISE.colors):
        np.testing.assert_allclose(actions.colormap.map(np.array([index + 1]))[0], [*np.divide(color, 255), 1.0])
    np.testing.assert_array_equal(actions.scale, (1.0, 0.5, 2.0))
    y, x = 4, 7
    chosen = DENOISE.names[expected.actions[0, y, x]]
    status = actions.get_status((0, 3.0 + 0.5 * y, -1.0 + 2.0 * x), world=True)
    assert f"action: {chosen}" in str(status)
    assert values.data.shape == (3, *noisy.shape) and values.data.dtype == np.float32
    np.testing.assert_allclose(values.data, expected.values, atol=1e-4)
    # The input is untouched; the legend shows each step's shares.
    np.testing.assert_array_equal(source.data, noisy)
    assert widget.legend.columnCount() == 4 and widget.legend.rowCount() == len(DENOISE)
    # The table's columns are numbered as napari's step slider numbers the planes of the maps: from 0.
    headers = [widget.legend.horizontalHeaderItem(column).text() for column in range(1, 4)]
    assert headers == [f"step {t}" for t in range(viewer.dims.nsteps[0])] == ["step 0", "step 1", "step 2"]
    first_step = [float(widget.legend.item(row, 1).text()) for row in range(len(DENOISE))]
    assert abs(sum(first_step) - 100) <= len(DENOISE)


def test_rerun_updates_the_same_layers(viewer, qtbot, noisy):
    viewer.add_image(noisy, name="noisy")
    widget = dock(viewer)
    widget.steps.setValue(2)
    run_to_end(qtbot, widget)
    before = list(viewer.layers)
    before[-1].opacity = 0.3  # a display setting the user changed
    widget.policy_box.setCurrentIndex(widget.policy_box.findData("gaussian-50"))
    widget.steps.setValue(3)
    run_to_end(qtbot, widget)
    assert list(viewer.layers) == before
    assert viewer.layers[-1].name == "actions: noisy (gaussian-50)" and viewer.layers[-1].data.shape[0] == 3
    assert viewer.layers[-1].opacity == pytest.approx(0.3)


def test_a_stack_is_restored_plane_by_plane_with_a_step_axis_in_the_maps(viewer, qtbot, noisy):
    stack = np.stack([noisy, noisy[::-1]])
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5), axis_labels=("z", "y", "x"))
    widget = dock(viewer)
    widget.steps.setValue(2)
    run_to_end(qtbot, widget)
    assert widget.progress.maximum() == 4
    restored = viewer.layers["restored: stack (gaussian-25)"]
    actions = viewer.layers["actions: stack (gaussian-25)"]
    expected = api.restore(stack, api.load_policy("gaussian-25"), steps=2)
    np.testing.assert_allclose(restored.data, expected.image, atol=1e-4)
    assert actions.data.shape == (2, 2, *noisy.shape)
    np.testing.assert_array_equal(actions.data, expected.actions + 1)
    assert tuple(actions.scale) == (2.0, 1.0, 0.5, 0.5) and tuple(actions.axis_labels) == ("z", "step", "y", "x")


def test_an_rgb_layer_is_restored_per_channel_with_channels_first_in_the_maps(viewer, qtbot, noisy):
    rgb = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], axis=-1)
    viewer.add_image(rgb, name="photo", rgb=True, scale=(0.5, 0.25))
    widget = dock(viewer)
    widget.steps.setValue(1)
    run_to_end(qtbot, widget)
    restored = viewer.layers["restored: photo (gaussian-25)"]
    actions = viewer.layers["actions: photo (gaussian-25)"]
    assert restored.rgb and restored.data.shape == rgb.shape
    expected = api.restore(rgb, api.load_policy("gaussian-25"), steps=1)
    np.testing.assert_allclose(restored.data, expected.image, atol=1e-4)
    assert actions.data.shape == (3, 1, *noisy.shape)
    assert tuple(actions.scale) == (1.0, 1.0, 0.5, 0.25) and tuple(actions.axis_labels)[:2] == ("channel", "step")


def test_a_lazy_4d_layer_keeps_its_axes_and_scale_in_the_maps(viewer, qtbot, noisy):
    import dask.array as da

    data = da.from_array(np.stack([[noisy, noisy[::-1]]] * 2), chunks=(1, 1, *noisy.shape))  # (T, Z, Y, X)
    viewer.add_image(data, name="movie", scale=(10.0, 2.0, 0.5, 0.5), axis_labels=("t", "z", "y", "x"))
    widget = dock(viewer)
    widget.steps.setValue(1)
    widget.value_map_box.setChecked(True)
    run_to_end(qtbot, widget)
    actions = viewer.layers["actions: movie (gaussian-25)"]
    values = viewer.layers["values: movie (gaussian-25)"]
    assert actions.data.shape == values.data.shape == (2, 2, 1, *noisy.shape)
    assert tuple(actions.scale) == (10.0, 2.0, 1.0, 0.5, 0.5)
    assert tuple(values.axis_labels) == ("t", "z", "step", "y", "x")
    expected = api.restore(np.asarray(data), api.load_policy("gaussian-25"), steps=1)
    np.testing.assert_array_equal(actions.data, expected.actions + 1)
    assert isinstance(viewer.layers["movie"].data, da.Array)  # the source stays lazy and untouched


def test_a_multiscale_layer_is_restored_at_full_resolution(viewer, qtbot, noisy):
    viewer.add_image([noisy, noisy[::2, ::2]], name="pyramid", multiscale=True)
    widget = dock(viewer)
    widget.steps.setValue(1)
    run_to_end(qtbot, widget)
    expected = api.restore(noisy, api.load_policy("gaussian-25"), steps=1)
    np.testing.assert_allclose(viewer.layers["restored: pyramid (gaussian-25)"].data, expected.image, atol=1e-4)
    assert viewer.layers["actions: pyramid (gaussian-25)"].data.shape == (1, *noisy.shape)


def test_a_large_plane_is_tiled_and_progress_counts_the_tiles(viewer, qtbot, monkeypatch):
    from napari_pixelrl.core import inference

    image = np.random.default_rng(1).random((200, 190), dtype=np.float32)
    viewer.add_image(image, name="large")
    monkeypatch.setattr(inference, "default_memory_budget", lambda device: 1)  # the smallest tiles: 64 + halo
    widget = dock(viewer)
    widget.steps.setValue(1)
    run_to_end(qtbot, widget)
    assert widget.progress.maximum() == 12  # 4 x 3 tiles of at most 64 x 64, 1 step
    expected = api.restore(image, api.load_policy("gaussian-25"), steps=1)
    np.testing.assert_allclose(viewer.layers["restored: large (gaussian-25)"].data, expected.image, atol=1e-5)


def test_unticked_maps_are_not_added_and_old_ones_are_removed(viewer, qtbot, noisy):
    viewer.add_image(noisy, name="noisy")
    widget = dock(viewer)
    widget.steps.setValue(1)
    run_to_end(qtbot, widget)
    assert len(viewer.layers) == 4
    assert widget.layer_box.count() == 2  # the value map (steps, H, W) is not offered for restoring
    widget.action_map_box.setChecked(False)
    widget.value_map_box.setChecked(False)
    run_to_end(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["noisy", "restored: noisy (gaussian-25)"]


def test_a_failure_inside_torch_is_reported_and_frees_the_panel(viewer, qtbot, noisy, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")
        yield

    monkeypatch.setattr("napari_pixelrl._napari.restore_widget.restore_steps", broken)
    viewer.add_image(noisy, name="noisy")
    widget = dock(viewer)
    seen = len(notification_manager.records)
    run_to_end(qtbot, widget)
    assert any("device-side assert" in text for text in errors_since(seen))
    assert "device-side assert" in widget.status.text() and widget.run_button.isEnabled()
    assert [layer.name for layer in viewer.layers] == ["noisy"]


def test_cancel_stops_a_long_run_and_adds_nothing(viewer, qtbot):
    viewer.add_image(np.random.default_rng(0).random((256, 256), dtype=np.float32), name="big")
    widget = dock(viewer)
    widget.steps.setValue(50)
    progress = []
    worker = widget.run()
    worker.yielded.connect(progress.append)
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.aborted, timeout=WAIT_MS):
        widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert len(progress) < 50
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.zeros((4, 2, 16), np.float32), {}, "too small"),
        (np.full((16, 16), np.nan, np.float32), {"contrast_limits": (0, 1)}, "NaN"),
        (np.zeros((2, 16), np.float32), {}, "too small"),
    ],
)
def test_bad_input_shows_a_notification_and_changes_nothing(viewer, data, kwargs, message):
    layer = viewer.add_image(data, name="bad", **kwargs)
    original = layer.data.copy()
    widget = dock(viewer)
    seen = len(notification_manager.records)
    assert widget.run() is None
    assert any(message in text for text in errors_since(seen))
    assert [layer.name for layer in viewer.layers] == ["bad"]
    np.testing.assert_array_equal(layer.data, original)


def test_loading_a_checkpoint_adds_it_to_the_picker(viewer, tmp_path):
    widget = dock(viewer)
    path = save_checkpoint(make_policy(), tmp_path / "mine.safetensors")
    policy = widget.add_policy_file(path)
    assert policy is not None and widget.policy is policy and widget.steps.value() == 3
    assert widget.policy_box.currentText() == f"{tmp_path.name}/mine.safetensors"
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    seen = len(notification_manager.records)
    assert widget.add_policy_file(tmp_path / "broken.safetensors") is None
    assert any("broken.safetensors" in text for text in errors_since(seen))
    assert widget.policy is policy


def test_menu_command_opens_the_widget_on_the_selected_layer(viewer):
    viewer.add_image(np.zeros((8, 8)), name="first")
    viewer.add_image(np.zeros((8, 8)), name="second")
    viewer.layers.selection.active = viewer.layers["first"]
    widget = dock(viewer)
    assert widget.layer_box.currentText() == "first"
    viewer.layers.selection.active = viewer.layers["second"]
    restore_selected_layer(viewer)
    assert dock(viewer) is widget  # the same dock widget, already open
    assert widget.layer_box.currentText() == "second"


def test_sample_data_opens_noisy_and_clean_layers(viewer):
    for key, noisy_name in [
        ("camera-gaussian-25", "camera (gaussian sigma=25)"),
        ("cell-poisson-gaussian", "cell (poisson-gaussian sigma=3 gain=0.03)"),
        ("moon-salt-and-pepper", "moon (salt-and-pepper density=0.5)"),
        ("coins-text", "coins (text density=0.15 font_size=10-20)"),
    ]:
        viewer.open_sample("napari-pixelrl", key)
        clean = viewer.layers[noisy_name.split(" (")[0] + " (clean)"].data
        noisy = viewer.layers[noisy_name].data
        assert noisy.dtype == np.uint8 and noisy.shape == clean.shape
        difference = noisy.astype(float) - clean
        changed = (difference != 0).mean()
        if key == "moon-salt-and-pepper":  # half the pixels black or white (a few were already)
            assert set(np.unique(noisy[difference != 0])) == {0, 255} and 0.47 < changed < 0.52
        elif key == "coins-text":  # 15% of the pixels under text, the rest untouched
            assert 0.12 < changed < 0.2
        else:
            assert 5 < difference.std() < 40  # visibly noisy, not destroyed


def test_menu_command_is_in_the_layers_filter_menu(viewer):
    from napari._app_model import get_app_model

    items = get_app_model().menus.get_menu("napari/layers/filter")
    assert "napari-pixelrl.restore_selected_layer" in [getattr(i, "command", None) and i.command.id for i in items]


def test_load_checkpoint_entry_opens_a_file_dialog(viewer, tmp_path, monkeypatch):
    widget = dock(viewer)
    path = save_checkpoint(make_policy(), tmp_path / "mine.safetensors")
    answers = iter([("", ""), (str(path), "")])  # first the user cancels the dialog, then picks the file
    monkeypatch.setattr(
        "napari_pixelrl._napari.pickers.QFileDialog.getOpenFileName", lambda *args, **kwargs: next(answers)
    )
    load_entry = widget.policy_box.count() - 1
    widget.policy_box.setCurrentIndex(load_entry)
    assert widget.policy_box.currentText() == "gaussian-25" and widget.policy.name == "gaussian-25"
    widget.policy_box.setCurrentIndex(widget.policy_box.count() - 1)
    assert widget.policy_box.currentText() == f"{tmp_path.name}/mine.safetensors" and widget.policy.name == "test"


def test_the_faded_sample_is_restored_in_colour_by_the_fading_policy(viewer, qtbot):
    viewer.open_sample("napari-pixelrl", "chelsea-faded")
    faded = viewer.layers["chelsea (fading strength=0.15)"]
    original = viewer.layers["chelsea (clean)"].data
    assert faded.rgb and faded.data.dtype == np.uint8 and faded.data.shape == original.shape == (300, 451, 3)
    widget = dock(viewer)
    widget.task_box.set_task("fading")
    assert widget.policy.name == "fading"
    widget.layer_box.select(faded.name)
    widget.steps.setValue(3)
    run_to_end(qtbot, widget)
    restored = viewer.layers["restored: chelsea (fading strength=0.15) (fading)"]
    actions = viewer.layers["actions: chelsea (fading strength=0.15) (fading)"]
    assert restored.rgb and restored.data.shape == faded.data.shape
    expected = api.restore(faded.data, api.load_policy("fading"), steps=3)
    np.testing.assert_allclose(restored.data, expected.image, atol=1e-3)
    assert actions.data.shape == (3, 300, 451)  # one action per pixel and step, no channel axis
    assert list(actions.features["action"]) == api.load_policy("fading").action_set.names
    assert widget.legend.rowCount() == 13


def test_the_noise_row_says_when_the_image_does_not_fit_the_policy(viewer, qtbot):
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(40, 200, 96), (96, 1))
    viewer.add_image(np.clip(clean + rng.normal(0, 5, clean.shape), 0, 255).astype(np.uint8), name="faint noise")
    widget = dock(viewer)
    widget.select_layer("faint noise")
    widget.policy_box.setCurrentIndex(widget.policy_box.findData("gaussian-50"))
    assert widget.checking_noise and widget.noise_info.text() == "checking the noise …"  # not in the UI thread
    qtbot.waitUntil(lambda: not widget.checking_noise, timeout=WAIT_MS)
    text = widget.noise_info.text()
    assert text.startswith("⚠") and "trained for sigma 50" in text and "try gaussian-blind" in text
    widget.policy_box.setCurrentIndex(widget.policy_box.findData("gaussian-blind"))
    qtbot.waitUntil(lambda: not widget.checking_noise, timeout=WAIT_MS)
    assert "within what the policy was trained for" in widget.noise_info.text()
