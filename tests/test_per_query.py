"""Per-query figures beside a record: hits packed to bits, figures derived as the metrics derive them."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import retrieval_metrics
from harness.per_query import FILE_NAME, array_name, load_per_query, pack, write_per_query


def scored_run(seed: int) -> tuple[dict, np.ndarray, dict]:
    """Per-query output of the metrics for two "reproductions" of clustered data with singletons."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(40), 5), [1000, 1001]])  # two singletons
    outs = {}
    for rep in range(2):
        x = rng.standard_normal((len(labels), 8)) + 2 * rng.standard_normal((1002, 8))[labels % 1002]
        outs[rep] = retrieval_metrics(x, labels, per_query=True)
    relevant = outs[0]["per_query"]["relevant"]
    hits = {(rep, mode): out["per_query"]["hits"] for rep, out in outs.items() for mode in ("concatenated", "fold0")}
    return outs, relevant, hits


def test_round_trip_gives_the_metrics_own_figures(tmp_path):
    outs, relevant, hits = scored_run(0)
    info = write_per_query(tmp_path, pack(relevant, hits))
    assert info["file"] == FILE_NAME and info["bytes"] == (tmp_path / FILE_NAME).stat().st_size
    loaded = load_per_query(tmp_path, info)
    np.testing.assert_array_equal(loaded["relevant"], relevant)
    for (rep, mode), matrix in hits.items():
        per = outs[rep]["per_query"]
        np.testing.assert_array_equal(loaded[array_name(rep, mode, "hits")], matrix)
        np.testing.assert_array_equal(loaded[array_name(rep, mode, "hit_at_1")], per["hit_at_1"])
        np.testing.assert_array_equal(loaded[array_name(rep, mode, "hits_within_r")], per["hits_within_r"])
        np.testing.assert_allclose(loaded[array_name(rep, mode, "ap_at_r")], per["ap_at_r"], rtol=0, atol=1e-15)
        assert np.nanmean(loaded[array_name(rep, mode, "ap_at_r")]) == pytest.approx(outs[rep]["map_at_r"], abs=1e-15)
    assert np.isnan(loaded[array_name(0, "fold0", "ap_at_r")][-2:]).all()  # the singletons


def test_a_few_bytes_per_query(tmp_path):
    _, relevant, hits = scored_run(1)
    info = write_per_query(tmp_path, pack(relevant, hits))
    assert info["bytes"] < 4 * len(relevant) * (1 + len(hits))


def test_same_arrays_give_the_same_bytes(tmp_path):
    _, relevant, hits = scored_run(2)
    first = write_per_query(tmp_path / "a", pack(relevant, hits))
    second = write_per_query(tmp_path / "b", pack(relevant, hits))
    assert first == second
    assert (tmp_path / "a" / FILE_NAME).read_bytes() == (tmp_path / "b" / FILE_NAME).read_bytes()


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(HarnessError, match=f"per-query figures not found: {tmp_path / FILE_NAME}"):
        load_per_query(tmp_path)


def test_altered_or_damaged_file_is_named(tmp_path):
    _, relevant, hits = scored_run(3)
    info = write_per_query(tmp_path, pack(relevant, hits))
    data = bytearray((tmp_path / FILE_NAME).read_bytes())
    data[-30] ^= 0xFF
    (tmp_path / FILE_NAME).write_bytes(bytes(data))
    with pytest.raises(HarnessError, match="do not match the SHA-256 their record gives"):
        load_per_query(tmp_path, info)
    (tmp_path / FILE_NAME).write_bytes(b"not a zip")
    with pytest.raises(HarnessError, match=f"damaged per-query figures {tmp_path / FILE_NAME}"):
        load_per_query(tmp_path)
