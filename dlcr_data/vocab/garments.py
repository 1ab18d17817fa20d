"""Canonical garment classes shared by every parser, describer and generator.

A parser maps its model's own labels (LIP, ATR, a SegFormer's `id2label` ...) onto these classes by name, so the
rest of the pipeline never depends on one model's label set. Parse results are stored as uint8 maps of these ids.
"""

from __future__ import annotations

import re

CLASSES: tuple[str, ...] = (
    "background",
    "hair",
    "face",
    "skin",  # arms, legs, neck: the body, not clothing
    "upper",  # shirts, t-shirts, coats, jackets
    "lower",  # trousers, jeans, shorts, skirts
    "dress",  # dresses, jumpsuits (one piece)
    "shoes",  # shoes, boots, socks
    "accessories",  # bags, scarves, belts, gloves, sunglasses
    "hat",
)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# The three parts of an outfit text ("top | bottom | shoes") and the garment classes each part covers: the unit
# that recolouring, outfit cloning and appearance swapping work on.
OUTFIT_PARTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("top", (CLASS_ID["upper"], CLASS_ID["dress"])),
    ("bottom", (CLASS_ID["lower"],)),
    ("shoes", (CLASS_ID["shoes"],)),
)
OUTFIT_CLASSES: tuple[int, ...] = tuple(c for _, classes in OUTFIT_PARTS for c in classes)  # any outfit part

# DLCR's SCHP mask: every clothing item and shoes; hair, face, skin and hats stay (docs/dlcr-method.md §2.3).
DEFAULT_MASK_CLASSES: tuple[str, ...] = ("upper", "lower", "dress", "shoes", "accessories")

# First matching rule wins; matched against the lower-cased label name with separators turned into spaces.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"background|^bg$|null", "background"),
    (r"sunglass|glasses|glove|scarf|belt|bag|purse|tie|accessor", "accessories"),
    (r"\bhat\b|\bcap\b|helmet|headwear", "hat"),
    (r"hair", "hair"),
    (r"face|head", "face"),
    (r"dress|jumpsuit|romper", "dress"),
    (r"shoe|boot|sock|footwear|sneaker", "shoes"),
    (r"upper|coat|jacket|shirt|top|sweater|hoodie|blouse|vest|cardigan", "upper"),
    (r"pant|trouser|jean|short|skirt|lower|legging", "lower"),
    (r"arm|leg|hand|foot|neck|skin|torso|body", "skin"),
)


def canonical_class(label_name: str) -> str | None:
    """`"Left-shoe"` -> `"shoes"`, `"Upper-clothes"` -> `"upper"`; None when no rule matches."""
    name = re.sub(r"[-_]+", " ", label_name.strip().lower())
    for pattern, cls in _NAME_RULES:
        if re.search(pattern, name):
            return cls
    return None


def check_classes(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate user-given class names (e.g. `--mask-classes upper,lower`)."""
    unknown = [n for n in names if n not in CLASS_ID]
    if unknown:
        from dlcr_data.errors import UserError

        raise UserError(f"unknown garment class(es) {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
    return tuple(names)
