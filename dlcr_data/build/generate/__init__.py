"""Generators: turn (source image, garment mask, target outfit) requests into composited outfit variants.

`GENERATORS` maps `--generator` names to classes; a class declares `needs_donor` (and its model) without being
built, so listing them imports no torch or diffusers. The generate stage itself is `generate.stage.run`.
"""

from __future__ import annotations

from dlcr_data.build.generate.base import GenerationRequest, Generator
from dlcr_data.build.generate.clone import CloneGenerator
from dlcr_data.build.generate.composite import composite
from dlcr_data.build.generate.diffusion import DiffusionGenerator
from dlcr_data.build.generate.recolor import RecolorGenerator
from dlcr_data.build.generate.render import RenderGenerator
from dlcr_data.build.generate.swap import SwapGenerator

GENERATORS: dict[str, type[Generator]] = {
    cls.name: cls for cls in (DiffusionGenerator, RecolorGenerator, CloneGenerator, SwapGenerator, RenderGenerator)
}

__all__ = ["GENERATORS", "GenerationRequest", "Generator", "composite"]
