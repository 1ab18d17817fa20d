"""The `color` describer: no model, the median colour of each garment region, named from `vocab.colors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.describe.base import OutfitImages, OutfitText, no_models
from dlcr_data.vocab.colors import name_colour
from dlcr_data.vocab.garments import CLASS_ID

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset


class ColorDescriber(Backend):
    """No model: the median colour of each garment region over all images of the outfit, named from `colors`.

    Regions: top = upper + dress ("dress" when dress pixels dominate, else "top"), bottom = lower ("bottoms": the
    map does not tell trousers from skirts), shoes = shoes. A region absent from every image gets its bare noun
    (e.g. "shoes"): the colour is unknown, and `colors.find_colour` on it returns None.
    """

    name = "color"
    reads_images = True
    max_pixels = 4096  # per region and image: a strided sample is enough for a median

    def __init__(self) -> None:
        self.models: dict[str, str] = {}

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> ColorDescriber:
        no_models(cls.name, opts)
        return cls()

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        return [self.describe_one(o) for o in outfits]

    def describe_one(self, outfit: OutfitImages) -> OutfitText:
        upper, dress, lower, shoes = ([] for _ in range(4))
        for image, garment_map in zip(outfit.images, outfit.garment_maps, strict=True):
            rgb, labels = np.asarray(image.convert("RGB")), _fit_map(garment_map, image)
            for pixels, cls in ((upper, "upper"), (dress, "dress"), (lower, "lower"), (shoes, "shoes")):
                region = rgb[labels == CLASS_ID[cls]]
                pixels.append(region[:: max(1, len(region) // self.max_pixels)])
        n_dress, n_upper = sum(map(len, dress)), sum(map(len, upper))
        top = _name_region([*upper, *dress], "dress" if n_dress > n_upper else "top")
        return OutfitText(
            outfit.clothes_id,
            outfit.pid,
            top,
            _name_region(lower, "bottoms"),
            _name_region(shoes, "shoes"),
            describer=self.name,
            models={},
        )


def _fit_map(garment_map: np.ndarray, image: Image.Image) -> np.ndarray:
    """The map at the image's size (a parser may have stored it at another size; nearest keeps class ids)."""
    garment_map = np.asarray(garment_map, np.uint8)
    if garment_map.shape == (image.height, image.width):
        return garment_map
    return np.asarray(Image.fromarray(garment_map).resize(image.size, Image.Resampling.NEAREST))


def _name_region(pixels: list[np.ndarray], noun: str) -> str:
    stacked = np.concatenate([p.reshape(-1, 3) for p in pixels]) if pixels else np.empty((0, 3))
    if not len(stacked):
        return noun
    return f"{name_colour(np.median(stacked, axis=0))} {noun}"
