"""The related methods inside `dlcr-data build` (ClonedPerson, DG-Net, CLIP3DReID): donors (clone, swap), the
similarity-diversity sampler, body shape and the identity gate, as a user runs them; every sample keeps the same
json fields."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.shards import SAMPLE_FIELDS
from dlcr_data.cli import app
from dlcr_data.demo import DemoConfig
from dlcr_data.errors import UserError
from dlcr_data.loaders.demo import Demo
from dlcr_data.pretrained import weights_hash
from dlcr_data.progress import Reporter
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


def test_shards_gated_under_another_gate_rule_are_regenerated_never_reused(demo_root, tmp_path, gate_checkpoint):
    """A rerun with the same options keeps complete shards, but never gated ones decided by another gate rule (or by
    none recorded: made before issue 11's fix, when test labels decided): they are written again, and the manifest
    lists only what the current rule decided."""
    from dlcr_data.build.annotate.gate import GATE_RULE
    from dlcr_data.build.generate.stage import GATE_RULE_FILE

    out = tmp_path / "gated"
    work = out / "work" / "demo"
    gate = {"identity_gate": str(gate_checkpoint), "gate_threshold": -1.0}
    options = BuildOptions("demo", out, root=str(demo_root), variants=1, splits=("train", "query"), **gate)
    first = build(options)
    assert first["gate"]["rule"] == GATE_RULE
    assert json.loads((work / GATE_RULE_FILE).read_text()) == {"rule": GATE_RULE}
    tars = {p.name: p.read_bytes() for p in (out / "demo").glob("*.tar")}

    def plant() -> None:  # an old-style rejection (no `reference`) that only a reused shard record can carry
        record = sorted((work / "shards").glob("*.json"))[0]
        data = json.loads(record.read_text())
        old = {"key": "planted", "source_key": "x", "score": 0.1, "rank1": False, "outside_changed": 0, "reason": ""}
        record.write_text(json.dumps({**data, "rejected": [*data["rejected"], old]}))

    def rejection_keys(entry: dict) -> set[str]:
        return {r["key"] for r in entry["gate"]["rejections"]}

    plant()
    assert "planted" in rejection_keys(build(options))  # same rule: the complete shard is reused, record and all

    class Notes(Reporter):
        def __init__(self) -> None:
            self.notes: list[str] = []

        def note(self, text: str, *, warning: bool = False) -> None:
            self.notes.append(text)

    for edit in ({"rule": GATE_RULE - 1}, None):  # an older rule; none (a folder from before rules were recorded)
        plant()
        if edit is None:
            (work / GATE_RULE_FILE).unlink()
        else:
            (work / GATE_RULE_FILE).write_text(json.dumps(edit))
        before = {p.name: p.stat().st_mtime_ns for p in (out / "demo").glob("*.tar")}
        reporter = Notes()
        again = build(options, reporter)
        assert "planted" not in rejection_keys(again) and again["gate"] == first["gate"]
        assert all(p.stat().st_mtime_ns != before[p.name] for p in (out / "demo").glob("*.tar"))  # all rewritten
        assert {p.name: p.read_bytes() for p in (out / "demo").glob("*.tar")} == tars  # by the current rule
        assert json.loads((work / GATE_RULE_FILE).read_text()) == {"rule": GATE_RULE}
        assert any("another identity-gate rule: regenerating" in n for n in reporter.notes)


@pytest.fixture(scope="module")
def query_threshold(demo_root, gate_checkpoint, tmp_path_factory) -> float:
    """A gate threshold that rejects about half of the query variants: the median of their cosines to their
    sources in a lenient build (nothing else can reject them: the recolor generator keeps the outside pixels)."""
    out = tmp_path_factory.mktemp("lenient") / "out"
    quick(demo_root, out, identity_gate=str(gate_checkpoint), gate_threshold=-1.0)
    return float(np.median([s["meta"]["gate_score"] for s in samples(out) if s["meta"]["split"] == "query"]))


def test_refinement_on_a_gated_build_stands_in_the_query_for_rejected_variants(
    demo_root, tmp_path, gate_checkpoint, query_threshold
):
    from dlcr_data.reid.evaluate import evaluate_checkpoint

    out = tmp_path / "gated"
    entry = quick(demo_root, out, variants=2, identity_gate=str(gate_checkpoint), gate_threshold=query_threshold)
    assert any(r["key"].startswith("query") for r in entry["gate"]["rejections"])  # some queries lost variants
    result = evaluate_checkpoint(gate_checkpoint, "demo", str(demo_root), refine=2, expanded=str(out))
    assert set(result["refined"]) == set(result["protocols"])
    assert not (out / "refine").exists()  # no regeneration: the gated build was used as it is


def shuffle_query_pids(monkeypatch) -> None:
    """From now on the demo loads with its query pids shuffled over the query images: which images share an
    identity changes, and nothing else (keys, paths, pixels, clothes ids, the other splits)."""
    load = Demo.load

    def shuffled(self, *args, **kwargs):
        loaded = load(self, *args, **kwargs)
        query = loaded.splits["query"]
        order = np.random.default_rng(0).permutation(len(query))
        loaded.splits["query"] = [replace(r, pid=query[int(j)].pid) for r, j in zip(query, order, strict=True)]
        return loaded

    monkeypatch.setattr(Demo, "load", shuffled)


def identities(records: list) -> set[frozenset[str]]:
    """The images (keys) of each identity: what a shuffle of the labels changes."""
    return {frozenset(r.key for r in records if r.pid == pid) for pid in {r.pid for r in records}}


def test_no_test_label_decides_which_query_variants_exist(
    demo_root, tmp_path, gate_checkpoint, query_threshold, monkeypatch
):
    """Issue 11: the gate's prototypes are the training identities' only, and a query variant is judged against
    its own source. Shuffling the query pids changes no kept variant, no score, no rejection and no refinement
    input."""
    from dlcr_data.build.annotate.gate import IdentityGate
    from dlcr_data.reid.checkpoints import load_checkpoint
    from dlcr_data.reid.evaluate import query_variants
    from dlcr_data.reid.features import extract_images

    fitted: list[set[int]] = []  # the identities each build's prototypes are fitted on
    fit = IdentityGate.fit

    def spy(gate, images, pids, progress=None):
        fitted.append(set(pids))
        return fit(gate, images, pids, progress)

    monkeypatch.setattr(IdentityGate, "fit", spy)
    loaded = loaders.get("demo").load(demo_root)
    options = {"identity_gate": str(gate_checkpoint), "gate_threshold": query_threshold}
    entries = {"true": quick(demo_root, tmp_path / "true", **options)}
    shuffle_query_pids(monkeypatch)
    assert identities(loaded["query"]) != identities(loaders.get("demo").load(demo_root)["query"])  # regrouped
    entries["shuffled"] = quick(demo_root, tmp_path / "shuffled", **options)
    assert fitted == [{r.pid for r in loaded["train"]}] * 2  # no query identity has a prototype

    kept = {
        name: {s["__key__"]: (s["png"], s["meta"]["gate_score"]) for s in samples(tmp_path / name)} for name in entries
    }
    assert kept["true"] == kept["shuffled"]  # the same variants, bytes and scores
    assert any(s["meta"]["split"] == "query" for s in samples(tmp_path / "shuffled"))
    rejections = entries["true"]["gate"]["rejections"]
    assert rejections == entries["shuffled"]["gate"]["rejections"]
    by_query = [r for r in rejections if r["key"].startswith("query")]
    assert by_query and all(r["reference"] == "source" and r["rank1"] is None for r in by_query)
    assert all(r["reason"].startswith("similarity to source") for r in by_query)

    # What `evaluate --refine 2` consumes per query: its variants' features, padded with its own feature.
    model, _, _ = load_checkpoint(gate_checkpoint, "cpu")
    queries = loaded["query"]
    own = extract_images(model, [Image.open(demo_root / r.path).convert("RGB") for r in queries])
    keys = [r.key for r in queries]
    inputs = [query_variants(str(tmp_path / name), "demo", "query", keys, 2, model, own) for name in entries]
    assert torch.equal(inputs[0], inputs[1])
    assert (inputs[0] == own[:, None]).all(-1).any()  # some query stands in for a rejected variant


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
