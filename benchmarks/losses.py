"""Forward+backward time of every registered loss against pytorch-metric-learning's, in one run.

    .venv/bin/python benchmarks/losses.py [--batch 256 --dim 128 --per-class 4 --repeat 30]

Each loss is timed beside PML's implementation configured alike (benchmarks/pml_equivalents), on
the same L2-normalised batch, interleaved run by run so that all see the same machine load.
Targets: at most 1.0x PML, and at most 0.5x for the four batch triplet losses. The batch triplet
losses are also timed against sentence-transformers' (benchmarks/st_equivalents), which is the
reference, with the same 0.5x target, for batch_semi_hard: PML has no FaceNet semi-hard loss.
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
from benchmarks.st_equivalents import st_equivalents  # noqa: E402

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
    st = st_equivalents()
    print(f"batch {args.batch} = {classes} classes x {args.per_class}, dim {args.dim}, CPU, "
          f"{torch.get_num_threads()} threads; median of {args.repeat} forward+backward steps after 3 warm-ups\n")
    header = ("loss", "ours ms", "PML ms", "ratio", "ST ms", "ratio", "target")
    print(f"{header[0]:26s} " + " ".join(f"{h:>{9 if 'ms' in h else 7}s}" for h in header[1:]) + "  verdict")
    misses = 0
    for name in args.only or losses.available():
        torch.manual_seed(0)
        ours = losses.build(name, embedding_dim=args.dim, num_classes=classes)
        references = {key: builders[name](ours) for key, builders in (("pml", pml), ("st", st)) if name in builders}
        candidates = [ours, *references.values()]
        times: list[list[float]] = [[] for _ in candidates]
        for i in range(args.repeat + 3):
            for j, module in enumerate(candidates):
                seconds = _step_seconds(module, embeddings, labels)
                if i >= 3:
                    times[j].append(seconds)
        ours_ms, *reference_ms = (1000 * statistics.median(t) for t in times)
        ref_ms = dict(zip(references, reference_ms, strict=True))
        target = 0.5 if name in BATCH_TRIPLET else 1.0
        # the verdict is against PML where PML has the loss, else against sentence-transformers
        judge = "pml" if "pml" in ref_ms else "st"
        cells = [f"{ref_ms[key]:9.2f} {ours_ms / ref_ms[key]:7.2f}" if key in ref_ms else f"{'—':>9s} {'—':>7s}"
                 for key in ("pml", "st")]
        if judge not in ref_ms:
            print(f"{name:26s} {ours_ms:9.2f} {cells[0]} {cells[1]} {'—':>7s}  no reference implementation")
            continue
        verdict = "PASS" if ours_ms / ref_ms[judge] <= target else "MISS"
        misses += verdict == "MISS"
        print(f"{name:26s} {ours_ms:9.2f} {cells[0]} {cells[1]} {target:7.1f}  {verdict}"
              + ("" if judge == "pml" else " (vs ST)"))
    print(f"\n{misses} loss(es) miss their target")


if __name__ == "__main__":
    main()
