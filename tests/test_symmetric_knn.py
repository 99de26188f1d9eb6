"""The symmetric same-source search: exact neighbour lists, ties broken by index, any thread count."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from harness import symmetric_knn as sk
from harness.symmetric_knn import symmetric_knn


def exact_vectors(seed: int, n: int, dim: int, levels: int = 3) -> np.ndarray:
    """Small integers: every inner product is exact in float32 whatever the summation order, and
    equal products (ties) are frequent, so the order is fully defined and checkable."""
    rng = np.random.default_rng(seed)
    return rng.integers(-levels, levels + 1, size=(n, dim)).astype(np.float32)


def brute_force(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best other rows, by inner product (in float64) down, then index up."""
    g = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(g, -np.inf)
    idx = np.arange(len(x))
    order = np.lexsort((np.broadcast_to(idx, g.shape), -g), axis=1)[:, :k]
    return np.take_along_axis(g, order, axis=1), order


@pytest.mark.parametrize(
    ("n", "dim", "k"),
    [
        (7, 3, 1),  # one tile, one strip
        (7, 3, 6),  # k = N - 1: every other row
        (300, 5, 4),  # one tile, two strips
        (2 * sk.TILE + 77, 6, 9),  # three tiles, the last short, with a short strip
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_equals_brute_force_with_ties(n, dim, k, threads):
    x = exact_vectors(n, n, dim)
    sims, ids = symmetric_knn(x, k, threads=threads)
    want_sims, want_ids = brute_force(x, k)
    assert ids.dtype == np.int64 and sims.dtype == np.float32
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(sims.astype(np.float64), want_sims)


def test_ties_are_frequent_in_the_exact_data():
    # The brute-force test above is only about tie-breaking if its data hold many ties.
    x = exact_vectors(0, 2 * sk.TILE + 77, 6)
    sims, _ = symmetric_knn(x, 9)
    assert (np.diff(sims, axis=1) == 0).mean() > 0.3


def test_duplicate_rows_never_list_the_query_itself():
    # Sign vectors all have the norm^2 16, so a row's largest product (16) is with its own copies.
    signs = np.random.default_rng(1).choice([-1.0, 1.0], size=(40, 16)).astype(np.float32)
    assert len(np.unique(signs, axis=0)) == 40
    x = np.repeat(signs, 5, axis=0)  # each row 5 times, adjacent
    _, ids = symmetric_knn(x, 6)
    assert not (ids == np.arange(len(x))[:, None]).any()
    # A row's 4 copies tie at the top and come first, lowest index first.
    copies = (np.arange(len(x)) // 5)[:, None] * 5 + np.arange(5)
    expected = np.array([[c for c in row if c != q] for q, row in enumerate(copies)])
    np.testing.assert_array_equal(ids[:, :4], expected)


def test_thread_count_does_not_change_the_result():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((sk.TILE + 500, 16)).astype(np.float32)
    one = symmetric_knn(x, 5, threads=1)
    for threads in (2, 4):
        other = symmetric_knn(x, 5, threads=threads)
        np.testing.assert_array_equal(one[0], other[0])
        np.testing.assert_array_equal(one[1], other[1])


def test_continuous_data_agrees_with_faiss():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((sk.TILE + 300, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims, ids = symmetric_knn(x, 8, threads=2)
    d, i = faiss.knn(x, x, 9, metric=faiss.METRIC_INNER_PRODUCT)
    # Float32 sums round differently in the two searches; on continuous data near-ties are rare.
    assert (ids == i[:, 1:]).all(axis=1).mean() > 0.999
    np.testing.assert_allclose(sims, d[:, 1:], atol=1e-6)


@pytest.mark.parametrize("k", [0, 7, -1])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match=r"k must lie in \[1, N - 1\] = \[1, 6\]"):
        symmetric_knn(exact_vectors(0, 7, 3), k)


def test_heap_bytes():
    assert sk.heap_bytes(1000, 10) == 1000 * 10 * 12


def test_schedule_hands_out_every_tile_once_and_never_two_that_share_a_block():
    tiles = [(a, a) for a in range(6)] + [(a, b) for a in range(6) for b in range(6) if b > a]
    schedule = sk._BlockSchedule(tiles)
    held: list[int] = []
    taken: list[tuple[int, int]] = []
    lock = threading.Lock()
    clashes = []

    def worker() -> None:
        tile = schedule.take()
        while tile is not None:
            with lock:
                if set(tile) & set(held):
                    clashes.append(tile)
                held.extend(set(tile))
                taken.append(tile)
            time.sleep(0.001)
            with lock:
                for block in set(tile):
                    held.remove(block)
            tile = schedule.take(done=tile)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not clashes
    assert sorted(taken) == sorted(tiles)
    assert taken[:3] == [(0, 0), (1, 1), (2, 2)]  # in order while nothing blocks
