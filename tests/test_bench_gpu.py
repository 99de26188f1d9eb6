"""benchmarks/gpu.py: without CUDA it says so and exits 0; its rounds run end to end on the CPU at a toy size
(the GPU figures themselves are only measured on a CUDA machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU: the benchmark would measure it")
def test_without_a_gpu_it_says_so_and_exits_0():
    proc = subprocess.run([sys.executable, str(BENCHMARK)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == ["benchmarks/gpu.py: no GPU (CUDA is not available); nothing measured"]


@pytest.mark.slow  # two spawned training processes, each importing torch
def test_rounds_run_on_the_cpu_and_report_every_variant_and_concurrency():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--device", "cpu", "--protocol", "smoke", "--iterations", "1",
         "--concurrency", "1", "2", "--variants", "float32", "bfloat16+channels_last", "--images", "64",
         "--classes", "16", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["protocol"], result["batch_size"], result["image_size"]) == ("smoke", 32, 64)
    rounds = {(r["variant"], r["trainings"]): r for r in result["rounds"]}
    assert set(rounds) == {(v, n) for v in ("float32", "bfloat16+channels_last") for n in (1, 2)}
    for r in rounds.values():
        assert r["images_per_second_each"] > 0 and r["images_per_second_total"] > 0
        assert r["peak_mib_each"] is None and r["peak_mib_total"] is None  # GPU memory only
