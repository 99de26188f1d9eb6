"""Each test query's figures, kept beside a run's record for paired tests between losses.

A record's figures are means over thousands of test queries. Two losses scored on the same test
queries can be compared query by query (a paired bootstrap), which tells far more than three
reproduction means can. The per-query arrays are too large for the JSON record, so each run keeps
them in one compressed file beside it, `per_query.npz`, which the record names with its SHA-256.

The file keeps, for Q test queries in the test set's order, R per query ("relevant", int32; 0 for
a singleton, never scored) and, per reproduction r and mode, which of the first R neighbours are of
the query's class ("rep<r>/<mode>/hits", bits packed along the ranks): every figure of a query
follows from these by the metrics' own formula (harness.metrics.hits_to_figures; AP@R to float64
rounding), in a few bytes per query. Modes are
"concatenated" and "fold<f>" (one fold model alone; "separated" averages them). load_per_query
gives back, per reproduction and mode, the figures FIGURES as [Q] arrays (AP@R NaN for singletons).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.metrics import hits_to_figures

__all__ = ["FILE_NAME", "FIGURES", "array_name", "pack", "unpack", "write_per_query", "load_per_query"]

FILE_NAME = "per_query.npz"
FIGURES = ("hit_at_1", "hits_within_r", "ap_at_r")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry


def array_name(reproduction: int, mode: str, figure: str) -> str:
    return f"rep{reproduction}/{mode}/{figure}"


def pack(relevant: np.ndarray, hits: dict[tuple[int, str], np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays the file holds, from R [Q] and each (reproduction, mode)'s hits [Q, k] (bool)."""
    arrays = {"relevant": np.asarray(relevant, dtype=np.int32)}
    for (rep, mode), matrix in hits.items():
        arrays[array_name(rep, mode, "hits")] = np.packbits(matrix, axis=1)
        arrays[array_name(rep, mode, "width")] = np.array(matrix.shape[1])
    return arrays


def unpack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """relevant and, per reproduction and mode, hits [Q, k] and the FIGURES, as the metrics compute them."""
    relevant = arrays["relevant"]
    scored = relevant > 0
    out = {"relevant": relevant}
    for name in arrays:
        if not name.endswith("/hits"):
            continue
        prefix = name[: -len("hits")]
        hits = np.unpackbits(arrays[name], axis=1, count=int(arrays[prefix + "width"])).astype(bool)
        found, ap = hits_to_figures(hits[scored], relevant[scored])
        out[prefix + "hits"] = hits
        out[prefix + "hit_at_1"] = hits[:, 0] & scored
        out[prefix + "hits_within_r"] = np.zeros(len(relevant), dtype=np.int32)
        out[prefix + "hits_within_r"][scored] = found
        out[prefix + "ap_at_r"] = np.full(len(relevant), np.nan)
        out[prefix + "ap_at_r"][scored] = ap
    return out


def write_per_query(run_dir: Path, arrays: dict[str, np.ndarray]) -> dict:
    """Write the arrays (see pack) atomically as run_dir/per_query.npz; returns what the record says of the file.

    The same arrays give the same bytes: the archive's members carry a fixed date, not the time
    of writing (np.savez_compressed stamps the clock), so a rerun's file has the same SHA-256.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w") as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)
    data = buffer.getvalue()
    write_atomic(Path(run_dir) / FILE_NAME, data)
    return {"file": FILE_NAME, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def load_per_query(run_dir: Path, expected: dict | None = None) -> dict[str, np.ndarray]:
    """The figures of run_dir/per_query.npz (see unpack); a missing, damaged or altered file is named."""
    path = Path(run_dir) / FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HarnessError(f"per-query figures not found: {path} (runs recorded before they were kept have none; "
                           "rerun the loss to make them)") from None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise HarnessError(f"per-query figures {path} do not match the SHA-256 their record gives: the file was "
                           "altered or damaged")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        return unpack(arrays)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise HarnessError(f"damaged per-query figures {path}: {error}") from None
