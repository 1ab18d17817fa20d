"""Body-shape annotation (CLIP3DReID): per-image scores over the SHAPY body-shape words.

Vocabulary: the union of SHAPY's female and male 15-word attribute lists (muelea/shapy,
`attributes/attributes/utils/constants.py`), 21 words, in this fixed order; a sample's `body_shape_scores` follows it.
Re-ID photos carry no gender label, so both lists are scored.
"""

from __future__ import annotations

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
