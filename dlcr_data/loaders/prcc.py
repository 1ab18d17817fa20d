"""PRCC (Yang et al., TPAMI 2019): `rgb/{train,val}/<pid>/<cam>*.jpg`, `rgb/test/{A,B,C}/<pid>/*.jpg`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from dlcr_data.loaders.base import SourceDataset, SplitStats, list_images, relpath
from dlcr_data.records import Record, Skipped, make_key

CAMERAS = {"A": 0, "B": 1, "C": 2}

# Test splits are the camera folders: A is the gallery, B keeps A's clothes (SC), C changes them (CC).
TEST_FOLDERS = {"gallery": "A", "query_sc": "B", "query_cc": "C"}


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
    obtain = "PRCC is licence-gated: request it from the authors (http://www.isee-ai.cn/~yangqize/clothing.html)."
    citation = (
        "@article{yang2019prcc, title={Person Re-identification by Contour Sketch under Moderate Clothing "
        "Change}, author={Yang, Qize and Wu, Ancong and Zheng, Wei-Shi}, journal={IEEE TPAMI}, year={2019}}"
    )

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        rgb = root / "rgb"
        for split in ("train", "val"):
            yield from self._scan_split(root, rgb / split, split, camera=None)
        for split, camera in TEST_FOLDERS.items():
            yield from self._scan_split(root, rgb / "test" / camera, split, camera=camera)

    def _scan_split(self, root: Path, split_dir: Path, split: str, camera: str | None) -> Iterator[Record | Skipped]:
        """One split folder of `<pid>/` folders; `camera` is fixed for test, else read from each name."""
        for folder in _pid_folders(split_dir):
            pid = parse_pid(folder.name)
            for path in list_images(folder):
                if pid is None:
                    yield Skipped(relpath(path, root), f"pid folder {folder.name!r} is not an integer")
                    continue
                cam = camera or parse_name(path.name)
                if cam is None:
                    yield Skipped(relpath(path, root), "name does not start with the camera letter A, B or C")
                    continue
                yield Record(
                    make_key(split, folder.name, path.stem),
                    relpath(path, root),
                    pid,
                    CAMERAS[cam],
                    clothes_of(pid, cam),
                    split,
                )
