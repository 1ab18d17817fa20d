"""A `datasets` builder over the loaders: any source dataset as a `DatasetDict` with an `Image` feature.

One builder config per registered dataset; the raw root is passed as `data_dir`. Records come from the same loader
code the rest of the toolkit uses, so the HF view and the toolkit's view never disagree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import datasets

from dlcr_data.loaders import DATASETS, get
from dlcr_data.records import Record, source_features


class SourceConfig(datasets.BuilderConfig):
    """One config per dataset; `verify_images` drops unreadable files before they reach the Image feature."""

    def __init__(self, *args, verify_images: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.verify_images = verify_images


class CCReIDSource(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = SourceConfig
    BUILDER_CONFIGS: ClassVar[list[SourceConfig]] = [
        SourceConfig(name=name, version=datasets.Version("1.0.0"), description=f"{name} source images")
        for name in DATASETS
    ]

    def _info(self) -> datasets.DatasetInfo:
        spec = get(self.config.name)
        return datasets.DatasetInfo(
            description=f"{spec.name}: source images and labels read by dlcr-data",
            features=source_features(),
            citation=spec.citation,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        spec = get(self.config.name)
        loaded = spec.load(dl_manager.manual_dir or self.config.data_dir, verify_images=self.config.verify_images)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"root": str(loaded.root), "records": records})
            for split, records in loaded.items()
            if records  # datasets cannot hold an empty split
        ]

    def _generate_examples(self, root: str, records: list[Record]):
        for r in records:
            image = Path(root) / (r.frames[0] if r.frames else r.path)
            yield r.key, {"image": str(image), **r.to_dict()}


def load_source(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verify_images: bool = True,
    force: bool = False,
) -> datasets.DatasetDict:
    """Dataset `name` under `root` as a `DatasetDict` (one split per loader split), prepared in the HF cache."""
    resolved = get(name).resolve_root(root)  # fail early with the dataset's own message; renders the demo
    builder = CCReIDSource(
        config_name=name.lower(),
        data_dir=str(resolved),
        cache_dir=str(cache_dir) if cache_dir else None,
        verify_images=verify_images,
    )
    mode = datasets.DownloadMode.FORCE_REDOWNLOAD if force else None
    builder.download_and_prepare(download_mode=mode)
    return builder.as_dataset()
