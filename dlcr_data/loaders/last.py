"""LaST (Shu et al., TCSVT 2021): `train/<pid>/`, flat `{val,test}/query/`, `{val,test}/gallery/<pid>/`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from dlcr_data.loaders.base import ReleaseLayout, SourceDataset, SplitStats, list_images, relpath
from dlcr_data.records import Record, Skipped, make_key

# split -> (folder, nested in <pid>/ folders). Decided by the split: CAL and the official code test whether
# 'query' occurs anywhere in the path, so a root such as `query_data/` would glob the gallery flat.
SPLIT_FOLDERS: dict[str, tuple[str, bool]] = {
    "train": ("train", True),
    "val_query": ("val/query", False),
    "val_gallery": ("val/gallery", True),
    "query": ("test/query", False),
    "gallery": ("test/gallery", True),
}

# Each (query, gallery) pair numbers its cameras together: query i -> i, gallery j -> len(query) + j.
EVAL_PAIRS = (("val_query", "val_gallery"), ("query", "gallery"))


def parse_name(basename: str) -> tuple[int, str] | None:
    """`000123_3_0_01_1.jpg` -> (pid 123, clothes index "1"): first and last `_` tokens of the stem."""
    tokens = Path(basename).stem.split("_")
    pid = tokens[0]
    if len(tokens) < 2 or not (pid.isascii() and pid.isdigit()) or not tokens[-1]:
        return None
    return int(pid), tokens[-1]


def _images(split_dir: Path, nested: bool) -> list[Path]:
    """Images of one split, sorted by path as CAL's sorted glob (the running camids depend on this order)."""
    if not nested:
        return list_images(split_dir)
    folders = [p for p in split_dir.iterdir() if p.is_dir()]
    return sorted((p for f in folders for p in list_images(f)), key=lambda p: p.as_posix())


class LaST(SourceDataset):
    name = "last"
    dirname = "last"
    splits = tuple(SPLIT_FOLDERS)
    required = tuple(folder for folder, _ in SPLIT_FOLDERS.values())
    layout = """
last/
  train/<pid>/<pid>_..._<clothes>.jpg
  val/query/<pid>_..._<clothes>.jpg   (flat)
  val/gallery/<pid>/<pid>_..._<clothes>.jpg
  test/query/<pid>_..._<clothes>.jpg   (flat)
  test/gallery/<pid>/<pid>_..._<clothes>.jpg
"""
    stats: ClassVar[dict[str, SplitStats]] = {
        "train": SplitStats(images=71248, ids=5000),
        "val_query": SplitStats(images=100, ids=56),
        "val_gallery": SplitStats(images=21279, ids=56),
        "query": SplitStats(images=10176, ids=5805),
        "gallery": SplitStats(images=125353, ids=5806),
    }
    # LaST numbers cameras by position in the sorted training list: a strip's name does not give its camera.
    release_layout = ReleaseLayout(("train",), "train/<pid>/<pid>_..._<clothes>.png", needs_root=True)
    obtain = "LaST: follow the download instructions of the official repository (https://github.com/shuxjweb/last)."
    citation = (
        "@article{shu2021last, title={Large-Scale Spatio-Temporal Person Re-identification: Algorithms and "
        "Benchmark}, author={Shu, Xiujun and others}, journal={IEEE TCSVT}, year={2021}}"
    )

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        parsed: dict[str, list[tuple[Path, int, str]]] = {}
        for split, (folder, nested) in SPLIT_FOLDERS.items():
            parsed[split] = []
            for path in _images(root / folder, nested):
                name = parse_name(path.name)
                if name is None:
                    yield Skipped(relpath(path, root), "name does not match <pid>_..._<clothes>")
                else:
                    parsed[split].append((path, *name))
        # Train keeps CAL's default offset 0; val and test number query then gallery.
        offsets = {"train": 0}
        for query, gallery in EVAL_PAIRS:
            offsets[query], offsets[gallery] = 0, len(parsed[query])
        for split, items in parsed.items():
            folder = root / SPLIT_FOLDERS[split][0]
            for i, (path, pid, clothes) in enumerate(items):
                # No clothes labels outside train: clothes_id := pid, as CAL.
                clothes_id = f"{pid}_{clothes}" if split == "train" else str(pid)
                # Key from the path inside the split folder: the pid folder keeps nested stems unique.
                key = make_key(split, *path.relative_to(folder).with_suffix("").parts)
                yield Record(key, relpath(path, root), pid, offsets[split] + i, clothes_id, split)
