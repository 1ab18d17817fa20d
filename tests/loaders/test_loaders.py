"""The five source-dataset loaders against tiny fixture trees in the real layouts (offline, fast)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fixtures import WRITERS, DatasetFixture, SplitCounts, write_ccvid, write_last, write_prcc

from dlcr_data.errors import DatasetNotFound
from dlcr_data.loaders import get, load
from dlcr_data.loaders.base import Loaded
from dlcr_data.loaders.ccvid import parse_camid, parse_line
from dlcr_data.loaders.last import parse_name as last_parse_name
from dlcr_data.loaders.prcc import parse_name as prcc_parse_name
from dlcr_data.loaders.vcclothes import EVAL_PRESETS, filter_cameras
from dlcr_data.loaders.vcclothes import parse_name as vc_parse_name
from dlcr_data.records import Record

NAMES = tuple(WRITERS)
CONTAINERS = ("my_code", "2024-01-02-03", "query_data")
KEY_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, DatasetFixture]:
    """One plain fixture tree per dataset, shared read-only by the tests of this module."""
    parent = tmp_path_factory.mktemp("plain")
    return {name: write(parent) for name, write in WRITERS.items()}


def by_path(loaded: Loaded) -> dict[str, Record]:
    return {r.path: r for recs in loaded.splits.values() for r in recs}


def all_records(loaded: Loaded) -> list[dict]:
    return [r.to_dict() for _, recs in loaded.items() for r in recs]


def counts(loaded: Loaded) -> dict[str, SplitCounts]:
    return {
        split: SplitCounts(
            images=len(recs),
            ids=len({r.pid for r in recs}),
            clothes=len({r.clothes_id for r in recs}),
            cameras=len({r.camid for r in recs}),
        )
        for split, recs in loaded.items()
    }


# -- every dataset -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_records_match_the_fixture(written, name):
    fx = written[name]
    loaded = load(name, fx.root)
    assert tuple(loaded.splits) == get(name).splits
    got = {p: (r.split, r.pid, r.camid, r.clothes_id) for p, r in by_path(loaded).items()}
    assert got == fx.records
    assert counts(loaded) == fx.counts()
    assert sorted(s.path for s in loaded.skipped) == sorted(fx.unparseable)
    assert all(s.reason for s in loaded.skipped)


@pytest.mark.parametrize("name", NAMES)
def test_keys_unique_and_dot_free(written, name):
    loaded = load(name, written[name].root)
    keys = [r.key for _, recs in loaded.items() for r in recs]
    assert len(keys) == len(set(keys)) == written[name].total_images
    assert all(KEY_CHARS.match(k) for k in keys), keys


@pytest.mark.parametrize("name", NAMES)
def test_order_is_deterministic_and_sorted(written, name):
    fx = written[name]
    first, second = load(name, fx.root), load(name, fx.root)
    assert all_records(first) == all_records(second)
    if not get(name).video:  # image datasets list files sorted by path; CCVID keeps its list files' order
        for recs in first.splits.values():
            assert [r.path for r in recs] == sorted(r.path for r in recs)


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_image_skipped_only_when_verifying(written, name):
    fx = written[name]
    plain = load(name, fx.root)
    assert not set(fx.corrupt) & {s.path for s in plain.skipped}
    verified = load(name, fx.root, verify_images=True)
    assert counts(verified) == fx.counts(verified=True)
    reasons = {s.path: s.reason for s in verified.skipped}
    assert set(reasons) == set(fx.unparseable) | set(fx.corrupt)
    assert all(reasons[p].startswith("unreadable image") for p in fx.corrupt)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("name", NAMES)
def test_parent_folder_names_change_nothing(written, tmp_path, name, container):
    """CAL parses full paths: `my_code/` breaks LTCC, `2024-01-02-03/` VC-Clothes, `query_data/` LaST."""
    fx = WRITERS[name](tmp_path, container=container)
    assert fx.root == tmp_path / container / written[name].root.name
    plain, tricky = load(name, written[name].root), load(name, fx.root)
    assert all_records(tricky) == all_records(plain)
    assert tricky.skipped == plain.skipped


@pytest.mark.parametrize("name", NAMES)
def test_root_may_be_the_dataset_folder_or_its_parent(written, name):
    fx = written[name]
    via_parent = load(name, fx.root.parent)
    assert via_parent.root == fx.root
    assert all_records(via_parent) == all_records(load(name, fx))  # the fixture itself is path-like


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_names_the_expected_tree(tmp_path, name):
    with pytest.raises(DatasetNotFound) as err:
        load(name, tmp_path / "nowhere")
    assert get(name).tree_line() in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_missing_required_folder_names_it(tmp_path, name):
    fx = WRITERS[name](tmp_path)
    dataset = get(name)
    missing = dataset.required[-1]
    target = fx.root / missing
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DatasetNotFound) as err:
        load(name, fx.root)
    assert missing in str(err.value) and dataset.tree_line() in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_published_stats_cover_every_split(name):
    dataset = get(name)
    assert set(dataset.stats) == set(dataset.splits)
    assert dataset.layout.strip() and dataset.obtain and dataset.citation


@pytest.mark.parametrize("name", [n for n in NAMES if not get(n).release_layout.needs_root])
def test_record_of_a_path_is_the_record_the_scan_gives(written, name):
    """`record_of` is the loader's own rule: `import-release` reads the originals' labels with it."""
    dataset, loaded = get(name), load(name, written[name].root)
    for record in (r for _, recs in loaded.items() for r in recs):
        assert dataset.record_of(record.path) == record
    assert dataset.record_of("elsewhere/x.jpg").reason.startswith("layout: expected")


# -- PRCC --------------------------------------------------------------------------------------------------
def test_prcc_exact_records(written):
    recs = by_path(load("prcc", written["prcc"].root))
    assert recs["rgb/train/001/B_cropped_rgb001.jpg"] == Record(
        "train_001_B_cropped_rgb001", "rgb/train/001/B_cropped_rgb001.jpg", 1, 1, "1_AB", "train"
    )
    assert recs["rgb/val/004/C_cropped_rgb001.jpg"] == Record(
        "val_004_C_cropped_rgb001", "rgb/val/004/C_cropped_rgb001.jpg", 4, 2, "4_C", "val"
    )
    assert recs["rgb/test/A/005/cropped_rgb001.jpg"] == Record(
        "gallery_005_cropped_rgb001", "rgb/test/A/005/cropped_rgb001.jpg", 5, 0, "5_AB", "gallery"
    )
    assert recs["rgb/test/B/006/cropped_rgb002.jpg"] == Record(
        "query_sc_006_cropped_rgb002", "rgb/test/B/006/cropped_rgb002.jpg", 6, 1, "6_AB", "query_sc"
    )
    assert recs["rgb/test/C/007/cropped_rgb002.jpg"] == Record(
        "query_cc_007_cropped_rgb002", "rgb/test/C/007/cropped_rgb002.jpg", 7, 2, "7_C", "query_cc"
    )


def test_prcc_cameras_a_b_share_clothes_c_differs(written):
    loaded = load("prcc", written["prcc"].root)
    clothes: dict[tuple[int, int], set[str]] = {}
    for _, recs in loaded.items():
        for r in recs:
            clothes.setdefault((r.pid, r.camid), set()).add(r.clothes_id)
    assert all(len(v) == 1 for v in clothes.values())
    for pid in (1, 2, 4, 5):
        assert clothes[pid, 0] == clothes[pid, 1] != clothes[pid, 2]
    assert clothes[3, 0] == clothes[3, 1] and (3, 2) not in clothes  # single outfit
    # gallery = A only; B keeps A's clothes (SC), C changes them (CC)
    assert {r.camid for r in loaded["gallery"]} == {0}
    gallery_clothes = {r.clothes_id for r in loaded["gallery"]}
    assert {r.clothes_id for r in loaded["query_sc"]} <= gallery_clothes
    assert not {r.clothes_id for r in loaded["query_cc"]} & gallery_clothes


def test_prcc_skip_reasons(written):
    reasons = {s.path: s.reason for s in load("prcc", written["prcc"].root).skipped}
    assert "camera letter" in reasons["rgb/train/001/D_cropped_rgb009.jpg"]
    assert "not an integer" in reasons["rgb/train/x01/A_cropped_rgb001.jpg"]
    assert prcc_parse_name("C_cropped_rgb001.jpg") == "C" and prcc_parse_name("cropped.jpg") is None


# -- LTCC --------------------------------------------------------------------------------------------------
def test_ltcc_exact_records(written):
    recs = by_path(load("ltcc", written["ltcc"].root))
    assert recs["test/10_2_c3_000103.png"] == Record(
        "gallery_10_2_c3_000103", "test/10_2_c3_000103.png", 10, 2, "10_2", "gallery"
    )
    assert recs["query/11_1_c1_000110.png"] == Record(
        "query_11_1_c1_000110", "query/11_1_c1_000110.png", 11, 0, "11_1", "query"
    )


# -- VC-Clothes --------------------------------------------------------------------------------------------
def test_vcclothes_exact_records(written):
    recs = by_path(load("vcclothes", written["vcclothes"].root))
    assert recs["query/0010-02-01-01.jpg"] == Record(
        "query_0010-02-01-01", "query/0010-02-01-01.jpg", 10, 1, "10_1", "query"
    )
    # CAL's key would be "1"+"11" == "11"+"1": the separator keeps these outfits apart
    assert recs["train/1-01-11-01.jpg"].clothes_id == "1_11"
    assert recs["train/11-01-1-01.jpg"].clothes_id == "11_1"
    assert recs["train/0001-01-01-01.jpg"].clothes_id == "1_1"
    assert vc_parse_name("0001-00-01-01.jpg") is None  # cameras are 1-based


def test_vcclothes_eval_presets(written):
    loaded = load("vcclothes", written["vcclothes"].root)
    assert EVAL_PRESETS == {"all": None, "sc": (2, 3), "cc": (3, 4)}
    raw = {split: sorted({r.camid + 1 for r in recs}) for split, recs in loaded.items()}
    assert raw == {"train": [1, 2, 3], "query": [2, 3, 4], "gallery": [1, 2, 3, 4]}
    for preset, cams in (("sc", [2, 3]), ("cc", [3, 4])):
        for split in ("query", "gallery"):  # protocols filter query and gallery only (reid/protocols.py)
            kept = filter_cameras(loaded[split], EVAL_PRESETS[preset])
            assert sorted({r.camid + 1 for r in kept}) == cams
            assert kept == [r for r in loaded[split] if r.camid + 1 in cams]
    assert filter_cameras(loaded["gallery"], EVAL_PRESETS["all"]) == loaded["gallery"]


# -- CCVID -------------------------------------------------------------------------------------------------
def test_ccvid_exact_record(written):
    recs = by_path(load("ccvid", written["ccvid"].root))
    assert recs["session3/001_03"] == Record(
        "train_session3-001_03",
        "session3/001_03",
        1,
        14,  # CAL: int("03") + 12 = 15, made 0-based
        "1_u1_l0_s0_c0_a0",
        "train",
        tuple(f"session3/001_03/{i:05d}.jpg" for i in range(1, 41)),
    )
    assert recs["session2/010_01"].camid == recs["session1/010_01"].camid == 0  # sessions 1, 2 share cams
    assert recs["session1/010_01"].split == "query" and recs["session2/010_01"].split == "gallery"
    assert get("ccvid").video


def test_ccvid_frames_sorted_and_complete(written):
    fx = written["ccvid"]
    recs = by_path(load("ccvid", fx.root))
    lengths = {len(r.frames) for r in recs.values()}
    assert any(n < 8 for n in lengths) and any(8 <= n <= 31 for n in lengths) and any(n > 32 for n in lengths)
    for path, n in fx.frames.items():
        assert recs[path].frames == tuple(f"{path}/{i:05d}.jpg" for i in range(1, n + 1))
        assert all((fx.root / f).is_file() for f in recs[path].frames)


def test_ccvid_verify_drops_the_frame_not_the_tracklet(written):
    fx = written["ccvid"]
    recs = by_path(load("ccvid", fx.root, verify_images=True))
    frames = recs["session3/001_03"].frames
    assert len(frames) == 39 and "session3/001_03/00007.jpg" not in frames


def test_ccvid_skip_reasons(written):
    reasons = {s.path: s.reason for s in load("ccvid", written["ccvid"].root).skipped}
    assert "3 fields" in reasons["train.txt:5"]
    assert "not an integer" in reasons["train.txt:6"]
    assert "does not exist" in reasons["session1/097_01"]
    assert "no frames" in reasons["session2/096_01"]


def test_ccvid_parsers():
    assert parse_line("session3/001_02\t001\tu1_l0_s0_c0_a0") == ("session3/001_02", 1, "1_u1_l0_s0_c0_a0")
    assert parse_line("session1/001_01 001  u0 ") == ("session1/001_01", 1, "1_u0")
    assert isinstance(parse_line("session1/001_01 001"), str)
    assert parse_camid("session1/001_01") == 0
    assert parse_camid("session2/001_12") == 11
    assert parse_camid("session3/001_02") == 13
    assert parse_camid("session1/001_00") is None
    assert parse_camid("session1/001") is None


def test_ccvid_paths_outside_the_root_are_skipped(tmp_path):
    fx = write_ccvid(tmp_path, broken=False)
    with (fx.root / "query.txt").open("a", encoding="utf-8") as f:
        f.write("../outside/001_01 001 u0\n/abs/001_01 001 u0\n")
    reasons = {s.path: s.reason for s in load("ccvid", fx.root).skipped}
    assert set(reasons) == {"../outside/001_01", "/abs/001_01"}
    assert all("inside the dataset root" in r for r in reasons.values())


# -- LaST --------------------------------------------------------------------------------------------------
def test_last_exact_records(written):
    recs = by_path(load("last", written["last"].root))
    assert recs["train/000001/000001_02_00001_1.jpg"] == Record(
        "train_000001_000001_02_00001_1", "train/000001/000001_02_00001_1.jpg", 1, 2, "1_1", "train"
    )
    assert recs["test/query/000021_01_00001_0.jpg"] == Record(
        "query_000021_01_00001_0", "test/query/000021_01_00001_0.jpg", 21, 1, "21", "query"
    )
    assert recs["test/gallery/000020/000020_02_00001_0.jpg"] == Record(
        "gallery_000020_000020_02_00001_0",
        "test/gallery/000020/000020_02_00001_0.jpg",
        20,
        2,
        "20",
        "gallery",
    )
    assert recs["val/gallery/000011/000011_02_00001_0.jpg"].camid == 4
    assert last_parse_name("000123_3_0_01_1.jpg") == (123, "1")
    assert last_parse_name("frame_00001.jpg") is None and last_parse_name("000123.jpg") is None


def test_last_camids_unique_and_running(written):
    loaded = load("last", written["last"].root)
    for query, gallery in (("val_query", "val_gallery"), ("query", "gallery")):
        camids = [r.camid for r in loaded[query]] + [r.camid for r in loaded[gallery]]
        assert camids == list(range(len(camids)))
    assert [r.camid for r in loaded["train"]] == list(range(len(loaded["train"])))
    for split in ("val_query", "val_gallery", "query", "gallery"):  # no clothes labels: clothes_id := pid
        assert all(r.clothes_id == str(r.pid) for r in loaded[split])


def test_last_flat_vs_nested_is_decided_by_the_split(tmp_path):
    """Under `query_data/`, CAL would glob the galleries flat and find nothing."""
    fx = write_last(tmp_path, container="query_data", broken=False)
    loaded = load("last", fx.root)
    assert len(loaded["gallery"]) == 4 and len(loaded["val_gallery"]) == 3
    assert all(r.path.count("/") == 3 for r in loaded["gallery"])  # test/gallery/<pid>/<name>


# -- fixtures themselves -----------------------------------------------------------------------------------
def test_fixture_without_broken_items(tmp_path):
    fx = write_prcc(tmp_path, broken=False)
    assert fx.unparseable == () and fx.corrupt == ()
    loaded = load("prcc", fx.root, verify_images=True)
    assert loaded.skipped == [] and counts(loaded) == fx.counts()


def test_fixture_counts_are_as_documented(written):
    assert written["prcc"].counts()["train"] == SplitCounts(images=10, ids=3, clothes=5, cameras=3)
    assert written["vcclothes"].counts(verified=True)["gallery"] == SplitCounts(5, 3, 4, 4)
    assert written["ccvid"].counts()["gallery"] == SplitCounts(4, 2, 3, 3)
    assert written["last"].counts(verified=True)["gallery"] == SplitCounts(4, 3, 3, 4)
    assert isinstance(written["ltcc"].root, Path) and str(Path(written["ltcc"])) == str(written["ltcc"].root)
