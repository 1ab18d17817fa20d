"""PRCC (Yang et al., TPAMI 2019): `rgb/{train,val}/<pid>/<cam>*.jpg`, `rgb/test/{A,B,C}/<pid>/*.jpg`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

from dlcr_data.loaders.base import ReleaseLayout, SourceDataset, SplitStats, list_images, relpath
from dlcr_data.records import Record, Skipped, make_key

CAMERAS = {"A": 0, "B": 1, "C": 2}

# Test splits are the camera folders: A is the gallery, B keeps A's clothes (SC), C changes them (CC).
TEST_FOLDERS = {"gallery": "A", "query_sc": "B", "query_cc": "C"}
_TEST_SPLITS = {camera: split for split, camera in TEST_FOLDERS.items()}


def clothes_of(pid: int, camera: str) -> str:
    """Cameras A and B film the same outfit, C a second one: `"<pid>_AB"` or `"<pid>_C"`.

    CAL keys train clothes by the pid folder (+ "C") and numbers test clothes 2*label(+1); a string built from
    the pid is the same partition and stays unique across all splits.
    """
    return f"{pid}_C" if camera == "C" else f"{pid}_AB"


def parse_name(basename: str) -> str | None:
    """Train/val names start with the camera letter: `A_cropped_rgb001.jpg` -> "A"; None otherwise."""
    camera = basename[:1]
    return camera if camera in CAMERAS else None


def parse_pid(folder: str) -> int | None:
    """`001` -> 1; None for a folder that is not an integer."""
    return int(folder) if folder.isascii() and folder.isdigit() else None


def _pid_folders(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


class PRCC(SourceDataset):
    name = "prcc"
    dirname = "prcc"
    splits = ("train", "val", "gallery", "query_sc", "query_cc")
    required = ("rgb/train", "rgb/val", "rgb/test/A", "rgb/test/B", "rgb/test/C")
    layout = """
prcc/rgb/
  train/<pid>/<A|B|C>*.jpg   (first letter = camera)
  val/<pid>/<A|B|C>*.jpg
  test/A/<pid>/*.jpg   (gallery)
  test/B/<pid>/*.jpg   (query_sc, same clothes as A)
  test/C/<pid>/*.jpg   (query_cc, other clothes)
"""
    stats: ClassVar[dict[str, SplitStats]] = {
        "train": SplitStats(images=17896, ids=150, clothes=300, cameras=3),
        "val": SplitStats(images=5002, cameras=3, note="derived: 33,698 total - 28,696 in train and test"),
        "gallery": SplitStats(images=3384, ids=71, clothes=71, cameras=1),
        "query_sc": SplitStats(images=3873, ids=71, clothes=71, cameras=1),
        "query_cc": SplitStats(images=3543, ids=71, clothes=71, cameras=1),
    }
    release_layout = ReleaseLayout(("rgb/train",), "rgb/train/<pid>/<A|B|C>*.png")
    obtain = "PRCC is licence-gated: request it from the authors (http://www.isee-ai.cn/~yangqize/clothing.html)."
    citation = (
        "@article{yang2019prcc, title={Person Re-identification by Contour Sketch under Moderate Clothing "
        "Change}, author={Yang, Qize and Wu, Ancong and Zheng, Wei-Shi}, journal={IEEE TPAMI}, year={2019}}"
    )

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        folders = ["rgb/train", "rgb/val", *(f"rgb/test/{camera}" for camera in TEST_FOLDERS.values())]
        for folder in folders:
            for pid_folder in _pid_folders(root / folder):
                for path in list_images(pid_folder):
                    yield self.record_of(relpath(path, root))

    def record_of(self, path: str) -> Record | Skipped:
        """`rgb/{train,val}/<pid>/<A|B|C>*` (the camera from the name) or `rgb/test/<A|B|C>/<pid>/*` (from the
        folder); the key from split, pid folder and stem."""
        parts = PurePosixPath(path).parts
        if len(parts) == 4 and parts[:2] in (("rgb", "train"), ("rgb", "val")):
            split, camera, folder = parts[1], None, parts[2]
        elif len(parts) == 5 and parts[:2] == ("rgb", "test") and parts[2] in _TEST_SPLITS:
            split, camera, folder = _TEST_SPLITS[parts[2]], parts[2], parts[3]
        elif parts[:2] in (("rgb", "train"), ("rgb", "val")):
            return Skipped(path, f"layout: expected rgb/{parts[1]}/<pid>/<name>")
        else:
            return Skipped(path, "layout: expected rgb/{train,val}/<pid>/<name> or rgb/test/<A|B|C>/<pid>/<name>")
        pid = parse_pid(folder)
        if pid is None:
            return Skipped(path, f"pid folder {folder!r} is not an integer")
        camera = camera or parse_name(parts[-1])
        if camera is None:
            return Skipped(path, "name does not start with the camera letter A, B or C")
        stem = PurePosixPath(path).stem
        return Record(make_key(split, folder, stem), path, pid, CAMERAS[camera], clothes_of(pid, camera), split)
