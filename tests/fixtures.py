"""Tiny on-disk copies of the five CC-ReID dataset trees, in their exact real layouts (docs/datasets.md §2, §8).

Each `write_<dataset>(parent, container="", broken=True)` writes `parent/[container/]<dirname>/...` and
returns a `DatasetFixture`: the dataset root (usable directly as a path) plus what the loader must return.
`container` places the dataset under a tricky folder name (`my_code`, `2024-01-02-03`, `query_data`); `broken`
adds unparseable names (skipped by `load()`) and one corrupt image (skipped only with `verify_images=True`).

Within the evaluation splits every dataset has, for one identity: a same-camera positive, a same-clothes
other-camera positive and a different-clothes other-camera positive; and an identity with a single outfit.
"""

from __future__ import annotations

import io
import random
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image

IMAGE_SIZE = (8, 16)  # width, height


@dataclass(frozen=True)
class SplitCounts:
    """Per-split numbers `load()` must report; images are tracklets for CCVID."""

    images: int
    ids: int
    clothes: int
    cameras: int


@dataclass(frozen=True)
class DatasetFixture:
    """A written fixture tree and the truth about it."""

    name: str  # registry name for `dlcr_data.loaders.load`
    root: Path  # the dataset folder (`.../<dirname>`)
    records: dict[str, tuple[str, int, int, str]]  # record path -> (split, pid, camid, clothes_id)
    unparseable: tuple[str, ...] = ()  # `Skipped.path`s reported by every load()
    corrupt: tuple[str, ...] = ()  # files (frames for CCVID) skipped only with verify_images=True
    frames: dict[str, int] = field(default_factory=dict)  # CCVID: tracklet path -> number of frames

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(split for split, *_ in self.records.values()))

    def counts(self, verified: bool = False) -> dict[str, SplitCounts]:
        """Expected per-split counts; `verified=True` for `load(..., verify_images=True)`."""
        dropped = set(self.corrupt) if verified else set()
        out: dict[str, SplitCounts] = {}
        for split in self.splits:
            rows = [v for p, v in self.records.items() if v[0] == split and p not in dropped]
            out[split] = SplitCounts(
                images=len(rows),
                ids=len({r[1] for r in rows}),
                clothes=len({r[3] for r in rows}),
                cameras=len({r[2] for r in rows}),
            )
        return out

    @property
    def total_images(self) -> int:
        return len(self.records)


# -- writing helpers ---------------------------------------------------------------------------------------
@cache
def _encoded(colour: tuple[int, int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, colour).save(buf, format=fmt)
    return buf.getvalue()


def _write_image(path: Path, tag: str = "") -> None:
    """A solid-colour image whose colour follows `tag` (e.g. the outfit), in the format of the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c = zlib.crc32(tag.encode())
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    path.write_bytes(_encoded((c & 255, (c >> 8) & 255, (c >> 16) & 255), fmt))


def _write_corrupt(path: Path) -> None:
    """Random bytes behind an image extension: listed like any image, fails to decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(path.name).randbytes(96))


def _dataset_dir(parent: Path, container: str, dirname: str) -> Path:
    root = Path(parent) / container / dirname if container else Path(parent) / dirname
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_all(
    root: Path, records: dict[str, tuple[str, int, int, str]], unparseable: list[str], corrupt: list[str]
) -> None:
    for rel, (_, _, _, clothes) in records.items():
        if rel in corrupt:
            _write_corrupt(root / rel)
        else:
            _write_image(root / rel, clothes)
    for rel in unparseable:
        _write_image(root / rel, "unparseable")


# -- PRCC --------------------------------------------------------------------------------------------------
def write_prcc(parent: Path, container: str = "", broken: bool = True) -> DatasetFixture:
    """`prcc/rgb/{train,val}/<pid>/<A|B|C>_cropped_rgbNNN.jpg`, `rgb/test/{A,B,C}/<pid>/cropped_rgbNNN.jpg`.

    train 9 images (10 with the corrupt one) / 3 ids / 5 clothes / 3 cams (003 has one outfit: A and B only);
    val 3 / 1 / 2 / 3; gallery (A) 4 / 3 / 3 / 1; query_sc (B) 3 / 2 / 2 / 1; query_cc (C) 2 / 2 / 2 / 1.
    """
    root = _dataset_dir(parent, container, "prcc")
    records = {
        # 001: same-camera (A,A), same-clothes other-camera (B) and other-clothes (C) positives.
        "rgb/train/001/A_cropped_rgb001.jpg": ("train", 1, 0, "1_AB"),
        "rgb/train/001/A_cropped_rgb002.jpg": ("train", 1, 0, "1_AB"),
        "rgb/train/001/B_cropped_rgb001.jpg": ("train", 1, 1, "1_AB"),
        "rgb/train/001/C_cropped_rgb001.jpg": ("train", 1, 2, "1_C"),
        "rgb/train/002/A_cropped_rgb001.jpg": ("train", 2, 0, "2_AB"),
        "rgb/train/002/B_cropped_rgb001.jpg": ("train", 2, 1, "2_AB"),
        "rgb/train/002/C_cropped_rgb001.jpg": ("train", 2, 2, "2_C"),
        "rgb/train/003/A_cropped_rgb001.jpg": ("train", 3, 0, "3_AB"),
        "rgb/train/003/B_cropped_rgb001.jpg": ("train", 3, 1, "3_AB"),
        "rgb/val/004/A_cropped_rgb001.jpg": ("val", 4, 0, "4_AB"),
        "rgb/val/004/B_cropped_rgb001.jpg": ("val", 4, 1, "4_AB"),
        "rgb/val/004/C_cropped_rgb001.jpg": ("val", 4, 2, "4_C"),
        "rgb/test/A/005/cropped_rgb001.jpg": ("gallery", 5, 0, "5_AB"),
        "rgb/test/A/005/cropped_rgb002.jpg": ("gallery", 5, 0, "5_AB"),
        "rgb/test/A/006/cropped_rgb001.jpg": ("gallery", 6, 0, "6_AB"),
        "rgb/test/A/007/cropped_rgb001.jpg": ("gallery", 7, 0, "7_AB"),
        "rgb/test/B/005/cropped_rgb003.jpg": ("query_sc", 5, 1, "5_AB"),
        "rgb/test/B/005/cropped_rgb004.jpg": ("query_sc", 5, 1, "5_AB"),
        "rgb/test/B/006/cropped_rgb002.jpg": ("query_sc", 6, 1, "6_AB"),
        "rgb/test/C/005/cropped_rgb005.jpg": ("query_cc", 5, 2, "5_C"),
        "rgb/test/C/007/cropped_rgb002.jpg": ("query_cc", 7, 2, "7_C"),
    }
    unparseable: list[str] = []
    corrupt: list[str] = []
    if broken:
        unparseable = ["rgb/train/001/D_cropped_rgb009.jpg", "rgb/train/x01/A_cropped_rgb001.jpg"]
        corrupt = ["rgb/train/002/C_cropped_rgb002.jpg"]
        records["rgb/train/002/C_cropped_rgb002.jpg"] = ("train", 2, 2, "2_C")
    _write_all(root, records, unparseable, corrupt)
    return DatasetFixture("prcc", root, records, tuple(unparseable), tuple(corrupt))


# -- LTCC --------------------------------------------------------------------------------------------------
def write_ltcc(parent: Path, container: str = "", broken: bool = True) -> DatasetFixture:
    """`LTCC_ReID/{train,query,test}/<pid>_<clothes>_c<cam>_<frame>.png` (test = gallery).

    train 5 / 2 ids / 3 clothes / 3 cams; query 2 / 2 / 2 / 1; gallery 4 (5 with the corrupt one) / 2 / 3 / 3.
    """
    root = _dataset_dir(parent, container, "LTCC_ReID")
    records = {
        "train/1_1_c1_000001.png": ("train", 1, 0, "1_1"),
        "train/1_1_c1_000002.png": ("train", 1, 0, "1_1"),
        "train/1_1_c2_000003.png": ("train", 1, 1, "1_1"),
        "train/1_2_c3_000004.png": ("train", 1, 2, "1_2"),
        "train/2_1_c1_000005.png": ("train", 2, 0, "2_1"),
        "query/10_1_c1_000100.png": ("query", 10, 0, "10_1"),
        "query/11_1_c1_000110.png": ("query", 11, 0, "11_1"),
        # 10: same-camera, same-clothes other-camera, other-clothes positives; 11 has a single outfit.
        "test/10_1_c1_000101.png": ("gallery", 10, 0, "10_1"),
        "test/10_1_c2_000102.png": ("gallery", 10, 1, "10_1"),
        "test/10_2_c3_000103.png": ("gallery", 10, 2, "10_2"),
        "test/11_1_c2_000111.png": ("gallery", 11, 1, "11_1"),
    }
    unparseable: list[str] = []
    corrupt: list[str] = []
    if broken:
        unparseable = ["train/readme_c1.png"]
        corrupt = ["test/11_1_c2_000112.png"]
        records["test/11_1_c2_000112.png"] = ("gallery", 11, 1, "11_1")
    _write_all(root, records, unparseable, corrupt)
    return DatasetFixture("ltcc", root, records, tuple(unparseable), tuple(corrupt))


# -- VC-Clothes --------------------------------------------------------------------------------------------
def write_vcclothes(parent: Path, container: str = "", broken: bool = True) -> DatasetFixture:
    """`VC-Clothes/{train,query,gallery}/<pid>-<cam>-<clothes>-<frame>.jpg`.

    train 6 / 3 ids / 5 clothes / 3 cams (includes `1-01-11-01` and `11-01-1-01`, which CAL's unseparated
    clothes key would merge); query 3 / 3 / 3 / 3 (raw cams 2, 3, 4); gallery 5 (6 with the corrupt one) / 3 /
    4 / 4.
    """
    root = _dataset_dir(parent, container, "VC-Clothes")
    records = {
        "train/0001-01-01-01.jpg": ("train", 1, 0, "1_1"),
        "train/0001-02-01-02.jpg": ("train", 1, 1, "1_1"),
        "train/0001-03-02-03.jpg": ("train", 1, 2, "1_2"),
        "train/0002-01-01-01.jpg": ("train", 2, 0, "2_1"),
        "train/1-01-11-01.jpg": ("train", 1, 0, "1_11"),
        "train/11-01-1-01.jpg": ("train", 11, 0, "11_1"),
        "query/0010-02-01-01.jpg": ("query", 10, 1, "10_1"),
        "query/0011-03-01-01.jpg": ("query", 11, 2, "11_1"),
        "query/0012-04-01-01.jpg": ("query", 12, 3, "12_1"),
        # 10 (query at cam 2): same camera, same clothes at cam 3, other clothes at cam 4.
        "gallery/0010-02-01-02.jpg": ("gallery", 10, 1, "10_1"),
        "gallery/0010-03-01-03.jpg": ("gallery", 10, 2, "10_1"),
        "gallery/0010-04-02-04.jpg": ("gallery", 10, 3, "10_2"),
        "gallery/0011-02-01-02.jpg": ("gallery", 11, 1, "11_1"),  # single outfit
        "gallery/0012-01-01-01.jpg": ("gallery", 12, 0, "12_1"),  # cam 1: in no sc/cc preset
    }
    unparseable: list[str] = []
    corrupt: list[str] = []
    if broken:
        unparseable = ["train/0001_01_01_01.jpg"]
        corrupt = ["gallery/0010-03-01-09.jpg"]
        records["gallery/0010-03-01-09.jpg"] = ("gallery", 10, 2, "10_1")
    _write_all(root, records, unparseable, corrupt)
    return DatasetFixture("vcclothes", root, records, tuple(unparseable), tuple(corrupt))


# -- CCVID -------------------------------------------------------------------------------------------------
CCVID_U0 = "u0_l0_s0_c0_a0"
CCVID_U1 = "u1_l0_s0_c0_a0"


def write_ccvid(parent: Path, container: str = "", broken: bool = True) -> DatasetFixture:
    """`CCVID/{train,query,gallery}.txt` + `CCVID/session{1,2,3}/<pid>_<xx>/<NNNNN>.jpg` (frames from 00001).

    Tracklets of 3, 5 (< 8), 8, 9, 12, 31 (8-31), 33 and 40 (> 32) frames, written in shuffled order.
    train 4 tracklets / 2 ids / 3 clothes / 3 cams; query 2 / 2 / 2 / 1; gallery 4 / 2 / 3 / 3
    (session2/010_01 is the query's camera: sessions 1 and 2 share camera numbers). The corrupt item is one
    frame of a 40-frame tracklet, so verify_images drops that frame, not the tracklet. Bad lines are skipped
    as `<split>.txt:<line>`; missing and empty tracklet folders as the tracklet path.
    """
    root = _dataset_dir(parent, container, "CCVID")
    tracklets = [  # (split, path, pid text, clothes label, frames, camid)
        ("train", "session1/001_01", "001", CCVID_U0, 5, 0),
        ("train", "session1/001_02", "001", CCVID_U0, 12, 1),
        ("train", "session3/001_03", "001", CCVID_U1, 40, 14),
        ("train", "session1/002_01", "002", CCVID_U0, 3, 0),
        ("query", "session1/010_01", "010", CCVID_U0, 8, 0),
        ("query", "session2/011_01", "011", CCVID_U0, 4, 0),
        ("gallery", "session2/010_01", "010", CCVID_U0, 9, 0),  # same camera as the query
        ("gallery", "session1/010_02", "010", CCVID_U0, 33, 1),  # same clothes, other camera
        ("gallery", "session3/010_04", "010", CCVID_U1, 31, 15),  # other clothes, other camera
        ("gallery", "session2/011_02", "011", CCVID_U0, 9, 1),  # 011 has a single outfit
    ]
    records: dict[str, tuple[str, int, int, str]] = {}
    frames: dict[str, int] = {}
    lines: dict[str, list[str]] = {"train": [], "query": [], "gallery": []}
    rng = random.Random(0)
    for split, path, pid, clothes, n, camid in tracklets:
        records[path] = (split, int(pid), camid, f"{int(pid)}_{clothes}")
        frames[path] = n
        lines[split].append(f"{path}\t{pid}\t{clothes}")
        order = list(range(1, n + 1))
        rng.shuffle(order)  # creation order is not name order: the loader must sort
        for i in order:
            _write_image(root / path / f"{i:05d}.jpg", clothes)
    unparseable: list[str] = []
    corrupt: list[str] = []
    if broken:
        lines["train"].append("session1/099_01\t099")  # train.txt:5, two fields
        lines["train"].append("session1/098_01\tabc\t" + CCVID_U0)  # train.txt:6, pid not an integer
        lines["query"].append(f"session1/097_01\t097\t{CCVID_U0}")  # folder missing
        lines["gallery"].append(f"session2/096_01\t096\t{CCVID_U0}")  # folder empty
        (root / "session2/096_01").mkdir(parents=True)
        unparseable = ["train.txt:5", "train.txt:6", "session1/097_01", "session2/096_01"]
        corrupt = ["session3/001_03/00007.jpg"]
        _write_corrupt(root / corrupt[0])
    for split, rows in lines.items():
        # One space-separated line and a trailing blank line: fields are whitespace-split, blanks ignored.
        if split == "query":
            rows[0] = rows[0].replace("\t", " ")
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n\n", encoding="utf-8")
    return DatasetFixture("ccvid", root, records, tuple(unparseable), tuple(corrupt), frames)


# -- LaST --------------------------------------------------------------------------------------------------
def write_last(parent: Path, container: str = "", broken: bool = True) -> DatasetFixture:
    """`last/train/<pid>/`, `last/{val,test}/query/` (flat), `last/{val,test}/gallery/<pid>/`, `<pid>_.._<c>`.

    Cameras are running indices (query i -> i, gallery j -> len(query) + j; train 0..n-1), so counts of
    cameras equal counts of images. train 4 / 2 ids / 3 clothes; val_query 2 / 2 / 2; val_gallery 3 / 2 / 2;
    query 2 / 2 / 2; gallery 4 (5 with the corrupt one) / 3 / 3 (000022 is a gallery-only distractor).
    """
    root = _dataset_dir(parent, container, "last")
    records = {
        "train/000001/000001_01_00001_0.jpg": ("train", 1, 0, "1_0"),
        "train/000001/000001_01_00002_0.jpg": ("train", 1, 1, "1_0"),
        "train/000001/000001_02_00001_1.jpg": ("train", 1, 2, "1_1"),
        "train/000002/000002_01_00001_0.jpg": ("train", 2, 3, "2_0"),
        "val/query/000010_01_00001_0.jpg": ("val_query", 10, 0, "10"),
        "val/query/000011_01_00001_0.jpg": ("val_query", 11, 1, "11"),
        "val/gallery/000010/000010_02_00001_0.jpg": ("val_gallery", 10, 2, "10"),
        "val/gallery/000010/000010_03_00001_1.jpg": ("val_gallery", 10, 3, "10"),
        "val/gallery/000011/000011_02_00001_0.jpg": ("val_gallery", 11, 4, "11"),
        "test/query/000020_01_00001_0.jpg": ("query", 20, 0, "20"),
        "test/query/000021_01_00001_0.jpg": ("query", 21, 1, "21"),
        "test/gallery/000020/000020_02_00001_0.jpg": ("gallery", 20, 2, "20"),
        "test/gallery/000020/000020_03_00001_1.jpg": ("gallery", 20, 3, "20"),
        "test/gallery/000021/000021_02_00001_0.jpg": ("gallery", 21, 4, "21"),
        "test/gallery/000022/000022_01_00001_0.jpg": ("gallery", 22, 5, "22"),
    }
    unparseable: list[str] = []
    corrupt: list[str] = []
    if broken:
        unparseable = ["train/000001/frame_00001.jpg"]
        corrupt = ["test/gallery/000022/000022_09_00001_0.jpg"]
        records["test/gallery/000022/000022_09_00001_0.jpg"] = ("gallery", 22, 6, "22")
    _write_all(root, records, unparseable, corrupt)
    return DatasetFixture("last", root, records, tuple(unparseable), tuple(corrupt))


WRITERS = {
    "prcc": write_prcc,
    "ltcc": write_ltcc,
    "vcclothes": write_vcclothes,
    "ccvid": write_ccvid,
    "last": write_last,
}
"""Registry name -> fixture writer."""
