"""Per-query figures beside a record: round trip, the same bytes for the same arrays, damage named."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.per_query import FILE_NAME, array_name, load_per_query, write_per_query


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {"relevant": rng.integers(0, 5, 50).astype(np.int32)}
    for rep in range(2):
        for mode in ("concatenated", "fold0"):
            out[array_name(rep, mode, "hit_at_1")] = rng.random(50) < 0.5
            out[array_name(rep, mode, "hits_within_r")] = rng.integers(0, 5, 50).astype(np.int32)
            out[array_name(rep, mode, "ap_at_r")] = np.where(out["relevant"] > 0, rng.random(50), np.nan)
    return out


def test_round_trip_keeps_names_dtypes_and_values(tmp_path):
    written = arrays()
    info = write_per_query(tmp_path, written)
    assert info["file"] == FILE_NAME and info["bytes"] == (tmp_path / FILE_NAME).stat().st_size
    loaded = load_per_query(tmp_path, info)
    assert loaded.keys() == written.keys()
    for name, array in written.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)
    assert "rep1/fold0/ap_at_r" in loaded


def test_same_arrays_give_the_same_bytes(tmp_path):
    first = write_per_query(tmp_path / "a", arrays())
    second = write_per_query(tmp_path / "b", arrays())
    assert first == second
    assert (tmp_path / "a" / FILE_NAME).read_bytes() == (tmp_path / "b" / FILE_NAME).read_bytes()


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(HarnessError, match=f"per-query figures not found: {tmp_path / FILE_NAME}"):
        load_per_query(tmp_path)


def test_altered_file_is_named(tmp_path):
    info = write_per_query(tmp_path, arrays())
    data = bytearray((tmp_path / FILE_NAME).read_bytes())
    data[-30] ^= 0xFF
    (tmp_path / FILE_NAME).write_bytes(bytes(data))
    with pytest.raises(HarnessError, match="do not match the SHA-256 their record gives"):
        load_per_query(tmp_path, info)
    with pytest.raises(HarnessError, match=f"damaged per-query figures {tmp_path / FILE_NAME}"):
        load_per_query(tmp_path)  # without the record's hash: the archive itself is unreadable
