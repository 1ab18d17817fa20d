"""Source datasets: one module per dataset, a registry by name, and `load(name, root)`."""

from __future__ import annotations

import os

from dlcr_data.errors import UserError
from dlcr_data.loaders.base import Loaded, ReleaseLayout, SourceDataset, SplitStats, default_data_root
from dlcr_data.loaders.ccvid import CCVID
from dlcr_data.loaders.demo import Demo
from dlcr_data.loaders.last import LaST
from dlcr_data.loaders.ltcc import LTCC
from dlcr_data.loaders.prcc import PRCC
from dlcr_data.loaders.vcclothes import VCClothes

DATASETS: dict[str, type[SourceDataset]] = {d.name: d for d in (PRCC, LTCC, VCClothes, CCVID, LaST, Demo)}


def get(name: str) -> SourceDataset:
    """The dataset module registered as `name` (case-insensitive)."""
    cls = DATASETS.get(name.lower())
    if cls is None:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return cls()


def load(name: str, root: str | os.PathLike | None = None, *, verify_images: bool = False) -> Loaded:
    """Load every split of dataset `name` from `root` (default: `$DLCR_DATA_ROOT/<dirname>`)."""
    return get(name).load(root, verify_images=verify_images)


__all__ = ["DATASETS", "Loaded", "ReleaseLayout", "SourceDataset", "SplitStats", "default_data_root", "get", "load"]
