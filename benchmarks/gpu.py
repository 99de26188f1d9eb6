"""Benchmark concurrent fold trainings on one GPU: images per second and peak memory, 1 to 8 side by side.

One reality-check training (BN-Inception, batch 32, 227 px) leaves most of a modern GPU idle. This runs
1, 2, 4 and 8 trainings at once on one GPU, each in its own process, through the real
`harness.train.train_fold` on generated CUB-sized JPEGs read from the decoded-image cache, for the
float32 protocol and its bfloat16 and channels_last variants. Each training runs 2 x `--iterations`
with one validation (32 images) at the half and one at the end: the first half warms up (CUDA
context, allocator, kernels), then every training of the round starts its timed half together.

Printed per round: images per second of each training and of all together, each against one
training alone, each variant against float32, and the peak memory PyTorch allocated per training
(torch.cuda.max_memory_allocated; every process also holds a CUDA context, not counted) and summed.
Without CUDA it says so and exits 0; `--device cpu` runs the same rounds on the CPU, a smoke test of
the benchmark itself whose figures mean nothing.

    python benchmarks/gpu.py [--iterations 30 --concurrency 1 2 4 8 --variants float32 bfloat16 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {
    "float32": {},
    "bfloat16": {"precision": "bfloat16"},
    "channels_last": {"channels_last": True},
    "bfloat16+channels_last": {"precision": "bfloat16", "channels_last": True},
}
VAL_IMAGES = 32
REPLY_TIMEOUT_S = 900  # a worker silent this long has died (killed for memory, a CUDA fault)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(rank: int, commands, replies, setup: dict) -> None:
    """One training process: runs (protocol, threads) tasks until None, replying with each one's figures."""
    import torch

    from harness.image.data import load_dataset

    device = torch.device(setup["device"])
    data = load_dataset(setup["folder"], image_size=setup["image_size"], resize=setup["resize"],
                        root=Path(setup["root"]), progress=False)
    train_set = data.subset(range(setup["classes"] - 8))
    val = data.subset(range(setup["classes"] - 8, setup["classes"]))
    val_set = dataclasses.replace(val, rows=val.rows[:VAL_IMAGES], labels=val.labels[:VAL_IMAGES])
    while (task := commands.get()) is not None:
        protocol, threads = task
        torch.set_num_threads(threads)
        try:
            replies.put(("done", rank, _timed_training(protocol, rank, train_set, val_set, setup["loss"], device,
                                                       commands, replies)))
        except Exception:
            replies.put(("error", rank, traceback.format_exc()))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next round's processes see only their own memory in use


def _timed_training(protocol, rank: int, train_set, val_set, loss: str, device, commands, replies) -> dict:
    """One training: at the validation that ends its warm-up half it replies 'warm' and waits for 'go'
    (every training of the round warm), then its second half is timed."""
    import torch

    from harness.train import train_fold

    started = []

    def start_timing(iteration: int, score: float) -> None:
        if iteration == protocol.budget.validation_interval:
            _synchronize(device)
            replies.put(("warm", rank, None))
            commands.get()
            started.append(time.time())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_fold(protocol=protocol, loss_name=loss, hparams={"margin": 0.1}, train_set=train_set, val_set=val_set,
               seed=rank, device=device, on_validation=start_timing)
    _synchronize(device)
    ended = time.time()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"start": started[0], "end": ended, "peak_bytes": peak}


def _reply(replies, kind: str) -> tuple[int, object]:
    import queue

    try:
        got, rank, payload = replies.get(timeout=REPLY_TIMEOUT_S)
    except queue.Empty:
        raise SystemExit(f"benchmarks/gpu.py: no worker replied in {REPLY_TIMEOUT_S} s; one has died") from None
    if got == "error":
        raise SystemExit(f"benchmarks/gpu.py: training process {rank} failed:\n{payload}")
    assert got == kind, (got, kind)
    return rank, payload


def _round(workers: list, replies, protocol, trainings: int, threads: int) -> list[dict]:
    """`trainings` trainings at once; each one's timed half starts when all are warm."""
    for commands, _ in workers[:trainings]:
        commands.put((protocol, threads))
    for _ in range(trainings):
        _reply(replies, "warm")
    for commands, _ in workers[:trainings]:
        commands.put("go")
    return [_reply(replies, "done")[1] for _ in range(trainings)]


def _figures(results: list[dict], images_per_training: int) -> dict:
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    peaks = [r["peak_bytes"] for r in results]
    return {
        "images_per_second_each": sum(images_per_training / (r["end"] - r["start"]) for r in results) / len(results),
        "images_per_second_total": images_per_training * len(results) / wall,
        "peak_mib_each": None if None in peaks else max(peaks) / 2**20,
        "peak_mib_total": None if None in peaks else sum(peaks) / 2**20,
    }


def _table(rows: list[dict]) -> str:
    one = {r["variant"]: r for r in rows if r["trainings"] == 1}
    float32 = {r["trainings"]: r for r in rows if r["variant"] == "float32"}

    def ratio(value: float, reference: dict | None, key: str) -> str:
        return f"{value / reference[key]:.2f}x" if reference else "-"

    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = ["| variant | trainings | img/s each | each vs one | img/s total | total vs one | total vs float32 "
             "| peak MiB each | peak MiB total |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        each, total = r["images_per_second_each"], r["images_per_second_total"]
        lines.append(f"| {r['variant']} | {r['trainings']} | {each:.0f} "
                     f"| {ratio(each, one.get(r['variant']), 'images_per_second_each')} | {total:.0f} "
                     f"| {ratio(total, one.get(r['variant']), 'images_per_second_each')} "
                     f"| {ratio(total, float32.get(r['trainings']), 'images_per_second_total')} "
                     f"| {mib(r['peak_mib_each'])} | {mib(r['peak_mib_total'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30, help="timed iterations per training (as many warm up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default="cuda", help="cuda (one GPU: the first visible) or cpu (a smoke test)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--loss", default="batch_hard")
    parser.add_argument("--protocol", default="reality_check")
    parser.add_argument("--json", action="store_true", help="print the rounds as one JSON object")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no GPU (CUDA is not available); nothing measured")
        return
    from benchmarks.training import write_jpegs
    from harness.image.data import load_dataset
    from harness.protocol import load_protocol

    base = load_protocol(args.protocol, dataset="cub200")
    base = dataclasses.replace(
        base, model=dataclasses.replace(base.model, pretrained=False),  # random weights: nothing downloaded
        budget=dataclasses.replace(base.budget, max_iterations=2 * args.iterations,
                                   validation_interval=args.iterations))
    images_per_training = args.iterations * base.batch.batch_size
    device = torch.device(args.device)
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, root = Path(tmp) / "jpegs", Path(tmp) / "data"
        write_jpegs(folder, args.images, args.classes)
        load_dataset(str(folder), image_size=base.images.image_size, resize=base.images.resize, root=root,
                     progress=False)  # the cache, built once for every worker
        setup = {"device": args.device, "folder": str(folder), "root": str(root), "classes": args.classes,
                 "image_size": base.images.image_size, "resize": base.images.resize, "loss": args.loss}
        context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
        replies = context.Queue()
        workers = []
        for rank in range(max(args.concurrency)):
            commands = context.Queue()
            process = context.Process(target=_worker, args=(rank, commands, replies, setup), daemon=True)
            process.start()
            workers.append((commands, process))
        try:
            for variant in args.variants:
                protocol = dataclasses.replace(base, model=dataclasses.replace(base.model, **VARIANTS[variant]))
                for trainings in sorted(args.concurrency):
                    results = _round(workers, replies, protocol, trainings, max(1, cores // trainings))
                    rows.append({"variant": variant, "trainings": trainings,
                                 **_figures(results, images_per_training)})
        finally:
            for commands, _ in workers:
                commands.put(None)
            for _, process in workers:
                process.join(timeout=30)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cores} cores)"
    header = {"device": name, "protocol": base.name, "backbone": base.model.backbone,
              "batch_size": base.batch.batch_size, "image_size": base.images.image_size,
              "timed_iterations": args.iterations}
    if args.json:
        print(json.dumps({**header, "rounds": rows}))
        return
    print(", ".join(f"{key} {value}" for key, value in header.items()))
    print(_table(rows))


if __name__ == "__main__":
    main()
