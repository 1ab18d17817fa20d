"""LTCC (Qian et al., ACCV 2020): flat folders, `<pid>_<clothIdx>_c<cam>_<frame>.png`."""

from __future__ import annotations

import re
from typing import ClassVar

from dlcr_data.loaders.base import FlatDataset, ReleaseLayout, SplitStats

# Anchored on the basename: CAL matches the full path, so a parent such as `my_code/` corrupts the clothes key.
NAME_RULE = re.compile(r"^(\d+)_(\d+)_c(\d+)_")
NAME_PATTERN = "<pid>_<clothes>_c<cam>_<frame>"


def parse_name(basename: str) -> tuple[int, int, str] | None:
    """`140_2_c5_002106.png` -> (pid 140, camid 4, clothes "140_2"); None if the name does not match."""
    m = NAME_RULE.match(basename)
    if not m:
        return None
    pid, cloth, cam = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if cam < 1:
        return None
    return pid, cam - 1, f"{pid}_{cloth}"


class LTCC(FlatDataset):
    name = "ltcc"
    dirname = "LTCC_ReID"
    splits = ("train", "query", "gallery")
    required = ("train", "query", "test")
    split_folders: ClassVar[dict[str, str]] = {"train": "train", "query": "query", "gallery": "test"}
    name_pattern = NAME_PATTERN
    parse_name = staticmethod(parse_name)
    layout = """
LTCC_ReID/
  train/<pid>_<clothes>_c<cam>_<frame>.png
  query/<pid>_<clothes>_c<cam>_<frame>.png
  test/<pid>_<clothes>_c<cam>_<frame>.png   (gallery)
"""
    release_layout = ReleaseLayout(("train",), f"train/{NAME_PATTERN}.png")
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
