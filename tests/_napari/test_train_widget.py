"""The Train dock widget: headless end-to-end fine-tuning, cancel, responsiveness, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import QTimer

from napari_pixelrl import api
from napari_pixelrl._napari.train_widget import TrainWidget
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.noise import degrade, fade_colors

WAIT_MS = 120_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))
    noise = NoiseModel(kind="poisson-gaussian", gain=0.05, sigma=2.0)
    return clean, degrade(clean, noise, rng), degrade(clean, noise, rng)


def dock(viewer) -> TrainWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Train")
    assert isinstance(widget, TrainWidget)
    return widget


def tiny(widget: TrainWidget, folder, episodes: float) -> None:
    widget.budget_unit.setCurrentText("episodes")
    widget.budget.setValue(episodes)
    widget.batch_size.setValue(2)
    widget.crop_size.setValue(16)
    widget.folder.setText(str(folder))


def test_source_choice_shows_the_fields_it_needs(viewer):
    widget = dock(viewer)
    widget.set_source("pairs")
    assert not widget.second_layer.isHidden() and widget.second_label.text() == "clean image"
    widget.set_source("noisy")
    assert widget.second_layer.isHidden() and widget.method_box.isEnabled() and not widget.noise_row.isEnabled()
    assert widget.psnr_plot.title == "held-out region, against noisy data"  # a noisy target: a low PSNR is expected
    widget.set_source("clean")
    assert widget.noise_row.isEnabled() and "adds noise" in widget.source_info.text()
    assert widget.psnr_plot.title == "held-out region"


def test_task_choice_sets_the_noise_fields_and_the_policies_to_start_from(viewer):
    widget = dock(viewer)
    visible = lambda: {n for n, (_, w) in widget._noise_fields.items() if not w.isHidden()}  # noqa: E731
    assert widget.task_box.task == "poisson-gaussian" and visible() == {"σ", "gain"}
    assert widget.policy_box.policy.name == "poisson-gaussian"
    widget.task_box.set_task("salt-and-pepper")
    widget.density.setValue(0.3)
    assert visible() == {"density"} and widget._noise() == NoiseModel(kind="salt-and-pepper", density=0.3)
    widget.task_box.set_task("gaussian")
    assert visible() == {"σ"} and widget.policy_box.policy.noise_model.kind == "gaussian"
    widget.task_box.set_task("text")
    assert widget._noise() == NoiseModel(kind="text", density=0.3)


def test_crop_size_follows_a_small_image(viewer):
    viewer.add_image(np.zeros((40, 200), np.float32), name="small")
    widget = dock(viewer)
    widget.set_source("noisy")
    assert widget.crop_size.value() == 16  # 36 usable rows, halved by neighbour sub-sampling, a multiple of 8


def test_training_end_to_end_draws_curves_previews_and_offers_the_policy_to_restore(viewer, qtbot, scene, tmp_path):
    _, noisy, second = scene
    viewer.add_image(noisy, name="noisy 1")
    viewer.add_image(second, name="noisy 2")
    _, restore_panel = viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")
    widget = dock(viewer)
    widget.set_source("noisy-pairs")
    widget.first_layer.select("noisy 1")
    widget.second_layer.select("noisy 2")
    tiny(widget, tmp_path / "run", 12)

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    worker = widget.train()
    assert worker is not None and widget.running and not widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    timer.stop()
    assert len(ticks) >= 5  # the event loop kept running while training ran in its thread

    policy_file = tmp_path / "run" / "policy.safetensors"
    assert policy_file.is_file()
    assert [x for x, _ in widget.reward_plot.series["reward"][1]] == list(range(1, 13))
    assert len(widget.psnr_plot.series["PSNR dB"][1]) == 2  # validated at episodes 10 and 12
    preview = viewer.layers["noisy 1 preview (training)"]
    assert preview.data.shape == (64, 64)
    full_range = api.default_intensity_range(noisy)  # the preview maps intensities like the whole layer
    expected = api.restore(noisy, api.load_policy(policy_file), intensity_range=full_range)
    np.testing.assert_allclose(preview.data, expected.image, atol=1e-4)
    np.testing.assert_allclose(preview.contrast_limits, viewer.layers["noisy 1"].contrast_limits)  # no own stretch
    kept = api.best_policy_file(tmp_path / "run")  # the best on the held-out region, the start included
    assert kept.name == "best.safetensors" and "held-out region" in widget.status.text()
    assert restore_panel.policy_box.findData(str(kept.resolve())) >= 0  # offered for restoring at once
    assert widget.save_button.isEnabled()
    copy = widget.save_policy(tmp_path / "mine.safetensors")
    assert api.load_policy(copy).training == api.load_policy(kept).training


def test_cancel_stops_after_an_episode_and_keeps_the_policy(viewer, qtbot, scene, tmp_path):
    _, noisy, _ = scene
    viewer.add_image(noisy, name="noisy")
    widget = dock(viewer)
    widget.set_source("noisy")
    tiny(widget, tmp_path / "run", 10_000)
    episodes = []
    worker = widget.train()
    worker.yielded.connect(lambda message: episodes.append(getattr(message, "update", None)))
    qtbot.waitUntil(lambda: any(episodes), timeout=WAIT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    done = api.load_policy(tmp_path / "run" / "policy.safetensors").training["stages"][-1]["episodes_done"]
    last = [u.episode for u in episodes if u is not None][-1]
    assert done == last and done < 100  # every finished episode is kept, not only the last checkpoint
    assert "stopped" in widget.status.text()


@pytest.mark.parametrize("source", ["pairs", "noisy-pairs"])
def test_pairs_of_different_sizes_are_refused_with_a_notification(viewer, source, tmp_path):
    viewer.add_image(np.zeros((64, 64), np.float32), name="a")
    viewer.add_image(np.zeros((64, 60), np.float32), name="b")
    widget = dock(viewer)
    widget.set_source(source)
    widget.first_layer.select("a")
    widget.second_layer.select("b")
    widget.folder.setText(str(tmp_path / "run"))
    seen = len(notification_manager.records)
    assert widget.train() is None
    messages = [str(n.message) for n in notification_manager.records[seen:] if n.severity >= NotificationSeverity.ERROR]
    assert any("same size" in m for m in messages)
    assert not (tmp_path / "run").exists() and len(viewer.layers) == 2


def test_a_noisy_stack_trains_from_consecutive_frames(viewer, qtbot, scene, tmp_path):
    _, noisy, second = scene
    viewer.add_image(np.stack([noisy, second, noisy[::-1]]), name="stack")
    widget = dock(viewer)
    widget.set_source("noisy")
    widget.method_box.setCurrentIndex(widget.method_box.findData("frames"))
    assert widget.objective.currentText() == "pathwise"  # the default
    widget.objective.setCurrentText("expected-reward")
    tiny(widget, tmp_path / "run", 3)
    widget.train()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    policy = api.load_policy(tmp_path / "run" / "policy.safetensors")
    assert policy.training["stages"][-1]["data"]["kind"] == "noisy/noisy pairs"
    assert policy.training["stages"][-1]["config"]["objective"] == "expected-reward"
    assert viewer.layers["stack preview (training)"].data.shape == (64, 64)


def test_a_colour_style_trains_from_before_after_rgb_layers(viewer, qtbot, tmp_path):
    from skimage import data

    after = data.chelsea()[100:164, 150:214]
    unit = np.moveaxis(after.astype(np.float32) / 255, -1, 0)
    before = np.rint(np.moveaxis(fade_colors(unit, 0.3), 0, -1) * 255).astype(np.uint8)
    viewer.add_image(before, name="before")
    viewer.add_image(after, name="after")
    widget = dock(viewer)
    widget.task_box.set_task("fading")
    widget.set_source("pairs")
    assert (widget.first_label.text(), widget.second_label.text()) == ("before (RGB)", "after (RGB)")
    assert widget.policy_box.policy.name == "fading"
    widget.first_layer.select("before")
    widget.second_layer.select("after")
    tiny(widget, tmp_path / "run", 3)
    widget.train()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    policy = api.load_policy(tmp_path / "run" / "policy.safetensors")
    assert policy.action_set.name == "color" and policy.training["stages"][-1]["config"]["rollout"] == "greedy"
    assert policy.training["stages"][-1]["data"]["kind"] == "noisy/clean pairs"
    preview = viewer.layers["before preview (training)"]
    assert preview.rgb and preview.data.shape == (64, 64, 3)
    np.testing.assert_allclose(preview.data, api.restore(before, policy).image, atol=1e-3)
