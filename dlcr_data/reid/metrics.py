"""CC-ReID ranking metrics (CMC, mAP, mINP) with CAL's general / CC / SC semantics, vectorised and chunked.

Semantics: CAL `tools/eval_metrics.py` (`evaluate`, `evaluate_with_clothes`). For a query q, the
*positives* are the gallery entries with q's pid; each is *good* (counted) or *junk* (deleted from the ranking):

| mode      | good                                | junk                                    |
|-----------|-------------------------------------|-----------------------------------------|
| `general` | other camera                        | same camera                             |
| `cc`      | other camera and other clothes      | same camera or same clothes             |
| `sc`      | other camera and same clothes       | same camera or other clothes            |

Entries of other pids are never removed. A query without a good entry is skipped and counted
(`num_skipped`); the averages divide by the valid queries only. CMC@k = share of valid queries whose first
good entry lies at a kept rank < k; AP = mean over good entries of (goods so far) / (kept rank + 1), plain
precision at each hit (CAL, torchreid, fast-reid); INP = n_good / (kept rank of the last good + 1) (fast-reid).

How it is computed. A full argsort of every row is not needed: metrics depend only on where the positives
land, and there are few of them (tens per query against thousands of gallery entries). Per chunk of queries:
the rows' distances are *sorted as values* (numpy's SIMD sort on CPU, several times faster than an argsort;
`torch.sort` on other devices), and each positive's position is a binary search of its own distance in its
sorted row. Positives are listed per query from a pid-grouped gallery index (no query x gallery pid
comparison). Everything after the sort touches (queries x positives) elements only.

Tie policy: the ranking is the *stable* ascending order of distances, i.e. equal distances are ordered by
gallery index (as `np.argsort(kind="stable")`). An entry tied with a positive counts before it iff its gallery
index is smaller; those ties are resolved exactly by comparing the tied positive's row (rare with float
features; the only dense step besides the sort). CAL and torchreid use numpy's default (unstable) quicksort,
so they agree with this up to the order of exactly equal distances.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcr_data.reid.rank_labels import MODES, RankLabels, check_mode, encode_labels

MEMORY_BUDGET = 512 * 2**20
"""Bytes of working memory per chunk of queries when `chunk_size` is None (chunks hold a few copies of the
(chunk x gallery) distance block; LaST's test gallery gives 356 queries per chunk)."""
_BYTES_PER_ENTRY = 3  # x itemsize: the distance block, its sorted copy, one temporary


# -- one chunk of queries ---------------------------------------------------------------------------------------
@dataclass
class _Positives:
    """The same-pid gallery entries of a chunk of queries, padded to (chunk, max positives)."""

    cols: torch.Tensor  # gallery index
    present: torch.Tensor  # False on padding
    pos: torch.Tensor  # position in the stable ascending order of the query's row (0-based)


class _Workspace:
    """Scratch (rows x gallery) blocks reused from chunk to chunk: a fresh block of that size page-faults on first
    touch, which cost as much as the sort itself at LaST size."""

    def __init__(self) -> None:
        self._blocks: dict[str, torch.Tensor] = {}

    def block(self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        buf = self._blocks.get(name)
        if buf is None or buf.shape[0] < rows or (buf.shape[1], buf.dtype, buf.device) != (cols, dtype, device):
            buf = self._blocks[name] = torch.empty(rows, cols, dtype=dtype, device=device)
        return buf[:rows]


def _sorted_rows(d: torch.Tensor, ws: _Workspace) -> torch.Tensor:
    """Each row of `d` sorted ascending (values only)."""
    if d.device.type == "cpu":
        # numpy's sort is SIMD-accelerated on x86 (x86-simd-sort), ~20x faster than torch's on CPU; in place on
        # a reused block.
        out = ws.block("sorted", *d.shape, d.dtype, d.device)
        buf = out.numpy()
        np.copyto(buf, d.numpy())
        buf.sort(axis=1)
        return out
    return torch.sort(d, dim=1).values


def _positives(d: torch.Tensor, labels: RankLabels, rows: slice, ws: _Workspace) -> _Positives:
    """Where each positive of each query lands in the stable ascending order of its row of `d`."""
    num_q, num_g = d.shape
    count = labels.pid_count[labels.q_pids[rows]]
    width = int(count.max()) if num_q else 0
    slot = torch.arange(width, device=d.device)
    present = slot < count[:, None]
    first = labels.pid_start[labels.q_pids[rows]]
    cols = labels.g_by_pid[(first[:, None] + slot).clamp_(max=max(num_g - 1, 0))]
    if width == 0:
        return _Positives(cols, present, cols.clone())
    values = d.gather(1, cols)
    if torch.isnan(values[present]).any():
        raise ValueError("distmat holds NaN for a same-pid pair; NaN distances cannot be ranked")
    srt = _sorted_rows(d, ws)
    before = torch.searchsorted(srt, values)  # entries strictly closer; srt[before] is the value itself
    # Another entry at exactly this distance sits right after it in the sorted row (cheaper than a 2nd search).
    after = srt.gather(1, (before + 1).clamp_(max=num_g - 1))
    tied = present & (before + 1 < num_g) & (after == values)
    if tied.any():
        r, c = tied.nonzero(as_tuple=True)
        before[r, c] += _tied_before(d, r, values[r, c], cols[r, c])
    return _Positives(cols, present, before)


def _tied_before(d: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """For each (row, value, col): entries of that row at exactly `value` with a smaller gallery index."""
    return (_tied_before_scan if d.device.type == "cpu" else _tied_before_dense)(d, rows, values, cols)


def _tied_before_scan(d: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # One prefix scan per tied positive: ties are rare with float features (a few per thousand positives at
    # LaST size), and a scan costs O(col) where a dense (ties x gallery) mask costs O(gallery) plus temporaries.
    dn, vn = d.numpy(), values.numpy()
    counts = [np.count_nonzero(dn[r, :c] == v) for r, v, c in zip(rows.tolist(), vn, cols.tolist(), strict=True)]
    return torch.tensor(counts, dtype=torch.int64)


def _tied_before_dense(d: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # Accelerators: one masked comparison per block of tied positives (a Python loop would sync per positive).
    num_g = d.shape[1]
    index = torch.arange(num_g, device=d.device)
    step = max(1, MEMORY_BUDGET // max(1, num_g * (d.element_size() + 2)))  # bounds the (block x gallery) mask
    out = [torch.zeros(0, dtype=torch.int64, device=d.device)]
    for i in range(0, len(rows), step):
        sl = slice(i, i + step)
        same = (d[rows[sl]] == values[sl, None]) & (index < cols[sl, None])
        out.append(same.sum(1))
    return torch.cat(out)


@dataclass
class _QueryResults:
    """Per-query results of one mode: valid (has a good entry), kept rank of the first good, AP, INP."""

    valid: torch.Tensor
    first: torch.Tensor
    ap: torch.Tensor
    inp: torch.Tensor


def _score(p: _Positives, labels: RankLabels, rows: slice, mode: str) -> _QueryResults:
    """Per-query metrics of one mode from the positives' positions."""
    num_q = p.present.shape[0]
    if p.present.shape[1] == 0:
        zeros = torch.zeros(num_q, dtype=torch.float64, device=p.pos.device)
        return _QueryResults(zeros.bool(), zeros.long(), zeros, zeros)
    junk = labels.q_cams[rows, None] == labels.g_cams[p.cols]
    if mode != "general":
        same_clothes = labels.q_clothes[rows, None] == labels.g_clothes[p.cols]
        junk |= same_clothes if mode == "cc" else ~same_clothes
    good = p.present & ~junk
    junk &= p.present
    # Walk the positives in ranking order; padding sorts last.
    big = torch.iinfo(torch.int64).max
    pos, order = p.pos.masked_fill(~p.present, big).sort(dim=1)
    good, junk = good.gather(1, order), junk.gather(1, order)
    kept = pos - (torch.cumsum(junk, 1) - junk.long())  # rank once the junk before it is deleted
    hits = torch.cumsum(good, 1)  # goods up to and including this one
    n_good = hits[:, -1]
    valid = n_good > 0
    precision = hits.double() / (kept.double() + 1)
    ap = (precision * good).sum(1) / n_good.clamp(min=1)
    first = kept.masked_fill(~good, big).min(1).values
    last = kept.masked_fill(~good, -1).max(1).values
    inp = n_good.double() / (last.double() + 1)
    zero = torch.zeros_like(ap)
    return _QueryResults(valid, first.masked_fill(~valid, 0), ap.where(valid, zero), inp.where(valid, zero))


# -- accumulation -------------------------------------------------------------------------------------------------
def _summarise(parts: Sequence[_QueryResults], num_gallery: int, max_rank: int) -> dict:
    length = max(0, min(max_rank, num_gallery))
    if parts:
        valid = torch.cat([p.valid for p in parts]).cpu().numpy()
        first = torch.cat([p.first for p in parts]).cpu().numpy()[valid]
        ap = torch.cat([p.ap for p in parts]).cpu().numpy()[valid]
        inp = torch.cat([p.inp for p in parts]).cpu().numpy()[valid]
    else:
        valid, first, ap, inp = (np.zeros(0, dtype=bool), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    num_valid = int(valid.sum())
    if num_valid == 0:  # CAL's evaluate would divide by zero here, torchreid asserts; we report zeros
        return {"cmc": np.zeros(length), "mAP": 0.0, "mINP": 0.0, "num_valid": 0, "num_skipped": len(valid)}
    hist = np.bincount(first[first < length], minlength=length)[:length]
    return {
        "cmc": np.cumsum(hist) / num_valid,
        "mAP": float(ap.mean()),
        "mINP": float(inp.mean()),
        "num_valid": num_valid,
        "num_skipped": len(valid) - num_valid,
    }


def _chunk_rows(num_q: int, num_g: int, itemsize: int, chunk_size: int | None) -> Iterator[slice]:
    if chunk_size is None:
        chunk_size = MEMORY_BUDGET // max(1, num_g * itemsize * _BYTES_PER_ENTRY)
    chunk_size = max(1, int(chunk_size))
    for start in range(0, num_q, chunk_size):
        yield slice(start, min(start + chunk_size, num_q))


def _rankable(d: torch.Tensor) -> torch.Tensor:
    # numpy cannot sort bfloat16; widening half floats to float32 keeps every order and every tie.
    if not d.is_floating_point():
        return d.double()
    return d.float() if d.dtype in (torch.float16, torch.bfloat16) else d


def _device_of(x: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


@contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run torch's CPU ops in the calling thread only. After the sort, every op touches (chunk x positives)
    elements: parallelising them buys nothing, and on a busy machine each OpenMP region waits milliseconds for
    its threads (x ~40 ops per chunk: 5-10x the sort on LTCC-sized input). The matmul stays parallel. torch's
    thread count is process-wide: it is restored on exit, also on error."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- public API -------------------------------------------------------------------------------------------------
@torch.no_grad()
def junk_mask(
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    q_clothes: Any = None,
    g_clothes: Any = None,
    mode: str = "general",
) -> torch.Tensor:
    """(num_query x num_gallery) bool: the entries `evaluate_rank` deletes from each query's ranking in `mode`
    (same pid and same camera; in CC also same pid and same clothes; in SC also same pid and other clothes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    qp, gp = (torch.as_tensor(a) for a in encode_labels(q_pids, g_pids))
    qc, gc = (torch.as_tensor(a) for a in encode_labels(q_camids, g_camids))
    junk = qc[:, None] == gc[None, :]
    if mode != "general":
        if q_clothes is None or g_clothes is None:
            raise ValueError(f"mode {mode!r} needs q_clothes and g_clothes")
        ql, gl = (torch.as_tensor(a) for a in encode_labels(q_clothes, g_clothes))
        same = ql[:, None] == gl[None, :]
        junk |= same if mode == "cc" else ~same
    return junk & (qp[:, None] == gp[None, :])


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    q_clothes: Any = None,
    g_clothes: Any = None,
    mode: str = "general",
    max_rank: int = 50,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """CMC, mAP and mINP of a (num_query x num_gallery) distance matrix (smaller = closer).

    Inputs may be numpy arrays or torch tensors; labels may be ints or strings (clothes ids are mapped to ints
    with one mapping shared by query and gallery). Runs on `device`, default the distmat's (CPU for numpy),
    `chunk_size` queries at a time (default: from `MEMORY_BUDGET`). Returns
    `{"cmc", "mAP", "mINP", "num_valid", "num_skipped"}`: `cmc` is a float64 array of length
    min(max_rank, num_gallery) (like torchreid; CAL returns num_gallery entries), `cmc[k-1]` = Rank-k. Queries
    without a good entry are skipped and counted; with no valid query at all, every figure is 0 and
    `num_valid` is 0 (no exception). Ties: stable order, i.e. by gallery index (module docstring).
    """
    dev = _device_of(distmat, device)
    dist = torch.as_tensor(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query x num_gallery), got shape {tuple(dist.shape)}")
    labels = RankLabels.build(q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, dev)
    check_mode(mode, labels)
    if dist.shape != (len(labels.q_pids), labels.num_gallery):
        raise ValueError(f"distmat shape {tuple(dist.shape)} != ({len(labels.q_pids)}, {labels.num_gallery})")
    parts, ws = [], _Workspace()
    with _one_thread_on_cpu(dev):
        for rows in _chunk_rows(dist.shape[0], dist.shape[1], dist.element_size(), chunk_size):
            d = _rankable(dist[rows].to(dev))
            parts.append(_score(_positives(d, labels, rows, ws), labels, rows, mode))
    return _summarise(parts, labels.num_gallery, max_rank)


def cosine_distance(q_feats: torch.Tensor, g_feats: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """1 - cos between rows of two *already L2-normalised* feature matrices (into `out` if given)."""
    one = torch.ones((), dtype=q_feats.dtype, device=q_feats.device)
    return torch.addmm(one, q_feats, g_feats.T, alpha=-1, out=out)  # one pass: no (1 - x) temporary


def _normalised(feats: Any, device: torch.device) -> torch.Tensor:
    f = torch.as_tensor(feats, device=device)
    if not f.is_floating_point() or f.dtype in (torch.float16, torch.bfloat16):
        f = f.float()
    return F.normalize(f, dim=1)


@torch.no_grad()
def evaluate_features(
    q_feats: Any,
    g_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    q_clothes: Any = None,
    g_clothes: Any = None,
    modes: Iterable[str] = ("general",),
    max_rank: int = 50,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, dict]:
    """`evaluate_rank` of the cosine distance (1 - cos, features L2-normalised here) for each mode in `modes`.

    The distance matrix is never materialised: each chunk of queries gets its (chunk x gallery) block, which
    is sorted once and scored for every mode before the next block is computed (LaST's 10,176 x 125,353 test
    runs in ~0.5 GiB beyond the features with the default `MEMORY_BUDGET`).
    """
    modes = tuple(dict.fromkeys(modes))
    dev = _device_of(q_feats, device)
    q, g = _normalised(q_feats, dev), _normalised(g_feats, dev)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query features have dimension {q.shape[1]}, gallery features {g.shape[1]}")
    labels = RankLabels.build(q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, dev)
    for mode in modes:
        check_mode(mode, labels)
    if len(q) != len(labels.q_pids) or len(g) != labels.num_gallery:
        raise ValueError(
            f"{len(q)}/{len(g)} query/gallery features for {len(labels.q_pids)}/{labels.num_gallery} labels"
        )
    parts: dict[str, list[_QueryResults]] = {m: [] for m in modes}
    ws = _Workspace()
    for rows in _chunk_rows(len(q), len(g), q.element_size(), chunk_size):
        d = cosine_distance(q[rows], g, out=ws.block("distance", rows.stop - rows.start, len(g), q.dtype, dev))
        with _one_thread_on_cpu(dev):
            p = _positives(d, labels, rows, ws)
            for mode in modes:
                parts[mode].append(_score(p, labels, rows, mode))
    return {mode: _summarise(parts[mode], labels.num_gallery, max_rank) for mode in modes}


@torch.no_grad()
def topk(
    q_feats: Any, g_feats: Any, k: int, chunk_size: int | None = None, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most cosine-similar gallery entries of each query: (similarities, gallery indices), (Q, k) each,
    most similar first; chunked over queries like `evaluate_features`."""
    dev = _device_of(q_feats, device)
    q, g = _normalised(q_feats, dev), _normalised(g_feats, dev)
    k = min(k, len(g))
    sims, idx = [], []
    for rows in _chunk_rows(len(q), len(g), q.element_size(), chunk_size):
        s, i = (q[rows] @ g.T).topk(k, dim=1)
        sims.append(s)
        idx.append(i)
    if not sims:
        return torch.zeros(0, k, device=dev), torch.zeros(0, k, dtype=torch.long, device=dev)
    return torch.cat(sims), torch.cat(idx)
