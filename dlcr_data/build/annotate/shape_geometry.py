"""Body-shape words without a model: ratios measured on the garment map (`--body-shape geometry`).

For machines without CLIP weights. It reads only what a rescaled crop can show; the other words get `UNKNOWN`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.vocab.body_shapes import BODY_SHAPE_WORDS, WORD_INDEX
from dlcr_data.vocab.garments import CLASS_ID

UNKNOWN = 0.5  # a word the scorer cannot read: neither likely nor unlikely
GEOMETRY_METHOD = "geometry"
_UPPER, _DRESS, _LOWER, _SKIN = (CLASS_ID[c] for c in ("upper", "dress", "lower", "skin"))
_HEAD = tuple(CLASS_ID[c] for c in ("hair", "face", "hat"))

# word -> (measurement, reference, scale): score = sigmoid(±(value - reference) / scale), "-" for a thin/short
# word. Lengths and widths are fractions of the silhouette height. References are the medians of the demo's
# front/back views (whose proportions follow adult averages, e.g. shoulders ~0.25 of the stature); scales are
# about a quarter of the demo's 10-90% range, so ordinary bodies spread over ~0.1-0.9. Not fitted on real parses.
GEOMETRY_RULES: dict[str, tuple[str, float, float]] = {
    "Big": ("+area", 0.18, 0.015),  # silhouette area / height²: bulk, arms and legs included
    "Delicate Build": ("-area", 0.18, 0.015),
    "Petite": ("-area", 0.18, 0.015),  # the slender-frame half only: stature is lost in a rescaled crop
    "Broad Shoulders": ("+shoulder_width", 0.25, 0.02),  # widest row of top + skin below the collar, arms included
    "Pear Shaped": ("+hip_to_shoulder", 0.77, 0.08),  # hip width / shoulder width
    "Rectangular": ("+waist_to_frame", 0.90, 0.06),  # waist / mean(shoulder, hip): no waist definition
    "Slim Waist": ("-waist_to_frame", 0.90, 0.06),
    "Long Legs": ("+leg_length", 0.485, 0.02),  # hip line (hem of the top) to the feet
    "Long Torso": ("+torso_length", 0.335, 0.02),  # shoulder line to hip line
    "Long Neck": ("+neck_length", 0.03, 0.01),  # bare skin between the head and the top (unknown if none)
    "Skinny Arms": ("-arm_width", 0.044, 0.006),  # bare-arm skin runs between shoulder and hip (unknown if none)
    "Skinny Legs": ("-leg_width", 0.066, 0.008),  # runs of lower garment + skin on the shins
}
MEASURED_WORDS: tuple[str, ...] = tuple(w for w in BODY_SHAPE_WORDS if w in GEOMETRY_RULES)
UNMEASURED_WORDS: tuple[str, ...] = tuple(w for w in BODY_SHAPE_WORDS if w not in GEOMETRY_RULES)
MEASUREMENTS: tuple[str, ...] = (*dict.fromkeys(rule[0][1:] for rule in GEOMETRY_RULES.values()), "side_view")
# Below this shoulder width (fraction of the height) a crop is taken for a side view, and its width words are
# unknown: frontal shoulders span ~0.2-0.3 of the height, a profile ~0.1-0.17 (chest depth plus an arm).
SIDE_VIEW_SHOULDER_WIDTH = 0.185
# Widths that a profile does not show (and legs that overlap in it): unknown in a side view.
VIEW_DEPENDENT: frozenset[str] = frozenset({"area", "shoulder_width", "hip_to_shoulder", "waist_to_frame", "leg_width"})
MIN_HEIGHT_PX = 16  # a smaller silhouette is noise: every word unknown


def measure_shape(garment_map: np.ndarray) -> dict[str, float]:
    """Body ratios of one garment map (`garments.CLASS_ID`s); NaN for what the map does not show.

    Keys: `MEASUREMENTS`. Lengths and widths are fractions of the silhouette height (not the image height: crops
    are rescaled and the person need not fill them), so only proportions are measured, never stature.
    - hip line: first row below the shoulders where lower-garment pixels outnumber top pixels (the hem of the
      top, within a few % of the hip joint); none for a dress or a map without a lower garment.
    - shoulder line: first row whose top + skin extent reaches 90% of the widest row in the band just below the
      top's upper edge (a hood does not count); shoulder width is that widest row, arms included (deltoids).
    - hip / waist width: the run through the body axis of top + lower-garment pixels (bare arms and hands
      beside the body excluded), median over rows just below / above the hip line.
    """
    m = np.asarray(garment_map)
    out = dict.fromkeys(MEASUREMENTS, math.nan)
    sil = m != 0
    rows = np.flatnonzero(sil.any(axis=1))
    if len(rows) == 0 or rows[-1] - rows[0] + 1 < MIN_HEIGHT_PX:
        return out
    top, bottom = int(rows[0]), int(rows[-1])
    height = float(bottom - top + 1)
    m, sil = m[top : bottom + 1], sil[top : bottom + 1]  # row 0 = top of the head
    out["area"] = float(sil.sum()) / height**2

    upper = (m == _UPPER) | (m == _DRESS)
    lower, skin = m == _LOWER, m == _SKIN
    n_upper, n_lower = upper.sum(axis=1), lower.sum(axis=1)
    upper_rows = np.flatnonzero(n_upper)
    if len(upper_rows) == 0:
        return out
    # Shoulders: the widest top + skin row in a band below the top's upper edge (arms splay out further down).
    band = slice(int(upper_rows[0]), int(upper_rows[0] + max(2, round(0.1 * height))))
    extent = _extent(upper[band] | skin[band])
    shoulder_w = float(extent.max())
    shoulder_y = int(band.start + np.argmax(extent >= 0.9 * shoulder_w))
    out["shoulder_width"] = shoulder_w / height
    # A side view shows chest depth, not breadth: about half a frontal shoulder width.
    out["side_view"] = float(out["shoulder_width"] < SIDE_VIEW_SHOULDER_WIDTH)

    # Neck: bare skin above the shoulder line, between the head and the top, within the head's columns.
    head = np.isin(m[:shoulder_y], _HEAD)
    if head.any():
        cols = np.flatnonzero(head.any(axis=0))
        neck = skin[:shoulder_y, cols[0] : cols[-1] + 1].any(axis=1)
        if neck.any():
            out["neck_length"] = float(neck.sum()) / height

    # Hip line: where the lower garment takes over from the top, searched below the chest.
    start = shoulder_y + max(1, round(0.1 * height))
    takeover = np.flatnonzero((n_lower[start:] > 0) & (n_lower[start:] >= n_upper[start:]))
    if (m == _DRESS).sum() > (m == _UPPER).sum():
        takeover = takeover[:0]  # a dress hides the hips and the top of the legs
    if len(takeover):
        hip_y = start + int(takeover[0])
        out["leg_length"] = (bottom - top - hip_y + 1) / height
        out["torso_length"] = (hip_y - shoulder_y) / height
        torso = upper | lower
        axis = _axis(torso[hip_y : hip_y + max(2, round(0.05 * height))])
        hip_w = _central_width(torso[hip_y : hip_y + max(2, round(0.04 * height))], axis)
        waist_w = _central_width(torso[max(0, hip_y - round(0.1 * height)) : hip_y - round(0.03 * height)], axis)
        if hip_w > 0:
            out["hip_to_shoulder"] = hip_w / shoulder_w
            if waist_w > 0:
                out["waist_to_frame"] = waist_w / (0.5 * (shoulder_w + hip_w))
        # Shins: the lowest 40% of the legs above the shoes; trouser legs count (they follow the leg).
        leg_len = bottom - top - hip_y
        shins = slice(hip_y + round(0.55 * leg_len), max(hip_y + 1, bottom - top - round(0.06 * height)))
        out["leg_width"] = _run_width(lower[shins] | skin[shins]) / height
        arms = slice(shoulder_y + round(0.08 * height), hip_y)
        out["arm_width"] = _run_width(skin[arms]) / height
    return out


def _extent(rows: np.ndarray) -> np.ndarray:
    """Per row of a bool array: last True column - first True column + 1 (0 for an empty row)."""
    width = rows.shape[1]
    first = np.argmax(rows, axis=1)
    last = width - 1 - np.argmax(rows[:, ::-1], axis=1)
    return np.where(rows.any(axis=1), last - first + 1, 0)


def _axis(rows: np.ndarray) -> int:
    """The body axis column: the median column of the True pixels (the image centre when there are none)."""
    cols = np.nonzero(rows)[1]
    return int(np.median(cols)) if len(cols) else rows.shape[1] // 2


def _central_width(rows: np.ndarray, axis: int) -> float:
    """Median over rows of the length of the True run through column `axis` (0 where it is False)."""
    if rows.shape[0] == 0:
        return 0.0
    left = rows[:, axis::-1]  # from the axis leftwards
    right = rows[:, axis:]
    n_left = np.where(left.all(axis=1), left.shape[1], np.argmax(~left, axis=1))
    n_right = np.where(right.all(axis=1), right.shape[1], np.argmax(~right, axis=1))
    width = np.where(rows[:, axis], n_left + n_right - 1, 0)
    return float(np.median(width))


def _run_width(rows: np.ndarray) -> float:
    """Median over rows with any True pixel of (True pixels / runs of True): the typical limb width. NaN if fewer
    than 3 such rows."""
    if rows.shape[0] == 0:
        return math.nan
    starts = rows[:, 0].astype(np.int64) + (rows[:, 1:] & ~rows[:, :-1]).sum(axis=1)
    has = starts > 0
    if has.sum() < 3:
        return math.nan
    return float(np.median(rows.sum(axis=1)[has] / starts[has]))


def _logistic(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow


def geometry_scores(measurements: dict[str, float]) -> np.ndarray:
    """(21,) float32 word scores from `measure_shape`'s ratios; `UNKNOWN` for words without a measurement."""
    out = np.full(len(BODY_SHAPE_WORDS), UNKNOWN, np.float32)
    side = measurements.get("side_view") == 1.0
    for word, (key, reference, scale) in GEOMETRY_RULES.items():
        value = measurements.get(key[1:], math.nan)
        if not math.isnan(value) and not (side and key[1:] in VIEW_DEPENDENT):
            sign = 1.0 if key[0] == "+" else -1.0
            out[WORD_INDEX[word]] = _logistic(sign * (value - reference) / scale)
    return out


class GeometricShapeScorer(Backend):
    """No model: body ratios measured on the garment map, each mapped to a word by a logistic around a reference.

    Measured words (`MEASURED_WORDS`, rules in `GEOMETRY_RULES`): Big / Delicate Build / Petite (silhouette area
    over height², Petite only as "slender"), Broad Shoulders (shoulder width / height), Pear Shaped (hip /
    shoulder width), Rectangular / Slim Waist (waist / mean of shoulder and hip width), Long Legs (hip line to
    feet / height), Long Torso (shoulder line to hip line / height), Long Neck (bare neck skin / height), Skinny
    Arms (bare-arm width / height), Skinny Legs (shin width / height).
    Always `UNKNOWN` (`UNMEASURED_WORDS`): Tall and Short (crops are rescaled, so stature is lost), Average,
    Feminine, Masculine, Large Breasts, Muscular, Soft Body (not a matter of outline) and Short Arms (arms bend
    and swing). A measured word is also `UNKNOWN` in an image that does not show its part (no bare arms, a
    dress over the hips, no visible neck, no silhouette, widths in a side view). Images are not looked at.
    A measurement exactly at its reference also scores 0.5, read as unknown: it is no evidence either way.
    """

    name = GEOMETRY_METHOD
    method = GEOMETRY_METHOD

    def score(
        self, images: Sequence[Image.Image] | None, garment_maps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        if garment_maps is None:
            raise ValueError("the geometric body-shape scorer needs the garment maps")
        if images is not None and len(images) != len(garment_maps):
            raise ValueError(f"{len(images)} images but {len(garment_maps)} garment maps")
        out = np.full((len(garment_maps), len(BODY_SHAPE_WORDS)), UNKNOWN, np.float32)
        for i, garment_map in enumerate(garment_maps):
            out[i] = geometry_scores(measure_shape(garment_map))
        return out
