"""`dlcr-data import-release`: DLCR's released strips (variants side by side + a .txt per strip) as a build:
keys, labels, manifest, card, loading, pairing, determinism, resume (`dlcr_data/build/release.py`).

Releases are written by the test (`release_cases.py`); expected numbers are counted from what the test wrote
(3 strips x 10 variants = 30 samples), never from the code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from fixtures import write_prcc
from release_cases import (
    BIN,
    LTCC_STRIPS,
    NORMALISED,
    PRCC_STRIPS,
    TEXTS,
    H,
    N,
    W,
    colour,
    invoke,
    one_line_error,
    runner,
    samples,
    shards,
    tree,
    write_release,
)

from dlcr_data import loaders
from dlcr_data.build.release import ReleaseOptions, import_release
from dlcr_data.cli import app
from dlcr_data.errors import UserError


# -- PRCC with --root: the variant count from each original's aspect ratio ------------------------------------------
@pytest.fixture(scope="module")
def prcc(tmp_path_factory):
    base = tmp_path_factory.mktemp("prcc-release")
    raw = write_prcc(base / "raw")
    release = write_release(base / "release", PRCC_STRIPS)
    out = base / "out"
    import_release(ReleaseOptions("prcc", release, out, root=str(raw.root), shard_samples=N))
    return raw, release, out


def test_prcc_strips_become_samples_with_the_loaders_keys_and_labels(prcc):
    raw, _, out = prcc
    records = {r.path: r for r in loaders.load("prcc", raw.root)["train"]}
    rows = samples(out, "prcc")
    assert len(rows) == 3 * N
    assert len(shards(out, "prcc")) == 3  # shard_samples=10: one strip per shard
    strip_of = {records[o].key: i for i, o in enumerate(PRCC_STRIPS.values())}  # the loader's key of each original
    seen = set()
    for key, meta, pixels, members in rows:
        strip = strip_of[meta["source_key"]]
        original = records[list(PRCC_STRIPS.values())[strip]]
        k = meta["variant"]
        assert key == f"{original.key}_v{k}" and members == {"png", "json"}  # no mask member: none is made up
        assert (meta["pid"], meta["camid"], meta["source_clothes_id"]) == (
            original.pid,
            original.camid,
            original.clothes_id,
        )
        assert (meta["split"], meta["generator"], meta["model"], meta["seed"]) == ("train", "dlcr-release", "", -1)
        assert meta["target_text"] == NORMALISED[k] and meta["prompt"] == TEXTS[k]
        assert (meta["width"], meta["height"]) == (W, H) and pixels.shape == (H, W, 3)
        assert (pixels == colour(strip, k)).all()  # the k-th slice of its own strip
        assert (
            meta["target_clothes_id"] == "" and meta["appearance_pid"] == -1 and meta["structure_key"] == original.key
        )
        seen.add((meta["source_key"], k))
    assert len(seen) == 3 * N


def test_manifest_and_card_declare_the_release(prcc):
    _, _, out = prcc
    entry = json.loads((out / "manifest.json").read_text())["builds"]["prcc"]
    assert entry["complete"] and entry["skipped"] == []
    assert entry["totals"]["samples"] == 30 and entry["totals"]["shards"] == 3
    assert entry["config"]["generator"] == "dlcr-release" and entry["config"]["masks"] is False
    assert entry["config"]["variants_per_strip"] is None and entry["config"]["strip_limit"] is None  # inferred; all
    assert "variants" not in entry["config"] and "limit" not in entry["config"]  # a build's: per source image
    assert entry["config"]["release"] == "release"  # by its name: no local path
    assert entry["outfit_texts"] == N and "outfits" not in entry  # distinct texts, not outfits described
    assert entry["release"]["repo"] == "ihaveamoose/DLCR" and entry["release"]["strips"] == 3
    assert entry["release"]["strips_by_variant_count"] == {"10": 3}
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "mask.png" not in front  # the declared features: no mask
    assert "ihaveamoose/DLCR" in card and "Siddiqui" in card and "Croitoru" in card
    assert "@inproceedings{siddiqui2025dlcr" in card
    assert "not stated by the release; the source datasets' licences apply" in card
    assert (out / "preview.png").is_file()


def test_load_dataset_load_expanded_and_trainer_pairing(prcc):
    import datasets

    from dlcr_data.expanded import load_expanded
    from dlcr_data.reid.data import TrainSet

    raw, _, out = prcc
    ds = datasets.load_dataset(str(out), "prcc", split="train")
    assert ds.num_rows == 30 and "mask.png" not in ds.column_names
    originals = {r.path: r.key for r in loaders.load("prcc", raw.root)["train"]}
    expected = {originals[o] for o in PRCC_STRIPS.values()}
    expanded = load_expanded(out, "prcc")
    assert set(expanded.source_keys) == expected
    assert all(len(rows) == N for rows in expanded.index.values())
    train = TrainSet.from_dataset("prcc", raw.root, (H, W), expanded=out, cache="off")
    assert train.unmatched_variants == 0
    paired = {train.keys[i]: len(p) for i, p in enumerate(train.partners) if p}
    assert paired == dict.fromkeys(expected, N)
    image, _, _ = train[train.num_real]  # a variant decodes as the trainer reads it
    assert tuple(image.shape) == (3, H, W)


def test_push_to_hub_dry_run_validates(prcc, tmp_path):
    _, _, out = prcc
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    result = runner.invoke(
        app, ["push-to-hub", str(copy), "me/dlcr-prcc", "--dry-run", "--stage-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert "prcc" in result.stdout and "30" in result.stdout


def test_two_imports_are_byte_identical(prcc, tmp_path):
    raw, release, out = prcc
    again = tmp_path / "again"
    import_release(ReleaseOptions("prcc", release, again, root=str(raw.root), shard_samples=N))
    assert tree(again) == tree(out)


def test_two_processes_give_identical_bytes(prcc, tmp_path):
    raw, release, out = prcc
    argv = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "dlcr_data", "import-release", "prcc"]
    argv += [
        "--release",
        str(release),
        "--out",
        str(tmp_path / "out"),
        "--root",
        str(raw.root),
        "--shard-samples",
        "10",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree(tmp_path / "out") == tree(out)


def test_resume_restores_identical_bytes(prcc, tmp_path):
    raw, release, out = prcc
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    first, second, _ = sorted((copy / "prcc").glob("*.tar"))
    first.unlink()  # a shard lost
    second.write_bytes(second.read_bytes()[:512])  # a shard cut short: its sha256 no longer matches
    (copy / "prcc" / ".train-00002.tar.tmp-999").write_bytes(b"partial")  # a killed writer's temp file
    (copy / "manifest.json").unlink()
    import_release(ReleaseOptions("prcc", release, copy, root=str(raw.root), shard_samples=N))
    assert tree(copy) == tree(out)
    assert not list(copy.rglob(".*.tmp-*"))


def test_a_single_zip_is_read_directly(prcc, tmp_path):
    raw, release, out = prcc
    archive = tmp_path / "DLCR-joined.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(release.rglob("*")):
            zf.write(path, path.relative_to(release).as_posix())
    import_release(ReleaseOptions("prcc", archive, tmp_path / "out", root=str(raw.root), shard_samples=N))
    assert shards(tmp_path / "out", "prcc") == shards(out, "prcc")


def test_options_that_cannot_work_are_one_line_errors(tmp_path):
    release = write_release(tmp_path / "release", LTCC_STRIPS)
    message = one_line_error(invoke("ltcc", "--release", release, "--out", tmp_path / "out"))
    assert "--variants" in message and "--root" in message  # nothing tells the variant count
    message = one_line_error(invoke("last", "--release", release, "--out", tmp_path / "out", "--variants", 10))
    assert "--root" in message
    with pytest.raises(UserError, match="unknown dataset"):
        ReleaseOptions("nope", release, tmp_path / "out", variants=10).resolved()


def test_other_options_on_a_rerun_need_overwrite(prcc, tmp_path):
    raw, release, out = prcc
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    message = one_line_error(invoke("prcc", "--release", release, "--out", copy, "--root", raw.root, "--variants", 10))
    assert "--overwrite" in message
    result = invoke("prcc", "--release", release, "--out", copy, "--root", raw.root, "--variants", 10, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "manifest.json").read_text())["builds"]["prcc"]["config"]["variants_per_strip"] == 10


def test_a_folder_holding_a_single_zip_says_to_pass_it(tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    with zipfile.ZipFile(folder / "PRCC.zip", "w") as zf:
        zf.writestr("readme.txt", "not a strip")
    message = one_line_error(invoke("prcc", "--release", folder, "--out", tmp_path / "out", "--variants", 10))
    assert "PRCC.zip" in message and "pass --release" in message


def test_an_import_beside_a_build_keeps_both_loadable(tiny_build, tmp_path):
    import datasets

    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    release = write_release(tmp_path / "release", LTCC_STRIPS)
    result = invoke("ltcc", "--release", release, "--out", out, "--variants", 10)
    assert result.exit_code == 0, result.output
    builds = json.loads((out / "manifest.json").read_text())["builds"]
    assert set(builds) == {"demo", "ltcc"} and "release" not in builds["demo"]
    assert "mask.png" in datasets.load_dataset(str(out), "demo", split="train").column_names
    assert datasets.load_dataset(str(out), "ltcc", split="train").num_rows == 30
    card = (out / "README.md").read_text()
    assert "| parse (clothing mask) |" in card and "ihaveamoose/DLCR" in card  # each build described as it was made
    staged = tmp_path / "s"
    result = runner.invoke(app, ["push-to-hub", str(out), "me/mixed", "--dry-run", "--stage-dir", str(staged)])
    assert result.exit_code == 0, result.output


def test_a_wrong_release_folder_leaves_the_out_folder_to_the_right_one(tmp_path):
    """The documented one-line error for a wrong --release comes before the out folder is claimed: rerunning with
    the right folder into the same --out is no "build made with other options"."""
    raw = write_prcc(tmp_path / "raw")  # the original dataset, not the release
    release = write_release(tmp_path / "release", PRCC_STRIPS)
    out = tmp_path / "out"
    message = one_line_error(invoke("prcc", "--release", raw.root, "--out", out, "--variants", 10))
    assert "no prcc strips in" in message
    assert not (out / "work" / "prcc" / "config.json").exists()
    result = invoke("prcc", "--release", release, "--out", out, "--variants", 10)
    assert result.exit_code == 0, result.output
    assert len(samples(out, "prcc")) == 3 * N


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_format": "gif"}, "--image-format must be png or jpg, not 'gif'"),
        ({"shard_samples": 0}, "must be at least 1"),
    ],
)
def test_output_options_are_checked_as_a_builds(tmp_path, change, message):
    from dlcr_data.build import BuildOptions

    release = write_release(tmp_path / "release", LTCC_STRIPS)
    with pytest.raises(UserError, match=message):
        ReleaseOptions("ltcc", release, tmp_path / "out", variants=10, **change).resolved()
    with pytest.raises(UserError, match=message):
        BuildOptions("ltcc", tmp_path / "out", **change).resolved()
