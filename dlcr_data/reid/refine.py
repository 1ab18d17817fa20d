"""DLCR's test-time prediction refinement (docs/dlcr-method.md §4), for any dataset and any number of variants.

DLCR generates clothes-changed variants of each *query* (the gallery is unchanged), ranks the gallery with each
variant, and lets the variants vote for the identities the original query already ranks high. Per query:

1. Cosine similarities to every gallery entry (features L2-normalised; no feature averaging). An identity's
   score in a ranking is its best similarity over its gallery entries; the original query keeps its top
   `top_ids` identities (DLCR: 5).
2. The original query and each variant rank the gallery the same way and keep their top `top_ids` identities
   with their scores ("original query + 4 variant sets: keep top-5 identities + similarities each"). Each kept
   identity receives the vote score / (that list's top score): 1 for the list's best identity, less for the
   others. (Our reading of "weighted by similarity / that list's top score": the weight *is* the contribution.
   A list whose top score is <= 0 has no meaningful ratio and votes nothing.)
3. Votes are summed over the 1 + K lists; only identities in the original top list keep them.
4. Every gallery entry of a voted identity gets max(its similarity, the identity's summed votes); all other
   entries keep their similarity. The votes (up to 1 + K) exceed any cosine similarity, so
   identities the lists agree on move to the top, in the order of their votes.

The result is a distance matrix (1 - similarity) for `metrics.evaluate_rank`. DLCR ran this on PRCC's CC
queries with 4 variants; here K is whatever `qv_feats` holds (K = 0 returns the plain cosine distances).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcr_data.reid.metrics import MEMORY_BUDGET


def _identity_scores(sims: torch.Tensor, g_codes: torch.Tensor, num_ids: int) -> torch.Tensor:
    """(..., G) similarities -> (..., num_ids): each identity's best similarity over its gallery entries."""
    out = sims.new_full((*sims.shape[:-1], num_ids), float("-inf"))
    return out.scatter_reduce_(-1, g_codes.expand_as(sims), sims, "amax")


@torch.no_grad()
def refine_distances(
    q_feats: Any,
    qv_feats: Any,
    g_feats: Any,
    g_pids: Any,
    top_ids: int = 5,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    exclude: Callable[[slice], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Refined (num_query x num_gallery) distances: 1 - cosine similarity, with the entries of the query's
    original top `top_ids` identities raised by the votes of its variants (module docstring).

    `q_feats` (Q, D), `qv_feats` (Q, K, D) = K generated variants per query (K may be 0), `g_feats` (G, D),
    `g_pids` (G,). Only entries whose identity is among the query's original top identities can change, and
    they can only get closer. Chunked over queries (default chunk from `metrics.MEMORY_BUDGET`).

    `exclude(rows)` -> (len(rows), G) bool marks gallery entries the evaluation protocol deletes for those queries
    (its junk: `metrics.junk_mask`). They take no part in identity scores, so refinement sees the gallery as the
    protocol does: otherwise a same-camera (or, in CC, same-clothes) match that the protocol hides would still lift
    its identity's other entries. DLCR's PRCC setting had no such entries (query and gallery cameras differ).
    """
    dev = torch.device(device) if device is not None else (q_feats.device if torch.is_tensor(q_feats) else None)
    q = F.normalize(torch.as_tensor(q_feats, device=dev).float(), dim=-1)
    qv = F.normalize(torch.as_tensor(qv_feats, device=q.device).float(), dim=-1)
    g = F.normalize(torch.as_tensor(g_feats, device=q.device).float(), dim=-1)
    if qv.ndim != 3 or qv.shape[0] != q.shape[0] or (qv.shape[1] and qv.shape[2] != q.shape[1]):
        raise ValueError(f"qv_feats must be (num_query, K, D) = ({q.shape[0]}, K, {q.shape[1]}), got {tuple(qv.shape)}")
    pids = g_pids.detach().cpu().numpy() if torch.is_tensor(g_pids) else np.asarray(g_pids)
    codes = np.unique(pids, return_inverse=True)[1].reshape(-1)
    if len(codes) != len(g):
        raise ValueError(f"{len(g)} gallery features but {len(codes)} gallery pids")
    g_codes = torch.as_tensor(codes, device=q.device)
    num_ids = int(codes.max()) + 1 if len(codes) else 0
    num_variants = qv.shape[1]
    top = min(top_ids, num_ids)
    if chunk_size is None:  # the (chunk x K x G) variant similarities dominate
        chunk_size = MEMORY_BUDGET // max(1, len(g) * 4 * (num_variants + 3))
    chunk_size = max(1, chunk_size)
    out = []
    for start in range(0, len(q), chunk_size):
        rows = slice(start, start + chunk_size)
        sims = q[rows] @ g.T
        if num_variants and top:
            hidden = exclude(rows).to(sims.device) if exclude is not None else None
            sims = _refine_chunk(sims, qv[rows] @ g.T, g_codes, num_ids, top, hidden)
        out.append(1 - sims)
    return torch.cat(out) if out else q.new_zeros(0, len(g))


def _refine_chunk(
    sims: torch.Tensor,
    variant_sims: torch.Tensor,
    g_codes: torch.Tensor,
    num_ids: int,
    top: int,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """Steps 1-4 for a chunk: sims (B, G), variant_sims (B, K, G) -> refined sims (B, G); `hidden` (B, G) entries
    take no part in identity scores."""
    b, k, _ = variant_sims.shape
    visible = sims if hidden is None else sims.masked_fill(hidden, float("-inf"))
    if hidden is not None:
        variant_sims = variant_sims.masked_fill(hidden[:, None, :], float("-inf"))
    # 1. The original query's top identities.
    original_top = _identity_scores(visible, g_codes, num_ids).topk(top, dim=1).indices  # (B, T)
    in_top = torch.zeros(b, num_ids, dtype=torch.bool, device=sims.device).scatter_(1, original_top, True)
    # 2. The original's and each variant's top identities, and their votes: score / that list's top score.
    lists = torch.cat([visible[:, None, :], variant_sims], dim=1)  # (B, 1 + K, G): the original votes too
    k += 1
    scores, ids = _identity_scores(lists, g_codes, num_ids).topk(top, dim=2)  # (B, 1 + K, T), best first
    best = scores[..., :1]
    votes = torch.where(best > 0, scores / best.clamp(min=torch.finfo(scores.dtype).tiny), torch.zeros_like(scores))
    # 3. Sum over variants, keeping only identities of the original top list.
    ids, votes = ids.reshape(b, k * top), votes.reshape(b, k * top)
    counted = in_top.gather(1, ids) & (votes > 0)
    summed = torch.zeros(b, num_ids, dtype=sims.dtype, device=sims.device).scatter_add_(1, ids, votes * counted)
    voted = torch.zeros_like(summed).scatter_add_(1, ids, counted.to(summed.dtype)) > 0
    # 4. Element-wise max on every entry of a voted identity.
    entry_voted = voted[:, g_codes]
    return torch.where(entry_voted, torch.maximum(sims, summed[:, g_codes]), sims)
