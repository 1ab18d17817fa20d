"""What every generator takes and returns: one request per (source image, target outfit), composited outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass
class GenerationRequest:
    """One source image and the outfit it should wear; `mask` is already dilated by the caller."""

    key: str
    image: Image.Image  # RGB source
    garment_map: np.ndarray  # uint8 canonical class ids (`garments.CLASSES`), same H x W as `image`
    mask: np.ndarray  # bool H x W: where the outfit may change
    prompt: str
    negative_prompt: str
    target_text: str  # "top | bottom | shoes", e.g. "red striped long-sleeve shirt | black trousers | white shoes"
    seed: int
    # The appearance provider: a training image wearing the target outfit (for generators with `needs_donor`).
    donor_image: Image.Image | None = None
    donor_garment_map: np.ndarray | None = None  # canonical class ids, same H x W as `donor_image`
    # The plan row's exact keys, for generators that look the source and the target up (`render`).
    source_path: str = ""  # the source image's `Record.path` (relative to the dataset root)
    target_clothes_id: str = ""


@runtime_checkable
class Generator(Protocol):
    """Turns a batch of requests into images of the sources' sizes, identical to the sources outside the masks."""

    name: str
    model_id: str | None  # the model reference used (recorded in the manifest); None for model-free generators
    needs_donor: bool  # True: every request carries `donor_image` and `donor_garment_map`

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]: ...
