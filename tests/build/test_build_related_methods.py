"""The related methods inside `dlcr-data build` (ClonedPerson, DG-Net, CLIP3DReID): donors (clone, swap), the
similarity-diversity sampler, body shape and the identity gate, as a user runs them; every sample keeps the same
json fields."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.shards import SAMPLE_FIELDS
from dlcr_data.cli import app
from dlcr_data.demo import DemoConfig
from dlcr_data.errors import UserError
from dlcr_data.pretrained import weights_hash
from dlcr_data.vocab.body_shapes import BODY_SHAPE_WORDS, VOCABULARY

TINY = DemoConfig(seed=5, num_ids=8, images_per_camera=2)


@pytest.fixture(scope="module")
def demo_root(demo_root_for) -> Path:
    return demo_root_for(TINY)


def samples(out: Path) -> list[dict]:
    entry = json.loads((out / "manifest.json").read_text())["builds"]["demo"]
    shards = [str(out / s["path"]) for s in entry["shards"]]
    return [{**s, "meta": json.loads(s["json"])} for s in wds.WebDataset(shards, shardshuffle=False)]


def quick(root: Path, out: Path, variants: int = 2, **options) -> dict:
    return build(BuildOptions("demo", out, root=str(root), variants=variants, splits=("train", "query"), **options))


@pytest.mark.parametrize("generator", ["clone", "swap"])
def test_donor_generators_record_structure_and_appearance(demo_root, tmp_path, generator):
    out = tmp_path / generator
    quick(demo_root, out, generator=generator)
    records = {r.key: r for _, recs in loaders.get("demo").load(demo_root).items() for r in recs}
    got = samples(out)
    assert got
    changed = 0
    for s in got:
        meta = s["meta"]
        assert tuple(sorted(meta)) == tuple(sorted(SAMPLE_FIELDS))
        assert meta["generator"] == generator
        assert meta["structure_key"] == meta["source_key"] and meta["structure_pid"] == meta["pid"]
        donor = records[meta["appearance_key"]]
        assert donor.split == "train" and donor.pid == meta["appearance_pid"]
        assert donor.clothes_id == meta["target_clothes_id"] != meta["source_clothes_id"]
        src = np.asarray(Image.open(demo_root / records[meta["source_key"]].path).convert("RGB"))
        img = np.asarray(Image.open(io.BytesIO(s["png"])))
        mask = np.asarray(Image.open(io.BytesIO(s["mask.png"]))) > 0
        assert np.array_equal(img[~mask], src[~mask])
        changed += not np.array_equal(img[mask], src[mask])
    assert changed >= 0.9 * len(got)  # nearly every variant wears something else (a donor part may be hidden)
    # preview draws this generator's output
    result = CliRunner().invoke(app, ["preview", str(out), "--n", "3", "--png", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p.png").size[0] > 0


def test_text_generators_leave_provider_and_annotation_fields_empty(demo_root, tmp_path):
    quick(demo_root, tmp_path / "recolor")
    for s in samples(tmp_path / "recolor"):
        meta = s["meta"]
        assert (meta["appearance_key"], meta["appearance_pid"]) == ("", -1)
        assert (meta["sampling"], meta["cluster_id"]) == ("random", -1)
        assert meta["body_shape_scores"] == [] and meta["body_shape_method"] == ""
        assert meta["gate_score"] is None and meta["gate_model"] == ""


def test_similarity_diversity_sampler_records_clusters(demo_root, tmp_path):
    out = tmp_path / "sd"
    quick(demo_root, out, sampler="similarity-diversity")
    metas = [s["meta"] for s in samples(out)]
    assert {m["sampling"] for m in metas} <= {"similar", "diverse"}
    assert {m["sampling"] for m in metas} == {"similar", "diverse"}  # the mix, on this pool
    figures = json.loads((out / "manifest.json").read_text())["builds"]["demo"]["outfit_clusters"]
    assert figures["sampler"] == "similarity-diversity" and figures["min_samples"] == 5 and figures["eps"] > 0
    assert {m["cluster_id"] for m in metas} - {-1} <= set(range(figures["clusters"]))
    plan = [json.loads(line) for line in (out / "work" / "demo" / "plan.jsonl").read_text().splitlines()]
    clusters = {(p["key"]): p["cluster_id"] for p in plan}
    assert all(m["cluster_id"] == clusters[f"{m['source_key']}_v{m['variant']}"] for m in metas)


def test_body_shape_geometry_in_every_sample_and_the_card(demo_root, tmp_path):
    out = tmp_path / "shape"
    entry = quick(demo_root, out, body_shape="geometry")
    metas = [s["meta"] for s in samples(out)]
    for m in metas:
        assert m["body_shape_method"] == "geometry" and m["body_shape_vocabulary"] == VOCABULARY
        assert len(m["body_shape_scores"]) == len(BODY_SHAPE_WORDS)
        assert all(0.0 <= x <= 1.0 for x in m["body_shape_scores"])
    assert sum(bool(m["body_shape_top"]) for m in metas) > 0.5 * len(metas)  # a side view may name no word
    # one person, one body: every variant of a source carries the source's scores
    by_source: dict[str, list] = {}
    for m in metas:
        by_source.setdefault(m["source_key"], []).append(m["body_shape_scores"])
    assert all(all(s == v[0] for s in v) for v in by_source.values())
    identities = entry["body_shape"]["identities"]
    assert {int(p) for p in identities} == {m["pid"] for m in metas}
    card = (out / "README.md").read_text()
    assert "Body shape per identity" in card and identities[str(metas[0]["pid"])]["top"][0] in card


def test_body_shape_with_clip(demo_root, tmp_path, tiny_clip):
    out = tmp_path / "clip"
    quick(demo_root, out, body_shape=str(tiny_clip), variants=1)
    metas = [s["meta"] for s in samples(out)]
    assert all(m["body_shape_method"].startswith("clip") for m in metas)
    assert all(len(m["body_shape_scores"]) == len(BODY_SHAPE_WORDS) for m in metas)
    manifest = json.loads((out / "manifest.json").read_text())
    local = {"id": None, "revision": None, "weights": weights_hash(tiny_clip), "local": True}  # never its path
    assert manifest["builds"]["demo"]["models"]["body-shape"] == local


@pytest.fixture(scope="module")
def gate_checkpoint(demo_root, tmp_path_factory) -> Path:
    """A tiny re-ID checkpoint (random weights are enough to exercise the gate's plumbing)."""
    from dlcr_data.reid.checkpoints import save_checkpoint
    from dlcr_data.reid.model import ReIDConfig, ReIDModel

    config = ReIDConfig(scratch="resnet-tiny", num_classes=8, image_size=(64, 32))
    folder = tmp_path_factory.mktemp("gate") / "ckpt"
    return save_checkpoint(folder, ReIDModel(config), config, epoch=1)


def test_identity_gate_lists_rejections_and_scores_kept_samples(demo_root, tmp_path, gate_checkpoint):
    lenient = quick(demo_root, tmp_path / "lenient", identity_gate=str(gate_checkpoint), gate_threshold=-1.0)
    metas = [s["meta"] for s in samples(tmp_path / "lenient")]
    assert len(metas) == lenient["gate"]["kept"] > 0
    published = f"local:{weights_hash(gate_checkpoint)}"  # a local checkpoint: by its weights hash, not its path
    assert all(isinstance(m["gate_score"], float) and m["gate_model"] == published for m in metas)
    assert all(not r["rank1"] for r in lenient["gate"]["rejections"])  # threshold -1: only rank-1 can fail

    threshold = float(np.median([m["gate_score"] for m in metas]))
    strict = quick(demo_root, tmp_path / "strict", identity_gate=str(gate_checkpoint), gate_threshold=threshold)
    gate = strict["gate"]
    assert gate["threshold"] == threshold and gate["rejected"] == len(gate["rejections"]) > lenient["gate"]["rejected"]
    for item in gate["rejections"]:
        assert -1.0 <= item["score"] <= 1.0 and item["reason"]
        assert item["score"] <= threshold + 1e-4 or not item["rank1"]  # rounded to 4 decimals
    kept = [s["meta"] for s in samples(tmp_path / "strict")]
    assert len(kept) == gate["kept"] == strict["totals"]["samples"] > 0
    assert gate["kept"] + gate["rejected"] == lenient["gate"]["kept"] + lenient["gate"]["rejected"]
    assert {r["key"] for r in gate["rejections"]}.isdisjoint(f"{m['source_key']}_v{m['variant']}" for m in kept)
    assert all(m["gate_score"] >= threshold - 1e-4 for m in kept)  # scores are rounded to 4 decimals


def test_refinement_on_a_gated_build_stands_in_the_query_for_rejected_variants(demo_root, tmp_path, gate_checkpoint):
    from dlcr_data.reid.evaluate import evaluate_checkpoint

    out = tmp_path / "gated"
    entry = quick(demo_root, out, variants=2, identity_gate=str(gate_checkpoint), gate_threshold=0.0)
    assert any(r["key"].startswith("query") for r in entry["gate"]["rejections"])  # some queries lost variants
    result = evaluate_checkpoint(gate_checkpoint, "demo", str(demo_root), refine=2, expanded=str(out))
    assert set(result["refined"]) == set(result["protocols"])
    assert not (out / "refine").exists()  # no regeneration: the gated build was used as it is


def test_a_donor_variant_identical_to_its_source_is_skipped_and_listed(demo_root, tmp_path, monkeypatch):
    from dlcr_data.build.generate.clone import CloneGenerator

    monkeypatch.setattr(CloneGenerator, "generate", lambda self, batch: [r.image.copy() for r in batch])
    out = tmp_path / "copies"
    message = r"no samples, so no manifest entry .*skipped at generate, e\.g\. .*unchanged variant 0: donor shows no"
    with pytest.raises(UserError, match=message):  # no variant left: no dataset (issue 12)
        quick(demo_root, out, variants=1, generator="clone")
    assert not (out / "manifest.json").exists()
    records = [json.loads(p.read_text()) for p in (out / "work" / "demo" / "shards").glob("*.json")]
    unchanged = [s for r in records for s in r["skipped"] if "unchanged variant" in s["reason"]]
    assert records and sum(r["samples"] for r in records) == 0 and len(unchanged) > 0  # listed in the shard records
