"""Retrieval metrics: hand-computed cases, agreement with pytorch-metric-learning, robustness, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from harness import metrics
from harness.errors import HarnessError
from harness.metrics import retrieval_metrics, retrieval_metrics_query_reference, score_files

EXACT = 1e-12
KEYS = ("precision_at_1", "r_precision", "map_at_r")
# The same-source CPU searches; tests that take `search` run with each (auto picks by size).
CPU_SEARCHES = ("faiss", "symmetric")
by_search = pytest.mark.parametrize("search", CPU_SEARCHES)


def on_circle(degrees: list[float]) -> np.ndarray:
    """2-D unit vectors at the given angles: cosine order is angular order, easy to rank by hand."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def clustered(seed: int, n: int, dim: int, max_size: int = 6, noise: float = 1.2):
    """Random classes of 1..max_size samples (so some singletons) around random centres."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, size=n)
    labels = np.repeat(np.arange(n), sizes)[:n]
    labels = rng.permutation(labels)
    centres = rng.standard_normal((labels.max() + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + rng.standard_normal((n, dim)) * noise / np.sqrt(dim)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, labels.astype(np.int64)


def same(a: dict, b: dict, tol: float = EXACT) -> None:
    for key in KEYS:
        assert a[key] == pytest.approx(b[key], abs=tol), key
    assert a["n_queries"] == b["n_queries"]
    assert a["n_singletons"] == b["n_singletons"]


# ------------------------------------------------------------------------------------ hand-computed


@by_search
def test_hand_two_classes(search):
    # Angles (label): p0 0 (a), p1 10 (a), p2 25 (b), p3 45 (a), p4 100 (b). k = 3 - 1 = 2.
    # Neighbours by angle gap, then the first R labels:
    #   p0 a R=2: p1 10, p2 25, p3 45, p4 100 -> [a, b]: P@1 1, RP 1/2, AP (1/1)/2 = 1/2
    #   p1 a R=2: p0 10, p2 15, p3 35, p4 90  -> [a, b]: P@1 1, RP 1/2, AP 1/2
    #   p2 b R=1: p1 15, p3 20, p0 25, p4 75  -> [a]:    0, 0, 0
    #   p3 a R=2: p2 20, p1 35, p0 45, p4 55  -> [b, a]: P@1 0, RP 1/2, AP (P(2) = 1/2)/2 = 1/4
    #   p4 b R=1: p3 55, p2 75, p1 90, p0 100 -> [a]:    0, 0, 0
    # P@1 = 2/5, RP = 1.5/5 = 0.3, MAP@R = 1.25/5 = 0.25
    x = on_circle([0, 10, 25, 45, 100])
    out = retrieval_metrics(x, np.array([0, 0, 1, 0, 1]), search=search)
    assert out == {
        "precision_at_1": pytest.approx(0.4, abs=EXACT),
        "r_precision": pytest.approx(0.3, abs=EXACT),
        "map_at_r": pytest.approx(0.25, abs=EXACT),
        "n_queries": 5,
        "n_singletons": 0,
    }
    assert all(type(out[key]) is float for key in KEYS)
    assert type(out["n_queries"]) is int and type(out["n_singletons"]) is int


@by_search
def test_hand_with_singleton(search):
    # Angles (label): q0 0 (a), q1 8 (b), q2 20 (a), q3 35 (c, alone), q4 50 (a), q5 70 (a), q6 95 (b).
    # a has 4 samples (R=3), b has 2 (R=1), c has 1: q3 is left out as a query but stays a neighbour.
    #   q0 a: q1 8 b, q2 20 a, q3 35 c        -> [b, a, c]: P@1 0, RP 1/3, AP (1/2)/3 = 1/6
    #   q1 b: q0 8 a                          -> [a]:       0, 0, 0
    #   q2 a: q1 12 b, q3 15 c, q0 20 a       -> [b, c, a]: P@1 0, RP 1/3, AP (1/3)/3 = 1/9
    #   q4 a: q3 15 c, q5 20 a, q2 30 a       -> [c, a, a]: P@1 0, RP 2/3, AP (1/2 + 2/3)/3 = 7/18
    #   q5 a: q4 20 a, q6 25 b, q3 35 c       -> [a, b, c]: P@1 1, RP 1/3, AP (1/1)/3 = 1/3
    #   q6 b: q5 25 a                         -> [a]:       0, 0, 0
    # Six queries: P@1 = 1/6, RP = (5/3)/6 = 5/18, MAP@R = (3/18 + 2/18 + 7/18 + 6/18)/6 = 1/6
    x = on_circle([0, 8, 20, 35, 50, 70, 95])
    out = retrieval_metrics(x, np.array(["a", "b", "a", "c", "a", "a", "b"]), search=search)
    assert out["precision_at_1"] == pytest.approx(1 / 6, abs=EXACT)
    assert out["r_precision"] == pytest.approx(5 / 18, abs=EXACT)
    assert out["map_at_r"] == pytest.approx(1 / 6, abs=EXACT)
    assert (out["n_queries"], out["n_singletons"]) == (6, 1)


def test_hand_query_reference():
    # Queries: Q0 0 (a), Q1 50 (b), Q2 45 (c, no reference of class c: left out).
    # References: r0 10 (a), r1 30 (b), r2 60 (a), r3 80 (b); R = 2 for a and b.
    #   Q0 a: r0 10 a, r1 30 b -> [a, b]: P@1 1, RP 1/2, AP (1/1)/2 = 1/2
    #   Q1 b: r2 10 a, r1 20 b -> [a, b]: P@1 0, RP 1/2, AP (1/2)/2 = 1/4
    # P@1 = 1/2, RP = 1/2, MAP@R = 3/8; the query itself is never a reference, so nothing is dropped.
    out = retrieval_metrics_query_reference(
        on_circle([0, 50, 45]), np.array([1, 2, 3]), on_circle([10, 30, 60, 80]), np.array([1, 2, 1, 2])
    )
    assert out["precision_at_1"] == pytest.approx(0.5, abs=EXACT)
    assert out["r_precision"] == pytest.approx(0.5, abs=EXACT)
    assert out["map_at_r"] == pytest.approx(3 / 8, abs=EXACT)
    assert (out["n_queries"], out["n_singletons"]) == (2, 1)


@by_search
def test_hand_per_query_figures(search):
    # The cases of test_hand_two_classes and test_hand_with_singleton, query by query.
    out = retrieval_metrics(on_circle([0, 10, 25, 45, 100]), np.array([0, 0, 1, 0, 1]), per_query=True, search=search)
    per = out["per_query"]
    assert set(per) == set(metrics.PER_QUERY)
    assert per["relevant"].tolist() == [2, 2, 1, 2, 1]
    assert per["hit_at_1"].tolist() == [True, True, False, False, False]
    assert per["hits_within_r"].tolist() == [1, 1, 0, 1, 0]
    np.testing.assert_allclose(per["ap_at_r"], [1 / 2, 1 / 2, 0, 1 / 4, 0], atol=EXACT)
    labels = np.array(["a", "b", "a", "c", "a", "a", "b"])
    per = retrieval_metrics(on_circle([0, 8, 20, 35, 50, 70, 95]), labels, per_query=True, search=search)["per_query"]
    assert per["relevant"].tolist() == [3, 1, 3, 0, 3, 3, 1]
    assert per["hit_at_1"][3] == 0 and per["hits_within_r"][3] == 0 and np.isnan(per["ap_at_r"][3])
    np.testing.assert_allclose(per["ap_at_r"][[0, 1, 2, 4, 5, 6]], [1 / 6, 0, 1 / 9, 7 / 18, 1 / 3, 0], atol=EXACT)


def means_of(per: dict) -> dict:
    scored = per["relevant"] > 0
    return {
        "precision_at_1": per["hit_at_1"][scored].mean(),
        "r_precision": (per["hits_within_r"][scored] / per["relevant"][scored]).mean(),
        "map_at_r": per["ap_at_r"][scored].mean(),
    }


@pytest.mark.parametrize("search", CPU_SEARCHES)
def test_per_query_figures_average_to_the_totals_which_they_leave_unchanged(search):
    x, y = clustered(11, 900, 16)
    plain = retrieval_metrics(x, y, search=search, chunk_size=100)
    out = retrieval_metrics(x, y, search=search, chunk_size=100, per_query=True)
    assert {key: out[key] for key in plain} == plain  # bit for bit
    means = means_of(out["per_query"])
    for key in KEYS:
        assert means[key] == pytest.approx(plain[key], abs=1e-12), key
    assert np.isnan(out["per_query"]["ap_at_r"]).sum() == plain["n_singletons"]


def test_query_reference_per_query_figures():
    x, y = clustered(12, 600, 16)
    q, r = slice(0, 200), slice(200, None)
    plain = retrieval_metrics_query_reference(x[q], y[q], x[r], y[r], chunk_size=64)
    out = retrieval_metrics_query_reference(x[q], y[q], x[r], y[r], chunk_size=64, per_query=True)
    assert {key: out[key] for key in plain} == plain
    assert len(out["per_query"]["ap_at_r"]) == 200
    means = means_of(out["per_query"])
    for key in KEYS:
        assert means[key] == pytest.approx(plain[key], abs=1e-12), key


@by_search
def test_perfect_separation_scores_one(search):
    x = on_circle([0, 1, 2, 120, 121, 240, 241, 242, 243])
    out = retrieval_metrics(x, np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]), search=search)
    assert [out[key] for key in KEYS] == [1.0, 1.0, 1.0]


def test_drop_self_keeps_other_columns():
    # Row 0 finds itself first (the usual case); row 1 lost itself to tied duplicates: drop the last.
    assert metrics._drop_self(np.array([[10, 5, 6], [7, 8, 9]]), 10).tolist() == [[5, 6], [7, 8]]
    assert metrics._drop_self(np.array([[0, 5, 6], [7, 1, 9]]), 0).tolist() == [[5, 6], [7, 9]]
    assert metrics._drop_self(np.array([[0, 5, 6], [7, 8, 9]]), 0).tolist() == [[5, 6], [7, 8]]


@by_search
def test_exact_duplicates_are_scored(search):
    x = np.repeat(on_circle([0, 90]), [5, 3], axis=0)
    out = retrieval_metrics(x, np.array([0] * 5 + [1] * 3), search=search)
    assert [out[key] for key in KEYS] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------- pytorch-metric-learning


def pml(query, query_labels, reference=None, reference_labels=None) -> dict:
    """PML's figures under our key names.

    PML excludes queries of a class with no other sample ("lone" queries, not_lone_query_mask) from
    all three metrics, as we do, and drops the self match the same way. Differences, kept out of
    these comparisons: PML turns labels into float32 (ids above 2**24 may merge) and does not
    normalise (so it gets unit vectors here), and it returns NaN where we raise (no query scorable).
    """
    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    calc = accuracy.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    if reference is None:
        out = calc.get_accuracy(query, query_labels)
    else:
        out = calc.get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query=False)
    return {
        "precision_at_1": out["precision_at_1"],
        "r_precision": out["r_precision"],
        "map_at_r": out["mean_average_precision_at_r"],
    }


@pytest.mark.parametrize(
    ("seed", "n", "dim", "max_size"), [(0, 200, 8, 4), (1, 700, 16, 6), (2, 1500, 32, 9), (3, 3000, 64, 12)]
)
@by_search
def test_matches_pml_same_source(seed, n, dim, max_size, search):
    x, y = clustered(seed, n, dim, max_size)
    ours = retrieval_metrics(x, y, search=search)
    assert ours["n_singletons"] > 0  # the data must exercise the singleton rule
    assert 0.05 < ours["map_at_r"] < 0.95  # and not be trivial
    theirs = pml(x, y)
    for key in KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    counts = np.bincount(y)
    assert ours["n_singletons"] == int((counts == 1).sum())


@pytest.mark.parametrize(("seed", "n", "dim"), [(4, 300, 8), (5, 1200, 32)])
def test_matches_pml_query_reference(seed, n, dim):
    x, y = clustered(seed, n, dim, max_size=8)
    rng = np.random.default_rng(seed)
    is_query = (rng.random(n) < 0.4) | np.isin(y, [0, 1, 2])  # classes 0-2: no references
    ours = retrieval_metrics_query_reference(x[is_query], y[is_query], x[~is_query], y[~is_query])
    assert ours["n_singletons"] > 0  # some query classes have no reference
    theirs = pml(x[is_query], y[is_query], x[~is_query], y[~is_query])
    for key in KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


# ---------------------------------------------------------------------------------- label types


@pytest.fixture(scope="module")
def base():
    x, y = clustered(7, 400, 16)
    return x, y, retrieval_metrics(x, y)


@pytest.mark.parametrize(
    "relabel",
    [
        lambda y: y + 2**62,
        lambda y: (2**62 + y * 2**40).astype(np.int64),
        lambda y: -5 - 3 * y,
        lambda y: np.uint64(2**63) + y.astype(np.uint64),
        lambda y: y.astype(np.int16),
        lambda y: np.array([f"class-{v}" for v in y]),
        lambda y: np.array([f"c{v}".encode() for v in y]),
        lambda y: np.array([f"class {v}" for v in y], dtype=object),
        lambda y: torch.from_numpy(y),
    ],
    ids=[
        "int64-huge",
        "int64-huge-spread",
        "negative",
        "uint64-huge",
        "int16",
        "str",
        "bytes",
        "object",
        "torch",
    ],
)
def test_label_types_give_same_result(base, relabel):
    x, y, expected = base
    same(retrieval_metrics(x, relabel(y)), expected)


def test_query_reference_huge_ids_of_mixed_int_dtypes():
    # int64 with uint64 would meet as float64 in numpy and merge huge ids; they must stay distinct.
    x, y = clustered(8, 300, 8)
    q, r = slice(0, 100), slice(100, None)
    expected = retrieval_metrics_query_reference(x[q], y[q], x[r], y[r])
    got = retrieval_metrics_query_reference(
        x[q], (y[q] + 2**62).astype(np.int64), x[r], (y[r] + 2**62).astype(np.uint64)
    )
    same(got, expected)


def test_torch_embeddings(base):
    x, y, expected = base
    same(retrieval_metrics(torch.from_numpy(x), torch.from_numpy(y)), expected)
    same(retrieval_metrics(torch.from_numpy(x).double(), y), expected)


# --------------------------------------------------------------------------- invariance, chunks


@pytest.mark.parametrize("scale", [8.0, 3.7, 1e-30, 1e30])
def test_scaling_does_not_matter(base, scale):
    x, y, expected = base
    same(retrieval_metrics(x.astype(np.float64) * scale, y), expected)


def test_per_row_scaling_does_not_matter(base):
    x, y, expected = base
    rows = np.random.default_rng(0).uniform(0.01, 100, size=(len(x), 1))
    same(retrieval_metrics(x * rows, y), expected)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10**6])
def test_chunk_size_does_not_matter(base, chunk_size):
    x, y, expected = base
    same(retrieval_metrics(x, y, chunk_size=chunk_size), expected)


def test_query_reference_chunk_size_does_not_matter():
    x, y = clustered(9, 500, 16)
    q, r = slice(0, 150), slice(150, None)
    same(
        retrieval_metrics_query_reference(x[q], y[q], x[r], y[r], chunk_size=7),
        retrieval_metrics_query_reference(x[q], y[q], x[r], y[r]),
    )


def test_neighbour_cap_shrinks_chunks(base, monkeypatch):
    # A huge class would make chunk_size x (k+1) too big; the cap lowers rows per chunk instead.
    x, y, expected = base
    monkeypatch.setattr(metrics, "_MAX_NEIGHBOURS_PER_CHUNK", 20)
    same(retrieval_metrics(x, y), expected)


@pytest.mark.parametrize("search", CPU_SEARCHES)
def test_search_choice_agrees_on_continuous_data(base, search):
    x, y, expected = base  # auto: FAISS at this size
    same(retrieval_metrics(x, y, search=search), expected)


def spy_searches(monkeypatch) -> list[str]:
    used: list[str] = []
    for name in ("_faiss_search", "_symmetric_search"):
        original = getattr(metrics, name)

        def spy(*args, _original=original, _name=name):
            used.append(_name)
            return _original(*args)

        monkeypatch.setattr(metrics, name, spy)
    return used


def test_auto_search_is_symmetric_from_its_threshold_on(base, monkeypatch):
    x, y, expected = base
    used = spy_searches(monkeypatch)
    retrieval_metrics(x, y)
    monkeypatch.setattr(metrics, "SYMMETRIC_MIN_N", len(x))
    same(retrieval_metrics(x, y), expected)
    assert used == ["_faiss_search", "_symmetric_search"]


def test_symmetric_search_falls_back_to_faiss_when_its_heaps_are_too_big(base, monkeypatch):
    x, y, expected = base
    used = spy_searches(monkeypatch)
    monkeypatch.setattr(metrics, "_MAX_HEAP_BYTES", 1000)
    same(retrieval_metrics(x, y, search="symmetric"), expected)
    assert used == ["_faiss_search"]


def test_unknown_search_lists_the_known_ones(base):
    x, y, _ = base
    with pytest.raises(HarnessError, match="unknown search 'fast'; known: auto, faiss, symmetric"):
        retrieval_metrics(x, y, search="fast")


def test_input_is_not_modified(base):
    x, y, _ = base
    x2, y2 = x * 3, y.copy()
    retrieval_metrics(x2, y2)
    assert np.array_equal(x2, x * 3) and np.array_equal(y2, y)


# ------------------------------------------------------------------------------------------ errors


def test_mismatched_lengths_name_both():
    with pytest.raises(HarnessError, match="embeddings has 5 rows but labels has 4"):
        retrieval_metrics(on_circle([0, 1, 2, 3, 4]), np.zeros(4, dtype=int))


@pytest.mark.parametrize(
    ("emb", "labels", "message"),
    [
        (np.ones(4), np.zeros(4, dtype=int), r"embeddings has shape \(4,\), expected a 2-D"),
        (np.ones((4, 2)), np.zeros((4, 1), dtype=int), r"labels has shape \(4, 1\), expected a 1-D"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "embeddings is empty"),
        (np.ones((4, 2)), np.zeros(4), "labels holds float64, expected integers or strings"),
        (np.array([["a", "b"]] * 2), np.zeros(2, dtype=int), "embeddings holds <U1, expected numbers"),
        (np.ones((3, 2)), np.array([0, 1, 2]), "all 3 samples are alone in their class"),
    ],
)
def test_bad_inputs(emb, labels, message):
    with pytest.raises(HarnessError, match=message):
        retrieval_metrics(emb, labels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_row(bad):
    x = on_circle([0, 10, 20, 30])
    x[2, 1] = bad
    with pytest.raises(HarnessError, match="embeddings: row 2 holds a non-finite value"):
        retrieval_metrics(x, np.array([0, 0, 1, 1]))


def test_blocks_normalised_on_threads_give_the_same_rows_and_name_the_first_bad_one(monkeypatch):
    faiss = pytest.importorskip("faiss")
    x = np.random.default_rng(0).standard_normal((40, 3)) * 1e3
    whole = metrics._unit_rows(x, "embeddings")
    monkeypatch.setattr(metrics, "_NORMALISE_BLOCK_VALUES", 9)  # blocks of 3 rows
    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)
        np.testing.assert_array_equal(metrics._unit_rows(x, "embeddings"), whole)
        x[31] = 0
        x[7, 2] = np.nan
        with pytest.raises(HarnessError, match="embeddings: row 7 holds a non-finite value"):
            metrics._unit_rows(x, "embeddings")
    finally:
        faiss.omp_set_num_threads(threads)


def test_zero_row_names_row():
    x = on_circle([0, 10, 20, 30])
    x[3] = 0
    with pytest.raises(HarnessError, match="embeddings: row 3 is all zeros"):
        retrieval_metrics(x, np.array([0, 0, 1, 1]))


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5, True])
def test_bad_chunk_size(chunk_size):
    with pytest.raises(HarnessError, match="chunk_size must be a positive integer"):
        retrieval_metrics(on_circle([0, 1]), np.array([0, 0]), chunk_size=chunk_size)


def test_query_reference_errors():
    x = on_circle([0, 10, 20])
    with pytest.raises(HarnessError, match="queries have 2 columns but references have 3"):
        retrieval_metrics_query_reference(x, [0, 1, 2], np.ones((3, 3)), [0, 1, 2])
    with pytest.raises(HarnessError, match="references has 3 rows but reference_labels has 2"):
        retrieval_metrics_query_reference(x, [0, 1, 2], x, [0, 1])
    with pytest.raises(HarnessError, match="none of the 3 queries has a class that occurs"):
        retrieval_metrics_query_reference(x, [0, 1, 2], x, [5, 6, 7])
    with pytest.raises(HarnessError, match="query_labels hold <U1 but reference_labels hold int64"):
        retrieval_metrics_query_reference(x, np.array(["a", "b", "c"]), x, np.array([0, 1, 2]))


# ------------------------------------------------------------------------------------- score_files


def test_score_files_matches_direct_call(tmp_path, base):
    x, y, expected = base
    np.save(tmp_path / "emb.npy", x)
    np.save(tmp_path / "labels.npy", np.array([f"id-{v}" for v in y]))
    same(score_files(tmp_path / "emb.npy", tmp_path / "labels.npy"), expected)


def test_score_files_missing_file(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(3, dtype=int))
    missing = tmp_path / "nope.npy"
    with pytest.raises(HarnessError, match=re.escape(f"embeddings file not found: {missing}")):
        score_files(missing, tmp_path / "labels.npy")


def test_score_files_text_renamed_npy(tmp_path):
    np.save(tmp_path / "emb.npy", on_circle([0, 1]))
    fake = tmp_path / "labels.npy"
    fake.write_text("0\n0\n")
    with pytest.raises(HarnessError, match=re.escape(f"not a .npy array file: {fake}")):
        score_files(tmp_path / "emb.npy", fake)


def test_score_files_npz_is_not_npy(tmp_path):
    np.savez(tmp_path / "emb.npz", x=on_circle([0, 1]))
    np.save(tmp_path / "labels.npy", np.zeros(2, dtype=int))
    with pytest.raises(HarnessError, match="not a .npy array file: .*emb.npz"):
        score_files(tmp_path / "emb.npz", tmp_path / "labels.npy")


def test_score_files_string_embeddings(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.array([["1", "2"], ["3", "4"]]))
    np.save(tmp_path / "labels.npy", np.zeros(2, dtype=int))
    with pytest.raises(HarnessError, match=re.escape(f"embeddings file {path} holds <U1, expected numbers")):
        score_files(path, tmp_path / "labels.npy")


def test_score_files_object_arrays_are_refused(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "labels.npy", np.zeros(2, dtype=int))
    with pytest.raises(HarnessError, match=re.escape(f"embeddings file {path} holds object, expected numbers")):
        score_files(path, tmp_path / "labels.npy")


def test_score_files_errors_name_the_files(tmp_path):
    emb, lab = tmp_path / "emb.npy", tmp_path / "labels.npy"
    np.save(emb, on_circle([0, 1, 2]))
    np.save(lab, np.zeros(2, dtype=int))
    with pytest.raises(HarnessError, match=re.escape(f"embeddings file {emb} has 3 rows but labels file {lab} has 2")):
        score_files(emb, lab)
    x = on_circle([0, 1, 2])
    x[1] = np.nan
    np.save(emb, x)
    np.save(lab, np.zeros(3, dtype=int))
    with pytest.raises(HarnessError, match=re.escape(f"embeddings file {emb}: row 1 holds a non-finite value")):
        score_files(emb, lab)


def test_query_gallery_test_stage_scores_queries_against_the_gallery_only():
    """In-Shop: the test stage scores the official queries against the official gallery, never query vs query."""
    from harness.evaluate import _scores
    from harness.image.data import ImageSet

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 4)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    roles = np.array(["query", "gallery", "gallery"] * 4)
    test = ImageSet(
        "inshop", "v", None, np.arange(12), torch.from_numpy(labels), tuple("abcd"), channels=3, roles=roles
    )
    expected = retrieval_metrics_query_reference(
        embeddings[roles == "query"],
        labels[roles == "query"],
        embeddings[roles == "gallery"],
        labels[roles == "gallery"],
    )
    assert _scores(embeddings, test) == {m: expected[m] for m in ("precision_at_1", "r_precision", "map_at_r")}
    same_source = retrieval_metrics(embeddings, labels)
    assert _scores(embeddings, test) != {m: same_source[m] for m in ("precision_at_1", "r_precision", "map_at_r")}
