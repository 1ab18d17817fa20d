"""Per-dataset evaluation protocols on the fixture trees, and CCVID's test clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures import WRITERS

from dlcr_data.loaders import DATASETS, load
from dlcr_data.loaders.vcclothes import EVAL_PRESETS
from dlcr_data.reid.metrics import evaluate_rank
from dlcr_data.reid.protocols import (
    LAST_VAL,
    PROTOCOLS,
    Protocol,
    clip_indices,
    evaluate_dataset,
    protocols_for,
    tracklet_feature,
)


def test_every_dataset_has_protocols_on_its_own_splits():
    assert set(PROTOCOLS) == set(DATASETS)
    for name, protocols in PROTOCOLS.items():
        splits = DATASETS[name].splits
        for p in protocols:
            assert p.query_split in splits and p.gallery_split in splits, (name, p)
            assert p.mode in ("general", "cc", "sc")
    assert LAST_VAL.query_split in DATASETS["last"].splits


def test_presets_follow_cal():
    assert PROTOCOLS["prcc"] == [
        Protocol("sc", "query_sc", "gallery", "general"),
        Protocol("cc", "query_cc", "gallery", "general"),
    ]
    assert [(p.name, p.mode) for p in PROTOCOLS["ltcc"]] == [("general", "general"), ("cc", "cc")]
    vc = {p.name: p for p in PROTOCOLS["vcclothes"]}
    assert {n: p.mode for n, p in vc.items()} == {"general": "general", "sc": "general", "cc": "general"}
    assert (vc["general"].cameras, vc["sc"].cameras, vc["cc"].cameras) == (None, (2, 3), (3, 4))
    assert vc["sc"].cameras == EVAL_PRESETS["sc"] and vc["cc"].cameras == EVAL_PRESETS["cc"]
    assert [p.mode for p in PROTOCOLS["ccvid"]] == ["general", "sc", "cc"]
    assert [p.name for p in PROTOCOLS["last"]] == ["general"]
    assert [p.name for p in protocols_for("LTCC", ["cc"])] == ["cc"]
    with pytest.raises(ValueError, match="unknown protocol"):
        protocols_for("ltcc", ["sc"])
    with pytest.raises(ValueError, match="no evaluation protocol"):
        protocols_for("market1501")


def _loaded_with_features(tmp_path, name: str, seed: int = 0):
    fx = WRITERS[name](tmp_path, broken=False)
    loaded = load(name, fx.root)
    gen = torch.Generator().manual_seed(seed)
    keys = sorted(r.key for recs in loaded.splits.values() for r in recs)
    features = {k: torch.randn(8, generator=gen) for k in keys}
    return fx, loaded, features


def _direct(fx, loaded, features, protocol: Protocol) -> dict:
    """The same figure computed from the fixture's own truth (not from the records' fields)."""
    keep = None if protocol.cameras is None else {c - 1 for c in protocol.cameras}

    def side(split):
        recs = [r for r in loaded[split] if keep is None or fx.records[r.path][2] in keep]
        truth = [fx.records[r.path] for r in recs]
        feats = torch.nn.functional.normalize(torch.stack([features[r.key] for r in recs]), dim=1)
        return feats, *(np.array([t[i] for t in truth]) for i in (1, 2, 3))

    qf, qp, qc, qcl = side(protocol.query_split)
    gf, gp, gc, gcl = side(protocol.gallery_split)
    return evaluate_rank(1 - qf @ gf.T, qp, gp, qc, gc, qcl, gcl, mode=protocol.mode)


# Per protocol: (num_valid, num_skipped), from the fixture trees' docstrings (tests/fixtures.py).
EXPECTED_COUNTS = {
    "prcc": {"sc": (3, 0), "cc": (2, 0)},  # nothing junked: query cams never equal gallery cam A
    "ltcc": {"general": (2, 0), "cc": (1, 1)},  # 11 has a single outfit: drops out of CC
    "vcclothes": {"general": (3, 0), "sc": (2, 0), "cc": (0, 2)},  # 12's only gallery image is at cam 1
    "ccvid": {"general": (2, 0), "sc": (2, 0), "cc": (1, 1)},
    "last": {"general": (2, 0)},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_evaluate_dataset_on_fixtures(tmp_path, name):
    fx, loaded, features = _loaded_with_features(tmp_path, name)
    results = evaluate_dataset(name, loaded, features)
    assert list(results) == [p.name for p in PROTOCOLS[name]]
    for p in PROTOCOLS[name]:
        got, want = results[p.name], _direct(fx, loaded, features, p)
        assert (got["num_valid"], got["num_skipped"]) == EXPECTED_COUNTS[name][p.name], p
        np.testing.assert_allclose(got["cmc"], want["cmc"])
        assert got["mAP"] == pytest.approx(want["mAP"]) and got["mINP"] == pytest.approx(want["mINP"])


def test_vcclothes_camera_filter_applies_to_query_and_gallery(tmp_path):
    _, loaded, features = _loaded_with_features(tmp_path, "vcclothes")
    sc = evaluate_dataset("vcclothes", loaded.splits, features, names=["sc"])
    # Raw cams 2 and 3: queries 10 and 11; gallery 10@2, 10@3, 11@2 -> CMC length 3 = filtered gallery size.
    assert list(sc) == ["sc"] and len(sc["sc"]["cmc"]) == 3
    assert sc["sc"]["num_valid"] + sc["sc"]["num_skipped"] == 2


def test_last_val_protocol_and_errors(tmp_path):
    _, loaded, features = _loaded_with_features(tmp_path, "last")
    val = evaluate_dataset("last", loaded, features, protocols=[LAST_VAL])
    assert list(val) == ["val"] and val["val"]["num_valid"] == 2
    missing = dict(features)
    missing.pop(loaded["query"][0].key)
    with pytest.raises(KeyError, match="no feature"):
        evaluate_dataset("last", loaded, missing)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_dataset("last", loaded, features, names=["cc"])


# -- CCVID clips ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 32, 33, 70])
def test_clip_indices_count_and_range(n):
    clips = clip_indices(n)
    assert len(clips) == math.ceil(n / 8)
    assert all(len(c) == 8 for c in clips)
    flat = [i for c in clips for i in c]
    assert min(flat) >= 0 and max(flat) < n
    assert set(flat) == set(range(n))  # every frame is used


def test_clip_indices_follow_cal_recombination():
    assert clip_indices(0) == []
    assert clip_indices(1) == [[0] * 8]
    assert clip_indices(7) == [[0, 1, 2, 3, 4, 5, 6, 0]]  # loop padding
    assert clip_indices(9) == [list(range(8)), [8] * 8]
    # 31 frames: no full 32-block; reduced stride 31 // 8 = 3 over frames 0..23; tail 24..30 padded.
    assert clip_indices(31) == [
        [0, 3, 6, 9, 12, 15, 18, 21],
        [1, 4, 7, 10, 13, 16, 19, 22],
        [2, 5, 8, 11, 14, 17, 20, 23],
        [24, 25, 26, 27, 28, 29, 30, 24],
    ]
    block = [list(range(j, 32, 4)) for j in range(4)]
    assert clip_indices(32) == block
    assert clip_indices(33) == [*block, [32] * 8]
    # 70 = two 32-blocks (8 clips) + 6 frames: reduced stride 0 -> only the padded tail 64..69.
    assert clip_indices(70) == [*block, *[[i + 32 for i in c] for c in block], [64, 65, 66, 67, 68, 69, 64, 65]]
    # 50 = one block + 18 frames: reduced stride 2 over 32..47, tail 48, 49 padded.
    assert clip_indices(50)[4:] == [list(range(32, 48, 2)), list(range(33, 48, 2)), [48, 49] * 4]
    assert len(clip_indices(100, seq_len=4, stride=2)) == 25


def test_tracklet_feature_is_normalised_mean():
    clips = torch.tensor([[3.0, 0.0], [1.0, 4.0]])
    feat = tracklet_feature(clips)
    torch.testing.assert_close(feat, torch.tensor([2.0, 2.0]) / math.sqrt(8))
    assert feat.norm().item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tracklet_feature(torch.zeros(0, 4))
