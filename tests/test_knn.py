"""The device search (matrix product and top-k in torch, as on a GPU), run on the CPU against FAISS's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from harness import metrics

# The benchmark's SOP-like data, at a test size (benchmarks/ is not a package on the test path).
_spec = importlib.util.spec_from_file_location("bench_metrics", Path(__file__).parents[1] / "benchmarks" / "metrics.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)


@pytest.fixture(scope="module")
def sop_like():
    x, labels = _bench.make_data(1203, 32, 200, seed=1)  # classes of 2..12, no exact ties
    return np.ascontiguousarray(x), labels


@pytest.mark.parametrize("rows", [1, 7, 500, 4096])
def test_the_device_search_finds_faiss_neighbours(sop_like, rows):
    x, labels = sop_like
    k = int(np.bincount(labels).max()) - 1
    _, plain = faiss.knn(x, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    chunks = dict(metrics._torch_search(x, np.ones(len(x), dtype=bool), k, rows, torch.device("cpu")))
    assert np.array_equal(np.concatenate([chunks[s] for s in sorted(chunks)]), metrics._drop_self(plain, 0))


def test_device_metrics_equal_faiss_metrics(sop_like):
    x, labels = sop_like
    expected = metrics.retrieval_metrics(x, labels)
    got = metrics.retrieval_metrics(torch.from_numpy(x), labels, device=torch.device("cpu"))
    for key in ("precision_at_1", "r_precision", "map_at_r"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert (got["n_queries"], got["n_singletons"]) == (expected["n_queries"], expected["n_singletons"])


def test_singleton_chunks_are_skipped_on_the_device_too():
    labels = np.array([0, 0, 1, 2, 3, 3])
    x = np.eye(6, 4, dtype=np.float32) + 0.1
    expected = metrics.retrieval_metrics(x, labels, chunk_size=2)
    assert metrics.retrieval_metrics(x, labels, chunk_size=2, device=torch.device("cpu")) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_embeddings_are_searched_on_their_gpu(sop_like):
    x, labels = sop_like
    expected = metrics.retrieval_metrics(x, labels)
    got = metrics.retrieval_metrics(torch.from_numpy(x).cuda(), labels)
    for key in ("precision_at_1", "r_precision", "map_at_r"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
