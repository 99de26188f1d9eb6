"""benchmarks/text.py runs end to end at a toy size and reports its figures as JSON (no speed asserted: the
figures of a loaded CI machine mean nothing, and the benchmark states its target itself). What is checked is
that every figure is there and that the harness's embeddings equal SentenceTransformer.encode's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a fresh process loading the encoder, 128 texts embedded 3 ways, 3 short trainings

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "text.py"
# named, not left to the default (text_quick once it exists), so that the class counts below hold
TINY_TEXT = str(Path(__file__).resolve().parent / "tiny_text.toml")


def test_text_benchmark_reports_every_figure_as_json():
    # 128 texts: the first 6 classes of wordnet, 4 to train with tiny_text's batch of 4 classes, 2 to validate
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--texts", "128", "--layers", "0,1", "--repeat", "1", "--iterations", "3",
         "--warmup", "1", "--threads", "1", "--protocol", TINY_TEXT, "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["texts"] == 128 and result["classes"] == 6 and result["threads"] == 1
    assert result["target_ratio"] == 1.0 and result["tolerance"] == 1e-5
    assert result["reference_batch_size"] == 32 and result["dimension"] == 384
    assert result["reference"]["texts_per_s"] > 0 and len(result["reference"]["texts_per_s_runs"]) == 1
    assert [h["trained_layers"] for h in result["harness"]] == [0, 1]
    for h in result["harness"]:
        for key in ("texts_per_s", "cache_texts_per_s", "embed_texts_per_s", "ratio", "seconds", "cache_seconds"):
            assert h[key] > 0, key
        assert h["network_seconds"] >= 0 and h["embed_seconds"] >= 0
        assert isinstance(h["meets_target"], bool)
        assert 0 <= h["max_abs_diff"] <= 1e-5 and h["same"]  # the same embeddings as encode, both ways
    training = result["training"]
    assert training["loss"] == "batch_semi_hard" and training["iterations"] == 3
    assert training["iterations_per_s"] > 0 and training["texts_per_s"] > 0
    assert training["train_classes"] == 4 and training["val_classes"] == 2
    assert training["train_texts"] + training["val_texts"] == 128
    assert training["protocol"] == "tiny_text" and training["protocol_source"] == TINY_TEXT
    assert "ratio harness / encode" in proc.stderr  # the human-readable report went to stderr


def test_text_benchmark_refuses_too_few_classes_for_training():
    # 24 texts hold 3 classes: tiny_text needs 4 to train and 2 to validate; refused before anything is timed
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--texts", "24", "--protocol", TINY_TEXT, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "give more --texts" in proc.stderr
