"""`import-release` reading the release: names parsed by each loader's rule, variant counts, bad strips skipped
with their reason, wrong folders and split archives as one-line errors (`dlcr_data/build/release_read.py`)."""

from __future__ import annotations

import json
import random

import pytest
from fixtures import write_ccvid, write_ltcc, write_prcc
from release_cases import (
    LTCC_STRIPS,
    PRCC_STRIPS,
    TEXTS,
    N,
    invoke,
    one_line_error,
    samples,
    write_release,
    write_strip,
)

from dlcr_data import loaders
from dlcr_data.build.release import ReleaseOptions, import_release


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
    summary = " ".join(result.stdout.split())  # as one line: the console wraps at its width
    assert "strips: 3;" in summary and "outfits described" not in summary  # an import describes none


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


def test_a_dataset_the_release_does_not_hold_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders.DATASETS["vcclothes"], "release_layout", None)
    message = one_line_error(invoke("vcclothes", "--release", tmp_path, "--out", tmp_path / "out", "--variants", 10))
    assert "vcclothes: DLCR's release holds none of its images" in message and "reads prcc, ltcc," in message


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


def _flip_a_byte(archive, name: str) -> None:
    """One byte in the middle of member `name`'s stored data inverted: the zip still opens, the member's CRC fails."""
    import struct
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))


def test_a_corrupt_zip_member_is_skipped_with_the_reason(tmp_path):
    """A bad CRC (zipfile.BadZipFile, not an OSError) in a strip or its .txt: the strip is skipped, no traceback."""
    import zipfile

    release = write_release(tmp_path / "release", LTCC_STRIPS)
    big = "LTCC_ReID/train/2_1_c1_000005.png"
    write_strip(release, big, 2, width=10 * 80, noise=True)  # ~40 kB: reading its header stops short of its CRC
    archive = tmp_path / "DLCR-joined.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # stored: a member's bytes as written, its PNG header intact
        for path in sorted(release.rglob("*")):
            zf.write(path, path.relative_to(release).as_posix())
    _flip_a_byte(archive, big)  # inside the image data: the header still reads, decoding fails
    _flip_a_byte(archive, "LTCC_ReID/train/1_2_c3_000004.png.txt")
    out = tmp_path / "out"
    result = invoke("ltcc", "--release", archive, "--out", out, "--variants", 10)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]
    assert entry["totals"]["samples"] == N
    reasons = {s["path"]: (s["stage"], s["reason"]) for s in entry["skipped"]}
    assert reasons == {
        big: ("import", "image: unreadable strip (BadZipFile)"),
        "LTCC_ReID/train/1_2_c3_000004.png.png": ("scan", "txt: unreadable (OSError)"),
    }


def test_a_zip_member_that_cannot_be_opened_is_skipped_with_the_reason(tmp_path):
    """A strip whose central-directory entry names an unknown compression method fails when opened (zipfile raises
    NotImplementedError), before any byte is read: skipped at scan, no traceback."""
    import struct
    import zipfile

    release = write_release(tmp_path / "release", LTCC_STRIPS)
    archive = tmp_path / "DLCR-joined.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(release.rglob("*")):
            zf.write(path, path.relative_to(release).as_posix())
    name = "LTCC_ReID/train/2_1_c1_000005.png"
    data = bytearray(archive.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central-directory record; ours is found by its name
    while data[entry + 46 : entry + 46 + len(name)] != name.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 10 : entry + 12] = struct.pack("<H", 99)  # compression method 99: not one zipfile knows
    archive.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = invoke("ltcc", "--release", archive, "--out", out, "--variants", 10)
    assert result.exit_code == 0, result.output
    entry_json = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]
    assert entry_json["totals"]["samples"] == (len(LTCC_STRIPS) - 1) * N
    reasons = {s["path"]: (s["stage"], s["reason"]) for s in entry_json["skipped"]}
    assert reasons == {name: ("scan", "image: unreadable strip (NotImplementedError)")}
