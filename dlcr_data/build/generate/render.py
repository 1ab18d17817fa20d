"""The demo's oracle generator: the demo's own renderer redraws each source in its target outfit.

Not a method to use on real data but an upper bound: the demo knows every outfit's garment types, colours and
patterns, so `render` draws the source's person, pose, camera, background, light and sensor noise wearing exactly
the plan row's target outfit (looked up by its clothes id, never read back from the outfit text), and the usual mask
compositing keeps every pixel outside the source's mask. What any other generator gives the trainer is at most this.
A variant is a pure function of the demo's seeded config, the source shot and the target outfit (the request's seed
is not needed: the demo's own seeds fix the pose, background and noise), so builds are byte-identical.

Only datasets that can redraw their own images (`renders_outfits`: the demo) take it; the others are refused when
the backends are chosen, before any work. With the default clothing mask the garment *shape* stays the source's (a
skirt's bare legs are skin, outside the mask); `--mask-classes ...,skin` lets the target's shape in (trousers over
the legs, long sleeves over the arms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.backends import Backend
from dlcr_data.build.generate.base import GenerationRequest
from dlcr_data.build.generate.composite import composite
from dlcr_data.errors import UserError

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

Redraw = Callable[[str, str], np.ndarray]  # (source path, target clothes id) -> RGB uint8 HxWx3


class RenderGenerator(Backend):
    """Redraws each request's source (`source_path`) in its target outfit (`target_clothes_id`), inside the mask."""

    name = "render"
    model_id: str | None = None
    needs_donor = False

    def __init__(self, redraw: Redraw) -> None:
        self.redraw = redraw

    @classmethod
    def check_dataset(cls, spec: SourceDataset) -> None:
        if not spec.renders_outfits:
            able = ", ".join(name for name, d in loaders.DATASETS.items() if d.renders_outfits)
            raise UserError(
                f"--generator render cannot build {spec.name}: it is the oracle of datasets that redraw their own "
                f"synthetic people ({able}); for {spec.name} use --generator recolor, clone, swap or diffusion"
            )

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> RenderGenerator:
        cls.check_dataset(spec)
        return cls(spec.outfit_renderer(spec.resolve_root(opts.root)))

    def render(self, request: GenerationRequest) -> Image.Image:
        if not request.source_path or not request.target_clothes_id:
            raise ValueError(f"{request.key}: render needs the request's source_path and target_clothes_id")
        drawn = Image.fromarray(self.redraw(request.source_path, request.target_clothes_id))
        if drawn.size != request.image.size:
            raise ValueError(f"{request.key}: the redrawn image is {drawn.size}, the source {request.image.size}")
        return composite(request.image, drawn, request.mask)

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [self.render(r) for r in batch]
