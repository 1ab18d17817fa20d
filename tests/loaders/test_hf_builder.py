"""The HF builder turns any loader's records into a DatasetDict with an Image feature."""

from __future__ import annotations

import datasets
import pytest
from fixtures import WRITERS

from dlcr_data import load_source, loaders
from dlcr_data.errors import DatasetNotFound
from dlcr_data.loaders.hf_builder import CCReIDSource


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_round_trip_matches_loader(tmp_path, name):
    fx = WRITERS[name](tmp_path / "raw")
    ds = load_source(name, fx.root, cache_dir=tmp_path / "cache")
    loaded = loaders.load(name, fx.root, verify_images=True)

    assert isinstance(ds, datasets.DatasetDict)
    assert set(ds) == {split for split, recs in loaded.items() if recs}
    for split, recs in loaded.items():
        rows = ds[split]
        assert rows.features["image"] == datasets.Image()
        assert rows.num_rows == len(recs)
        assert rows["key"] == [r.key for r in recs]
        assert rows["pid"] == [r.pid for r in recs]
        assert rows["camid"] == [r.camid for r in recs]
        assert rows["clothes_id"] == [r.clothes_id for r in recs]
        assert rows["frames"] == [list(r.frames) for r in recs]
        image = rows[0]["image"]  # decodes: corrupt files were dropped before they reached the Image feature
        assert image.size == (8, 16)


def test_corrupt_images_are_not_in_the_dataset(tmp_path):
    fx = WRITERS["ltcc"](tmp_path / "raw")
    ds = load_source("ltcc", fx.root, cache_dir=tmp_path / "cache")
    paths = {p for split in ds.values() for p in split["path"]}
    assert fx.corrupt and not paths & set(fx.corrupt)
    for split in ds.values():
        for row in split:  # every image decodes
            row["image"].load()


def test_one_config_per_dataset():
    names = [c.name for c in CCReIDSource.BUILDER_CONFIGS]
    assert names == list(loaders.DATASETS)


def test_missing_root_fails_before_preparing(tmp_path):
    with pytest.raises(DatasetNotFound, match="LTCC_ReID"):
        load_source("ltcc", tmp_path / "nope", cache_dir=tmp_path / "cache")
