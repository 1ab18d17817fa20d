"""CLIP3DReID's zero-shot body-shape labelling with any transformers CLIP (`--body-shape MODEL`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.errors import UserError
from dlcr_data.pretrained import default_device, default_dtype, load_clip, load_pretrained, pooled_features
from dlcr_data.progress import quiet_library_warnings
from dlcr_data.vocab.body_shapes import BODY_SHAPE_WORDS, PROMPT_TEMPLATE, shape_text_embeddings, unit

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"  # CLIP3DReID's teacher (ViT-L/14); never downloaded here
MODEL_OPTION = "--body-shape"


def _pad_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Letterbox to a square, as CLIP3DReID pads crops to 224x224: CLIP's centre crop would cut a 1:2 pedestrian
    crop's head and feet off, exactly the extremities that leg and torso words depend on."""
    image = image.convert("RGB")
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


class ClipShapeScorer(Backend):
    """CLIP3DReID's zero-shot labelling: cosine of each image to one prompt per SHAPY word.

    Normalisation: a softmax over the 21 prompts (CLIP's zero-shot classifier) spreads one unit of probability
    over words that are not mutually exclusive, so every word scores ~1/21 and nothing reads as "applies". Each
    word instead gets

        score_w = sigmoid(t * (cos_w - mean_v cos_v)) = p_w / (p_w + geomean_v p_v),

    with p the softmax at temperature 1/t: the word's probability against a typical word of the vocabulary. It
    is > 0.5 when the image matches the word better than it matches the vocabulary on average, independent of
    the other words' scores except through that mean, and the shared template's bias cancels. `temperature`
    is t; None uses the model's learned logit scale (100 for OpenAI CLIP, so a cosine margin of 0.02 gives 0.88).

    Images are letterboxed to squares with the processor's mean colour (which normalises to zero) before the
    processor; batches of `batch_size`; bf16 on GPU, fp32 on CPU. Garment maps are not used.
    """

    name = "clip"  # any `--body-shape` value but "geometry": a CLIP model
    default_model = DEFAULT_CLIP_MODEL
    model_option = MODEL_OPTION

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 32,
        template: str = PROMPT_TEMPLATE,
        temperature: float | None = None,
        revision: str | None = None,
        option: str = MODEL_OPTION,
    ) -> None:
        quiet_library_warnings()
        from transformers import AutoProcessor

        if "{word}" not in template:
            raise UserError(f"body-shape prompt template {template!r} has no {{word}} placeholder")
        self.model_id = model
        self.method = f"clip:{model}"
        self.device = device or default_device()
        self.dtype = default_dtype(self.device)
        self.batch_size = max(1, batch_size)
        self.template = template
        rev = {"revision": revision} if revision else {}
        net = load_clip(model, option, dtype=self.dtype, **rev)  # first: a non-CLIP model gets the clearer error
        self.processor = load_pretrained(AutoProcessor.from_pretrained, model, option, **rev)
        self.model = net.to(self.device).eval()
        self.temperature = float(self.model.logit_scale.detach().exp()) if temperature is None else float(temperature)
        mean = getattr(getattr(self.processor, "image_processor", None), "image_mean", None) or (0.5, 0.5, 0.5)
        self._fill = tuple(round(255 * m) for m in mean)
        self.text_embeddings = shape_text_embeddings(self.model, self.processor, BODY_SHAPE_WORDS, template)

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> ClipShapeScorer:
        return cls(opts.body_shape or cls.default_model)

    def similarities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 21) float32 cosines of each image to each word's prompt."""
        import torch

        out = np.zeros((len(images), len(BODY_SHAPE_WORDS)), np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = [_pad_square(im, self._fill) for im in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
                cos = unit(pooled_features(feats)) @ self.text_embeddings.T
            out[start : start + len(batch)] = cos.cpu().numpy()
        return out

    def score(self, images: Sequence[Image.Image], garment_maps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        cos = self.similarities(images).astype(np.float64)
        margin = self.temperature * (cos - cos.mean(axis=1, keepdims=True))
        return (1.0 / (1.0 + np.exp(-margin))).astype(np.float32)
