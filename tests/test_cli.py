from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from conftest import TINY_STAGE, make_colour_policy, make_policy
from PIL import Image

from napari_pixelrl import api, cli
from napari_pixelrl.core import inference
from napari_pixelrl.core.checkpoint import save_checkpoint
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.recipe import Recipe
from napari_pixelrl.core.trainer import read_log


def _write_pngs(folder, count=2, shape=(16, 20)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i}.png")
    return sorted(folder.iterdir())


def test_restore_writes_restored_image_and_action_map(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in")
    code = cli.main(["restore", *map(str, inputs), "-o", str(tmp_path / "out"), "--policy", str(policy_path)])
    assert code == 0
    restored = tifffile.imread(tmp_path / "out" / "img0_restored.tif")
    actions = tifffile.imread(tmp_path / "out" / "img0_actions.tif")
    expected = api.restore(np.asarray(Image.open(inputs[0])), make_policy())
    np.testing.assert_array_equal(restored, expected.image)
    np.testing.assert_array_equal(actions, expected.actions)
    with tifffile.TiffFile(tmp_path / "out" / "img0_actions.tif") as tif:  # a stack of planes, not an RGB image
        assert len(tif.pages) == expected.actions.shape[0]
    assert "do nothing" in capsys.readouterr().out


def test_restore_takes_a_tiff_stack_plane_by_plane(tmp_path):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    stack = np.random.default_rng(1).integers(0, 4096, (3, 16, 20)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    code = cli.main(["restore", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "out"), "--policy", str(policy_path)])
    assert code == 0
    expected = api.restore(stack, make_policy())
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "stack_restored.tif"), expected.image)
    actions = tifffile.imread(tmp_path / "out" / "stack_actions.tif")
    assert actions.shape == (3, 3, 16, 20)  # planes, steps, H, W
    np.testing.assert_array_equal(actions, expected.actions)


def test_megapixels_count_planes_and_an_rgb_pixel_of_a_colour_policy_once(tmp_path):
    from napari_pixelrl.batch import RestoreJob, restore_file

    colour = save_checkpoint(make_colour_policy(), tmp_path / "c.safetensors")
    grey = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    rgb = np.random.default_rng(2).integers(0, 256, (20, 25, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "stack.tif", rgb.transpose(2, 0, 1).copy(), photometric="minisblack")
    for path, policy, pixels in [("rgb.png", colour, 500), ("rgb.png", grey, 1500), ("stack.tif", grey, 1500)]:
        result = restore_file(tmp_path / path, tmp_path / "out", RestoreJob(policy=str(policy)))
        assert result.error is None and result.megapixels == pixels / 1e6


def test_in_process_restores_report_every_step_of_every_tile(tmp_path):
    from napari_pixelrl.batch import RestoreJob, restore_files

    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in", shape=(40, 70))
    seen = []
    job = RestoreJob(policy=str(policy_path), tile_size=32)  # 2 x 3 tiles of 3 steps: 18 units per file
    results = list(restore_files(inputs, tmp_path / "out", job, on_progress=lambda p: seen.append((p.done, p.total))))
    assert all(r.error is None for r in results)
    assert {total for _, total in seen} == {18}
    ends = [i for i, (done, _) in enumerate(seen) if done == 18]  # each file counts up to 18 (tiles are batched)
    assert len(ends) == 2 and ends[0] >= 2
    for part in (seen[: ends[0] + 1], seen[ends[0] + 1 :]):
        done = [d for d, _ in part]
        assert done == sorted(set(done)) and len(done) >= 3  # at least one report per step


def test_restore_reports_bad_files_and_continues(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in", count=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    code = cli.main(["restore", str(broken), str(inputs[0]), "-o", str(tmp_path / "out"), "--policy", str(policy_path)])
    assert code == 1
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "out" / "img0_restored.tif").is_file()


def test_restore_takes_folders_and_globs(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    _write_pngs(tmp_path / "a", count=2)
    _write_pngs(tmp_path / "b", count=3)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    code = cli.main(
        ["restore", str(tmp_path / "a"), str(tmp_path / "b" / "img[2-9].png"), "-o", str(tmp_path / "out"),
         "--policy", str(policy_path)]
    )  # fmt: skip
    assert code == 0
    assert "wrote 3 restored file(s)" in capsys.readouterr().out
    assert cli.main(["restore", str(tmp_path / "c*.tif"), "-o", str(tmp_path), "--policy", str(policy_path)]) == 2


def test_restore_keeps_tiff_resolution_and_imagej_metadata(tmp_path):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    stack = np.random.default_rng(1).integers(0, 4096, (4, 18, 20)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "cells.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"},
    )  # fmt: skip
    assert (
        cli.main(["restore", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "--policy", str(policy_path)])
        == 0
    )
    with tifffile.TiffFile(tmp_path / "out" / "cells_restored.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 0.5 and tif.imagej_metadata["unit"] == "um"
        assert tif.series[0].axes == "ZYX"
        assert tif.pages.first.tags["XResolution"].value == (4, 1)
        np.testing.assert_array_equal(tif.asarray(), api.restore(stack, make_policy()).image)


def test_inputs_that_would_overwrite_each_others_results_are_refused(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    _write_pngs(tmp_path / "a", count=1)
    _write_pngs(tmp_path / "b", count=1)
    code = cli.main(
        ["restore", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path), "--policy", str(policy_path)]
    )
    assert code == 2 and "would both write img0_restored" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["restore", str(tmp_path / "empty"), "-o", str(tmp_path), "--policy", str(policy_path)]) == 2


def test_an_imagej_channel_axis_is_restored_channel_by_channel(tmp_path):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    rng = np.random.default_rng(3)
    image = np.stack([rng.integers(0, 50, (3, 18, 20)), rng.integers(2000, 60000, (3, 18, 20))], axis=1)
    image = image.astype(np.uint16)  # (Z, C, Y, X): a dim and a bright channel
    tifffile.imwrite(tmp_path / "zc.tif", image, imagej=True, metadata={"axes": "ZCYX"})
    assert (
        cli.main(["restore", str(tmp_path / "zc.tif"), "-o", str(tmp_path / "out"), "--policy", str(policy_path)]) == 0
    )
    expected = api.restore(image, make_policy(), channel_axis=1)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "out" / "zc_restored.tif"), expected.image, rtol=1e-6)
    assert tifffile.imread(tmp_path / "out" / "zc_actions.tif").shape == (3, 2, 3, 18, 20)


def test_restore_zarr_writes_a_zarr_result(tmp_path):
    zarr = pytest.importorskip("zarr")
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    image = np.random.default_rng(2).integers(0, 256, (2, 40, 36)).astype(np.uint8)
    group = zarr.open_group(str(tmp_path / "plate.ome.zarr"), mode="w")  # OME-Zarr style: level "0"
    group.create_array("0", shape=image.shape, chunks=(1, 16, 16), dtype="u1")[:] = image
    code = cli.main(["restore", str(tmp_path / "plate.ome.zarr"), "-o", str(tmp_path / "out"), "--policy",
                     str(policy_path), "--values", "--tile-size", "16"])  # fmt: skip
    assert code == 0
    result = zarr.open_group(str(tmp_path / "out" / "plate_restored.zarr"), mode="r")
    # A group's array named by its own path (no .zarr suffix) is found as a zarr array too.
    assert cli.main(["restore", str(tmp_path / "plate.ome.zarr" / "0"), "-o", str(tmp_path / "out2"), "--policy",
                     str(policy_path), "--tile-size", "16"]) == 0  # fmt: skip
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "out2" / "0_restored.zarr"))["actions"][:],
                                  result["actions"][:])  # fmt: skip
    expected = api.restore(image, make_policy(), return_values=True)
    np.testing.assert_allclose(result["image"][:], expected.image, rtol=1e-6)
    np.testing.assert_array_equal(result["actions"][:], expected.actions)
    np.testing.assert_allclose(result["values"][:], expected.values, atol=1e-5)


def _outputs(folder):
    return {p.name: tifffile.imread(p) for p in sorted(folder.glob("*.tif"))}


def _assert_same_outputs(got, expected):
    assert got.keys() == expected.keys() and len(got) == 6
    for name, data in expected.items():
        np.testing.assert_allclose(got[name], data, rtol=1e-6, atol=1e-6, err_msg=name)


def test_two_worker_processes_give_the_single_process_result(tmp_path):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    _write_pngs(tmp_path / "in", count=3)
    common = ["--policy", str(policy_path), "--device", "cpu"]
    assert cli.main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "one"), *common]) == 0
    assert cli.main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "two"), "--workers", "2", *common]) == 0
    _assert_same_outputs(_outputs(tmp_path / "two"), _outputs(tmp_path / "one"))


def test_a_local_dask_cluster_of_two_workers_gives_the_single_process_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    _write_pngs(tmp_path / "in", count=3)
    common = ["--policy", str(policy_path), "--device", "cpu"]
    assert cli.main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "one"), *common]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code = cli.main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "two"), "--scheduler",
                         cluster.scheduler_address, *common])  # fmt: skip
        assert code == 0
        assert len(cluster.workers) == 2
    _assert_same_outputs(_outputs(tmp_path / "two"), _outputs(tmp_path / "one"))


def test_evaluate_prints_psnr_ssim_and_time(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(fixed_action=1), tmp_path / "p.safetensors")
    _write_pngs(tmp_path / "data", count=3)
    code = cli.main(["evaluate", "--data", str(tmp_path / "data"), "--sigma", "25", "--policy", str(policy_path)])
    out = capsys.readouterr().out
    assert code == 0
    # "do nothing" leaves the noisy image: restored PSNR equals noisy PSNR.
    line = next(x for x in out.splitlines() if x.startswith("PSNR"))
    noisy, restored = (float(w) for w in line.split() if w.replace(".", "").isdigit())
    assert noisy == restored
    assert "SSIM" in out and "s per image" in out and "images 3" in out
    assert "at step 0, 1, 2" in out  # 0-based, as napari's step slider counts
    shares = {line.split("  ")[1].strip(): line.split()[-3:] for line in out.splitlines() if line.endswith("%")}
    assert shares["do nothing"] == ["100.0%"] * 3 and shares["pixel + 1"] == ["0.0%"] * 3


def test_bad_policy_and_empty_folder_give_one_line_errors(tmp_path, capsys):
    assert cli.main(["evaluate", "--data", str(tmp_path), "--sigma", "25", "--policy", "nope"]) == 2
    assert "error: no policy named 'nope'" in capsys.readouterr().err
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    assert cli.main(["evaluate", "--data", str(tmp_path), "--sigma", "25", "--policy", str(policy_path)]) == 2
    assert "error: no image files" in capsys.readouterr().err


def test_bad_device_is_reported_once(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in")
    code = cli.main(
        ["restore", *map(str, inputs), "-o", str(tmp_path / "out"), "--policy", str(policy_path), "--device", "tpu"]
    )
    assert code == 2
    assert capsys.readouterr().err.count("unknown device") == 1
    assert not (tmp_path / "out").exists()


def _tiny_recipe(tmp_path, data):
    stage = TINY_STAGE
    recipe = {
        "name": "tiny",
        "description": "a two-stage test recipe",
        "defaults": {"data": str(data), "noise": {"kind": "gaussian", "sigma": [10, 30]}, **stage},
        "stages": [{"objective": "denoiser", "episodes": 2}, {"objective": "a2c", "episodes": 3}],
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_train_runs_a_recipe_resumes_and_evaluates(tmp_path, capsys):
    _write_pngs(tmp_path / "data", count=3, shape=(24, 24))
    recipe_file = _tiny_recipe(tmp_path, tmp_path / "data")
    run = tmp_path / "run"
    assert cli.main(["train", str(run), "--config", str(recipe_file), "--episodes", "1", "--crop-weights", "psnr"]) == 0
    assert {stage.crop_weights for stage in Recipe.load(run / "recipe.json").stages} == {"psnr"}
    assert cli.main(["train", str(run), "--config", str(recipe_file)]) == 2  # another recipe into the same folder
    assert "holds a run of another recipe" in capsys.readouterr().err

    run = tmp_path / "run2"
    (run).mkdir()
    (run / "recipe.json").write_text(recipe_file.read_text())
    for update in api.train(Recipe.load(recipe_file), run):
        if update.stage == 2:
            break  # interrupted in stage 2, after its first episode
    (tmp_path / "training").mkdir()
    run = run.rename(tmp_path / "training" / "run2")  # moved (into the repository) while it runs
    # resumes from run/recipe.json; another host may continue it at another precision
    assert cli.main(["train", str(run), "--precision", "bfloat16"]) == 0
    policy = api.load_policy(run / "policy.safetensors")
    assert policy.name == "tiny" and policy.description == "a two-stage test recipe"
    assert [s["objective"] for s in policy.training["stages"]] == ["denoiser", "a2c"]
    assert [s["episodes_done"] for s in policy.training["stages"]] == [2, 3]
    assert [u.episode for u in read_log(run / "stage2-a2c")] == [1, 2, 3]
    assert cli.main(["train", str(run)]) == 0  # finished: nothing more is trained
    assert api.load_policy(run / "policy.safetensors").training == policy.training
    for state in run.glob("stage*/trainer_state.safetensors"):
        state.unlink()  # finished stages may drop their resume state: still nothing is trained again
    logs = [path.read_text() for path in sorted(run.glob("stage*/log.jsonl"))]
    assert cli.main(["train", str(run)]) == 0
    assert [path.read_text() for path in sorted(run.glob("stage*/log.jsonl"))] == logs
    assert api.load_policy(run / "policy.safetensors").training == policy.training

    code = cli.main(
        ["evaluate", "--data", str(tmp_path / "data"), "--policy", str(run / "policy.safetensors"), "--sigma", "20"]
    )
    assert code == 0 and "noise gaussian sigma=20" in capsys.readouterr().out


def test_evaluate_needs_a_level_for_a_blind_policy(tmp_path, capsys):
    policy = make_policy()
    policy.noise_model = NoiseModel(sigma=(5.0, 55.0))
    path = save_checkpoint(policy, tmp_path / "blind.safetensors")
    _write_pngs(tmp_path / "data", count=1)
    assert cli.main(["evaluate", "--data", str(tmp_path / "data"), "--policy", str(path)]) == 2
    assert "give the noise level" in capsys.readouterr().err


def test_train_without_data_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "run")]) == 2
    assert "--config FILE" in capsys.readouterr().err


def test_policies_lists_shipped_policies(capsys):
    assert cli.main(["policies"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in api.list_policies())


def test_demo_writes_pngs_of_the_result_and_its_action_map(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(fixed_action=1), tmp_path / "p.safetensors")
    assert cli.main(["demo", "-o", str(tmp_path / "demo"), "--policy", str(policy_path), "--image", "coins"]) == 0
    noisy = np.asarray(Image.open(tmp_path / "demo" / "noisy.png"))
    restored = np.asarray(Image.open(tmp_path / "demo" / "restored.png"))
    np.testing.assert_array_equal(restored, noisy)  # this policy does nothing, everywhere
    actions = np.asarray(Image.open(tmp_path / "demo" / "actions.png").convert("RGB"))
    assert (actions == (90, 90, 90)).all(axis=-1).sum() >= 3 * noisy.size  # three steps of "do nothing"
    assert "PSNR" in capsys.readouterr().out


def test_bfloat16_without_native_support_warns_once_and_restores_in_float32(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("napari_pixelrl.core.environment.has_native_bfloat16", lambda device="cpu": False)
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in")
    out = tmp_path / "out"
    code = cli.main(
        ["restore", *map(str, inputs), "-o", str(out), "--policy", str(policy_path), "--precision", "bfloat16"]
    )
    assert code == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "float32 instead" in warned[0]
    expected = api.restore(np.asarray(Image.open(inputs[0])), make_policy())
    np.testing.assert_array_equal(tifffile.imread(out / "img0_restored.tif"), expected.image)


def test_restore_notes_a_file_whose_noise_does_not_fit_the_policy(tmp_path, capsys, monkeypatch):
    (tmp_path / "in").mkdir()
    clean = np.tile(np.linspace(40, 200, 64), (64, 1))
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 5, clean.shape), 0, 255).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in" / "faint.tif", noisy)
    passes = []
    whole_image_ranges = inference._default_ranges
    monkeypatch.setattr(inference, "_default_ranges", lambda *a: passes.append(a) or whole_image_ranges(*a))
    code = cli.main(
        ["restore", str(tmp_path / "in" / "faint.tif"), "-o", str(tmp_path / "out"), "--policy", "gaussian-50"]
    )
    assert code == 0
    assert len(passes) == 1  # the noise check reuses the ranges of the restoration: one pass over the image
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "faint.tif" in note[0] and "trained for sigma 50" in note[0]


def test_nothing_restorable_is_one_clear_error_without_a_legend_or_an_empty_folder(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    code = cli.main(["restore", str(notes), "-o", str(tmp_path / "out"), "--policy", "gaussian-25"])
    captured = capsys.readouterr()
    assert code == 2 and "error: nothing restored" in captured.err
    assert "action map values" not in captured.out and "skipped" in captured.out
    assert not (tmp_path / "out").exists()
