"""Forward+backward time of every registered loss against pytorch-metric-learning's, in one run.

    .venv/bin/python benchmarks/losses.py [--batch 256 --dim 128 --per-class 4 --repeat 30]

Each loss is timed beside PML's implementation configured alike (benchmarks/pml_equivalents), on
the same L2-normalised batch, interleaved run by run so that both see the same machine load.
Targets: at most 1.0x PML, and at most 0.5x for the four batch triplet losses.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import losses  # noqa: E402
from benchmarks.pml_equivalents import equivalents  # noqa: E402

BATCH_TRIPLET = {"batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin"}


def _step_seconds(module: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    x = embeddings.detach().clone().requires_grad_()
    start = time.perf_counter()
    module(x, labels).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--only", nargs="*", help="loss names to time (default: all)")
    args = parser.parse_args()

    torch.manual_seed(0)
    classes = args.batch // args.per_class
    embeddings = F.normalize(torch.randn(args.batch, args.dim), dim=1)
    labels = torch.arange(classes).repeat_interleave(args.per_class)[torch.randperm(args.batch)]
    pml = equivalents()
    print(f"batch {args.batch} = {classes} classes x {args.per_class}, dim {args.dim}, CPU, "
          f"{torch.get_num_threads()} threads; median of {args.repeat} forward+backward steps after 3 warm-ups\n")
    print(f"{'loss':26s} {'ours ms':>9s} {'PML ms':>9s} {'ratio':>7s} {'target':>7s}  verdict")
    misses = 0
    for name in args.only or losses.available():
        torch.manual_seed(0)
        ours = losses.build(name, embedding_dim=args.dim, num_classes=classes)
        reference = pml[name](ours) if name in pml else None
        candidates = [ours] + ([reference] if reference is not None else [])
        times: list[list[float]] = [[] for _ in candidates]
        for i in range(args.repeat + 3):
            for j, module in enumerate(candidates):
                seconds = _step_seconds(module, embeddings, labels)
                if i >= 3:
                    times[j].append(seconds)
        ours_ms = 1000 * statistics.median(times[0])
        if reference is None:
            print(f"{name:26s} {ours_ms:9.2f} {'—':>9s} {'—':>7s} {'—':>7s}  no PML equivalent")
            continue
        pml_ms = 1000 * statistics.median(times[1])
        target = 0.5 if name in BATCH_TRIPLET else 1.0
        ratio = ours_ms / pml_ms
        verdict = "PASS" if ratio <= target else "MISS"
        misses += verdict == "MISS"
        print(f"{name:26s} {ours_ms:9.2f} {pml_ms:9.2f} {ratio:7.2f} {target:7.1f}  {verdict}")
    print(f"\n{misses} loss(es) miss their target")


if __name__ == "__main__":
    main()
