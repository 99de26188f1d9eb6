"""Benchmark the reality_check protocol's training loop: images per second and peak memory.

Runs `harness.train.train_fold` itself (BN-Inception, RMSprop, batch 32 = 8 x 4, RandomResizedCrop(227)
and flip read from the decoded-image cache, frozen BatchNorm) on generated CUB-sized JPEGs, with the
protocol's own settings except the budget: `--iterations` training iterations and a single validation on
a small set at the end, so the figure is the training loop's. BN-Inception starts from random weights
(nothing is downloaded; the speed is the same). A short warm-up training runs first (cuDNN autotuning,
allocator), then the timed one. On a GPU it reports the peak allocated GPU memory; on the CPU, the
process's peak RSS. The device is the harness's default (CUDA when present).

    python benchmarks/training.py [--iterations 300 --images 1024 --loss batch_hard]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_jpegs(folder: Path, count: int, classes: int) -> None:
    """CUB-like JPEGs (about 500 x 375) in an ImageFolder layout, seeded."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        width, height = int(rng.integers(400, 501)), int(rng.integers(300, 501))
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        pixels = ramp * rng.uniform(0.3, 1.0, size=(1, 1, 3)) + rng.normal(0, 20, size=(height, width, 3))
        target = folder / f"class_{i % classes:03d}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--loss", default="batch_hard")
    parser.add_argument("--protocol", default="reality_check")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()

    import torch

    from harness.image.data import load_dataset
    from harness.protocol import load_protocol
    from harness.train import default_device, train_fold

    base = load_protocol(args.protocol, dataset="cub200")
    protocol = dataclasses.replace(base, model=dataclasses.replace(base.model, pretrained=False))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        write_jpegs(folder, args.images, args.classes)
        started = time.perf_counter()
        data = load_dataset(str(folder), image_size=protocol.images.image_size, resize=protocol.images.resize,
                            root=Path(tmp) / "data", progress=False)
        cache_seconds = time.perf_counter() - started
        train_classes = list(range(args.classes - 8))
        val = data.subset(range(args.classes - 8, args.classes))
        val = dataclasses.replace(val, rows=val.rows[:32], labels=val.labels[:32])  # one small validation
        device = default_device()

        def run(iterations: int) -> float:
            budget = dataclasses.replace(protocol.budget, max_iterations=iterations, validation_interval=iterations)
            started = time.perf_counter()
            train_fold(protocol=dataclasses.replace(protocol, budget=budget), loss_name=args.loss,
                       hparams={"margin": 0.1}, train_set=data.subset(train_classes), val_set=val, seed=0,
                       device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - started

        run(args.warmup)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = run(args.iterations)
    on_gpu = device.type == "cuda"
    figures = {
        "device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({torch.get_num_threads()} threads)",
        "protocol": protocol.name, "loss": args.loss, "iterations": args.iterations,
        "batch_size": protocol.batch.batch_size, "image_size": protocol.images.image_size,
        "seconds": round(seconds, 2),
        "images_per_second": round(args.iterations * protocol.batch.batch_size / seconds, 1),
        "cache_build_seconds": round(cache_seconds, 2),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_gpu else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
