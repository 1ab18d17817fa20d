"""LTCC (Qian et al., ACCV 2020): flat folders, `<pid>_<clothIdx>_c<cam>_<frame>.png`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from dlcr_data.loaders.base import SourceDataset, SplitStats, scan_flat
from dlcr_data.records import Record, Skipped

# Anchored on the basename: CAL matches the full path, so a parent such as `my_code/` corrupts the clothes key.
NAME_RULE = re.compile(r"^(\d+)_(\d+)_c(\d+)_")


def parse_name(basename: str) -> tuple[int, int, str] | None:
    """`140_2_c5_002106.png` -> (pid 140, camid 4, clothes "140_2"); None if the name does not match."""
    m = NAME_RULE.match(basename)
    if not m:
        return None
    pid, cloth, cam = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if cam < 1:
        return None
    return pid, cam - 1, f"{pid}_{cloth}"


def scan_flat_splits(root: Path, folders: dict[str, str]) -> Iterator[Record | Skipped]:
    """LTCC-style flat split folders (`split -> folder`); shared with the demo, which uses the same layout."""
    return scan_flat(root, folders, parse_name, "<pid>_<clothes>_c<cam>_<frame>")


class LTCC(SourceDataset):
    name = "ltcc"
    dirname = "LTCC_ReID"
    splits = ("train", "query", "gallery")
    required = ("train", "query", "test")
    layout = """
LTCC_ReID/
  train/<pid>_<clothes>_c<cam>_<frame>.png
  query/<pid>_<clothes>_c<cam>_<frame>.png
  test/<pid>_<clothes>_c<cam>_<frame>.png   (gallery)
"""
    stats: ClassVar[dict[str, SplitStats]] = {
        "train": SplitStats(images=9576, ids=77),
        "query": SplitStats(images=493, ids=75),
        "gallery": SplitStats(images=7050, ids=75),
    }
    obtain = "LTCC is licence-gated: request it from the authors (https://naiq.github.io/LTCC_Perosn_ReID.html)."
    citation = (
        "@inproceedings{qian2020ltcc, title={Long-Term Cloth-Changing Person Re-identification}, "
        "author={Qian, Xuelin and others}, booktitle={ACCV}, year={2020}}"
    )

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        return scan_flat_splits(root, {"train": "train", "query": "query", "gallery": "test"})
