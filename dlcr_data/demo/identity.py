"""Who the demo people are: persistent body traits per identity, and the outfits each one wears.

Everything is drawn from `numpy.random.default_rng([seed, tag, pid, ...])`, so an identity or outfit depends only
on the seed and its own indices, never on how many others were sampled before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcr_data.vocab.colors import VOCABULARY

# Clothes colours, shared by every identity: two people can wear the same colours, which is what makes
# colour a shortcut that fails when clothes change. Kept far apart so a colour name is recoverable from pixels.
PALETTE: dict[str, tuple[int, int, int]] = {
    name: VOCABULARY[name]
    for name in (
        "black",
        "white",
        "grey",
        "red",
        "blue",
        "green",
        "yellow",
        "orange",
        "pink",
        "purple",
        "brown",
        "beige",
    )
}
BOTTOM_COLOURS = ("black", "grey", "blue", "brown", "beige", "white", "green", "red")
SHOE_COLOURS = ("black", "white", "grey", "brown", "red", "blue")

SKIN_TONES = ((250, 214, 190), (236, 188, 150), (214, 160, 118), (180, 124, 84), (140, 92, 60), (98, 64, 44))
HAIR_COLOURS = ((20, 18, 18), (64, 40, 24), (120, 80, 44), (150, 66, 30), (214, 184, 110), (176, 174, 170))
HAIR_STYLES = ("short", "buzz", "long", "bob", "ponytail", "bun", "curly")

# Top garment type -> how much of the arm its sleeves cover.
TOPS: dict[str, str] = {
    "short-sleeve t-shirt": "short",
    "long-sleeve shirt": "long",
    "jacket": "long",
    "hoodie": "long",
    "sleeveless top": "none",
}
BOTTOMS = ("trousers", "jeans", "shorts", "skirt")
PATTERNS = ("plain", "striped", "checked", "dotted")


@dataclass(frozen=True)
class Traits:
    """What stays with a person across outfits and cameras. Lengths are fractions of the body height."""

    height: float  # relative stature, scales the figure within a camera
    head: float  # head height
    legs: float  # hip-to-floor length
    shoulders: float  # half shoulder width
    hips: float  # half hip width
    limb: float  # limb thickness multiplier (slim .. heavy build)
    skin: tuple[int, int, int]
    hair_colour: tuple[int, int, int]
    hair_style: str
    stride: float  # walking gait: leg swing amplitude (radians)
    arm_swing: float
    lean: float  # persistent posture: forward lean (radians)
    outfits: int  # how many outfits this person is seen in


@dataclass(frozen=True)
class Outfit:
    top: str
    top_colour: str
    pattern: str
    bottom: str
    bottom_colour: str
    shoes: str

    @property
    def sleeves(self) -> str:
        return TOPS[self.top]

    def text(self) -> str:
        """`top | bottom | shoes`, e.g. "red striped long-sleeve shirt | black trousers | white shoes"."""
        # The pattern is always named ("plain" too): a generator renders what the text says, and a text that
        # left "plain" out would let a variant keep its source's pattern.
        return f"{self.top_colour} {self.pattern} {self.top} | {self.bottom_colour} {self.bottom} | {self.shoes} shoes"


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(colour) * rng.uniform(1 - amount, 1 + amount), 0, 255))


def sample_traits(seed: int, pid: int) -> Traits:
    rng = np.random.default_rng([seed, 1, pid])
    return Traits(
        height=float(rng.uniform(0.86, 1.0)),
        head=float(rng.uniform(0.115, 0.15)),
        legs=float(rng.uniform(0.43, 0.53)),
        shoulders=float(rng.uniform(0.095, 0.145)),
        hips=float(rng.uniform(0.075, 0.12)),
        limb=float(rng.uniform(0.8, 1.25)),
        skin=_jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 0.05),
        hair_colour=_jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.08),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        stride=float(rng.uniform(0.18, 0.42)),
        arm_swing=float(rng.uniform(0.15, 0.5)),
        lean=float(rng.uniform(-0.03, 0.08)),
        outfits=int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3])),
    )


def sample_outfits(seed: int, pid: int, count: int) -> list[Outfit]:
    """`count` outfits that differ in top colour and in the bottom, so each change is a real clothes change."""
    outfits: list[Outfit] = []
    for cloth in range(1, count + 1):
        rng = np.random.default_rng([seed, 2, pid, cloth])
        while True:  # bounded in practice: 12 top colours and 32 bottoms against at most 2 earlier outfits
            top_colour = str(rng.choice(list(PALETTE)))
            bottom = (str(rng.choice(BOTTOMS)), str(rng.choice(BOTTOM_COLOURS)))
            if bottom[0] == "jeans" and rng.random() < 0.6:  # most jeans are blue
                bottom = ("jeans", "blue")
            if all(top_colour != o.top_colour and bottom != (o.bottom, o.bottom_colour) for o in outfits):
                break
        outfits.append(
            Outfit(
                top=str(rng.choice(list(TOPS))),
                top_colour=top_colour,
                pattern=str(rng.choice(PATTERNS, p=[0.4, 0.25, 0.15, 0.2])),
                bottom=bottom[0],
                bottom_colour=bottom[1],
                shoes=str(rng.choice(SHOE_COLOURS)),
            )
        )
    return outfits
