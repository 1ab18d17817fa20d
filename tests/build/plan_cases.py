"""Synthetic plan inputs for the byte-identity pins of `test_plan.py`: many outfits (string-sorted ids), sources in
and out of the pool, donors in shuffled order, and hand-made outfit clusters (no DBSCAN: the pins must not move
when the clustering changes). Every case is a pure function of its arguments."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dlcr_data.build.outfit_clusters import OutfitClusters
from dlcr_data.records import Record

COLORS = ("red", "navy", "white", "black", "olive", "grey", "pink", "beige")


def outfit_texts(n: int, seed: int = 0) -> dict[str, str]:
    """`n` outfits `<pid>_<k>`, 3 per identity, with varied texts (non-ASCII included: the json escapes it)."""
    rng = np.random.default_rng(seed)
    texts = {}
    for i in range(n):
        top, bottom, shoes = (COLORS[int(j)] for j in rng.integers(0, len(COLORS), 3))
        accent = "é" if i % 17 == 0 else ""
        texts[f"{i // 3 + 1}_{i % 3 + 1}"] = f"{top}{accent} shirt {i} | {bottom} jeans | {shoes} sneakers"
    return texts


def records(outfits: dict[str, str], per_outfit: int, *, query: int = 0, every: int = 1) -> list[Record]:
    """`per_outfit` training images of every `every`-th outfit, then `query` images of outfits outside the pool."""
    recs = [
        Record(f"train_{cid}_{i}", f"train/{cid}_{i}.png", int(cid.split("_")[0]), i % 6, cid, "train")
        for cid in list(outfits)[::every]
        for i in range(per_outfit)
    ]
    recs += [Record(f"query_{j}", f"query/{j}.png", 90_000 + j, 0, f"{90_000 + j}_1", "query") for j in range(query)]
    return recs


def donors(recs: list[Record], skip_every: int = 5) -> dict[str, list[Record]]:
    """Training images by outfit, each list in reverse key order; every `skip_every`-th outfit has none."""
    by_outfit: dict[str, list[Record]] = {}
    for r in recs:
        if r.split == "train":
            by_outfit.setdefault(r.clothes_id, []).insert(0, r)
    return {c: rs for i, (c, rs) in enumerate(sorted(by_outfit.items())) if i % skip_every}


def clusters(ids: list[str], sizes: tuple[int, ...], noise: int, dim: int = 8, seed: int = 0) -> OutfitClusters:
    """Clusters of the given sizes, then `noise` noise outfits, over the first ids (sorted); the rest of `ids` is
    left out of the clustering. Embeddings: a unit centre per cluster plus small noise."""
    rng = np.random.default_rng(seed)
    chosen = sorted(ids)[: sum(sizes) + noise]
    labels = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)] + [np.full(noise, -1)]).astype(int)
    labels = labels[rng.permutation(len(chosen))]  # clusters spread over the id order
    centres = rng.normal(size=(len(sizes), dim))
    emb = np.where(labels[:, None] >= 0, centres[np.maximum(labels, 0)], 0) + rng.normal(0, 0.3, (len(chosen), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * np.clip(emb @ emb.T, -1.0, 1.0), 0.0))
    return OutfitClusters(chosen, labels, dist, 0.6, 5, emb)


def query_embeddings(recs: list[Record], cl: OutfitClusters, seed: int = 1) -> dict[str, np.ndarray]:
    """An embedding for every other query record: next to a random pool outfit (so most land in its cluster)."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in [r for r in recs if r.split == "query"][::2]:
        near = cl.embeddings[int(rng.integers(len(cl.ids)))]
        out[r.key] = near + rng.normal(0, 0.05, near.shape)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pin_cases() -> dict[str, tuple[list[Record], dict[str, str], int, dict]]:
    """name -> (records, outfits, variants, other `plan_variants` arguments)."""
    many = outfit_texts(1200)  # 1,200 outfits, ids sort as strings ("10_1" < "1_1"? no: "10_1" < "1_2")
    many_recs = records(many, 2, query=40, every=7)
    few = outfit_texts(5, seed=1)
    few_recs = records(few, 3, query=2)
    don = donors(records(many, 3, every=3))
    cl = clusters(list(many), (40, 25, 12, 9, 6, 3), noise=60)
    sd_recs = records(many, 1, query=30, every=4)
    small_cl = clusters(list(few), (3,), noise=1)
    mid = outfit_texts(300, seed=2)
    mid_cl = clusters(list(mid), (60, 50, 40, 30, 20, 10, 5), noise=85)  # every outfit clustered
    mid_recs = records(mid, 1, query=20, every=2)
    return {
        "random-many": (many_recs, many, 10, {"seed": 3, "negative_prompt": "blurry", "prompt_template": "a {top}"}),
        "random-cycle": (few_recs, few, 13, {"seed": 0}),
        "random-donors": (many_recs, many, 10, {"seed": 1, "donors": don}),
        "random-clusters": (many_recs, many, 6, {"seed": 2, "clusters": cl}),
        "sd-default": (sd_recs, many, 10, {"seed": 4, "sampler": "similarity-diversity", "clusters": cl,
                                          "source_embeddings": query_embeddings(sd_recs, cl)}),
        "sd-cap-fraction": (sd_recs, many, 25, {"seed": 5, "sampler": "similarity-diversity", "clusters": cl,
                                               "similar_fraction": 0.3, "max_per_cluster": 2}),
        "sd-donors": (sd_recs, many, 8, {"seed": 6, "sampler": "similarity-diversity", "clusters": cl,
                                        "donors": don, "similar_fraction": 1.0}),
        "sd-all-clustered": (mid_recs, mid, 12, {"seed": 8, "sampler": "similarity-diversity", "clusters": mid_cl,
                                                "source_embeddings": query_embeddings(mid_recs, mid_cl)}),
        "sd-cycle": (few_recs, few, 11, {"seed": 7, "sampler": "similarity-diversity", "clusters": small_cl,
                                        "similar_fraction": 0.5, "max_per_cluster": 1}),
    }  # fmt: skip
