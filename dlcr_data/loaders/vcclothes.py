"""VC-Clothes (Wan et al., CVPRW 2020): flat folders, `<pid>-<cam>-<clothes>-<frame>.jpg`, 4 cameras."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from dlcr_data.loaders.base import FlatDataset, ReleaseLayout, SplitStats
from dlcr_data.records import Record

# Anchored on the basename: CAL matches the full path, so a parent such as `2024-01-02-03/` hijacks it.
NAME_RULE = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)")
NAME_PATTERN = "<pid>-<cam>-<clothes>-<frame>"

EVAL_PRESETS: dict[str, tuple[int, ...] | None] = {"all": None, "sc": (2, 3), "cc": (3, 4)}
"""CAL's evaluation modes `vcclothes`, `vcclothes_sc`, `vcclothes_cc`: the *raw* (1-based) cameras kept in
query and gallery; None keeps every camera. Train is never filtered. CAL evaluates `sc`/`cc` in general mode
only (no clothes-aware SC/CC protocol on top)."""

EVAL_SPLITS = ("query", "gallery")


def parse_name(basename: str) -> tuple[int, int, str] | None:
    """`0001-02-01-05.jpg` -> (pid 1, camid 1, clothes "1_1"); None if the name does not match.

    CAL keys clothes as pid + clothes concatenated ("0001"+"01"), unambiguous only for fixed-width fields
    ("1"+"11" == "11"+"1"); integers joined by "_" stay unique whatever the padding.
    """
    m = NAME_RULE.match(basename)
    if not m:
        return None
    pid, cam, clothes = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if cam < 1:
        return None
    return pid, cam - 1, f"{pid}_{clothes}"


def filter_cameras(records: Iterable[Record], raw_cams: Iterable[int] | None) -> list[Record]:
    """Records whose raw camera number (camid + 1) is in `raw_cams`; all of them when `raw_cams` is None.

    Apply it to query and gallery only (see `EVAL_PRESETS`); filtering train changes what the model sees.
    """
    if raw_cams is None:
        return list(records)
    keep = {c - 1 for c in raw_cams}
    return [r for r in records if r.camid in keep]


class VCClothes(FlatDataset):
    name = "vcclothes"
    dirname = "VC-Clothes"
    splits = ("train", "query", "gallery")
    required = ("train", "query", "gallery")
    split_folders: ClassVar[dict[str, str]] = {"train": "train", "query": "query", "gallery": "gallery"}
    name_pattern = NAME_PATTERN
    parse_name = staticmethod(parse_name)
    release_layout = ReleaseLayout(("train",), f"train/{NAME_PATTERN}.png")
    layout = """
VC-Clothes/
  train/<pid>-<cam>-<clothes>-<frame>.jpg
  query/<pid>-<cam>-<clothes>-<frame>.jpg
  gallery/<pid>-<cam>-<clothes>-<frame>.jpg
"""
    stats: ClassVar[dict[str, SplitStats]] = {
        "train": SplitStats(images=9449, ids=256, cameras=4, note="unconfirmed"),
        "query": SplitStats(images=1020, cameras=4, note="unconfirmed"),
        "gallery": SplitStats(images=8591, cameras=4, note="unconfirmed"),
    }
    obtain = "VC-Clothes is licence-gated: request it from the authors (https://wanfb.github.io/dataset.html)."
    citation = (
        "@inproceedings{wan2020vcclothes, title={When Person Re-identification Meets Changing Clothes}, "
        "author={Wan, Fangbin and Wu, Yang and Qian, Xuelin and Chen, Yixiong and Fu, Yanwei}, "
        "booktitle={CVPR Workshops}, year={2020}}"
    )
