"""Planning the variants: DLCR's random draw of other outfits and ClonedPerson's similarity-diversity sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import plan_cases
import pytest
from plan_cases import pin_cases, sha256

from dlcr_data.build import BuildOptions, build, plan
from dlcr_data.build.outfit_clusters import OutfitClusters, cluster_outfits
from dlcr_data.build.plan import (
    SAMPLERS,
    PlanFile,
    derive_seed,
    no_target_reason,
    plan_sources,
    plan_variants,
    read_plan,
    write_plan_file,
)
from dlcr_data.errors import UserError
from dlcr_data.records import Record


# -- the random draw (DLCR) --------------------------------------------------------------------------------------------
def test_plan_is_a_pure_function_of_seed_key_and_variant():
    recs = [Record(f"train_{i}", f"train/{i}.png", i % 3, 0, f"{i % 3}_1", "train") for i in range(9)]
    outfits = {f"{p}_1": f"red top {p} | black trousers | white shoes" for p in range(3)} | {"9_2": "a | b | c"}
    plan = plan_variants(recs, outfits, 5, seed=1)
    shuffled = plan_variants(list(reversed(recs)), outfits, 5, seed=1)
    assert sorted(plan, key=lambda v: v.key) == sorted(shuffled, key=lambda v: v.key)
    for v in plan:
        assert v.target_clothes_id != v.source_clothes_id  # DLCR: only *other* outfits
        assert "." not in v.key and v.key.endswith(f"_v{v.variant}")
    first = [v.target_clothes_id for v in plan if v.source_key == "train_0"]
    assert len(set(first[:3])) == 3  # distinct while the pool (3 other outfits) allows
    assert plan != plan_variants(recs, outfits, 5, seed=2)


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


# -- sources without a possible target ---------------------------------------------------------------------------
def test_a_source_whose_outfit_is_the_whole_pool_gets_no_variant_and_a_reason():
    recs = [Record(f"train_{i}", f"train/{i}.png", 1, 0, "1_1", "train") for i in range(3)]
    query = Record("query_0", "query/0.png", 2, 0, "2_1", "query")
    one = {"1_1": "red top | black trousers | white shoes"}
    assert plan_variants(recs, one, 4) == []  # DLCR draws *other* outfits: none exists
    assert [v.target_clothes_id for v in plan_variants([query], one, 4)] == ["1_1"] * 4  # cycles the pool of 1
    assert no_target_reason(recs[0], one) == "no target outfit: the training pool holds no outfit but its own (1_1)"
    assert no_target_reason(recs[0], {}) == "no target outfit: the training pool is empty"
    two = one | {"3_1": "blue top | grey trousers | black shoes"}
    donors = {"1_1": recs}  # 3_1 has no donor image: a donor-based generator cannot target it
    assert plan_variants(recs, two, 2, donors=donors) == []
    assert no_target_reason(recs[0], two, donors) == (
        "no target outfit: the training pool (outfits with a donor image) holds no outfit but its own (1_1)"
    )


def test_the_plan_stage_lists_sources_without_target_as_skipped(tmp_path):
    """Outfits 1_1 (3 images) and 2_1 (1 image) in the pool: every source gets the other one. A pool of 1_1 alone
    (e.g. 2_1's only image could not be parsed) leaves 1_1's sources with no target: listed, with the reason."""
    recs = [Record(f"train_{i}", f"train/{i}.png", 1, 0, "1_1", "train") for i in range(3)]
    other = Record("train_9", "train/9.png", 2, 0, "2_1", "train")
    opts = SimpleNamespace(
        variants=2, seed=0, negative_prompt="", prompt_template="{text}", sampler="random", similar_fraction=0.5
    )
    state = SimpleNamespace(wait_for_everyone=lambda: None)
    ctx = SimpleNamespace(
        opts=opts,
        state=state,
        backends=SimpleNamespace(generator=SimpleNamespace(needs_donor=False)),
        skipped=[],
        work=Path(tmp_path),
        main=lambda: True,
    )
    texts = {"1_1": "a | b | c", "2_1": "d | e | f"}
    planned = plan.run(ctx, [*recs, other], [*recs, other], texts)
    assert len(planned) == 8 and ctx.skipped == []
    planned = plan.run(ctx, [*recs, other], recs, {"1_1": "a | b | c"})
    assert [v.source_key for v in planned] == ["train_9", "train_9"]
    reason = "no target outfit: the training pool holds no outfit but its own (1_1)"
    assert ctx.skipped == [{"path": r.path, "reason": reason, "stage": "plan"} for r in recs]
    assert len((tmp_path / "plan.jsonl").read_text().splitlines()) == 2
    assert [v.source_key for v in read_plan(tmp_path / "plan.jsonl")] == ["train_9", "train_9"]


# -- the plan's bytes, pinned ---------------------------------------------------------------------------------------
# sha256 of plan.jsonl as the plan code before the O(variants) draw and the streamed plan wrote it (issue 12, item
# 6): the draw builds only the entries the variants take, and must give the same bytes.
PINNED = {
    "random-many": "685cc4018ab6f14ce6cef3a70b99c4b87367e9929ffac6ff9595394bede11e5b",
    "random-cycle": "104eb9948a69c309768390651f055487a9032fb56fd1b665eef7d5aa82301814",
    "random-donors": "fbd6b117d50a1a453c2eb11bc95c70bdb59403c32680ef4a19c7a8e55b52df0e",
    "random-clusters": "103f19c7a7ee99236e856460b158d70c70e6f8276caac60a1f14e4a9653b1d42",
    "sd-default": "773314a517fb39ca36063b4fb0fd213ef7c72a15f640220f783fb09821a4cc0f",
    "sd-cap-fraction": "d052c61c6c63c1f6447ca9b6c0e560ba209136023c93b3c0509bc66e78a8b260",
    "sd-donors": "809123e9feb1cc0b133ac3f3e630c9e00b75f700ee6ceb5cdddaacafce0afb81",
    "sd-all-clustered": "5ede047f7fc18aff3e487312502c2a25820f2f7fbf7f356e10cc449dde43acf1",
    "sd-cycle": "48d05860a4b73b37bf51e1f0a18431045131221b2323c391ccedca05b00a7882",
}
# The tiny demo's builds: re-pinned when the tiny demo's outfits changed (issue 15); the plan code is unchanged.
TINY_BUILD_PLAN = "9880c28017eb9a03a33340b59e488797ff1739513758d6882d28baaa2b36ba92"  # random sampler, recolor
TINY_SD_SWAP_PLAN = "ff48d815c8b0ef0f8b8afb696631aad974fa672486421eb7716fb93935533070"  # clusters and donors


@pytest.mark.parametrize("name", sorted(PINNED))
def test_plan_bytes_are_pinned(name, tmp_path):
    records, outfits, variants, options = pin_cases()[name]
    planned, unplanned = write_plan_file(plan_sources(records, outfits, variants, **options), tmp_path / "p.jsonl")
    assert sha256(tmp_path / "p.jsonl") == PINNED[name]
    assert len(planned) == len(read_plan(tmp_path / "p.jsonl")) and not unplanned


def test_demo_builds_write_the_pinned_plan(tiny_build, tiny_demo, tmp_path):
    assert sha256(tiny_build / "work" / "demo" / "plan.jsonl") == TINY_BUILD_PLAN
    out = tmp_path / "out"
    options = dict(variants=3, splits=("train", "query"), shard_samples=25)
    build(BuildOptions("demo", out, root=str(tiny_demo), sampler="similarity-diversity", generator="swap", **options))
    assert sha256(out / "work" / "demo" / "plan.jsonl") == TINY_SD_SWAP_PLAN


def test_a_similarity_diversity_image_shuffles_only_the_groups_it_draws_from(monkeypatch):
    """300 clusters of 2 outfits: an image's 10 variants take one outfit from each of the first 10 clusters it
    visits, so it needs the visit order and at most 10 group shuffles, not one per cluster of the pool."""
    outfits = plan_cases.outfit_texts(600)
    clusters = plan_cases.clusters(list(outfits), (2,) * 300, noise=0)
    records = plan_cases.records(outfits, 1, every=20)
    made = []
    real = np.random.default_rng
    monkeypatch.setattr(plan.np.random, "default_rng", lambda s: made.append(s) or real(s))
    planned = plan_variants(records, outfits, 10, seed=0, sampler="similarity-diversity", clusters=clusters)
    assert len(planned) == 10 * len(records) and len(made) <= len(records) * (1 + 10)


def test_the_plan_file_reads_any_rows_back_and_keeps_an_unchanged_file(tmp_path):
    records, outfits, variants, options = pin_cases()["random-cycle"]
    rows = plan_variants(records, outfits, variants, **options)
    path = tmp_path / "plan.jsonl"
    planned, _ = write_plan_file(plan_sources(records, outfits, variants, **options), path)
    assert isinstance(planned, PlanFile) and list(planned) == rows and len(planned) == len(rows)
    src = planned.sources[3]
    assert planned.read([(src.start, src.end)]) == tuple(v for v in rows if v.source_key == src.source_key)
    first, last = planned.sources[0], planned.sources[-1]
    assert planned.read([(first.start, first.end), (last.start, last.end)]) == (
        *rows[: first.rows],
        *rows[-last.rows :],
    )
    # the same plan again: the file is not rewritten; another plan replaces it; only main writes
    mtime = path.stat().st_mtime_ns
    write_plan_file(plan_sources(records, outfits, variants, **options), path)
    assert path.stat().st_mtime_ns == mtime
    other, _ = write_plan_file(plan_sources(records, outfits, 2, **options), tmp_path / "none.jsonl", write=False)
    assert not (tmp_path / "none.jsonl").exists() and len(other) == 2 * len(records)
    again, _ = write_plan_file(plan_sources(records, outfits, 2, **options), path)
    assert again.sources == other.sources and len(again) == len(other)
    assert read_plan(path) == [v for v in rows if v.variant < 2]
    assert not list(tmp_path.glob(".*.tmp-*"))
