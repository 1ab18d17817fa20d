"""Going to and from the model resolution, and pasting generated pixels back only inside the mask.

Diffusion models repaint (and VAE-round-trip) the whole frame, so outside-mask pixels are restored from the
source here: DLCR composites through the binary mask (docs/dlcr-method.md §2.6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Placement:
    """Where the source sits inside the model-size frame: (left, top, right, bottom) in model pixels."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]  # model (W, H)


def to_model_size(
    image: Image.Image, mask: np.ndarray, size: tuple[int, int], pad: bool = False
) -> tuple[Image.Image, Image.Image, Placement]:
    """Resize `image` and `mask` to `size` (W, H); returns the model-size image, an "L" mask (255 = repaint) and
    the placement for `from_model_size`.

    `pad=False` stretches (DLCR ignores aspect, docs/dlcr-method.md §2.5). `pad=True` keeps the aspect ratio and
    letterboxes: the image is extended by edge replication (plausible context for the model), the mask with 0
    (never repainted).
    """
    w, h = size
    mask_img = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    if not pad:
        box = (0, 0, w, h)
        fit = (w, h)
    else:
        scale = min(w / image.width, h / image.height)
        fit = (max(1, min(w, round(image.width * scale))), max(1, min(h, round(image.height * scale))))
        left, top = (w - fit[0]) // 2, (h - fit[1]) // 2
        box = (left, top, left + fit[0], top + fit[1])
    img = np.asarray(image.convert("RGB").resize(fit, Image.Resampling.LANCZOS))
    # Bilinear + "any coverage" keeps thin mask parts that nearest-neighbour would drop when shrinking.
    m = (np.asarray(mask_img.resize(fit, Image.Resampling.BILINEAR)) > 0).astype(np.uint8) * 255
    if pad:
        pads = ((box[1], h - box[3]), (box[0], w - box[2]))
        img = np.pad(img, (*pads, (0, 0)), mode="edge")
        m = np.pad(m, pads, constant_values=0)
    return Image.fromarray(img), Image.fromarray(m), Placement(box, (w, h))


def from_model_size(generated: Image.Image, placement: Placement, size: tuple[int, int]) -> Image.Image:
    """Undo `to_model_size`: crop the letterbox away and resize to the source `size` (W, H)."""
    if generated.size != placement.size:  # a pipeline may round the size; map the box proportionally
        generated = generated.resize(placement.size, Image.Resampling.LANCZOS)
    if placement.box != (0, 0, *placement.size):
        generated = generated.crop(placement.box)
    return generated.resize(size, Image.Resampling.LANCZOS) if generated.size != size else generated


def composite(original: Image.Image, generated: Image.Image, mask: np.ndarray, feather: int = 0) -> Image.Image:
    """`generated` (resized to `original`'s size) inside `mask`, exactly `original` outside.

    `feather` > 0 blends softly near the mask border, but only inside it: outside stays bit-identical.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != (original.height, original.width):
        raise ValueError(f"mask shape {mask.shape} does not match image size {original.size} (W, H)")
    src = np.asarray(original.convert("RGB"))
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    gen = np.asarray(generated.convert("RGB"))
    if feather <= 0:
        out = np.where(mask[..., None], gen, src)
    else:
        soft = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(feather))
        alpha = (np.asarray(soft, np.float32) / 255.0 * mask)[..., None]  # zero outside the mask
        out = np.where(mask[..., None], np.rint(alpha * gen + (1 - alpha) * src), src).astype(np.uint8)
    return Image.fromarray(out.astype(np.uint8))
