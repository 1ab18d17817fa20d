"""Shared by the parse-stage tests (test_parse.py, test_label_map.py): the tiny demo, the parser a build would
use, random images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build import BuildOptions
from dlcr_data.build.backends import lookup
from dlcr_data.build.parse import PARSERS
from dlcr_data.demo import DemoConfig
from dlcr_data.demo.labels import ARMS, FACE, HAIR, LEGS, LOWER, SHOES, UPPER

TINY_DEMO = DemoConfig(num_ids=4, images_per_camera=1)
DEMO_TO_CLASS = {0: "background", HAIR: "hair", FACE: "face", UPPER: "upper", LOWER: "lower", SHOES: "shoes"}
DEMO_TO_CLASS |= {ARMS: "skin", LEGS: "skin"}


def parser_for(name: str, dataset: str, **options):
    """The parser a build with these options uses (registry lookup, then `from_options`)."""
    opts = BuildOptions(dataset, Path("out"), parser=name, **options)
    return lookup(PARSERS, name, "parser").from_options(opts, loaders.get(dataset))


def random_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
