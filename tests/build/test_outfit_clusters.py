"""ClonedPerson's outfit clusters: outfit embeddings, DBSCAN and quantile eps (the plan they drive: test_plan.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from demo_cases import FREE_OUTFITS
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.outfit_clusters import (
    EMBEDDING_SIZE,
    auto_rho,
    cluster_outfits,
    dbscan,
    embed_outfit,
    outfit_clusters_from_records,
    pairwise_distances,
    quantile_eps,
)
from dlcr_data.build.parse import OracleParser
from dlcr_data.build.plan import plan_variants
from dlcr_data.demo import DemoConfig
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
def demo(demo_root_for) -> tuple[Path, loaders.Loaded]:
    """The demo before issue 15 (48 people in 1-3 freely drawn outfits, every colour alike) with 2 images per
    (outfit, camera): ~2 s to render; the cluster sizes below were measured on it."""
    root = demo_root_for(DemoConfig(num_ids=48, images_per_camera=2, **FREE_OUTFITS))
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
    # Several mid-sized clusters, not one giant cluster, not all noise (48 outfits here).
    assert s["clusters"] >= 2 and max(s["sizes"]) <= s["outfits"] / 2 and s["noise"] <= s["outfits"] / 2
    assert all(r.key in per_record for r in query)  # query outfits are outside the pool: embedded per record
    plan = plan_variants(
        query, {c: "a | b | c" for c in clusters.ids}, 4, sampler="similarity-diversity", clusters=clusters,
        source_embeddings=per_record,
    )  # fmt: skip
    assert len(plan) == 4 * len(query) and {v.sampling for v in plan} <= {"similar", "diverse"}
