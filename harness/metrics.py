"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020).

Precision@1, R-precision and MAP@R from an exact k-nearest-neighbour search on L2-normalised
embeddings (cosine similarity), with k = the largest number of same-class items any query can
retrieve. Built for the largest test sets (SOP: 60,502 x 128, 11,316 classes): neighbours are scored
with vectorised numpy per chunk of queries, so memory stays at one float32 copy of the embeddings
plus per-chunk arrays.

Three exact searches, all ranking by inner product of the unit vectors:
  faiss      - FAISS's flat search, chunk by chunk of queries (the default below SYMMETRIC_MIN_N);
  symmetric  - harness.symmetric_knn, each similarity computed once for both its queries (half the
               products; the default for same-source sets of SYMMETRIC_MIN_N and more);
  torch      - matrix product and top-k on a torch device, used where the embeddings already are.
They agree but for neighbours whose similarities lie within float32 rounding (about 1e-7) of each
other, which each search may order differently.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from harness.errors import HarnessError

__all__ = ["retrieval_metrics", "retrieval_metrics_query_reference", "score_files"]

# Values per block while validating and normalising (32 MB as float64): bounds the temporaries.
_NORMALISE_BLOCK_VALUES = 1 << 22
# Cap on chunk rows x neighbours searched per chunk. Reached only when one class is huge (k in the
# thousands); it then lowers the chunk's row count so a chunk's arrays stay in the hundreds of MB.
_MAX_NEIGHBOURS_PER_CHUNK = 1 << 22
# Cap on chunk rows x N similarities on a torch device (1 GB as float32).
_MAX_SIMILARITIES_PER_CHUNK = 1 << 28
# Same-source sets from this size on are searched with the symmetric search. Below it the search
# costs well under a second either way, and FAISS's search, with which every committed record under
# results/ was made, keeps their figures exactly as they are.
SYMMETRIC_MIN_N = 16384
# Cap on the symmetric search's heaps (k neighbours per query); above it, as when one class holds
# thousands of samples, the chunked FAISS search is used.
_MAX_HEAP_BYTES = 1 << 28
SEARCHES = ("auto", "faiss", "symmetric")
# What per_query=True adds, under "per_query": one array per figure, a row per query in input order.
#   relevant       R, the samples of the query's class it can retrieve (0: not scored, a singleton)
#   hit_at_1       whether the first neighbour is of the query's class (P@1 is their mean)
#   hits_within_r  same-class neighbours among the first R (R-precision: hits_within_r / R)
#   ap_at_r        the query's AP@R (MAP@R is their mean; NaN where R is 0)
#   hits           [Q, k] bool: rank i + 1 is a same-class neighbour within the query's first R; the
#                  other four follow from it and R (hits_to_figures), so it is what a record keeps
PER_QUERY = ("relevant", "hit_at_1", "hits_within_r", "ap_at_r", "hits")


def retrieval_metrics(
    embeddings: Any,
    labels: Any,
    *,
    chunk_size: int = 4096,
    device: Any = None,
    search: str = "auto",
    per_query: bool = False,
) -> dict[str, Any]:
    """Score every sample as a query against all the others (the same-source protocol of CUB, Cars, SOP).

    Returns precision_at_1, r_precision, map_at_r (fractions in [0, 1]), n_queries (queries scored)
    and n_singletons (queries left out because their class has no other sample). The search runs
    on `device` (a torch device), by default on the GPU that CUDA embeddings are on, else on the
    CPU with `search`: "faiss", "symmetric", or "auto" (symmetric from SYMMETRIC_MIN_N samples on).
    per_query adds each query's figures (PER_QUERY), for paired tests between two models.
    """
    if search not in SEARCHES:
        raise HarnessError(f"unknown search {search!r}; known: {', '.join(SEARCHES)}")
    if device is None:
        device = _cuda_device_of(embeddings)
    return _same_source(embeddings, labels, chunk_size, "embeddings", "labels", device, search, per_query)


def retrieval_metrics_query_reference(
    queries: Any,
    query_labels: Any,
    references: Any,
    reference_labels: Any,
    *,
    chunk_size: int = 4096,
    per_query: bool = False,
) -> dict[str, Any]:
    """Score queries against a separate gallery (In-Shop): a query is never among the references.

    R for a query is the number of references of its class; queries whose class has no reference
    are left out and counted in n_singletons.
    """
    _check_chunk_size(chunk_size)
    q_emb = _as_embedding_matrix(queries, "queries")
    q_raw = _as_label_vector(query_labels, "query_labels")
    r_emb = _as_embedding_matrix(references, "references")
    r_raw = _as_label_vector(reference_labels, "reference_labels")
    if len(q_emb) != len(q_raw):
        raise HarnessError(f"queries has {len(q_emb)} rows but query_labels has {len(q_raw)} entries")
    if len(r_emb) != len(r_raw):
        raise HarnessError(f"references has {len(r_emb)} rows but reference_labels has {len(r_raw)} entries")
    if q_emb.shape[1] != r_emb.shape[1]:
        raise HarnessError(f"queries have {q_emb.shape[1]} columns but references have {r_emb.shape[1]}")
    # One label space for both sides, so that equal ids get equal codes.
    codes = _label_codes(_join_labels(q_raw, r_raw), "query_labels and reference_labels")
    q_codes, r_codes = codes[: len(q_raw)], codes[len(q_raw) :]
    xq = _unit_rows(q_emb, "queries")
    del q_emb
    xr = _unit_rows(r_emb, "references")
    del r_emb

    ref_counts = np.bincount(r_codes, minlength=int(codes.max()) + 1)
    relevant = ref_counts[q_codes]
    n_scored = int(np.count_nonzero(relevant))
    if n_scored == 0:
        raise HarnessError(
            f"query_labels: none of the {len(q_codes)} queries has a class that occurs in reference_labels"
        )
    k = int(relevant.max())
    return _score(
        xq, q_codes, xr, r_codes, relevant, k, same_source=False, chunk_size=chunk_size, per_query=per_query
    )


def score_files(embeddings_path: Path, labels_path: Path) -> dict[str, float | int]:
    """Same-source metrics of two .npy files, for `harness score` (it prints the dict as JSON)."""
    embeddings_path, labels_path = Path(embeddings_path), Path(labels_path)
    emb_name = f"embeddings file {embeddings_path}"
    lab_name = f"labels file {labels_path}"
    emb = _load_npy(embeddings_path, "embeddings", numbers_only=True)
    lab = _load_npy(labels_path, "labels", numbers_only=False)
    return _same_source(emb, lab, 4096, emb_name, lab_name)


# --------------------------------------------------------------------------------------------- scoring


def _same_source(
    embeddings: Any,
    labels: Any,
    chunk_size: int,
    emb_name: str,
    lab_name: str,
    device: Any = None,
    search: str = "auto",
    per_query: bool = False,
) -> dict[str, Any]:
    """retrieval_metrics with the names its errors use: arguments, or the files they came from."""
    _check_chunk_size(chunk_size)
    emb = _as_embedding_matrix(embeddings, emb_name)
    raw_labels = _as_label_vector(labels, lab_name)
    if len(emb) != len(raw_labels):
        raise HarnessError(f"{emb_name} has {len(emb)} rows but {lab_name} has {len(raw_labels)} entries")
    codes = _label_codes(raw_labels, lab_name)
    x = _unit_rows(emb, emb_name)
    del emb

    counts = np.bincount(codes)
    relevant = (counts - 1)[codes]  # R per query: the other samples of its class
    if not relevant.any():
        raise HarnessError(
            f"{lab_name}: all {len(codes)} samples are alone in their class, so no query has anything to retrieve"
        )
    k = int(relevant.max())
    if search == "auto":
        search = "symmetric" if len(x) >= SYMMETRIC_MIN_N else "faiss"
    if search == "symmetric":
        from harness.symmetric_knn import heap_bytes  # only here: numba's import takes a third of a second

        if heap_bytes(len(x), k) > _MAX_HEAP_BYTES:
            search = "faiss"
    return _score(
        x,
        codes,
        x,
        codes,
        relevant,
        k,
        same_source=True,
        chunk_size=chunk_size,
        device=device,
        search=search,
        per_query=per_query,
    )


def _score(
    xq: np.ndarray,
    q_codes: np.ndarray,
    xr: np.ndarray,
    r_codes: np.ndarray,
    relevant: np.ndarray,
    k: int,
    *,
    same_source: bool,
    chunk_size: int,
    device: Any = None,
    search: str = "faiss",
    per_query: bool = False,
) -> dict[str, Any]:
    """Search, then accumulate the three metrics chunk by chunk; no per-query Python loop.

    With per_query, the result also holds each query's figures (see PER_QUERY); the totals are
    summed exactly as without it, so the three figures stay the same to the last bit.
    """
    n = len(xq)
    # 4096 rows by default: FAISS scans the database per block of queries anyway, so chunks cost
    # no speed against one call of all N (measured), while they bound memory when k is large.
    rows = max(1, min(chunk_size, _MAX_NEIGHBOURS_PER_CHUNK // (k + 1 if same_source else k)))
    if device is not None:
        chunks = _torch_search(xq, relevant, k, rows, device)
    elif same_source and search == "symmetric":
        chunks = _symmetric_search(xq, k, rows)
    else:
        chunks = _faiss_search(xq, xr, relevant, k, rows, same_source)
    r_codes = r_codes.astype(np.int32) if r_codes.max() < 2**31 else r_codes
    sum_p1 = sum_rp = sum_ap = 0.0
    if per_query:
        hits = np.zeros((n, k), dtype=bool)
        hit_at_1 = np.zeros(n, dtype=bool)
        hits_within_r = np.zeros(n, dtype=np.int32)
        ap_at_r = np.full(n, np.nan)
    for start, nbr in chunks:
        stop = start + len(nbr)
        r = relevant[start:stop]
        keep = r > 0
        if not keep.any():
            continue
        scored = np.arange(start, stop)
        if not keep.all():
            nbr, r = nbr[keep], r[keep]
            q = q_codes[start:stop][keep]
            scored = scored[keep]
        else:
            q = q_codes[start:stop]
        width = int(r.max())  # ranks at or beyond every row's R never count
        hit = r_codes[nbr[:, :width]] == q[:, None]
        sum_p1 += float(np.count_nonzero(hit[:, 0]))
        hit &= np.arange(width) < r[:, None]
        found, ap = hits_to_figures(hit, r)
        sum_rp += float((found / r).sum())
        sum_ap += float(ap.sum())
        if per_query:
            hit_at_1[scored] = hit[:, 0]
            hits_within_r[scored] = found
            ap_at_r[scored] = ap
            hits[scored, :width] = hit
    n_scored = int(np.count_nonzero(relevant))
    result: dict[str, Any] = {
        "precision_at_1": sum_p1 / n_scored,
        "r_precision": sum_rp / n_scored,
        "map_at_r": sum_ap / n_scored,
        "n_queries": n_scored,
        "n_singletons": int(n - n_scored),
    }
    if per_query:
        result["per_query"] = {
            "relevant": relevant.astype(np.int32),
            "hit_at_1": hit_at_1,
            "hits_within_r": hits_within_r,
            "ap_at_r": ap_at_r,
            "hits": hits,
        }
    return result


def hits_to_figures(hit: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hits within R, AP@R) per query from hit [Q, W]: whether rank i + 1 is a same-class neighbour
    within the query's first R (False beyond R), and R [Q] >= 1.

    The one formula of AP@R: the precision at each relevant rank i is found(i) / i; summed over the
    relevant ranks and divided by R. More trailing False columns change it by float64 rounding at
    most (numpy's pairwise sums group the terms by the row's length).
    """
    found = np.cumsum(hit, axis=1, dtype=np.int32)
    precision_at_hits = np.divide(found, np.arange(1, hit.shape[1] + 1, dtype=np.float64),
                                  out=np.zeros(hit.shape), where=hit)
    return found[:, -1], precision_at_hits.sum(axis=1) / relevant


def _faiss_search(
    xq: np.ndarray, xr: np.ndarray, relevant: np.ndarray, k: int, rows: int, same_source: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, neighbours) per chunk of queries, searched by FAISS on the CPU."""
    k_search = k + 1 if same_source else k  # one extra: the query finds itself
    for start in range(0, len(xq), rows):
        if not relevant[start : start + rows].any():
            continue  # a chunk of singletons: nothing to score, skip the search
        # faiss.knn runs knn_inner_product, the very search IndexFlatIP.search runs, but on our
        # array in place: an index would copy all embeddings once more. Inner product rather than
        # L2: on unit vectors both are exact and rank alike, and IP skips the norm terms. Float32
        # rounding differs between the two, so at similarity gaps of ~1e-7 a neighbour pair may
        # order differently than PML's default L2.
        _, nbr = faiss.knn(xq[start : start + rows], xr, k_search, metric=faiss.METRIC_INNER_PRODUCT)
        yield start, _drop_self(nbr, start) if same_source else nbr


def _symmetric_search(x: np.ndarray, k: int, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, neighbours) per chunk of queries, from one symmetric search of all of them."""
    from harness.symmetric_knn import symmetric_knn

    _, nbr = symmetric_knn(x, k, threads=faiss.omp_get_max_threads())
    for start in range(0, len(x), rows):
        yield start, nbr[start : start + rows]


def _torch_search(
    x: np.ndarray, relevant: np.ndarray, k: int, rows: int, device: Any
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, neighbours) per chunk, searched on a torch device by matrix product and top-k."""
    import torch  # only here: the CPU path never needs torch

    on_device = torch.from_numpy(x).to(device)
    rows = max(1, min(rows, _MAX_SIMILARITIES_PER_CHUNK // len(x)))
    for start in range(0, len(x), rows):
        stop = min(len(x), start + rows)
        if not relevant[start:stop].any():
            continue
        similarities = on_device[start:stop] @ on_device.T
        own = torch.arange(stop - start, device=on_device.device)
        similarities[own, own + start] = -torch.inf  # the query is never its own neighbour
        yield start, similarities.topk(k, dim=1).indices.cpu().numpy()


def _drop_self(nbr: np.ndarray, start: int) -> np.ndarray:
    """Remove each query's own index from its row of k+1 neighbours."""
    own = np.arange(start, start + len(nbr))
    if (nbr[:, 0] == own).all():
        return nbr[:, 1:]  # the usual case: a unit vector is its own best match
    is_self = nbr == own[:, None]
    # Exact duplicates can tie with the query and push it out of the list: drop the last column
    # then, as pytorch-metric-learning does, so both report the same neighbours.
    is_self[~is_self.any(axis=1), -1] = True
    return nbr[~is_self].reshape(len(nbr), nbr.shape[1] - 1)


# ------------------------------------------------------------------------------------------ validation


def _check_chunk_size(chunk_size: Any) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise HarnessError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _to_numpy(obj: Any) -> np.ndarray:
    """numpy view of a numpy array, torch tensor or array-like, without copying when possible."""
    torch = sys.modules.get("torch")  # a tensor implies torch is imported; never import it here
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return t.float().numpy()
    return np.asarray(obj)


def _cuda_device_of(obj: Any) -> Any:
    """The device of a CUDA tensor, else None: embeddings already on a GPU are searched there."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor) and obj.is_cuda:
        return obj.device
    return None


def _as_embedding_matrix(obj: Any, name: str) -> np.ndarray:
    arr = _to_numpy(obj)
    if arr.dtype.kind not in "biuf":
        raise HarnessError(f"{name} holds {arr.dtype}, expected numbers")
    if arr.ndim != 2:
        raise HarnessError(f"{name} has shape {arr.shape}, expected a 2-D [N, D] array")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise HarnessError(f"{name} is empty (shape {arr.shape})")
    return arr


def _as_label_vector(obj: Any, name: str) -> np.ndarray:
    arr = _to_numpy(obj)
    if arr.ndim != 1:
        raise HarnessError(f"{name} has shape {arr.shape}, expected a 1-D [N] array")
    if arr.dtype.kind not in "biuUSO":
        raise HarnessError(f"{name} holds {arr.dtype}, expected integers or strings")
    if len(arr) == 0:
        raise HarnessError(f"{name} is empty")
    return arr


def _label_codes(arr: np.ndarray, name: str) -> np.ndarray:
    """Labels as 0..C-1, so huge ids or strings never collide or overflow downstream."""
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:  # object arrays mixing types that do not compare, e.g. str and int
        raise HarnessError(f"{name} mix values that cannot be compared: {err}") from None
    return codes.reshape(-1)


def _join_labels(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Query and reference labels in one array without lossy casts (int64 + uint64 is float64)."""
    if q.dtype == r.dtype:
        return np.concatenate([q, r])
    kinds = {q.dtype.kind, r.dtype.kind}
    if "O" in kinds:
        return np.concatenate([q.astype(object), r.astype(object)])
    if kinds <= set("biu"):
        common = np.result_type(q.dtype, r.dtype)
        if common.kind == "f":  # signed with unsigned 64-bit: exact only as Python ints
            common = np.dtype(object)
        return np.concatenate([q.astype(common), r.astype(common)])
    if kinds == {"U"} or kinds == {"S"}:
        return np.concatenate([q, r])  # numpy widens <U3 with <U7; nothing is lost
    raise HarnessError(f"query_labels hold {q.dtype} but reference_labels hold {r.dtype}; use one label type for both")


def _unit_rows(arr: np.ndarray, name: str) -> np.ndarray:
    """The one float32 copy of the embeddings, each row scaled to unit L2 norm.

    Works block by block in float64 and divides by the row's largest magnitude before taking the
    norm, so huge or tiny finite values neither overflow nor underflow. Blocks run on FAISS's
    thread count (numpy releases the GIL); each block's arithmetic is the same on any thread.
    """
    n, d = arr.shape
    out = np.empty((n, d), dtype=np.float32)
    block = max(1, _NORMALISE_BLOCK_VALUES // d)

    def normalise(start: int) -> None:
        b = np.array(arr[start : start + block], dtype=np.float64)
        finite = np.isfinite(b)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise HarnessError(f"{name}: row {start + row} holds a non-finite value ({b[row, col]}) at column {col}")
        peak = np.abs(b).max(axis=1)
        if not peak.all():
            row = int(np.flatnonzero(peak == 0)[0])
            raise HarnessError(f"{name}: row {start + row} is all zeros and cannot be L2-normalised")
        b /= peak[:, None]
        b /= np.sqrt(np.einsum("ij,ij->i", b, b))[:, None]
        out[start : start + len(b)] = b

    starts = range(0, n, block)
    threads = min(len(starts), faiss.omp_get_max_threads())
    if threads == 1:
        for start in starts:
            normalise(start)
    else:
        # In order of rows: map's results are read in order, so the first bad row is the one named.
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(normalise, starts):
                pass
    return out


def _load_npy(path: Path, what: str, *, numbers_only: bool) -> np.ndarray:
    """Load a plain .npy array; read the header first to refuse pickled objects with a clear reason."""
    name = f"{what} file {path}"
    try:
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    _, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    _, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    # Version 3.0 headers have no public reader; np.load below still checks them.
                    dtype = None
            except (ValueError, EOFError, OSError, SyntaxError):
                raise HarnessError(f"not a .npy array file: {path}") from None
    except FileNotFoundError:
        raise HarnessError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise HarnessError(f"{name} is a directory, expected a .npy file") from None
    except OSError as err:
        raise HarnessError(f"cannot read {name}: {err.strerror or err}") from None
    if dtype is not None and dtype.hasobject:
        expected = "numbers" if numbers_only else "integers or strings (object arrays are not loaded)"
        raise HarnessError(f"{name} holds {dtype}, expected {expected}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise HarnessError(f"{name} holds object, expected numbers or strings") from None
        raise HarnessError(f"not a .npy array file: {path} ({err})") from None
    except (EOFError, OSError) as err:
        raise HarnessError(f"not a .npy array file: {path} ({err})") from None
    if not isinstance(arr, np.ndarray):  # .npz archives load as NpzFile
        raise HarnessError(f"not a .npy array file: {path}")
    if numbers_only and arr.dtype.kind not in "biuf":
        raise HarnessError(f"{name} holds {arr.dtype}, expected numbers")
    if not numbers_only and arr.dtype.kind not in "biuUS":
        raise HarnessError(f"{name} holds {arr.dtype}, expected integers or strings")
    return arr
