"""Canonical garment classes shared by every parser, describer and generator.

A parser maps its model's own labels (LIP, ATR, a SegFormer's `id2label` ...) onto these classes by name, so the
rest of the pipeline never depends on one model's label set. Parse results are stored as uint8 maps of these ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

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

# First matching rule wins; matched against the lower-cased label name, separators and camelCase turned into spaces
# ("Left-arm", "left_arm" and "leftArm" all read "left arm"). Body parts come before garments, so that Pascal-Person-
# Part's "Upper Arms" and "Lower Legs" are skin, not upper and lower clothing; "skin" comes first so that VIP's and
# CCIHP's "Torso-skin" is skin while Pascal's bare "Torso" is clothing. tests/build/test_parse.py pins the class of
# every label of LIP, ATR, CIHP, Pascal-Person-Part and mattmdjaga/segformer_b2_clothes; `--label-map` overrides.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"background|^bg$|null", "background"),
    (r"skin|\barms?\b|\blegs?\b|\bhands?\b|\bfoot\b|\bfeet\b|\bneck\b|\bbody\b", "skin"),
    (r"sunglass|glasses|glove|scarf|belt|bag|purse|\btie\b|accessor", "accessories"),
    (r"\bhat\b|\bcap\b|helmet|headwear", "hat"),
    (r"hair", "hair"),
    (r"face|head", "face"),
    (r"dress|jumpsuit|romper", "dress"),
    (r"shoe|boot|sock|footwear|sneaker", "shoes"),
    # A body-part model's "Torso" is the clothed trunk in nearly every re-ID image (a bare torso is rare): clothing,
    # so the top is repainted; bare limbs are common (short sleeves, shorts, skirts), so arms and legs stay skin.
    (r"upper|coat|jacket|shirt|\btop|sweater|hoodie|blouse|vest|cardigan|torso", "upper"),
    (r"pant|trouser|jean|short|skirt|lower|legging", "lower"),
)


def canonical_class(label_name: str) -> str | None:
    """`"Left-shoe"` -> `"shoes"`, `"Upper-clothes"` -> `"upper"`, `"Upper Arms"` -> `"skin"`; None when no rule
    matches."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label_name.strip())  # camelCase: "leftShoe" -> "left Shoe"
    name = re.sub(r"[-_\s]+", " ", spaced.lower())
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


def labels_by_class(label_map: Mapping[str, str | None]) -> list[tuple[str | None, list[str]]]:
    """A label map as (class, its labels) in `CLASSES` order, then (None, the labels without a class): how the
    build prints it and the card shows it."""
    rows = [(cls, [label for label, c in label_map.items() if c == cls]) for cls in (*CLASSES, None)]
    return [(cls, labels) for cls, labels in rows if labels]


LABEL_MAP_FORMAT = '{"model label": "garment class" or null}'


def read_label_map(ref: str) -> dict[str, str | None]:
    """A `--label-map`: a JSON file (or the JSON text itself, as a build config records it) of model label -> class.

    `null` means no garment class: the label is painted as background (and not warned about). The one-line
    UserError says what is wrong, where, and the expected form.
    """
    from dlcr_data.errors import UserError

    text, where = ref, "--label-map"
    if not ref.lstrip().startswith("{"):  # a path (the CLI's form); "{...}" is the content itself
        where = f"--label-map {ref}"
        try:
            text = Path(ref).expanduser().read_text()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UserError(f"{where}: cannot read the file ({reason}); pass a JSON file {LABEL_MAP_FORMAT}") from None
    try:
        mapping = json.loads(text)
    except ValueError as err:
        raise UserError(f"{where}: not valid JSON ({err}); write one object {LABEL_MAP_FORMAT}") from None
    if not isinstance(mapping, dict):
        raise UserError(f"{where}: expected one JSON object {LABEL_MAP_FORMAT}, not a {type(mapping).__name__}")
    for label, cls in mapping.items():
        if cls is not None and (not isinstance(cls, str) or cls not in CLASS_ID):
            raise UserError(
                f"{where}: label {label!r} has unknown class {cls!r}; choose from {', '.join(CLASSES)}, or null"
            )
    return mapping
