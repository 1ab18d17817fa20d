"""`dlcr-data import-release`: DLCR's released strips (variants side by side + a .txt per strip) as a build.

Every release here is written by the test in the documented layout (the original dataset's tree, one PNG strip of
10 variants per training image, `X.png` or `X.jpg.png`, and a `.txt` of 10 `top| bottom| shoes` lines), next to the
raw dataset trees of `fixtures.py` (8 x 16 images, so a variant is 8 x 16 and a strip of 10 is 80 x 16). Expected
numbers are counted from what the test wrote (3 strips x 10 variants = 30 samples), never from the code.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures import IMAGE_SIZE, write_ccvid, write_ltcc, write_prcc
from PIL import Image
from typer.testing import CliRunner

from dlcr_data import loaders
from dlcr_data.build.release import ReleaseOptions, import_release
from dlcr_data.cli import app
from dlcr_data.errors import UserError
from dlcr_data.files import sha256_file

W, H = IMAGE_SIZE  # one variant, as the originals
N = 10  # variants per strip, as DLCR's release
TEXTS = [f"Colour{k} shirt| Blue jeans| Black shoes" for k in range(N)]
NORMALISED = [f"Colour{k} shirt | Blue jeans | Black shoes" for k in range(N)]
BIN = Path(sys.executable).parent
runner = CliRunner()

PRCC_STRIPS = {  # strip in the release -> the original's path under the raw PRCC root
    "prcc/rgb/train/001/A_cropped_rgb001.png": "rgb/train/001/A_cropped_rgb001.jpg",  # named after the stem
    "prcc/rgb/train/001/B_cropped_rgb001.jpg.png": "rgb/train/001/B_cropped_rgb001.jpg",  # after the full name
    "prcc/rgb/train/002/C_cropped_rgb001.png": "rgb/train/002/C_cropped_rgb001.jpg",
}
LTCC_STRIPS = {
    "LTCC_ReID/train/1_1_c1_000001.png": "train/1_1_c1_000001.png",  # the stem form: the original's own name
    "LTCC_ReID/train/1_2_c3_000004.png.png": "train/1_2_c3_000004.png",  # the full name plus .png
    "LTCC_ReID/train/2_1_c1_000005.png": "train/2_1_c1_000005.png",
}


def colour(strip: int, k: int) -> tuple[int, int, int]:
    """The solid colour of variant k of the strip-th strip: every variant of the release differs."""
    return (40 + 20 * strip, 10 + 24 * k, 255 - 20 * strip)


def write_strip(
    release: Path,
    rel: str,
    index: int,
    *,
    width: int | None = None,
    lines: list[str] | None = None,
    txt: bool = True,
    noise: bool = False,
) -> Path:
    """`release/rel`: N solid variants side by side (or noise), and its .txt (`X.jpg.png` -> `X.jpg.txt`)."""
    path = release / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = Image.new("RGB", (width or N * W, H))
    for k in range(N):
        strip.paste(Image.new("RGB", (W, H), colour(index, k)), (k * W, 0))
    if noise:
        strip = Image.fromarray(np.random.default_rng(index).integers(0, 255, (H, width or N * W, 3), np.uint8))
    strip.save(path)
    if txt:
        path.with_suffix(".txt").write_text("\n".join(TEXTS if lines is None else lines) + "\n")
    return path


def write_release(folder: Path, strips: dict[str, str]) -> Path:
    for i, rel in enumerate(strips):
        write_strip(folder, rel, i)
    return folder


def shards(out: Path, dataset: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / dataset).glob("*.tar"))}


def samples(out: Path, dataset: str) -> list[tuple[str, dict, np.ndarray, set[str]]]:
    """(key, json, pixels, member extensions) of every sample, in shard order."""
    rows: dict[str, dict] = {}
    for path in sorted((out / dataset).glob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                rows.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [
        (key, json.loads(r["json"]), np.asarray(Image.open(io.BytesIO(r["png"]))), set(r)) for key, r in rows.items()
    ]


def tree(out: Path) -> dict[str, str]:
    """sha256 of every product file (work/ caches excluded)."""
    return {
        p.relative_to(out).as_posix(): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and "work" not in p.relative_to(out).parts
    }


def invoke(*args: object):
    return runner.invoke(app, ["import-release", *(str(a) for a in args)])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


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
    assert entry["config"]["variants"] is None  # inferred
    assert entry["release"]["repo"] == "ihaveamoose/DLCR" and entry["release"]["strips"] == 3
    assert entry["release"]["variants_per_strip"] == {"10": 3}
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
    train = TrainSet.from_dataset("prcc", raw.root, (H, W), expanded=out, cache=False)
    assert train.unmatched_variants == 0
    paired = {train.keys[i]: len(p) for i, p in enumerate(train.partners) if p}
    assert paired == dict.fromkeys(expected, N)
    image, _ = train[train.num_real]  # a variant decodes as the trainer reads it
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


# -- LTCC: names parsed by the loader's rule, with or without the originals ------------------------------------------
@pytest.mark.parametrize(
    "how", [["--variants", "10"], ["--aspect", "0.5"], ["--root"]], ids=["given", "aspect", "root"]
)
def test_ltcc_variant_count_given_or_inferred(tmp_path, how):
    raw = write_ltcc(tmp_path / "raw")
    release = write_release(tmp_path / "release", LTCC_STRIPS)
    options = [*how, raw.root] if how == ["--root"] else how
    result = invoke("ltcc", "--release", release, "--out", tmp_path / "out", *options)
    assert result.exit_code == 0, result.output
    rows = samples(tmp_path / "out", "ltcc")
    assert len(rows) == 30
    records = {r.path: r for r in loaders.load("ltcc", raw.root)["train"]}
    expected = {records[o].key: records[o] for o in LTCC_STRIPS.values()}
    assert {meta["source_key"] for _, meta, _, _ in rows} == set(expected)  # the loader's own keys
    for _, meta, _, _ in rows:
        r = expected[meta["source_key"]]
        assert (meta["pid"], meta["camid"], meta["source_clothes_id"]) == (r.pid, r.camid, r.clothes_id)
    assert sorted(meta["variant"] for _, meta, _, _ in rows) == sorted(list(range(N)) * 3)


def test_ccvid_frames_of_a_tracklet_number_its_variants_on(tmp_path):
    raw = write_ccvid(tmp_path / "raw")
    strips = {"CCVID/session1/001_01/00001.png": "", "CCVID/session1/001_01/00002.jpg.png": ""}
    release = write_release(tmp_path / "release", strips)
    result = invoke("ccvid", "--release", release, "--out", tmp_path / "out", "--root", raw.root)
    assert result.exit_code == 0, result.output
    rows = samples(tmp_path / "out", "ccvid")
    key = next(r.key for r in loaders.load("ccvid", raw.root)["train"] if r.path == "session1/001_01")
    assert {meta["source_key"] for _, meta, _, _ in rows} == {key}
    assert sorted(meta["variant"] for _, meta, _, _ in rows) == list(range(2 * N))  # 2 frames x 10


# -- bad input: skipped with the reason, never a traceback -----------------------------------------------------------
def test_bad_strips_are_skipped_with_their_reason(tmp_path):
    release = tmp_path / "release"
    t = "prcc/rgb/train"
    write_strip(release, f"{t}/001/A_cropped_rgb001.jpg.png", 0)  # the one good strip
    write_strip(release, f"{t}/001/A_cropped_rgb001.png", 1)  # the same original again
    write_strip(release, f"{t}/002/B_cropped_rgb001.png", 2, width=85)  # not 10 whole variants
    write_strip(release, f"{t}/001/A_cropped_rgb002.png", 3, lines=TEXTS[:9])  # 9 lines for 10 variants
    write_strip(release, f"{t}/001/D_cropped_rgb009.png", 4)  # no camera letter
    write_strip(release, f"{t}/x01/A_cropped_rgb001.png", 5)  # no pid folder
    write_strip(release, f"{t}/003/B_cropped_rgb001.png", 6, txt=False)  # no .txt
    corrupt = release / t / "002/C_cropped_rgb001.png"
    corrupt.write_bytes(random.Random(0).randbytes(200))  # not an image at all
    corrupt.with_suffix(".txt").write_text("\n".join(TEXTS))
    truncated = write_strip(release, f"{t}/003/A_cropped_rgb001.png", 7, noise=True)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # a readable header only
    out = tmp_path / "out"
    result = invoke("prcc", "--release", release, "--out", out, "--variants", 10)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["prcc"]
    assert entry["totals"]["samples"] == 10
    reasons = {s["path"]: s["reason"] for s in entry["skipped"]}
    expected = {
        f"{t}/001/A_cropped_rgb001.png": "duplicate:",
        f"{t}/002/B_cropped_rgb001.png": "strip size: width 85 is not a multiple of 10 variants",
        f"{t}/001/A_cropped_rgb002.png": "txt: 9 lines for 10 variants",
        f"{t}/001/D_cropped_rgb009.png": "name: does not start with the camera letter",
        f"{t}/x01/A_cropped_rgb001.png": "name: pid folder 'x01' is not an integer",
        f"{t}/003/B_cropped_rgb001.png": "txt: no B_cropped_rgb001.txt",
        f"{t}/002/C_cropped_rgb001.png": "image: unreadable image",
        f"{t}/003/A_cropped_rgb001.png": "image: corrupt strip",
    }
    assert set(reasons) == set(expected)
    for path, start in expected.items():
        assert reasons[path].startswith(start), (path, reasons[path])
    stages = {s["path"]: s["stage"] for s in entry["skipped"]}
    assert stages[f"{t}/003/A_cropped_rgb001.png"] == "import" and stages[f"{t}/002/C_cropped_rgb001.png"] == "scan"
    assert "skipped strips: 8" in (out / "README.md").read_text()


def test_a_strip_whose_original_is_not_under_root_is_skipped(tmp_path):
    raw = write_prcc(tmp_path / "raw")
    release = write_release(tmp_path / "release", PRCC_STRIPS)
    write_strip(release, "prcc/rgb/train/009/A_cropped_rgb001.png", 9)
    out = tmp_path / "out"
    import_release(ReleaseOptions("prcc", release, out, root=str(raw.root)))
    entry = json.loads((out / "manifest.json").read_text())["builds"]["prcc"]
    assert entry["totals"]["samples"] == 30
    [item] = entry["skipped"]
    assert item["path"] == "prcc/rgb/train/009/A_cropped_rgb001.png"
    assert item["reason"].startswith("original: no training image rgb/train/009/A_cropped_rgb001.* under")


def test_aspect_inference_that_fits_no_whole_count_says_which_option_to_pass(tmp_path):
    release = tmp_path / "release"
    write_strip(release, "LTCC_ReID/train/1_1_c1_000001.png", 0)  # 80 x 16
    write_strip(release, "LTCC_ReID/train/2_1_c1_000005.png", 1)
    result = invoke("ltcc", "--release", release, "--out", tmp_path / "out", "--aspect", "3")  # 80 / 48 = 1.7 variants
    message = one_line_error(result)
    assert "no sample imported" in message and "2 strips skipped" in message and "--variants" in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_zero_samples_after_decoding_is_an_error_and_leaves_no_shards(tmp_path):
    release = tmp_path / "release"
    strip = write_strip(release, "LTCC_ReID/train/1_1_c1_000001.png", 0, noise=True)
    strip.write_bytes(strip.read_bytes()[: strip.stat().st_size // 2])
    out = tmp_path / "out"
    message = one_line_error(invoke("ltcc", "--release", release, "--out", out, "--variants", 10))
    assert "no sample imported" in message and "image: corrupt strip" in message
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.tar"))
    skipped = json.loads((out / "work" / "ltcc" / "skipped.json").read_text())
    assert [s["path"] for s in skipped] == ["LTCC_ReID/train/1_1_c1_000001.png"]


# -- the wrong folder, split archives, missing options: one line, exit 2 ---------------------------------------------
def test_a_folder_without_strips_names_the_expected_tree(tmp_path):
    raw = write_prcc(tmp_path / "raw")  # the original dataset (JPEGs), not the release
    message = one_line_error(invoke("prcc", "--release", raw.root, "--out", tmp_path / "out", "--variants", 10))
    assert "no prcc strips in" in message and "rgb/train/<pid>/<A|B|C>*.png" in message and ".txt" in message
    message = one_line_error(
        invoke("prcc", "--release", tmp_path / "nowhere", "--out", tmp_path / "o", "--variants", 10)
    )
    assert "does not exist" in message and "rgb/train/<pid>" in message


@pytest.mark.parametrize("point_at", ["folder", "part"])
def test_split_zip_parts_exit_2_with_the_join_command(tmp_path, point_at):
    folder = tmp_path / "dl"
    folder.mkdir()
    for name in ("DLCR.zip", "DLCR.z01", "DLCR.z02"):
        (folder / name).write_bytes(b"PK\x07\x08 part")
    release = folder if point_at == "folder" else folder / "DLCR.z01"
    message = one_line_error(invoke("prcc", "--release", release, "--out", tmp_path / "out", "--variants", 10))
    joined = folder / "DLCR-joined.zip"
    assert f"zip -s 0 {folder / 'DLCR.zip'} --out {joined} && unzip {joined} -d {folder / 'DLCR'}" in message


def test_numbered_parts_exit_2_with_the_cat_command(tmp_path):
    for name in ("DLCR.zip.001", "DLCR.zip.002"):
        (tmp_path / name).write_bytes(b"part")
    message = one_line_error(invoke("ltcc", "--release", tmp_path, "--out", tmp_path / "out", "--variants", 10))
    assert f"cat {tmp_path / 'DLCR'}.zip.[0-9]* > {tmp_path / 'DLCR-joined.zip'}" in message


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
    assert json.loads((copy / "manifest.json").read_text())["builds"]["prcc"]["config"]["variants"] == 10


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
