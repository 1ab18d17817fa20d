"""Drawing one person as a label map, with PIL primitives on a supersampled canvas.

Besides the label map, a second 8-bit "shade" layer records lighting detail that has no label of its own: far
limbs in side view are darker, eyes and a jacket's zip are dark marks on their label. Geometry is in canvas
pixels; `hp` (the figure height) sets every length, so proportions are independent of camera scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from dlcr_data.demo.identity import Outfit, Traits
from dlcr_data.demo.labels import ARMS, FACE, HAIR, LEGS, LOWER, SHOES, UPPER

FAR_SHADE = 185  # far-side limbs in side view


class Canvas:
    """A label layer and a shade layer drawn in lockstep."""

    def __init__(self, width: int, height: int) -> None:
        self.labels = Image.new("L", (width, height), 0)
        self.shade = Image.new("L", (width, height), 255)
        self._lab = ImageDraw.Draw(self.labels)
        self._sh = ImageDraw.Draw(self.shade)
        self.tone = 255  # shade value given to what is drawn next

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, label: int) -> None:
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        self._lab.ellipse(box, fill=label)
        self._sh.ellipse(box, fill=self.tone)

    def polygon(self, points: list[tuple[float, float]], label: int) -> None:
        self._lab.polygon(points, fill=label)
        self._sh.polygon(points, fill=self.tone)

    def chord(self, box: tuple[float, float, float, float], label: int) -> None:
        """Upper half of the ellipse in `box`."""
        self._lab.chord(box, 180, 360, fill=label)
        self._sh.chord(box, 180, 360, fill=self.tone)

    def limb(self, p0: tuple[float, float], p1: tuple[float, float], width: float, label: int) -> None:
        """A thick segment with round ends."""
        w = max(1, round(width))
        self._lab.line([p0, p1], fill=label, width=w)
        self._sh.line([p0, p1], fill=self.tone, width=w)
        for x, y in (p0, p1):
            self.ellipse(x, y, width / 2, width / 2, label)

    def mark(self, points: list[tuple[float, float]], width: float, tone: int) -> None:
        """Darken pixels without changing their label (eyes, zips)."""
        self._sh.line(points, fill=tone, width=max(1, round(width)))


@dataclass(frozen=True)
class Pose:
    view: str  # "front", "back" or "side"
    facing: int  # side view: +1 walks right, -1 left
    phase: float  # walking cycle, radians
    cx: float  # body centre x on the canvas
    y_feet: float
    hp: float  # figure height in canvas pixels


def _add(p: tuple[float, float], length: float, angle: float, sign: float = 1.0) -> tuple[float, float]:
    """Point `length` away from p, `angle` radians off straight down, tilted towards x sign."""
    return p[0] + sign * length * math.sin(angle), p[1] + length * math.cos(angle)


def draw_person(cv: Canvas, t: Traits, o: Outfit, pose: Pose) -> tuple[float, float]:
    """Draw the figure; returns (centre x, shoulder y) for the garment shading."""
    hp, side = pose.hp, pose.view == "side"
    d = pose.facing
    ry = t.head * hp / 2
    rx = ry * (0.72 if side else 0.8)
    thigh_w, shin_w = 0.078 * t.limb * hp, 0.058 * t.limb * hp
    arm_w, fore_w = 0.05 * t.limb * hp, 0.042 * t.limb * hp
    leg_len = t.legs * hp - 0.035 * hp  # hip to ankle
    thigh, shin = 0.5 * leg_len, 0.5 * leg_len

    # Legs first (relative to the hip), so a bent stance can drop the body onto the floor.
    legs = []  # (hip offset x, knee, ankle, is_far); knee and ankle relative to the hip joint
    if side:
        for k, far in ((1.0, True), (-1.0, False)):
            theta = k * t.stride * math.sin(pose.phase)
            bend = 0.15 + 0.6 * max(0.0, -theta)  # the trailing leg bends at the knee
            knee = _add((0.0, 0.0), thigh, theta, d)
            legs.append((0.0, knee, _add(knee, shin, theta - bend, d), far))
    else:
        for s in (-1.0, 1.0):
            lift = max(0.0, math.sin(pose.phase + (0 if s < 0 else math.pi))) * t.stride * 0.22 * leg_len
            hx = s * t.hips * hp * 0.5
            legs.append((hx, (s * 0.01 * hp, thigh - lift * 0.3), (s * 0.02 * hp, leg_len - lift), False))
    drop = leg_len - max(ankle[1] for _, _, ankle, _ in legs)  # the lower foot stands on the floor
    y_ankle = pose.y_feet - 0.035 * hp
    y_hip = y_ankle - leg_len + drop
    y_top = pose.y_feet - hp + drop
    lean = t.lean * d if side else 0.0

    def x_at(y: float) -> float:  # body axis x at height y (side view leans forward)
        return pose.cx + lean * (pose.y_feet - y)

    cy_head = y_top + ry
    y_sh = y_top + 2 * ry + 0.035 * hp
    y_waist = max(y_hip - 0.065 * hp, y_sh + 0.16 * hp)
    depth = 0.58 if side else 1.0
    sw, hw = t.shoulders * hp * depth, t.hips * hp * depth
    ww = 0.42 * (sw + hw)
    hx0, hx_shoulder = x_at(y_hip), x_at(y_sh)

    # -- legs, lower garment, shoes --------------------------------------------------------------------
    exposed = o.bottom in ("shorts", "skirt")
    ankles = []
    for hx, knee, ankle, far in sorted(legs, key=lambda leg: not leg[3]):  # far leg first
        cv.tone = FAR_SHADE if far else 255
        hip = (hx0 + hx, y_hip)
        k = (hip[0] + knee[0], y_hip + knee[1])
        a = (hip[0] + ankle[0], y_hip + ankle[1])
        ankles.append(a)
        if exposed:
            cv.limb(hip, k, thigh_w, LEGS)
            cv.limb(k, a, shin_w, LEGS)
            if o.bottom == "shorts":
                cv.limb(hip, ((hip[0] + 3 * k[0]) / 4, (hip[1] + 3 * k[1]) / 4), thigh_w * 1.25, LOWER)
        else:
            cv.limb(hip, k, thigh_w * 1.12, LOWER)
            cv.limb(k, a, shin_w * 1.3, LOWER)
        cv.ellipse(
            a[0] + (d * 0.028 * hp if side else 0),
            a[1] + 0.014 * hp,
            (0.055 if side else 0.038) * hp * t.limb**0.5,
            0.027 * hp,
            SHOES,
        )
    cv.tone = 255
    crotch = y_hip + 0.05 * hp
    cv.polygon(
        [
            (x_at(y_waist) - ww, y_waist),
            (x_at(y_waist) + ww, y_waist),
            (hx0 + hw, y_hip),
            (hx0 + hw * 0.8, crotch),
            (hx0 - hw * 0.8, crotch),
            (hx0 - hw, y_hip),
        ],
        LOWER,
    )
    if o.bottom == "skirt":
        y_hem = y_hip + 0.42 * leg_len
        flare = hw * 1.45 + (0.3 * abs(ankles[0][0] - ankles[1][0]) if side else 0)
        cv.polygon(
            [(x_at(y_waist) - ww, y_waist), (x_at(y_waist) + ww, y_waist), (hx0 + flare, y_hem), (hx0 - flare, y_hem)],
            LOWER,
        )

    # -- arms behind the torso (far arm in side view) ------------------------------------------------------
    arms = _arm_chains(t, pose, hx_shoulder, y_sh, sw, arm_w, hp)
    for chain, far in arms:
        if far:
            cv.tone = FAR_SHADE
            _draw_arm(cv, chain, o, arm_w, fore_w)
            cv.tone = 255

    # -- torso (top garment) ---------------------------------------------------------------------------
    long_top = o.top == "jacket"
    y_hem = y_hip + 0.035 * hp if long_top else y_waist + 0.045 * hp
    hem_w = (hw * 1.05 if long_top else ww + 0.35 * (hw - ww)) + (0.01 * hp if long_top else 0)
    top = 0.6 if o.sleeves == "none" else 0.8
    sx = x_at(y_sh)
    if o.top == "hoodie":  # hood bunched behind the neck
        cv.ellipse(sx - (d * rx * 0.6 if side else 0), y_sh - 0.01 * hp, rx * (1.0 if side else 1.45), 0.05 * hp, UPPER)
    chest = d * 0.12 * sw if side else 0.0
    cv.polygon(
        [
            (sx - sw * top, y_sh - 0.012 * hp),
            (sx + sw * top, y_sh - 0.012 * hp),
            (sx + sw + chest, y_sh + 0.04 * hp),
            (x_at(y_waist) + ww * 1.02, y_waist),
            (x_at(y_hem) + hem_w, y_hem),
            (x_at(y_hem) - hem_w, y_hem),
            (x_at(y_waist) - ww * 1.02, y_waist),
            (sx - sw + chest, y_sh + 0.04 * hp),
        ],
        UPPER,
    )
    if long_top and pose.view != "back":  # zip
        zx = sx + (d * sw * 0.9 if side else 0)
        cv.mark([(zx, y_sh + 0.01 * hp), (x_at(y_hem) + (zx - sx), y_hem)], 0.01 * hp, 120)
    for chain, far in arms:
        if not far:
            _draw_arm(cv, chain, o, arm_w, fore_w)

    # -- neck, head, hair ------------------------------------------------------------------------------
    hx = x_at(cy_head) + (d * 0.12 * rx if side else 0)
    if pose.view != "back" and t.hair_style in ("long", "bob", "curly"):
        _hair_behind(cv, t.hair_style, hx, cy_head, rx, ry, y_sh, hp, pose)
    neck_label = HAIR if pose.view == "back" else FACE
    cv.polygon(
        [
            (hx - 0.42 * rx, cy_head),
            (hx + 0.42 * rx, cy_head),
            (hx + 0.45 * rx, y_sh + 0.005 * hp),
            (hx - 0.45 * rx, y_sh + 0.005 * hp),
        ],
        neck_label,
    )
    if pose.view == "back":
        cv.ellipse(hx, cy_head, rx * 1.04, ry * 1.03, HAIR)
    else:
        cv.ellipse(hx, cy_head, rx, ry, FACE)
        if side:
            cv.ellipse(hx + d * rx * 0.92, cy_head + 0.08 * ry, 0.2 * rx, 0.22 * ry, FACE)  # nose
    _hair_front(cv, t.hair_style, hx, cy_head, rx, ry, y_sh, hp, pose)
    if pose.view == "front":
        for s in (-1, 1):
            ex = hx + s * 0.36 * rx
            cv.mark([(ex, cy_head + 0.02 * ry), (ex, cy_head + 0.12 * ry)], 0.14 * rx, 70)
    elif side:
        ex = hx + d * 0.55 * rx
        cv.mark([(ex, cy_head), (ex, cy_head + 0.1 * ry)], 0.14 * rx, 70)
    return x_at(y_waist), y_sh


def _arm_chains(t: Traits, pose: Pose, sx: float, y_sh: float, sw: float, arm_w: float, hp: float) -> list:
    """[(shoulder, elbow, wrist), is_far] per arm."""
    upper, fore = 0.185 * hp, 0.165 * hp
    y = y_sh + 0.03 * hp
    out = []
    if pose.view == "side":
        d = pose.facing
        for k, far in ((-1.0, False), (1.0, True)):  # arms swing against the legs on the same side
            alpha = k * t.arm_swing * math.sin(pose.phase)
            shoulder = (sx - d * 0.1 * sw, y)
            elbow = _add(shoulder, upper, alpha, d)
            out.append(((shoulder, elbow, _add(elbow, fore, alpha + 0.25 + 0.5 * max(0.0, alpha), d)), far))
    else:
        for s in (-1.0, 1.0):
            swing = abs(math.sin(pose.phase)) * t.arm_swing
            shoulder = (sx + s * (sw - 0.45 * arm_w), y)
            elbow = _add(shoulder, upper * (1 - 0.15 * swing), 0.1, s)
            out.append(((shoulder, elbow, _add(elbow, fore * (1 - 0.5 * swing), 0.05, s)), False))
    return out


def _draw_arm(cv: Canvas, chain: tuple, o: Outfit, arm_w: float, fore_w: float) -> None:
    shoulder, elbow, wrist = chain
    if o.sleeves == "long":
        cv.limb(shoulder, elbow, arm_w * 1.15, UPPER)
        cv.limb(elbow, wrist, fore_w * 1.2, UPPER)
        return
    cv.limb(shoulder, elbow, arm_w, ARMS)
    cv.limb(elbow, wrist, fore_w, ARMS)
    hand = (wrist[0] + 0.3 * (wrist[0] - elbow[0]), wrist[1] + 0.3 * (wrist[1] - elbow[1]))
    cv.limb(wrist, hand, fore_w * 1.05, ARMS)
    if o.sleeves == "short":
        mid = ((shoulder[0] + elbow[0]) / 2, (shoulder[1] + elbow[1]) / 2)
        cv.limb(shoulder, mid, arm_w * 1.35, UPPER)


def _hair_behind(cv, style, hx, cy, rx, ry, y_sh, hp, pose) -> None:
    """Hair that shows around the head: drawn before the face."""
    back = -pose.facing * rx * 0.35 if pose.view == "side" else 0.0
    if style == "curly":
        cv.ellipse(hx + back, cy - 0.12 * ry, rx * 1.5, ry * 1.3, HAIR)
        return
    bottom = y_sh + 0.1 * hp if style == "long" else cy + ry * 0.95
    width = rx * (1.18 if style == "long" else 1.25)
    cv.ellipse(hx + back, cy - 0.05 * ry, width, ry * 1.1, HAIR)
    cv.polygon(
        [
            (hx + back - width, cy),
            (hx + back + width, cy),
            (hx + back + width * 0.95, bottom),
            (hx + back - width * 0.95, bottom),
        ],
        HAIR,
    )


def _hair_front(cv, style, hx, cy, rx, ry, y_sh, hp, pose) -> None:
    """The cap over the head and whatever hangs or sticks out in front of the body."""
    view, d = pose.view, pose.facing
    if view == "back":
        if style == "long":
            cv.polygon(
                [
                    (hx - rx * 1.12, cy),
                    (hx + rx * 1.12, cy),
                    (hx + rx * 1.05, y_sh + 0.1 * hp),
                    (hx - rx * 1.05, y_sh + 0.1 * hp),
                ],
                HAIR,
            )
        elif style == "bob":
            cv.ellipse(hx, cy + 0.2 * ry, rx * 1.22, ry * 1.05, HAIR)
        elif style == "curly":
            cv.ellipse(hx, cy - 0.12 * ry, rx * 1.5, ry * 1.3, HAIR)
        elif style == "ponytail":
            cv.limb((hx, cy), (hx, y_sh + 0.07 * hp), rx * 0.5, HAIR)
        elif style == "bun":
            cv.ellipse(hx, cy - 0.45 * ry, rx * 0.5, rx * 0.5, HAIR)
        return
    if view == "side":
        thin = style == "buzz"
        cv.ellipse(
            hx - d * rx * (0.22 if thin else 0.3),
            cy - ry * (0.3 if thin else 0.2),
            rx * (0.88 if thin else 0.98),
            ry * (0.75 if thin else 0.9),
            HAIR,
        )
        if style == "ponytail":
            cv.limb((hx - d * rx * 0.9, cy - 0.2 * ry), (hx - d * rx * 1.5, cy + 1.5 * ry), rx * 0.45, HAIR)
        elif style == "bun":
            cv.ellipse(hx - d * rx * 0.95, cy - 0.55 * ry, rx * 0.45, rx * 0.45, HAIR)
        return
    if style == "bun":
        cv.ellipse(hx, cy - ry * 1.05, rx * 0.45, rx * 0.42, HAIR)
    lift, half_h, grow = _CAPS.get(style, (0.15, 0.95, 1.08))
    c = cy - lift * ry
    cv.chord((hx - rx * grow, c - ry * half_h, hx + rx * grow, c + ry * half_h), HAIR)


# Front-view hair cap: (centre raised by, half height, width), in head radii.
_CAPS = {"buzz": (0.4, 0.64, 1.02), "curly": (0.1, 1.2, 1.2)}
