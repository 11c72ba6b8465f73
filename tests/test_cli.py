from __future__ import annotations

import numpy as np
import tifffile
from conftest import make_policy
from PIL import Image

from napari_pixelrl import api, cli
from napari_pixelrl.core.checkpoint import save_checkpoint


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


def test_restore_reports_bad_files_and_continues(tmp_path, capsys):
    policy_path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    inputs = _write_pngs(tmp_path / "in", count=1)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    code = cli.main(["restore", str(rgb), str(inputs[0]), "-o", str(tmp_path / "out"), "--policy", str(policy_path)])
    assert code == 1
    assert "RGB" in capsys.readouterr().out
    assert (tmp_path / "out" / "img0_restored.tif").is_file()


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
