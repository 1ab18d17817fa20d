"""Body-shape words (CLIP3DReID): the SHAPY vocabulary, its prompt and its CLIP text embeddings.

Shared by the build (per-image scores, `dlcr_data.build.annotate.body_shape`) and the trainer (`--shape-ot` aligns
local features to these words' text embeddings). Vocabulary: the union of SHAPY's female and male 15-word
attribute lists (muelea/shapy, `attributes/attributes/utils/constants.py`), 21 words, in this fixed order; a
sample's `body_shape_scores` follows it. Re-ID photos carry no gender label, so both lists are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dlcr_data.pretrained import pooled_features

if TYPE_CHECKING:
    import torch

SHAPY_FEMALE: tuple[str, ...] = (
    "Big", "Broad Shoulders", "Feminine", "Large Breasts", "Long Legs", "Long Neck", "Long Torso", "Muscular",
    "Pear Shaped", "Petite", "Short", "Short Arms", "Skinny Legs", "Slim Waist", "Tall",
)  # fmt: skip
SHAPY_MALE: tuple[str, ...] = (
    "Average", "Big", "Broad Shoulders", "Delicate Build", "Long Legs", "Long Neck", "Long Torso", "Masculine",
    "Muscular", "Rectangular", "Short", "Short Arms", "Skinny Arms", "Soft Body", "Tall",
)  # fmt: skip
BODY_SHAPE_WORDS: tuple[str, ...] = tuple(sorted(set(SHAPY_FEMALE) | set(SHAPY_MALE)))
VOCABULARY = "shapy-21"  # recorded with every score vector
PROMPT_TEMPLATE = "a photo of a person with a {word} body shape"
WORD_INDEX: dict[str, int] = {w: i for i, w in enumerate(BODY_SHAPE_WORDS)}


def shape_text_embeddings(
    model, processor, words: Sequence[str] = BODY_SHAPE_WORDS, template: str = PROMPT_TEMPLATE
) -> torch.Tensor:
    """L2-normalised CLIP text embeddings of `template.format(word=w)` per word: (len(words), D) float32.

    `model` is a transformers `CLIPModel` (anything with `get_text_features`), `processor` its `CLIPProcessor` or
    tokenizer. The tensor lives on the model's device and is made under `no_grad`, not `inference_mode`, so it can
    serve as a fixed target in a training graph (e.g. optimal-transport alignment to body-shape descriptors).
    """
    import torch

    prompts = [template.format(word=w) for w in words]
    tokens = processor(text=prompts, padding=True, truncation=True, return_tensors="pt")
    device = next(model.parameters()).device
    tokens = {k: v.to(device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model.get_text_features(**tokens)
    return unit(pooled_features(out)).float()


def unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / x.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
