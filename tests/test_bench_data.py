"""benchmarks/data.py runs end to end at a toy size and reports its figures as JSON (no speed asserted:
the figures of a loaded CI machine mean nothing, and the benchmark states its targets itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three fresh processes, each importing torch (~4 s)

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "data.py"


def test_data_benchmark_reports_both_ways_as_json():
    # 80-100 px images cached at 64 px and cropped to 56: every worker's time is then its imports.
    # No scaling run: each fresh process pays torch's import, and the scaling is one more of them.
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--images", "32", "--batches", "2", "--repeat", "1", "--size", "100",
         "--resize", "64", "--crop", "56", "--no-scaling", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for way in ("plain", "cache"):
        assert result[way]["images_per_s"] > 0
        assert result[way]["peak_rss_bytes"] > 0
    assert result["ratio"] > 0 and result["target_speedup"] == 3.0
    assert result["build"]["images_per_s"] > 0
    assert result["batch_shape"] == [32, 3, 56, 56]
    assert result["same_batches"]  # the two ways did the same work, image for image
    assert "scaling" not in result
