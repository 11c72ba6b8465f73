"""Large images and many files: peak memory and time per megapixel of tiled restores, and files per second with
1 and 2 worker processes, measured in one run.

    python benchmarks/scale.py --part memory --sizes 4096 8192   # each size in a fresh process: peak RSS
    python benchmarks/scale.py --part workers --files 4 --size 1024
    python benchmarks/scale.py --part training --episodes 6       # 1 process against torchrun with 2
    python benchmarks/scale.py --part gpu                         # only where torch sees a CUDA device

Memory: every size runs in its own process (so the peak is that restore's alone), on a noisy 8-bit photo made
by repeating scikit-image's camera; the reference in the same run is the untiled restore of a 1024x1024 crop,
whose time per megapixel shows what the halo costs. Workers: the same files through ``restore_files`` with one
process (torch on all cores) and with two (one core each). Training: the same A2C episodes on BSD432 crops with
one process and with two data-parallel processes under torchrun (one core each), same global batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from napari_pixelrl import api
from napari_pixelrl.batch import RestoreJob, restore_files
from napari_pixelrl.core.inference import default_memory_budget
from napari_pixelrl.core.tiling import halo_width, plan_tiles, tile_side_for_budget


def noisy_photo(size: int, seed: int = 0) -> np.ndarray:
    """``size x size`` uint8: camera repeated, plus Gaussian noise of sigma 25."""
    camera = skimage.data.camera().astype(np.float32)
    reps = -(-size // camera.shape[0])
    big = np.tile(camera, (reps, reps))[:size, :size]
    noisy = big + np.random.default_rng(seed).normal(0, 25, big.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def one_size(size: int, policy_name: str, precision: str) -> dict:
    """Restore one ``size x size`` image in this process; peak RSS and times."""
    policy = api.load_policy(policy_name)
    image = noisy_photo(size)
    crop = np.ascontiguousarray(image[:1024, :1024])
    start = time.perf_counter()
    api.restore(crop, policy, precision=precision)
    untiled = time.perf_counter() - start
    device = torch.device("cpu")
    halo = halo_width(policy.model.config, policy.steps)
    core = tile_side_for_budget(default_memory_budget(device), policy.model.config.width, halo)
    tiles = len(plan_tiles(size, size, core, halo))
    start = time.perf_counter()
    result = api.restore(image, policy, precision=precision)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    megapixels = size * size / 1e6
    return {
        "size": size,
        "tiles": tiles,
        "core": core,
        "halo": halo,
        "seconds": seconds,
        "s_per_mp": seconds / megapixels,
        "untiled_1024_s_per_mp": untiled / (crop.size / 1e6),
        "peak_rss_gib": peak / 2**30,
        "actions_shape": list(result.actions.shape),
    }


def memory(sizes: list[int], policy: str, precision: str) -> None:
    print("| size | tiles (core + 2 x halo) | time | s / MP tiled | s / MP untiled 1024² | ratio | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--part", "one", "--sizes", str(size), "--policy", policy,
             "--precision", precision],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {size}x{size} | {row['tiles']} ({row['core']} + 2 x {row['halo']}) | {row['seconds']:.0f} s "
            f"| {row['s_per_mp']:.1f} | {row['untiled_1024_s_per_mp']:.1f} "
            f"| {row['s_per_mp'] / row['untiled_1024_s_per_mp']:.2f} | {row['peak_rss_gib']:.2f} GiB |",
            flush=True,
        )


def workers(files: int, size: int, policy: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for i in range(files):
            paths.append(folder / f"img{i}.png")
            Image.fromarray(noisy_photo(size, seed=i)).save(paths[-1])
        print("| processes | torch threads each | files | time | MP/s | speed-up |")
        print("|---|---|---|---|---|---|")
        base = None
        cores = os.cpu_count() or 1
        for count in (1, 2):
            job = RestoreJob(policy=policy, device="cpu", threads=cores // count)
            start = time.perf_counter()
            results = list(restore_files(paths, folder / f"out{count}", job, workers=count))
            seconds = time.perf_counter() - start
            assert not any(r.error for r in results), [r.error for r in results]
            rate = sum(r.megapixels for r in results) / seconds
            base = base or rate
            print(f"| {count} | {cores // count} | {files} | {seconds:.1f} s | {rate:.3f} | {rate / base:.2f} |")


BSD432 = Path(__file__).resolve().parents[2] / "shared" / "data" / "BSD432"


def _flat(path: Path) -> torch.Tensor:
    return torch.cat([t.flatten().double() for t in api.load_policy(path).model.state_dict().values()])


def training(episodes: int, batch_size: int, data: Path) -> None:
    """Same episodes, same global batch: 1 process (all cores), 2 processes under torchrun (1 core each), and 1
    process on 1 core, whose difference from the first shows how far float rounding alone moves the weights."""
    cores = os.cpu_count() or 1
    stage = {"objective": "a2c", "data": str(data), "noise": {"kind": "gaussian", "sigma": 25}, "episodes": episodes,
             "batch_size": batch_size, "crop_size": 48, "validate_every": 0, "device": "cpu"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(stage))
        print(
            "| processes | torch threads each | global batch | s / episode | speed-up | weights: distance from run 1 |"
        )
        print("|---|---|---|---|---|---|")
        base, reference = None, None
        for count, threads in ((1, cores), (2, cores // 2), (1, 1)):
            run = Path(tmp) / f"run{count}-{threads}"
            launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}"] if count > 1 else []
            command = [sys.executable, *launcher, "-m", "napari_pixelrl", "train", str(run), "--config", str(config)]
            subprocess.run(
                command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True
            )
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            per_episode = (log[-1]["seconds"] - log[0]["seconds"]) / (len(log) - 1)  # the first one warms up
            base = base or per_episode
            weights = _flat(run / "policy.safetensors")
            reference = weights if reference is None else reference
            distance, speed = float((weights - reference).norm() / reference.norm()), base / per_episode
            print(f"| {count} | {threads} | {batch_size} | {per_episode:.2f} | {speed:.2f} | {distance:.1e} |")


def gpu(policy_name: str) -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    policy = api.load_policy(policy_name)
    print("| device | size | precision | s / MP | MP/s |")
    print("|---|---|---|---|---|")
    for size in (2048, 8192):
        image = noisy_photo(size)
        for precision in ("float32", "bfloat16"):
            api.restore(image[:512, :512], policy, device="cuda", precision=precision)  # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            api.restore(image, policy, device="cuda", precision=precision)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            mp = size * size / 1e6
            name = torch.cuda.get_device_name()
            print(f"| {name} | {size}² | {precision} | {seconds / mp:.3f} | {mp / seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("memory", "workers", "training", "gpu", "one"), default="memory")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=BSD432)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--policy", default="gaussian-25")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    if args.part == "one":
        print(json.dumps(one_size(args.sizes[0], args.policy, args.precision)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    {"memory": lambda: memory(args.sizes, args.policy, args.precision),
     "workers": lambda: workers(args.files, args.size, args.policy),
     "training": lambda: training(args.episodes, args.batch_size, args.data),
     "gpu": lambda: gpu(args.policy)}[args.part]()  # fmt: skip


if __name__ == "__main__":
    main()
