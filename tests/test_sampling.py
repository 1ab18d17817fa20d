"""ClonedPerson's similarity-diversity sampler: outfit embeddings, DBSCAN, quantile eps and the plan it drives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.outfit_clusters import (
    EMBEDDING_SIZE,
    OutfitClusters,
    auto_rho,
    cluster_outfits,
    dbscan,
    embed_outfit,
    outfit_clusters_from_records,
    pairwise_distances,
    quantile_eps,
)
from dlcr_data.build.parse import OracleParser
from dlcr_data.build.plan import SAMPLERS, derive_seed, plan_variants
from dlcr_data.demo import DemoConfig, render_demo
from dlcr_data.errors import UserError
from dlcr_data.loaders.demo import Demo
from dlcr_data.records import Record


def euclidean(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(len(points), -1)
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


# -- DBSCAN -----------------------------------------------------------------------------------------------------
def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight 2-D blobs of 10 points (truth 0, 1, 2 in index order) and 4 isolated points (truth -1)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = [c + rng.normal(0, 0.3, (10, 2)) for c in centres]
    noise = np.array([[30.0, 30.0], [-30.0, 5.0], [5.0, -30.0], [20.0, -20.0]])
    truth = np.array([0] * 10 + [1] * 10 + [2] * 10 + [-1] * 4)
    return np.vstack([*points, noise]), truth


def test_dbscan_finds_blobs_and_noise_with_ids_in_order_of_first_core_point():
    points, truth = blobs()
    labels = dbscan(euclidean(points), eps=1.5, min_samples=5)
    assert np.array_equal(labels, truth)
    # Shuffled input: the same partition; ids follow the first core point in the new order.
    perm = np.random.default_rng(1).permutation(len(points))
    shuffled = dbscan(euclidean(points[perm]), eps=1.5, min_samples=5)
    assert np.array_equal(shuffled == -1, truth[perm] == -1)
    firsts = [int(np.flatnonzero(shuffled == c)[0]) for c in range(shuffled.max() + 1)]
    assert firsts == sorted(firsts)
    for c in range(3):
        assert len(set(shuffled[truth[perm] == c])) == 1
    assert np.array_equal(dbscan(euclidean(points), 1.5, 5), labels)  # deterministic


def test_dbscan_min_samples_counts_the_point_itself_and_labels_border_points():
    # 4 points within 0.3, a point at 1.0 only 0.7 from the last of them, an isolated point at 5.
    x = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 5.0])
    d = euclidean(x)
    # min_samples 4: 0.0-0.3 each have 4 neighbours (themselves included) -> core; 1.0 is a border point.
    assert dbscan(d, 0.75, 4).tolist() == [0, 0, 0, 0, 0, -1]
    # min_samples 5: only 0.3 (0.0-0.3 and 1.0) is core; the rest of its neighbours join as border points.
    assert dbscan(d, 0.75, 5).tolist() == [0, 0, 0, 0, 0, -1]
    assert dbscan(d, 0.75, 6).tolist() == [-1] * 6
    # min_samples 1: every point is core, so an isolated point is a cluster of its own.
    assert dbscan(d, 0.75, 1).tolist() == [0, 0, 0, 0, 0, 1]
    # Exactly eps apart counts as a neighbour (d <= eps, as scikit-learn).
    assert dbscan(euclidean([0.0, 1.0]), 1.0, 2).tolist() == [0, 0]
    assert dbscan(euclidean([0.0, 1.0]), 0.999, 2).tolist() == [-1, -1]


def test_dbscan_border_point_between_two_clusters_joins_the_first():
    a, b = [0.0, 0.1, 0.2, 0.3], [1.7, 1.8, 1.9, 2.0]
    x = np.array([*a, 1.0, *b])  # 1.0 is 0.7 from both 0.3 and 1.7, and core in neither's reach of 4
    assert dbscan(euclidean(x), 0.75, 4).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    x = np.array([*b, 1.0, *a])
    assert dbscan(euclidean(x), 0.75, 4).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_dbscan_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        dbscan(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="min_samples"):
        dbscan(np.zeros((2, 2)), 1.0, 0)


# -- eps ----------------------------------------------------------------------------------------------------------
def test_quantile_eps_is_the_mean_of_the_smallest_fraction_of_pairwise_distances():
    d = euclidean([0.0, 1.0, 3.0])  # pairs: 1, 3, 2
    assert quantile_eps(d, 1 / 3) == pytest.approx(1.0)
    assert quantile_eps(d, 0.5) == pytest.approx(1.5)  # ceil(0.5 * 3) = 2 smallest
    assert quantile_eps(d, 1.0) == pytest.approx(2.0)
    assert quantile_eps(d, 1e-9) == pytest.approx(1.0)  # at least one pair
    assert quantile_eps(d) == pytest.approx(2.0)  # auto rho for 3 points is capped at 1
    assert auto_rho(46) == pytest.approx(2 * 4 / 45) and auto_rho(1001, 5) == pytest.approx(0.008)
    with pytest.raises(ValueError):
        quantile_eps(d, 0.0)
    with pytest.raises(ValueError):
        quantile_eps(np.zeros((1, 1)), 0.5)


def test_cluster_outfits_is_order_free_and_takes_an_explicit_eps():
    points, _ = blobs()
    emb = np.hstack([points, np.full((len(points), 1), 40.0)])  # off the origin: unit rows keep the blobs apart
    ids = [f"o{i:02d}" for i in range(len(points))]
    clusters = cluster_outfits(ids, emb, eps=0.03)
    assert clusters.summary()["clusters"] == 3 and clusters.summary()["noise"] == 4
    perm = np.random.default_rng(2).permutation(len(ids))
    again = cluster_outfits([ids[i] for i in perm], emb[perm], eps=0.03)
    assert again.ids == clusters.ids and np.array_equal(again.labels, clusters.labels)
    assert np.allclose(clusters.distances, pairwise_distances(clusters.embeddings))
    assert [clusters.cluster_of(i) for i in ids] == list(clusters.labels)
    with pytest.raises(KeyError):
        clusters.cluster_of("nope")
    # Outside the pool: the nearest pool outfit's cluster when within eps, else noise.
    assert clusters.assign(emb[0] * 1.01) == clusters.cluster_of("o00")
    assert clusters.assign(np.array([0.0, -40.0, 0.0])) == -1
    auto = cluster_outfits(ids, emb)  # default rho: eps from the data
    assert auto.eps == pytest.approx(quantile_eps(auto.distances, auto_rho(len(ids))))


# -- embeddings on demo images -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, loaders.Loaded]:
    """The default demo's people and outfits with 2 images per (outfit, camera): ~2 s to render."""
    root = render_demo(tmp_path_factory.mktemp("demo") / "dlcr_demo", DemoConfig(images_per_camera=2))
    return root, loaders.get("demo").load(root)


def demo_loaders(root: Path):
    lut = OracleParser("demo").lut  # ground-truth masks -> canonical classes

    def load_image(record: Record) -> np.ndarray:
        with Image.open(root / record.image_path) as im:
            return np.asarray(im.convert("RGB"))

    def load_map(record: Record) -> np.ndarray:
        with Image.open(Demo().mask_path(root, record)) as im:
            return lut[np.asarray(im)]

    return load_image, load_map


def test_embeddings_keep_an_outfit_closer_to_itself_than_to_other_outfits(demo):
    root, loaded = demo
    load_image, load_map = demo_loaders(root)
    train = loaded["train"]
    vecs = np.array([embed_outfit(load_image(r), load_map(r)) for r in train])
    assert vecs.shape == (len(train), EMBEDDING_SIZE) and np.isfinite(vecs).all()
    outfit = np.array([r.clothes_id for r in train])
    d = pairwise_distances(vecs)
    same, other = outfit[:, None] == outfit[None], outfit[:, None] != outfit[None]
    np.fill_diagonal(same, False)
    assert d[same].mean() < 0.6 * d[other].mean()
    np.fill_diagonal(d, np.inf)
    assert (outfit[d.argmin(1)] == outfit).mean() > 0.95  # an image's nearest image wears its outfit
    # Outfit level: the mean of an outfit's images; ids sorted, rows unit length.
    clusters, _ = outfit_clusters_from_records(train[:60], load_image, load_map)
    assert clusters.ids == sorted({r.clothes_id for r in train[:60]})
    assert np.allclose(np.linalg.norm(clusters.embeddings, axis=1), 1.0)


def test_an_absent_part_is_zeros_and_a_map_without_clothes_gives_zeros(demo):
    root, loaded = demo
    load_image, load_map = demo_loaders(root)
    record = loaded["train"][0]
    image, garment_map = load_image(record), load_map(record)
    no_shoes = np.where(garment_map == 7, 0, garment_map)  # canonical "shoes" -> background
    vec = embed_outfit(image, no_shoes)
    part = EMBEDDING_SIZE // 3
    assert not vec[2 * part :].any() and vec[:part].any() and vec[0] > 0  # presence flag of the top
    assert not embed_outfit(image, np.zeros_like(garment_map)).any()
    with pytest.raises(ValueError):
        embed_outfit(image, garment_map[:-1])


def test_demo_pool_gives_several_clusters_and_some_noise(demo):
    root, loaded = demo
    load_image, load_map = demo_loaders(root)
    query = loaded["query"]
    clusters, per_record = outfit_clusters_from_records(loaded["train"], load_image, load_map, sources=query)
    s = clusters.summary()
    assert s["outfits"] == len({r.clothes_id for r in loaded["train"]})
    # Several mid-sized clusters, not one giant cluster, not all noise (46 outfits: 4 clusters, 12 noise).
    assert s["clusters"] >= 2 and max(s["sizes"]) <= s["outfits"] / 2 and s["noise"] <= s["outfits"] / 2
    assert all(r.key in per_record for r in query)  # query outfits are outside the pool: embedded per record
    plan = plan_variants(
        query, {c: "a | b | c" for c in clusters.ids}, 4, sampler="similarity-diversity", clusters=clusters,
        source_embeddings=per_record,
    )  # fmt: skip
    assert len(plan) == 4 * len(query) and {v.sampling for v in plan} <= {"similar", "diverse"}


# -- the similarity-diversity plan -------------------------------------------------------------------------------
def synthetic_pool() -> tuple[OutfitClusters, list[Record], dict[str, str]]:
    """Three clusters (8, 8 and 6 outfits) and 4 noise outfits; 2 images per outfit, pid = outfit number."""
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 10 + 1
    emb, ids = [], []
    for c, size in zip(centres, (8, 8, 6), strict=True):
        for _ in range(size):
            ids.append(f"{len(ids)}_1")
            emb.append(c + rng.normal(0, 0.2, 4))
    for axis in range(4):
        ids.append(f"{len(ids)}_1")
        emb.append(-np.eye(4)[axis] * 10 + rng.normal(0, 0.2, 4) + np.eye(4)[(axis + 1) % 4] * 7)
    clusters = cluster_outfits(ids, np.array(emb), min_samples=5)
    records = [
        Record(f"train_{cid}_{i}", f"train/{cid}_{i}.png", int(cid.split("_")[0]), i, cid, "train")
        for cid in ids
        for i in range(2)
    ]
    return clusters, records, {cid: f"top {cid} | bottom | shoes" for cid in ids}


def test_synthetic_pool_clusters():
    clusters, _, _ = synthetic_pool()
    assert clusters.summary()["sizes"] == [8, 8, 6] and clusters.summary()["noise"] == 4


def sd_plan(records, outfits, clusters, variants, **kw):
    return plan_variants(records, outfits, variants, seed=5, sampler="similarity-diversity", clusters=clusters, **kw)


def test_targets_mix_own_cluster_and_other_clusters_in_the_configured_share():
    clusters, records, outfits = synthetic_pool()
    for fraction, similar_wanted in ((0.5, 3), (0.34, 3), (1.0, 6), (0.0, 0)):  # ceil(6 f) similar of 6
        plan = sd_plan(records, outfits, clusters, 6, similar_fraction=fraction)
        assert len(plan) == 6 * len(records)
        for rec in records:
            mine = [v for v in plan if v.source_key == rec.key]
            own = clusters.cluster_of(rec.clothes_id)
            assert all(v.target_clothes_id != rec.clothes_id for v in mine)
            assert all(v.cluster_id == clusters.cluster_of(v.target_clothes_id) for v in mine)
            similar = [v for v in mine if v.sampling == "similar"]
            diverse = [v for v in mine if v.sampling == "diverse"]
            assert len(similar) + len(diverse) == 6
            assert all(v.cluster_id == own for v in similar)
            assert all(v.cluster_id != own or v.cluster_id == -1 for v in diverse)
            if own == -1:  # a noise outfit has no cluster of its own: every target is diverse
                assert not similar
                continue
            others = len(clusters.members(own)) - 1
            assert len(similar) == min(similar_wanted, others)  # a small own cluster runs out: diverse fills in
            row = clusters.distances[clusters.index(rec.clothes_id)]
            d = [row[clusters.index(v.target_clothes_id)] for v in similar]  # nearest first
            assert d == sorted(d)
            if fraction == 0.5:  # interleaved from variant 0: similar, diverse, similar, ...
                assert [v.sampling for v in mine] == ["similar", "diverse"] * 3
            # diverse targets are spread: one per other cluster (3 groups + noise singletons) before any repeats
            groups = [v.cluster_id if v.cluster_id >= 0 else v.target_clothes_id for v in diverse]
            assert len(set(groups)) == len(groups)


def test_at_most_max_per_cluster_from_one_cluster_and_fill_when_the_own_cluster_runs_out():
    clusters, records, outfits = synthetic_pool()
    plan = sd_plan(records, outfits, clusters, 12, max_per_cluster=2)
    for rec in records:
        mine = [v for v in plan if v.source_key == rec.key]
        # 2 similar + 2 from each of the 2 other clusters + 4 noise (3 if the source is noise) ... then cycle
        targets = [v.target_clothes_id for v in mine]
        distinct = len(set(targets))
        assert distinct == (9 if clusters.cluster_of(rec.clothes_id) == -1 else 10)
        assert targets[distinct:] == targets[: 12 - distinct]  # cycles through the same order
        # The cap bounds the distinct outfits of one cluster; only cycling repeats them.
        assert max(Counter(v.cluster_id for v in mine[:distinct] if v.cluster_id >= 0).values()) == 2
        if clusters.cluster_of(rec.clothes_id) >= 0:
            assert [v.sampling for v in mine[:distinct]].count("similar") == 2  # then diverse fills the rest
    # Default cap (7) with many variants: the own cluster (8 outfits, 7 others) runs out, diverse fills in.
    plan = sd_plan(records, outfits, clusters, 30)
    for rec in records[:2]:  # outfit 0_1, cluster 0
        mine = [v for v in plan if v.source_key == rec.key]
        assert [v.sampling for v in mine[:21]].count("similar") == 7
        assert len({v.target_clothes_id for v in mine}) == 7 + 7 + 6 + 4  # everything but itself, cap 7 per cluster
        assert Counter(v.cluster_id for v in mine[:24])[1] == 7


def test_plan_is_deterministic_and_independent_of_record_order_and_partitioning():
    clusters, records, outfits = synthetic_pool()
    plan = sd_plan(records, outfits, clusters, 5)
    assert plan == sd_plan(records, outfits, clusters, 5)
    shuffled = [records[i] for i in np.random.default_rng(3).permutation(len(records))]
    halves = sd_plan(shuffled[::2], outfits, clusters, 5) + sd_plan(shuffled[1::2], outfits, clusters, 5)
    assert sorted(halves, key=lambda v: v.key) == sorted(plan, key=lambda v: v.key)
    # Clusters computed from the pool in another order are the same clusters, so the same plan.
    perm = np.random.default_rng(4).permutation(len(clusters.ids))
    again = cluster_outfits([clusters.ids[i] for i in perm], clusters.embeddings[perm])
    assert sd_plan(records, outfits, again, 5) == plan
    # A prefix of variants is the same plan: the order does not depend on --variants.
    three = sd_plan(records, outfits, clusters, 3)
    assert three == [v for v in plan if v.variant < 3]
    assert plan != plan_variants(records, outfits, 5, seed=6, sampler="similarity-diversity", clusters=clusters)


def test_sources_outside_the_pool_are_placed_by_their_embedding():
    clusters, _, outfits = synthetic_pool()
    near_zero = clusters.embeddings[clusters.index("0_1")] * 1.001  # right next to outfit 0_1 (cluster 0)
    query = [
        Record("query_99_1_0", "query/99_1_0.png", 99, 0, "99_1", "query"),
        Record("q2", "q2.png", 98, 0, "98_1", "query"),
    ]
    plan = sd_plan(query, outfits, clusters, 4, source_embeddings={"query_99_1_0": near_zero})
    first = [v for v in plan if v.source_key == "query_99_1_0"]
    assert [v.sampling for v in first] == ["similar", "diverse", "similar", "diverse"]
    assert first[0].target_clothes_id == "0_1" and first[0].cluster_id == 0  # the nearest outfit first
    assert all(v.sampling == "diverse" for v in plan if v.source_key == "q2")  # no embedding: treated as noise


def test_donors_work_with_both_samplers():
    clusters, records, outfits = synthetic_pool()
    donors: dict[str, list[Record]] = {}
    for r in records:
        donors.setdefault(r.clothes_id, []).append(r)
    del donors["1_1"]  # an outfit without a donor image leaves the pool
    for sampler in SAMPLERS:
        plan = plan_variants(records, outfits, 4, seed=1, donors=donors, sampler=sampler, clusters=clusters)
        assert plan and all(v.target_clothes_id != "1_1" for v in plan)
        for v in plan:
            assert v.appearance_key in {r.key for r in donors[v.target_clothes_id]}
            assert v.appearance_pid == int(v.target_clothes_id.split("_")[0])


# -- the random sampler and errors ---------------------------------------------------------------------------------
def dlcr_reference(records, outfits, variants, seed):
    """DLCR's draw as it was before samplers existed: (key, target) per variant."""
    pool = sorted(outfits)
    out = []
    for rec in records:
        candidates = [c for c in pool if c != rec.clothes_id]
        order = np.random.default_rng(derive_seed(seed, "targets", rec.key)).permutation(len(candidates))
        out += [(f"{rec.key}_v{k}", candidates[int(order[k % len(candidates)])]) for k in range(variants)]
    return out


def test_random_sampler_is_the_unchanged_default():
    clusters, records, outfits = synthetic_pool()
    default = plan_variants(records, outfits, 7, seed=2)
    assert plan_variants(records, outfits, 7, seed=2, sampler="random") == default
    assert [(v.key, v.target_clothes_id) for v in default] == dlcr_reference(records, outfits, 7, 2)
    assert all(v.sampling == "random" and v.cluster_id == -1 for v in default)
    # With clusters the random draw is the same; only cluster_id is filled in.
    with_clusters = plan_variants(records, outfits, 7, seed=2, clusters=clusters)
    assert [v.target_clothes_id for v in with_clusters] == [v.target_clothes_id for v in default]
    assert all(v.cluster_id == clusters.cluster_of(v.target_clothes_id) for v in with_clusters)


def test_unknown_sampler_and_bad_options_are_one_line_user_errors():
    clusters, records, outfits = synthetic_pool()
    with pytest.raises(UserError) as err:
        plan_variants(records, outfits, 2, sampler="kmeans")
    assert "random, similarity-diversity" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="similar-fraction"):
        sd_plan(records, outfits, clusters, 2, similar_fraction=1.5)
    with pytest.raises(ValueError, match="needs clusters"):
        plan_variants(records, outfits, 2, sampler="similarity-diversity")
