"""Downstream use of a build: its variants with an index from each source image to its variants (for pairing)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Expanded:
    """The variants of one dataset split (a `datasets.Dataset`) and, per source key, the row indices of its
    variants in variant order."""

    dataset: object  # datasets.Dataset
    index: dict[str, list[int]] = field(default_factory=dict)
    metas: list[dict] = field(default_factory=list)  # the json member of every row, read once

    @property
    def source_keys(self) -> list[str]:
        return list(self.index)

    @property
    def image_column(self) -> str:
        """ "png" or "jpg": the build's `--image-format`."""
        return "png" if "png" in self.dataset.column_names else "jpg"

    def images(self, rows: list[int]) -> list:
        """The generated images (PIL) of `rows`, decoding neither masks nor metadata."""
        column = self.dataset.select_columns([self.image_column])
        return [column[i][self.image_column] for i in rows]

    def variants_of(self, source_key: str) -> list[dict]:
        return [self.dataset[i] for i in self.index.get(source_key, [])]

    def __len__(self) -> int:
        return len(self.dataset)


def load_expanded(path_or_repo: str | os.PathLike, dataset: str, split: str = "train", **kwargs) -> Expanded:
    """`load_dataset(path_or_repo, dataset, split=split)` (a local build or a Hub repo) plus the pairing index."""
    import datasets

    from dlcr_data.manifest import load_cache_dir

    cache_dir = load_cache_dir(Path(path_or_repo))
    if cache_dir is not None:
        kwargs.setdefault("cache_dir", str(cache_dir))
    ds = datasets.load_dataset(str(path_or_repo), dataset, split=split, **kwargs)
    metas = list(ds.select_columns(["json"])["json"])  # metadata only: no image is decoded
    order = sorted(range(len(metas)), key=lambda i: (metas[i]["source_key"], metas[i]["variant"]))
    index: dict[str, list[int]] = {}
    for i in order:
        index.setdefault(metas[i]["source_key"], []).append(i)
    return Expanded(ds, index, metas)
