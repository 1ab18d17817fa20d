"""Outfit embeddings and DBSCAN clusters for the similarity-diversity target sampler of the plan.

After ClonedPerson (Wang et al., "Cloning Outfits from Real-World Images to 3D Characters for Generalizable Person
Re-Identification", CVPR 2022; its code `Yanan-Wang-cs/ClonedPerson`): outfits are embedded, clustered
with DBSCAN on a precomputed distance matrix (`min_samples` 5), and each person gets clothes both from its own
cluster (similar outfits: hard negatives) and from other clusters (diversity). ClonedPerson embeds clothes with a
QAConv re-ID model; this module uses a cheap hand-made colour/texture descriptor over the parsed garment parts
(`garments.OUTFIT_PARTS`), so it needs no weights and runs in about a second on the demo pool.

ClonedPerson's absolute eps (0.4, demo 0.5) is on QAConv's `1 - sigmoid(score / 10)` scale and means nothing for
another embedding, so eps defaults to its commented-out alternative: the mean of the smallest rho fraction of
the pairwise distances (`quantile_eps`), with rho scaled to the pool size (`auto_rho`). The plan side
(`plan.plan_variants(sampler="similarity-diversity")`) reads an `OutfitClusters`; `outfit_clusters_from_records`
builds one from records, images and garment maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dlcr_data.records import Record
from dlcr_data.vocab.colors import rgb_to_lab
from dlcr_data.vocab.garments import OUTFIT_PARTS

DEFAULT_MIN_SAMPLES = 5  # ClonedPerson's DBSCAN(min_samples=5)
# ClonedPerson's rho (0.0016, demo 0.003) is for image-level QAConv distances over tens of thousands of images. Here
# the points are outfits (tens to thousands), and a core outfit needs min_samples - 1 others within eps: about
# (min_samples - 1) / (n - 1) of all pairs. A fixed rho therefore suits one pool size only (on demo pools rho = 0.1
# gives 2 clusters of 46 outfits but one giant cluster of 294), so the default rho follows the pool size:
# rho = RHO_SCALE * (min_samples - 1) / (n - 1), which puts eps near the typical (min_samples - 1)-th-neighbour
# distance. It gives several clusters plus noise on demo pools of 21, 46 and 294 outfits. `rho=` or `eps=`
# override it.
RHO_SCALE = 2.0


def auto_rho(n: int, min_samples: int = DEFAULT_MIN_SAMPLES) -> float:
    """The default rho for `n` outfits: RHO_SCALE * (min_samples - 1) / (n - 1), at most 1."""
    return min(1.0, RHO_SCALE * max(min_samples - 1, 1) / max(n - 1, 1))


# -- the descriptor ---------------------------------------------------------------------------------------------
# Per outfit part, in this order (each block scaled to roughly unit size, then multiplied by its weight):
#   presence  1   1 if the part has pixels, else 0 (an absent part is all zeros, flag included)
#   area      1   the part's share of the outfit's pixels (a dress covers top + bottom; shorts leave legs bare)
#   lab_mean  3   mean L*/100, a*/100, b*/100
#   lab_std   3   standard deviation of L*, a*, b* / 50 (patterns and shading spread the colour)
#   ab_hist  25   a*b* histogram, 5x5 bins with edges ±8 and ±30: the middle bin holds the neutrals
#                 (black, grey, white, which only L tells apart), the outer ring the saturated colours
#   l_hist    4   L* histogram, edges 25, 50, 75 (dark .. light)
#   texture   2   mean |dL*/dx| and |dL*/dy| between neighbouring pixels both inside the part, / 25: stripes
#                 and checks are high in one or both directions, plain cloth low
_AB_EDGES = np.array([-30.0, -8.0, 8.0, 30.0])
_L_EDGES = np.array([25.0, 50.0, 75.0])
_N_AB, _N_L = (len(_AB_EDGES) + 1) ** 2, len(_L_EDGES) + 1
BLOCKS: tuple[tuple[str, int, float], ...] = (  # (name, size, weight)
    ("presence", 1, 0.5),
    ("area", 1, 0.5),
    ("lab_mean", 3, 1.0),
    ("lab_std", 3, 0.5),
    ("ab_hist", _N_AB, 1.0),
    ("l_hist", _N_L, 0.7),
    ("texture", 2, 0.5),
)
PART_SIZE = sum(size for _, size, _ in BLOCKS)
EMBEDDING_SIZE = PART_SIZE * len(OUTFIT_PARTS)
_PART_OF = np.zeros(256, np.uint8)  # canonical class id -> 1 + its outfit part's index (0: not clothing)
for _p, (_, _classes) in enumerate(OUTFIT_PARTS):
    _PART_OF[list(_classes)] = _p + 1
# Shoes are a few dozen pixels and often dark: they count, but less than top and bottom.
PART_WEIGHTS: dict[str, float] = {"top": 1.0, "bottom": 1.0, "shoes": 0.5}


def embed_outfit(image: np.ndarray, garment_map: np.ndarray) -> np.ndarray:
    """A fixed-length (`EMBEDDING_SIZE`) clothing descriptor of one RGB uint8 HxWx3 image and its canonical-class
    garment map (`garments.CLASS_ID`s): per outfit part (top, bottom, shoes) the blocks of `BLOCKS`, not normalised.

    All zeros when the map shows no outfit part at all.
    """
    image = np.asarray(image)
    garment_map = np.asarray(garment_map)
    if image.shape[:2] != garment_map.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and garment map {garment_map.shape} must be HxWx3 and HxW")
    part_of = _PART_OF[garment_map.astype(np.uint8, copy=False)]  # 0 = no outfit part, p + 1 = part p
    clothed = part_of > 0
    if not clothed.any():
        return np.zeros(EMBEDDING_SIZE)
    # Work on the outfit's bounding box only: a crop changes no statistic and saves most of the cost.
    rows, cols = np.flatnonzero(clothed.any(1)), np.flatnonzero(clothed.any(0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    image, part_of = image[box], part_of[box]
    lab = rgb_to_lab(image[..., :3])
    light = lab[..., 0]
    # Bin indices once per image; each part then only counts its own pixels.
    ab_bin = np.digitize(lab[..., 1], _AB_EDGES) * (len(_AB_EDGES) + 1) + np.digitize(lab[..., 2], _AB_EDGES)
    l_bin = np.digitize(light, _L_EDGES)
    dx, dy = np.abs(np.diff(light, axis=1)), np.abs(np.diff(light, axis=0))
    masks = [part_of == p + 1 for p in range(len(OUTFIT_PARTS))]
    total = sum(int(m.sum()) for m in masks)
    out = np.zeros(EMBEDDING_SIZE)
    for p, ((part, _), mask) in enumerate(zip(OUTFIT_PARTS, masks, strict=True)):
        n = int(mask.sum())
        if n == 0:
            continue
        pixels = lab[mask]
        # Differences only between two pixels of the part: the part's outline is not texture.
        in_x, in_y = mask[:, 1:] & mask[:, :-1], mask[1:] & mask[:-1]
        texture = [dx[in_x].mean() if in_x.any() else 0.0, dy[in_y].mean() if in_y.any() else 0.0]
        blocks = {
            "presence": [1.0],
            "area": [n / total],
            "lab_mean": pixels.mean(0) / 100.0,
            "lab_std": pixels.std(0) / 50.0,
            "ab_hist": np.bincount(ab_bin[mask], minlength=_N_AB) / n,
            "l_hist": np.bincount(l_bin[mask], minlength=_N_L) / n,
            "texture": np.array(texture) / 25.0,
        }
        vec = np.concatenate([np.asarray(blocks[name], np.float64) * weight for name, _, weight in BLOCKS])
        out[p * PART_SIZE : (p + 1) * PART_SIZE] = vec * PART_WEIGHTS[part]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


# -- clustering -------------------------------------------------------------------------------------------------
def pairwise_distances(embeddings: np.ndarray) -> np.ndarray:
    """Euclidean distances between unit rows (0 .. 2; = sqrt(2 - 2 cos)): a metric, unlike 1 - cos."""
    e = _unit(embeddings)
    gram = np.clip(e @ e.T, -1.0, 1.0)
    d = np.sqrt(np.maximum(2.0 - 2.0 * gram, 0.0))
    np.fill_diagonal(d, 0.0)
    return d


def dbscan(distances: np.ndarray, eps: float, min_samples: int = DEFAULT_MIN_SAMPLES) -> np.ndarray:
    """DBSCAN on a precomputed (n, n) distance matrix: int labels 0.. per cluster, -1 for noise.

    As scikit-learn: j is a neighbour of i when d(i, j) <= eps; i is a core point when it has at least
    `min_samples` neighbours, itself included. A cluster is everything density-reachable from a core point; a
    border point (not core, within eps of a core point) joins the first cluster that reaches it. Clusters are
    numbered in the order of their first core point by index, so labels depend only on the matrix.
    """
    d = np.asarray(distances, np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"dbscan needs a square distance matrix, not {d.shape}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, not {min_samples}")
    n = len(d)
    near = d <= eps
    np.fill_diagonal(near, True)  # a point is always its own neighbour, even with eps < 0
    core = near.sum(1) >= min_samples
    labels = np.full(n, -1, np.int64)
    cluster = 0
    for start in range(n):
        if not core[start] or labels[start] != -1:
            continue
        labels[start] = cluster
        frontier = [start]
        while frontier:  # breadth-first over core points; border points are labelled but not expanded
            reached: list[int] = []
            for i in frontier:
                new = np.flatnonzero(near[i] & (labels == -1))
                labels[new] = cluster
                reached.extend(int(j) for j in new if core[j])
            frontier = reached
        cluster += 1
    return labels


def quantile_eps(distances: np.ndarray, rho: float | None = None, *, min_samples: int = DEFAULT_MIN_SAMPLES) -> float:
    """eps = the mean of the smallest rho fraction (at least one) of the off-diagonal pairwise distances.

    ClonedPerson's alternative to a fixed eps (commented out in its code): it follows the scale of any embedding.
    `rho=None`: `auto_rho(n, min_samples)`.
    """
    d = np.asarray(distances, np.float64)
    if rho is None:
        rho = auto_rho(len(d), min_samples)
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], not {rho}")
    pairs = d[np.triu_indices(len(d), k=1)]
    if pairs.size == 0:
        raise ValueError("quantile_eps needs at least two points")
    k = max(1, math.ceil(rho * pairs.size))
    return float(np.partition(pairs, k - 1)[:k].mean())


@dataclass(frozen=True, eq=False)
class OutfitClusters:
    """DBSCAN clusters of a pool of outfits: `labels[i]` is the cluster of `ids[i]` (-1: noise)."""

    ids: list[str]  # sorted clothes_ids
    labels: np.ndarray  # (n,) int
    distances: np.ndarray  # (n, n) Euclidean between the unit embeddings
    eps: float
    min_samples: int
    embeddings: np.ndarray  # (n, d) unit rows, for placing outfits outside the pool

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {cid: i for i, cid in enumerate(self.ids)})

    def __contains__(self, clothes_id: object) -> bool:
        return clothes_id in self._index

    def index(self, clothes_id: str) -> int:
        return self._index[clothes_id]

    def cluster_of(self, clothes_id: str) -> int:
        """The cluster of a pool outfit (-1: noise); KeyError for an outfit outside the pool."""
        if clothes_id not in self._index:
            raise KeyError(f"outfit {clothes_id!r} is not in the clustered pool; use assign() with its embedding")
        return int(self.labels[self._index[clothes_id]])

    def distances_from(self, embedding: np.ndarray) -> np.ndarray:
        """(n,) distances from any embedding (normalised here) to the pool outfits, on the pool's scale."""
        e = _unit(np.asarray(embedding, np.float64).reshape(-1))
        return np.sqrt(np.maximum(2.0 - 2.0 * np.clip(self.embeddings @ e, -1.0, 1.0), 0.0))

    def assign(self, embedding: np.ndarray) -> int:
        """The cluster of an outfit outside the pool (e.g. a query image's): its nearest pool outfit's cluster
        when that one is within eps (ties: the first id), else -1."""
        if not self.ids:
            return -1
        d = self.distances_from(embedding)
        nearest = int(np.argmin(d))
        return int(self.labels[nearest]) if d[nearest] <= self.eps else -1

    def members(self, label: int) -> list[str]:
        return [cid for cid, lab in zip(self.ids, self.labels, strict=True) if lab == label]

    def summary(self) -> dict:
        """Figures for logs and manifests: eps, min_samples, number of clusters, noise outfits, cluster sizes."""
        sizes = np.bincount(self.labels[self.labels >= 0]) if len(self.labels) else np.zeros(0, np.int64)
        return {
            "outfits": len(self.ids),
            "clusters": len(sizes),
            "noise": int((self.labels < 0).sum()),
            "sizes": [int(s) for s in sizes],
            "eps": round(self.eps, 6),
            "min_samples": self.min_samples,
        }


def cluster_outfits(
    ids: Sequence[str],
    embeddings: np.ndarray,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    rho: float | None = None,
    eps: float | None = None,
) -> OutfitClusters:
    """DBSCAN over outfit embeddings; eps from `quantile_eps(rho)` (default rho: `auto_rho`) unless given.

    Rows are sorted by id first, so the result does not depend on the input order."""
    emb = np.asarray(embeddings, np.float64).reshape(len(ids), -1)
    if len(set(ids)) != len(ids):
        raise ValueError("cluster_outfits: outfit ids must be unique")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    ids, emb = [ids[i] for i in order], _unit(emb[order])
    d = pairwise_distances(emb)
    if eps is None:
        eps = quantile_eps(d, rho, min_samples=min_samples) if len(ids) > 1 else 0.0
    return OutfitClusters(list(ids), dbscan(d, eps, min_samples), d, float(eps), min_samples, emb)


def outfit_clusters_from_records(
    pool: Iterable[Record],
    load_image: Callable[[Record], np.ndarray],
    load_map: Callable[[Record], np.ndarray],
    *,
    sources: Iterable[Record] = (),
    min_samples: int = DEFAULT_MIN_SAMPLES,
    rho: float | None = None,
    eps: float | None = None,
) -> tuple[OutfitClusters, dict[str, np.ndarray]]:
    """Clusters over the outfits of `pool` (the target outfits), and a unit embedding per record.

    Embeddings are returned for every pool record and for every record of `sources` whose outfit is not in the
    pool (e.g. query images): `plan_variants(source_embeddings=...)` places those with `OutfitClusters.assign`.
    A record whose image or map cannot be read (OSError, ValueError) or that shows no outfit part gets no
    embedding and does not count towards its outfit. `load_image(record)` gives RGB uint8 HxWx3 (a video's first
    frame), `load_map(record)` its HxW canonical-class map.
    """
    pool = sorted({r.key: r for r in pool}.values(), key=lambda r: r.key)
    pool_outfits = {r.clothes_id for r in pool}
    extra = sorted({r.key: r for r in sources if r.clothes_id not in pool_outfits}.values(), key=lambda r: r.key)
    per_record: dict[str, np.ndarray] = {}
    for record in [*pool, *extra]:
        if record.key in per_record:
            continue
        try:
            vec = _unit(embed_outfit(np.asarray(load_image(record)), np.asarray(load_map(record))))
        except (OSError, ValueError):  # unreadable: the build lists such images when it loads them itself
            continue
        if vec.any():
            per_record[record.key] = vec
    groups: dict[str, list[np.ndarray]] = {}
    for r in pool:
        if r.key in per_record:
            groups.setdefault(r.clothes_id, []).append(per_record[r.key])
    ids = sorted(groups)
    emb = np.array([_unit(np.mean(groups[c], axis=0)) for c in ids]).reshape(len(ids), EMBEDDING_SIZE)
    return cluster_outfits(ids, emb, min_samples=min_samples, rho=rho, eps=eps), per_record
