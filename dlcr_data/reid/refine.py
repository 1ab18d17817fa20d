"""Test-time prediction refinement (docs/dlcr-method.md §4): each query's generated variants (the gallery is
unchanged) re-score the query's top gallery entries. Two rules, by name in `RULES`; both run chunk by chunk over
the queries, and `evaluate_refined` scores each chunk as it comes: no query x gallery matrix is ever held.

"dlcr" (the default) is DLCR's released rule: `Simple-CCReID/evaluation/test_reranking.py` of
github.com/CroitoruAlin/dlcr at b3642aa (l. = its lines). Per query:

1. Lists: the original query and its K variants (DLCR: 4, l. 57-58). Features L2-normalised, no flip, no feature
   averaging (l. 40); in each list s = cos + 1 (l. 86-90).
2. Each list drops the protocol's junk (l. 112-121) and keeps its top `top` gallery *images* (l. 123; DLCR 5),
   and of each identity among them its highest s (l. 126-127 walk them in ascending order: the higher overwrites).
3. The score of each identity of the original's list starts at its s there (l. 140). Every list l, the original
   included (so it counts twice), adds s_l(p) / m_l * s_l(p) to each identity p it shares with that list,
   m_l = the list's top s (l. 141-152). float32, in that order, list by list, as DLCR's numpy scalars.
4. The original's top `top` entries by s, junk *not* dropped (l. 166-167), become max(score of their identity, s)
   (l. 168-173); every other entry keeps s. The distances are -s (l. 175).

DLCR ran it on PRCC's CC queries (no junk there: query and gallery cameras differ), K = 4, top 5. Elsewhere:

- Junk = what the protocol deletes (`metrics.junk_mask` in its mode), as DLCR's junk was its `evaluate`'s.
- A step-4 entry whose identity has no score keeps s. Only a junk entry can be one (dropping junk only moves
  later entries up into step 2's list); DLCR's l. 173 raises KeyError there. The metrics delete junk anyway.
- Fewer than `top` visible gallery images: the lists are shorter. Any K >= 1. A list whose m_l <= 0 (all its
  images at cos = -1) adds nothing; DLCR would divide by zero.
- DLCR skips queries without a good match (l. 115-116) and then pairs its lists with queries by position
  (l. 168), which shifts every later query once one is skipped; here each query is refined with its own lists
  (the metrics skip a query without a good match either way).
- Ties at the top-`top` boundary go torch.topk's way; DLCR's np.argsort (quicksort) may pick another image.
- K = 0: no refinement (1 - cos). DLCR's rule over the original alone would still raise its top entries.
- The rule takes the features it is given: `evaluate` passes its flip-augmented ones (CAL's test feature);
  DLCR's script embedded the unflipped images (l. 39-40).

"identity" is ours, adapted from the paper's description, not DLCR's code:

1. An identity's score in a ranking is its best cosine similarity over its visible gallery entries (junk hidden).
2. The original query and each variant keep their top `top` *identities*; each kept identity receives
   score / (that list's top score) as its vote (a list whose top score is <= 0 votes nothing).
3. Votes are summed over the 1 + K lists; only identities in the original's top list keep them.
4. *Every* gallery entry of a voted identity gets max(cos, the identity's summed votes); the others keep cos.
   The distances are 1 - that. (It turns the ranking into identity-level scores: see §4 of the method notes.)

With K = 0 variants both return the plain cosine distances 1 - cos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcr_data.reid.metrics import (
    MEMORY_BUDGET,
    _one_thread_on_cpu,
    _positives,
    _rankable,
    _score,
    _summarise,
    _Workspace,
    junk_mask,
)
from dlcr_data.reid.rank_labels import RankLabels, check_mode, encode_labels

_NEG_INF = float("-inf")


@dataclass
class _Chunk:
    """A chunk of queries as a rule sees it; `lists` is the rule's to overwrite."""

    lists: torch.Tensor  # (B, 1 + K, G) cosine similarities: the original query, then its K variants
    g_codes: torch.Tensor  # (G,) identity codes 0..num_ids-1
    num_ids: int
    hidden: torch.Tensor | None  # (B, G) the protocol's junk


def _cosine(q: torch.Tensor, g: torch.Tensor, inv_norm: torch.Tensor) -> torch.Tensor:
    # Gallery norms applied to the product: a normalised copy would double the largest tensor.
    return (q @ g.T).mul_(inv_norm)


# -- "dlcr": DLCR's released rule ---------------------------------------------------------------------------------
def _dlcr_rule(c: _Chunk, top: int) -> torch.Tensor:
    """DLCR's released rule (module docstring, steps 1-4): the chunk's (B, G) distances -s."""
    s = c.lists.add_(1)  # (B, L, G)
    n = min(top, s.shape[2])
    raw, raw_idx = s[:, 0].topk(n, dim=1)  # step 4's entries: the original's top n, junk included
    out = s[:, 0].clone()
    # Step 2: each list's top n visible images (-inf where fewer are visible).
    if c.hidden is not None:
        s.masked_fill_(c.hidden[:, None, :], _NEG_INF)
    vals, idx = s.topk(n, dim=2)  # (B, L, n), best first
    pids = c.g_codes[idx]
    valid = vals > _NEG_INF
    # Step 2, per identity: its best image in the list; it counts once per list (its first slot).
    same = (pids[..., :, None] == pids[..., None, :]) & valid[..., :, None] & valid[..., None, :]  # (B, L, n, n)
    ident = vals[..., None, :].expand_as(same).masked_fill(~same, _NEG_INF).amax(-1)
    earlier = torch.ones(n, n, dtype=torch.bool, device=s.device).tril(-1)
    first = valid & ~(same & earlier).any(-1)
    # Step 3: gains s / m * s, list by list (at most one slot per identity and list: the sums add one term).
    m = vals[..., :1]
    gain = torch.where(first & (m > 0), ident / m * ident, 0.0)
    p0, valid0 = pids[:, 0], valid[:, 0]
    score = ident[:, 0].clone()  # the copy of the original's {identity: s}
    for lst in range(vals.shape[1]):
        shared = (pids[:, lst, None, :] == p0[:, :, None]) & first[:, lst, None, :]  # (B, n original slots, n)
        score = score + torch.where(shared, gain[:, lst, None, :], 0.0).sum(-1)
    # Step 4: the original's top n entries, junk included, rise to their identity's score.
    known = (c.g_codes[raw_idx][:, :, None] == p0[:, None, :]) & valid0[:, None, :]  # (B, n, n original slots)
    raised = torch.where(known, score[:, None, :], _NEG_INF).amax(-1)
    return out.scatter_(1, raw_idx, torch.where(known.any(-1), torch.maximum(raised, raw), raw)).neg_()


# -- "identity": ours ---------------------------------------------------------------------------------------------
def _identity_rule(c: _Chunk, top: int) -> torch.Tensor:
    """Our identity-level rule (module docstring): the chunk's (B, G) distances 1 - refined cos."""
    b, lists, num_g = c.lists.shape
    out = c.lists.new_empty(b, num_g)
    # `_refine_chunk` holds ~5 (rows x lists x G) temporaries: rows a few at a time, within half the budget.
    step = max(1, MEMORY_BUDGET // (2 * 5 * lists * num_g * c.lists.element_size()))
    for start in range(0, b, step):
        rows = slice(start, start + step)
        hidden = c.hidden[rows] if c.hidden is not None else None
        refined = _refine_chunk(c.lists[rows, 0], c.lists[rows, 1:], c.g_codes, c.num_ids, min(top, c.num_ids), hidden)
        torch.sub(1, refined, out=out[rows])
    return out


def _identity_scores(sims: torch.Tensor, g_codes: torch.Tensor, num_ids: int) -> torch.Tensor:
    """(..., G) similarities -> (..., num_ids): each identity's best similarity over its gallery entries."""
    out = sims.new_full((*sims.shape[:-1], num_ids), float("-inf"))
    return out.scatter_reduce_(-1, g_codes.expand_as(sims), sims, "amax")


def _refine_chunk(
    sims: torch.Tensor,
    variant_sims: torch.Tensor,
    g_codes: torch.Tensor,
    num_ids: int,
    top: int,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """The "identity" rule's steps 1-4 for a chunk: sims (B, G), variant_sims (B, K, G) -> refined sims (B, G);
    `hidden` (B, G) entries take no part in identity scores."""
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


RULES: dict[str, Callable[[_Chunk, int], torch.Tensor]] = {"dlcr": _dlcr_rule, "identity": _identity_rule}


# -- drivers ------------------------------------------------------------------------------------------------------
def refine_chunks(
    q_feats: Any,
    qv_feats: Any,
    g_feats: Any,
    g_pids: Any,
    *,
    rule: str = "dlcr",
    top: int = 5,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    exclude: Callable[[slice], torch.Tensor] | None = None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, refined distances of those queries (len(rows), G)) chunk after chunk, smaller = closer.

    `q_feats` (Q, D), `qv_feats` (Q, K, D) = K generated variants per query (K = 0: plain 1 - cos), `g_feats`
    (G, D), `g_pids` (G,); `rule` one of `RULES`; `top` = DLCR's 5 (images for "dlcr", identities for
    "identity"). `exclude(rows)` -> (len(rows), G) bool: the gallery entries the protocol deletes for those queries
    (`metrics.junk_mask`); they take no part in the lists, so refinement sees the gallery as the protocol does.
    Default chunk from `metrics.MEMORY_BUDGET`.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
    dev = torch.device(device) if device is not None else (q_feats.device if torch.is_tensor(q_feats) else None)
    q = torch.as_tensor(q_feats, device=dev).float()
    qv = torch.as_tensor(qv_feats, device=q.device).float()
    g = torch.as_tensor(g_feats, device=q.device).float()
    if qv.ndim != 3 or qv.shape[0] != q.shape[0] or (qv.shape[1] and qv.shape[2] != q.shape[1]):
        raise ValueError(f"qv_feats must be (num_query, K, D) = ({q.shape[0]}, K, {q.shape[1]}), got {tuple(qv.shape)}")
    pids = g_pids.detach().cpu().numpy() if torch.is_tensor(g_pids) else np.asarray(g_pids)
    codes = np.unique(pids, return_inverse=True)[1].reshape(-1)
    if len(codes) != len(g):
        raise ValueError(f"{len(g)} gallery features but {len(codes)} gallery pids")
    if chunk_size is None:  # the (chunk x (1 + K) x G) similarities ~ a third of it, as metrics' blocks
        chunk_size = MEMORY_BUDGET // max(1, len(g) * 4 * (1 + qv.shape[1]) * 3)
    return _chunks(q, qv, g, torch.as_tensor(codes, device=q.device), RULES[rule], top, max(1, chunk_size), exclude)


def _chunks(q, qv, g, g_codes, rule, top, chunk_size, exclude) -> Iterator[tuple[slice, torch.Tensor]]:
    inv_norm = 1 / torch.linalg.vector_norm(g, dim=1).clamp_(min=1e-12)  # F.normalize's eps
    num_ids = int(g_codes.max()) + 1 if len(g_codes) else 0
    refine = qv.shape[1] > 0 and top > 0 and num_ids > 0
    for start in range(0, len(q), chunk_size):
        rows = slice(start, min(start + chunk_size, len(q)))
        if not refine:
            yield rows, _cosine(F.normalize(q[rows], dim=1), g, inv_norm).neg_().add_(1)
            continue
        # The original and its variants in one product: more rows per matmul, and the matmul is the cost.
        feats = F.normalize(torch.cat([q[rows, None], qv[rows]], dim=1), dim=2)
        lists = _cosine(feats.flatten(0, 1), g, inv_norm).view(*feats.shape[:2], len(g))
        hidden = exclude(rows).to(lists.device) if exclude is not None else None
        yield rows, rule(_Chunk(lists, g_codes, num_ids, hidden), top)


@torch.no_grad()
def evaluate_refined(
    q_feats: Any,
    qv_feats: Any,
    g_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    q_clothes: Any = None,
    g_clothes: Any = None,
    *,
    mode: str = "general",
    rule: str = "dlcr",
    top: int = 5,
    max_rank: int = 50,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """`metrics.evaluate_rank`'s result for the refined distances, each chunk of `refine_chunks` scored as it
    comes (the protocol's junk in `mode` hidden from refinement, chunk by chunk too)."""
    dev = torch.device(device) if device is not None else (q_feats.device if torch.is_tensor(q_feats) else None)
    dev = dev or torch.device("cpu")
    labels = RankLabels.build(q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, dev)
    check_mode(mode, labels)
    # Labels as int codes once: each chunk's junk is then a comparison of codes, not a new label mapping.
    qp, gp = encode_labels(q_pids, g_pids)
    qc, gc = encode_labels(q_camids, g_camids)
    ql, gl = encode_labels(q_clothes, g_clothes) if mode != "general" else (None, None)

    def exclude(rows: slice) -> torch.Tensor:
        return junk_mask(qp[rows], gp, qc[rows], gc, None if ql is None else ql[rows], gl, mode=mode)

    chunks = refine_chunks(
        q_feats, qv_feats, g_feats, g_pids, rule=rule, top=top, chunk_size=chunk_size, device=dev, exclude=exclude
    )
    parts, ws = [], _Workspace()
    for rows, d in chunks:
        with _one_thread_on_cpu(dev):
            parts.append(_score(_positives(_rankable(d), labels, rows, ws), labels, rows, mode))
    return _summarise(parts, labels.num_gallery, max_rank)
